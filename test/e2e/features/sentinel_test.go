package features

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/rebootgate/rebootgate/engine/detect"
	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// TestCommandSentinel: with kured's --reboot-sentinel-command (run without nsenter on
// the bed), the command's exit status is what the agent goes by: exit 0 reboots the
// node once, and exit 1 after the reboot (the simulator removed the file the command
// tests) is "not needed" (the RebootRequired condition says which command exit it
// saw); a node whose command exits 2 — an error, never "needed" — stays up with the
// error in its condition.
func TestCommandSentinel(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("", "")
	ok, broken := e.node(nil), e.node(nil)
	command := "sh -c 'test -e " + testbed.PhDir + "/broken && exit 2; test -e " + testbed.PhSentinel + "'"
	sim := e.simulate([]string{ok, broken}, e.args(cfg, "--reboot-sentinel-command", command))
	if err := os.WriteFile(filepath.Join(sim.Dir(broken), "broken"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.required(sim, ok, broken)

	condition := func(node, reason string, status corev1.ConditionStatus) {
		t.Helper()
		if _, err := e.bed.WaitNode(context.Background(), node, time.Minute, "RebootRequired="+string(status)+" ("+reason+")", func(n *corev1.Node) bool {
			for _, c := range n.Status.Conditions {
				if c.Type == nodestate.ConditionRebootRequired {
					return c.Status == status && c.Reason == reason
				}
			}
			return false
		}); err != nil {
			t.Fatal(err)
		}
	}
	condition(broken, detect.ReasonCommandExitCode, corev1.ConditionFalse)
	e.rebootedOnce(sim, ok, time.Time{}, 2*time.Minute)
	condition(ok, detect.ReasonCommandNotNeeded, corev1.ConditionFalse)
	e.holds(sim, 4*time.Second, "the node whose sentinel command fails stays up", broken)
}
