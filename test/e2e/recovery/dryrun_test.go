package recovery

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/rebootgate/rebootgate/test/testbed"
)

// switchable is the agent's command line run through a shell that appends the flags
// in {dir}/extra-flags at each start: the test switches the restarted agent to
// --dry-run as a DaemonSet rollout would.
func (e *env) switchable(extra ...string) []string {
	script := `exec "$0" "$@" $(cat ` + filepath.Join(testbed.PhDir, "extra-flags") + ` 2>/dev/null)`
	return append([]string{"/bin/sh", "-c", script}, e.args(extra...)...)
}

// restartInDryRun kills the agent and lets the simulator start it again with
// --dry-run.
func (e *env) restartInDryRun() {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.sim.Dir(e.node), "extra-flags"), []byte("--dry-run\n"), 0o644); err != nil {
		e.t.Fatal(err)
	}
	before := e.sim.State(e.node)
	if !before.Running {
		e.t.Fatalf("agent not running when switching to dry-run: %+v", before)
	}
	if err := syscall.Kill(-before.PID, syscall.SIGKILL); err != nil {
		e.t.Fatal(err)
	}
	if err := testbed.Poll(context.Background(), time.Minute, "the agent restarted", func(context.Context) (bool, error) {
		st := e.sim.State(e.node)
		return st.Running && st.Starts > before.Starts, nil
	}); err != nil {
		e.t.Fatal(err)
	}
	e.waitLog("dryRun=true", time.Minute)
}

// TestDryRunSwitchMidDrainUndoes (issue 18, 6; I3): the agent is switched to
// --dry-run while its node drains (a PDB holds the drain, --drain-timeout 5m); the
// dry-run agent takes no further disruptive step, so it undoes the reboot: the node
// ends uncordoned, idle and without a slot, and the host never went down.
func TestDryRunSwitchMidDrainUndoes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pod := e.guardedPod()
	e.start(testbed.SimConfig{Command: e.switchable("--drain-timeout", "5m"), RestartOnExit: true})
	e.requireReboot()
	e.waitNode(time.Minute, "Draining", func(n *corev1.Node) bool { return phaseOf(n) == "Draining" && n.Spec.Unschedulable })
	e.restartInDryRun()
	e.waitSettled(time.Minute, "after the switch to dry-run")
	if r := e.sim.Reboots(); len(r) != 0 || e.sim.State(e.node).Rebooting {
		t.Errorf("the host went down after the switch to dry-run: %v", r)
	}
	e.requirePodRunning(pod)
}

// TestDryRunSwitchMidVerifyingFinishes (issue 18, 6; I3): the agent is switched to
// --dry-run while its node soaks after the reboot; the reboot is finished — the node
// uncordoned, idle, its slot released — and not repeated.
func TestDryRunSwitchMidVerifyingFinishes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start(testbed.SimConfig{Command: e.switchable("--soak", "20s"), RestartOnExit: true})
	e.requireReboot()
	if _, err := e.sim.WaitForReboots(context.Background(), 1, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	e.waitNode(time.Minute, "Verifying after the reboot", func(n *corev1.Node) bool { return phaseOf(n) == "Verifying" })
	e.restartInDryRun()
	e.waitSettled(20*time.Second+time.Minute, "after the switch to dry-run")
	if got := len(e.sim.Reboots()); got != 1 {
		t.Errorf("%d reboots, want 1", got)
	}
}
