package pipeline

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoIOImports: the lifecycle table stays pure, and so do the packages that
// forecast and decide with it. Their dependency graphs (go list -deps) must not hold
// kubectl (its drain helper, which pulls in much of kubectl's command tree) and, for
// pipeline, not client-go's clientset either: that I/O lives in engine/agent/nodeops.
// A failure names the chain of imports that brings the package in.
func TestNoIOImports(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH:", err)
	}
	kubectl := func(p string) bool { return strings.HasPrefix(p, "k8s.io/kubectl/") }
	for _, c := range []struct {
		dir       string
		forbidden func(string) bool
	}{
		{".", func(p string) bool { return kubectl(p) || p == "k8s.io/client-go/kubernetes" }},
		{"../plan", kubectl},
		{"../decision", kubectl},
	} {
		t.Run(c.dir, func(t *testing.T) {
			// One line per package in the graph: "root" if it is the listed one, then
			// its import path and its imports.
			out, err := exec.Command(goBin, "list", "-deps",
				"-f", `{{if not .DepOnly}}root {{end}}{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, c.dir).Output()
			if err != nil {
				t.Fatalf("go list -deps %s: %v", c.dir, err)
			}
			imports, root := map[string][]string{}, ""
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				f := strings.Fields(line)
				if f[0] == "root" {
					f = f[1:]
					root = f[0]
				}
				imports[f[0]] = f[1:]
			}
			if root == "" || len(imports) < 2 {
				t.Fatalf("go list -deps %s listed no root or no dependencies:\n%s", c.dir, out)
			}
			for _, chain := range forbiddenChains(root, imports, c.forbidden) {
				t.Errorf("%s imports %s", root, strings.Join(chain, " → "))
			}
		})
	}
}

// forbiddenChains walks the import graph from root breadth-first and returns, for each
// forbidden package reached, the shortest chain of imports leading to it (without
// descending into forbidden packages).
func forbiddenChains(root string, imports map[string][]string, forbidden func(string) bool) [][]string {
	from := map[string]string{root: ""}
	var chains [][]string
	for queue := []string{root}; len(queue) > 0; queue = queue[1:] {
		p := queue[0]
		if forbidden(p) {
			var chain []string
			for q := p; q != root; q = from[q] {
				chain = append([]string{q}, chain...)
			}
			chains = append(chains, chain)
			continue
		}
		for _, i := range imports[p] {
			if _, seen := from[i]; !seen {
				from[i] = p
				queue = append(queue, i)
			}
		}
	}
	return chains
}
