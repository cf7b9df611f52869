package chart

import (
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestSummarizerProbes: the summarizer Deployment's liveness and readiness probes GET
// /healthz and /readyz on its container port named health, which is where the summarizer
// is told to serve them (--health-address=:PORT), for the default port and another one.
// (TestSummarizerShape runs the args with --help, so the flag parses.)
func TestSummarizerProbes(t *testing.T) {
	e := setup(t)
	for _, tc := range []struct {
		args []string
		port int32
	}{{nil, 8081}, {[]string{"--set", "summarizer.healthPort=9443"}, 9443}} {
		port := tc.port
		d := summarizer(t, e.render(t, tc.args...))
		if d == nil {
			t.Fatal("no summarizer Deployment rendered")
		}
		c := d.Spec.Template.Spec.Containers[0]
		if want := fmt.Sprintf("--health-address=:%d", port); !slices.Contains(c.Args, want) {
			t.Errorf("args %q lack %s", c.Args, want)
		}
		if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "health" && p.ContainerPort == port }) {
			t.Errorf("ports %+v: no port health = %d", c.Ports, port)
		}
		for _, p := range []struct {
			kind, path string
			probe      *corev1.Probe
		}{{"liveness", "/healthz", c.LivenessProbe}, {"readiness", "/readyz", c.ReadinessProbe}} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("healthPort %d: no HTTP %s probe", port, p.kind)
				continue
			}
			if g := p.probe.HTTPGet; g.Path != p.path || g.Port.String() != "health" {
				t.Errorf("healthPort %d: %s probe GETs %s on port %s, want %s on health", port, p.kind, g.Path, g.Port.String(), p.path)
			}
		}
	}
}
