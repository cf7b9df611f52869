// Package chart tests the Helm chart charts/rebootgate without a cluster: `helm lint`,
// golden files of `helm template` (testdata/*.values.yaml → *.golden.yaml; regenerate
// with `go test ./test/chart/ -update`), least-privilege RBAC with no wildcards, the
// security context of each reboot method, and that every flag the chart renders is one
// `rebootgate agent` accepts. test/chart/e2e applies the chart to the test bed.
//
// The tests need helm: $HELM, or <repo>/_output/bin/helm (`make test-chart` installs
// it); without either they are skipped.
package chart

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"sigs.k8s.io/yaml"
)

// Release and Namespace are the release name and namespace the golden files use.
const (
	Release   = "rebootgate"
	Namespace = "rebootgate"
)

// Root is the repository root, found from the working directory.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Dir is the chart's directory.
func Dir(root string) string { return filepath.Join(root, "charts", "rebootgate") }

// Helm returns the helm binary: $HELM, else <root>/_output/bin/helm. ok is false when
// neither exists.
func Helm(root string) (path string, ok bool) {
	if h := os.Getenv("HELM"); h != "" {
		return h, true
	}
	p := filepath.Join(root, "_output", "bin", "helm")
	if _, err := os.Stat(p); err == nil {
		return p, true
	}
	return p, false
}

// BuildHelm returns Helm(root) when it exists, and otherwise builds it once with the
// Makefile's rule (`make test-e2e` alone on a fresh machine).
func BuildHelm(root string) (string, error) {
	helm, ok := Helm(root)
	if ok {
		return helm, nil
	}
	helmOnce.Do(func() {
		cmd := exec.Command("make", "--no-print-directory", "-C", root, helm)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			helmErr = fmt.Errorf("building helm (make %s): %w", helm, err)
		}
	})
	return helm, helmErr
}

var (
	helmOnce sync.Once
	helmErr  error
)

// Template runs `helm template` on the chart with extra arguments (-f, --set…).
func Template(helm, chartDir, release, namespace string, args ...string) ([]byte, error) {
	cmd := exec.Command(helm, append([]string{"template", release, chartDir, "--namespace", namespace}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm template %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// PrometheusOperator is the Go module (on the module proxy) whose
// example/prometheus-operator-crd holds the Prometheus Operator's own CRDs, with the
// monitoring.coreos.com schemas the chart's ServiceMonitor and PrometheusRule must pass.
const PrometheusOperator = "github.com/prometheus-operator/prometheus-operator@v0.85.0"

// MonitoringCRDs returns the ServiceMonitor and PrometheusRule CRDs of PrometheusOperator,
// fetched with `go mod download` into the module cache.
func MonitoringCRDs() ([]byte, error) {
	cmd := exec.Command("go", "mod", "download", "-json", PrometheusOperator)
	cmd.Dir = os.TempDir() // outside any module: nothing's go.mod or go.sum changes
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GO111MODULE=on")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go mod download %s: %w: %s", PrometheusOperator, err, strings.TrimSpace(stderr.String()))
	}
	var mod struct{ Dir, Error string }
	if err := yaml.Unmarshal(out, &mod); err != nil {
		return nil, fmt.Errorf("go mod download %s: %w", PrometheusOperator, err)
	}
	if mod.Error != "" || mod.Dir == "" {
		return nil, fmt.Errorf("go mod download %s: %s", PrometheusOperator, mod.Error)
	}
	var crds []byte
	for _, kind := range []string{"servicemonitors", "prometheusrules"} {
		data, err := os.ReadFile(filepath.Join(mod.Dir, "example", "prometheus-operator-crd", "monitoring.coreos.com_"+kind+".yaml"))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", PrometheusOperator, err)
		}
		crds = append(append(crds, "---\n"...), data...)
	}
	return crds, nil
}

// Object is one rendered manifest: its kind, name and raw YAML.
type Object struct {
	Kind, Name, Namespace string
	YAML                  []byte
}

// Split splits `helm template` output into objects, dropping empty documents.
func Split(manifests []byte) ([]Object, error) {
	var out []Object
	for _, doc := range bytes.Split(manifests, []byte("\n---")) {
		doc = bytes.TrimSpace(bytes.TrimPrefix(doc, []byte("---")))
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return nil, fmt.Errorf("rendered document is not YAML: %w\n%s", err, doc)
		}
		if meta.Kind == "" {
			continue // only comments
		}
		doc = append(doc, '\n') // TrimSpace took the last block scalar's newline
		out = append(out, Object{Kind: meta.Kind, Name: meta.Metadata.Name, Namespace: meta.Metadata.Namespace, YAML: doc})
	}
	return out, nil
}
