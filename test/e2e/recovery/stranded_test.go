package recovery

import (
	"context"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// finishBound is how long after a fault clears the node must be uncordoned, idle and
// without a slot: the failure back-off (2s, doubling, for the ~30s of denial: at most
// a 32s wait) plus a margin for the bed.
const finishBound = 90 * time.Second

// rebootIntoDeniedFinish denies the patch that finishes a reboot, reboots the node
// and returns once the agent has tried to finish and been refused (its log carries the
// API's answer), with the node still in Verifying. Only the removal of the phase
// annotation is refused, so every step up to the end of Verifying goes through and
// the denial bites exactly at the finish. clear lifts the denial.
func (e *env) rebootIntoDeniedFinish(extra ...string) (clear func()) {
	e.t.Helper()
	msg := "e2e " + e.id + ": finishing the reboot is denied for now"
	clear = e.denyFinish(msg)
	e.start(testbed.SimConfig{Command: e.args(extra...)})
	e.requireReboot()
	if _, err := e.sim.WaitForReboots(context.Background(), 1, 2*time.Minute); err != nil {
		e.t.Fatal(err)
	}
	e.waitLog(msg, 2*time.Minute)
	if ph := phaseOf(e.get()); ph != "Verifying" {
		e.t.Fatalf("while the finish is denied: phase %q, want Verifying", ph)
	}
	return clear
}

// TestFinishDeniedForAWhileDoesNotStrand (finding 5, I3): the patch that finishes a
// verified reboot (uncordon, clear the phase) is refused by an admission policy for
// ~30s; once the policy is gone the agent retries it, and the node ends uncordoned,
// idle and without a slot within finishBound — it is not left cordoned with its slot
// renewed forever.
func TestFinishDeniedForAWhileDoesNotStrand(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	clear := e.rebootIntoDeniedFinish()
	denied := time.Now()
	// Keep denying for ~30s from the first refusal: a deliberate fault duration.
	time.Sleep(time.Until(denied.Add(30 * time.Second)))
	clear()
	cleared := time.Now()
	e.waitSettled(finishBound, "after the denial cleared")
	t.Logf("settled %s after the denial cleared", time.Since(cleared).Round(time.Second))
	if n := e.get(); n.Annotations[nodestate.AnnotationLastReboot] == "" {
		t.Errorf("the finished reboot was not recorded: %v", n.Annotations)
	}
}

// TestRestartUnderBrokenConfigFinishesReboot (finding 5, I3): the agent is killed in
// the middle of Verifying and comes back with a config file that is not even YAML;
// finishing a reboot needs no config, so it still uncordons the node and releases the
// slot.
func TestRestartUnderBrokenConfigFinishesReboot(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The soak keeps the node in Verifying long enough to kill the agent there.
	e.start(testbed.SimConfig{Command: e.args("--soak", "20s"), RestartOnExit: true})
	e.requireReboot()
	if _, err := e.sim.WaitForReboots(context.Background(), 1, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	e.waitNode(time.Minute, "Verifying after the reboot", func(n *corev1.Node) bool { return phaseOf(n) == "Verifying" })
	if err := os.WriteFile(e.cfg, []byte("apiVersion: rebootgate.io/v1alpha1\nkind: RebootGateConfig\npools: [\n  - {name: rec\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := e.sim.State(e.node)
	if !before.Running {
		t.Fatalf("agent not running in Verifying: %+v", before)
	}
	if err := syscall.Kill(-before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The fault must have hit mid-Verifying: the node is still cordoned there.
	if n := e.get(); !n.Spec.Unschedulable || phaseOf(n) != "Verifying" {
		t.Fatalf("after the kill: unschedulable=%v phase=%q; the kill came too late to test anything", n.Spec.Unschedulable, phaseOf(n))
	}
	if err := testbed.Poll(context.Background(), time.Minute, "the agent restarted", func(context.Context) (bool, error) {
		st := e.sim.State(e.node)
		return st.Running && st.Starts > before.Starts, nil
	}); err != nil {
		t.Fatal(err)
	}
	e.waitSettled(20*time.Second+finishBound, "after the restart under a broken config")
	if got := len(e.sim.Reboots()); got != 1 {
		t.Errorf("%d reboots, want 1", got)
	}
}

// TestHealthzAndPhaseMetricWhileStuck (finding 5): while the finishing patch is
// refused, the phase metric stays at Verifying (it is not reset to idle, so the stuck-
// in-phase alert can fire), and /healthz turns non-200 once the reconcile loop has
// failed for longer than its bound; when writes are allowed again the node finishes
// and /healthz is 200 again.
func TestHealthzAndPhaseMetricWhileStuck(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A shorter bound than the default (2m) if the agent lets us set it.
	clear := e.rebootIntoDeniedFinish(e.ifKnown("--unhealthy-after", "30s")...)
	ctx := context.Background()
	verifying := map[string]string{"node": e.node, "phase": "Verifying"}
	checkPhase := func(when string) {
		t.Helper()
		v, ok, err := e.metric(ctx, "rebootgate_phase", verifying)
		if err != nil {
			t.Fatal(err)
		}
		if !ok || v != 1 {
			t.Errorf("%s: rebootgate_phase{phase=\"Verifying\"} = %v (present %v), want 1 while the node is stuck in Verifying", when, v, ok)
		}
	}
	checkPhase("after the first refused finish")
	if code, body, err := e.endpoint(ctx, "/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("/healthz right after the first refusal: %d %q %v, want 200 (a single failure is not unhealthy)", code, body, err)
	}
	// The bound is the agent's (about 1–2 min by default): wait for it, with room.
	start := time.Now()
	var code int
	if err := testbed.Poll(ctx, 4*time.Minute, "/healthz non-200 while the finish is denied", func(ctx context.Context) (bool, error) {
		c, _, err := e.endpoint(ctx, "/healthz")
		code = c
		return err == nil && c != http.StatusOK, err
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("/healthz turned %d %s after the first refusal", code, time.Since(start).Round(time.Second))
	checkPhase("when /healthz failed")
	if ph := phaseOf(e.get()); ph != "Verifying" {
		t.Fatalf("when /healthz failed: phase %q, want Verifying", ph)
	}
	clear()
	e.waitSettled(finishBound*2, "after the denial cleared")
	if err := testbed.Poll(ctx, time.Minute, "/healthz 200 again", func(ctx context.Context) (bool, error) {
		c, _, err := e.endpoint(ctx, "/healthz")
		return err == nil && c == http.StatusOK, err
	}); err != nil {
		t.Fatal(err)
	}
	if v, _, err := e.metric(ctx, "rebootgate_phase", verifying); err != nil || v != 0 {
		t.Errorf("rebootgate_phase{phase=\"Verifying\"} = %v (%v) after the finish, want 0", v, err)
	}
}
