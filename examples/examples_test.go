package examples

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/facts"
	"github.com/rebootgate/rebootgate/engine/policy"
)

// exampleCase is one expected decision in an example's cases.yaml.
type exampleCase struct {
	Name    string   `json:"name"`
	Node    string   `json:"node"`
	Pods    string   `json:"pods"`
	Alerts  string   `json:"alerts"`
	At      string   `json:"at"`
	Allowed bool     `json:"allowed"`
	Pool    string   `json:"pool"`
	Reasons []string `json:"reasons"`
}

func TestExamples(t *testing.T) {
	dirs, err := filepath.Glob("*/cases.yaml")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, casesPath := range dirs {
		dir := filepath.Dir(casesPath)
		t.Run(dir, func(t *testing.T) { runExample(t, dir) })
	}
}

func runExample(t *testing.T, dir string) {
	ctx := context.Background()
	cfg := config.Default()
	if _, err := os.Stat(filepath.Join(dir, "config.yaml")); err == nil {
		if cfg, err = config.Load(filepath.Join(dir, "config.yaml")); err != nil {
			t.Fatal(err)
		}
	}
	modules := policy.DefaultModules()
	extra, err := policy.LoadPaths([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	engine, err := decision.New(ctx, cfg, append(modules, extra...))
	if err != nil {
		t.Fatal(err)
	}
	var cases []exampleCase
	if err := yaml.UnmarshalStrict(read(t, filepath.Join(dir, "cases.yaml")), &cases); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			f := &facts.Facts{}
			var err error
			if f.Node, err = facts.ParseNode(read(t, filepath.Join(dir, c.Node))); err != nil {
				t.Fatal(err)
			}
			if c.Pods != "" {
				if f.Pods, err = facts.ParsePods(read(t, filepath.Join(dir, c.Pods))); err != nil {
					t.Fatal(err)
				}
			}
			if c.Alerts != "" {
				if f.Alerts, err = facts.ParseAlerts(read(t, filepath.Join(dir, c.Alerts))); err != nil {
					t.Fatal(err)
				}
			}
			at, err := time.Parse(time.RFC3339, c.At)
			if err != nil {
				t.Fatal(err)
			}
			d := engine.Decide(ctx, f, at)
			if d.Allowed != c.Allowed {
				t.Errorf("allowed = %v, want %v; reasons %v", d.Allowed, c.Allowed, d.Reasons)
			}
			if c.Pool != "" && d.Pool != c.Pool {
				t.Errorf("pool = %q, want %q", d.Pool, c.Pool)
			}
			if c.Reasons != nil {
				var got []string
				for _, r := range d.Reasons {
					got = append(got, r.Message)
				}
				if !slices.Equal(got, c.Reasons) {
					t.Errorf("reasons = %q, want %q", got, c.Reasons)
				}
			}
		})
	}
}

// Every example with Rego compiles with the default gate under the agent's rules (an
// operator's module may only add to deny) and passes its Rego tests with the embedded
// OPA, as `rebootgate policy test --default-gate examples/<name>` runs them.
func TestExamplePoliciesUnderAgentIsolation(t *testing.T) {
	files, err := filepath.Glob("*/*.rego")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example policies found: %v", err)
	}
	dirs := map[string]bool{}
	for _, f := range files {
		dirs[filepath.Dir(f)] = true
	}
	for dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			extra, err := policy.LoadPaths([]string{dir})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := policy.Compile(t.Context(), append(policy.DefaultModules(), extra...)); err != nil {
				t.Fatalf("the agent would reject %s: %v", dir, err)
			}
			var out bytes.Buffer
			sum, err := policy.RunTests(t.Context(), policy.TestOptions{Paths: []string{dir}, DefaultGate: true, Output: &out})
			if err != nil || sum.Failed+sum.Errored > 0 {
				t.Fatalf("policy test --default-gate %s: %+v, %v\n%s", dir, sum, err, out.String())
			}
		})
	}
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
