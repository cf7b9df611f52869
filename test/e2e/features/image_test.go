package features

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// TestNodeImageRules: a pool allowing only AKSUbuntu images built on or after
// 2025-06-01 blocks a node with an older image and one of another family, each with a
// reason naming the rule, and reboots the node whose image passes (the bed's default).
func TestNodeImageRules(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(`  nodeImage:
    families: [AKSUbuntu]
    minDate: "2025-06-01"
`, "")
	image := func(v string) func(*corev1.Node) {
		return func(n *corev1.Node) { n.Labels[testbed.NodeImageLabel] = v }
	}
	old := e.node(image("AKSUbuntu-2204gen2containerd-202403.25.0"))
	other := e.node(image("AKSAzureLinux-V2gen2-202510.01.0"))
	current := e.node(nil) // testbed.DefaultNodeImage
	sim := e.simulate([]string{old, other, current}, e.args(cfg))
	e.required(sim, old, other, current)

	blocked := func(node, want string) {
		t.Helper()
		d := e.waitDecision(node, time.Minute, "blocked by the node-image rule", func(d nodestate.Decision) bool { return !d.Allowed })
		if !strings.Contains(reasons(d.Reasons), want) {
			t.Errorf("%s: blocked with %q, want a reason containing %q", node, reasons(d.Reasons), want)
		}
	}
	blocked(old, "dated 2024-03-25, before the minimum 2025-06-01")
	blocked(other, "AKSAzureLinux")
	e.rebootedOnce(sim, current, time.Time{}, 2*time.Minute)
	// The slot is free again: the blocked nodes would take it at their next decision.
	e.holds(sim, 6*time.Second, "the blocked images stay up after the allowed one rebooted", old, other)
}
