package recovery

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// deadHook writes a reboot command that is run like the simulator's hook but never
// reboots anything (a host that ignores `systemctl reboot`); it returns the command
// and a function counting its calls.
func (e *env) deadHook() (path string, calls func() int) {
	e.t.Helper()
	path = filepath.Join(e.dir, "dead-reboot-hook")
	log := filepath.Join(e.dir, "dead-reboot-hook.calls")
	script := fmt.Sprintf("#!/bin/sh\n# Accepts the reboot request and does nothing.\ndate +%%s.%%N >> '%s'\nexit 0\n", log)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		e.t.Fatal(err)
	}
	return path, func() int {
		data, _ := os.ReadFile(log)
		return strings.Count(string(data), "\n")
	}
}

// TestRebootThatNeverHappensBacksOffThenHolds (finding 7, I4): the host ignores every
// reboot request (the boot ID never changes). Each attempt — cordon, drain, request,
// --reboot-timeout 3s × --reboot-attempts 1 without a new boot ID — is a failure that
// is undone and retried after --failure-backoff 2s, doubling: the pauses between an
// uncordon and the next cordon grow (≥2s, then ≥4s) instead of a re-cordon every
// second; after --max-failures 3 the node is on hold with the reason, uncordoned,
// without a slot, and is left alone.
func TestRebootThatNeverHappensBacksOffThenHolds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	hook, calls := e.deadHook()
	rec := e.record()
	e.start(testbed.SimConfig{Command: e.args("--reboot-command", hook,
		"--reboot-timeout", "3s", "--reboot-attempts", "1", "--failure-backoff", "2s", "--max-failures", "3")})
	e.requireReboot()
	// Stop at the hold or at a fourth cordon, whichever comes first.
	err := testbed.Poll(context.Background(), 3*time.Minute, "the hold (or a 4th cordon)", func(ctx context.Context) (bool, error) {
		cordons, _ := rec.Cordons()
		return len(cordons) > 3 || e.get().Annotations[nodestate.AnnotationHold] != "", nil
	})
	if err != nil {
		t.Fatalf("%v; node changes:%s", err, rec)
	}
	e.waitSettled(30*time.Second, "on hold")
	heldAt := time.Now()
	n := e.get()
	if n.Annotations[nodestate.AnnotationHold] == "" {
		t.Fatalf("not on hold after failures; node changes:%s", rec)
	}
	cordons, uncordons := rec.Cordons()
	if len(cordons) != 3 || len(uncordons) != 3 {
		t.Fatalf("%d cordons and %d uncordons before the hold, want 3 and 3 (--max-failures 3); node changes:%s", len(cordons), len(uncordons), rec)
	}
	// The pause before each retry is the back-off: 2s, then 4s (a little slack for
	// the agent's failure being recorded just before its uncordon is seen).
	pauses := []time.Duration{cordons[1].Sub(uncordons[0]), cordons[2].Sub(uncordons[1])}
	for i, want := range []time.Duration{2 * time.Second, 4 * time.Second} {
		if pauses[i] < want*8/10 {
			t.Errorf("pause %d between an uncordon and the next cordon: %s, want ≥ %s (--failure-backoff 2s, doubling); node changes:%s", i+1, pauses[i].Round(time.Millisecond), want, rec)
		}
	}
	if pauses[1] <= pauses[0] {
		t.Errorf("pauses %v do not grow", pauses)
	}
	if c := calls(); c != 3 {
		t.Errorf("the reboot command ran %d times, want 3 (one request per attempt)", c)
	}
	if !strings.Contains(strings.ToLower(n.Annotations[nodestate.AnnotationHold]), "reboot") {
		t.Errorf("hold reason %q does not say the reboot did not happen", n.Annotations[nodestate.AnnotationHold])
	}
	ev := e.waitEvent("RebootHeld", 30*time.Second)
	t.Logf("hold %q after pauses %v; RebootHeld: %s", n.Annotations[nodestate.AnnotationHold], pauses, ev.Message)
	ctx := context.Background()
	if v, ok, err := e.metric(ctx, "rebootgate_on_hold", map[string]string{"node": e.node}); err != nil || !ok || v != 1 {
		t.Errorf("rebootgate_on_hold = %v (present %v, %v), want 1", v, ok, err)
	}
	if v, ok, err := e.metric(ctx, "rebootgate_failures_total", map[string]string{"node": e.node}); err != nil || !ok || v != 3 {
		t.Errorf("rebootgate_failures_total = %v (present %v, %v), want 3", v, ok, err)
	}
	// Without the hold a fourth attempt would start within the next back-off (8s):
	// watch for twice that.
	_ = testbed.Poll(ctx, 16*time.Second, "nothing (a quiet period after the hold)", func(context.Context) (bool, error) {
		c, _ := rec.Cordons()
		return len(c) > 3, nil
	})
	if c, _ := rec.Cordons(); len(c) > 3 {
		t.Errorf("cordoned again %s after the hold; node changes:%s", c[3].Sub(heldAt).Round(time.Millisecond), rec)
	}
	if c := calls(); c != 3 {
		t.Errorf("the reboot command ran %d times after the hold, want 3 in all", c)
	}
}

// persistSentinel re-creates the node's sentinel as soon as the simulated reboot has
// removed it: the reboot did not clear the need (a package that still wants one).
func (e *env) persistSentinel(ctx context.Context) error {
	return testbed.Poll(ctx, 3*time.Minute, "a simulated reboot removing the sentinel", func(context.Context) (bool, error) {
		if !e.sim.State(e.node).Rebooting || e.sim.RebootRequired(e.node) {
			return false, nil
		}
		return true, e.sim.SetRebootRequired(e.node, true)
	})
}

// TestSentinelSurvivingRebootIsAFailure (finding 7, I4): the sentinel is back right
// after each verified reboot. That is a failure, not a reason to reboot once per
// --loop-backoff forever: the first is counted, the next reboot waits at least
// --loop-backoff, and after --max-failures 2 the node is on hold and reboots no more.
func TestSentinelSurvivingRebootIsAFailure(t *testing.T) {
	t.Parallel()
	const loopBackoff = 20 * time.Second
	e := newEnv(t)
	e.start(testbed.SimConfig{Command: e.args("--loop-backoff", loopBackoff.String(), "--max-failures", "2")})
	ctx := context.Background()
	e.requireReboot()
	if err := e.persistSentinel(ctx); err != nil {
		t.Fatal(err)
	}
	reboots, err := e.sim.WaitForReboots(ctx, 1, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	first := reboots[0]
	n := e.waitNode(time.Minute, "with the surviving sentinel counted as a failure", func(n *corev1.Node) bool {
		return n.Annotations[nodestate.AnnotationFailures] == "1"
	})
	if _, err := time.Parse(time.RFC3339, n.Annotations[nodestate.AnnotationRetryAfter]); err != nil {
		t.Errorf("after the first failure, %s=%q: %v", nodestate.AnnotationRetryAfter, n.Annotations[nodestate.AnnotationRetryAfter], err)
	}
	e.waitSettled(30*time.Second, "after the first failure")
	if err := e.persistSentinel(ctx); err != nil {
		t.Fatal(err)
	}
	reboots, err = e.sim.WaitForReboots(ctx, 2, loopBackoff+2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	second := reboots[1]
	// The last-reboot time is recorded once the new boot ID is seen, after the agent
	// is back (UpAt); it is kept to the second.
	if gap := second.RequestedAt.Sub(first.UpAt); gap < loopBackoff-time.Second {
		t.Errorf("rebooted again %s after the first reboot, want ≥ --loop-backoff %s", gap.Round(time.Millisecond), loopBackoff)
	}
	rec := e.record()
	e.waitHold(time.Minute, rec)
	e.waitEvent("RebootHeld", 30*time.Second)
	// Each surviving sentinel is seen by the agent process started after that reboot,
	// and a counter starts again with its process: the current one counted one.
	if v, ok, err := e.metric(ctx, "rebootgate_failures_total", map[string]string{"node": e.node}); err != nil || !ok || v != 1 {
		t.Errorf("rebootgate_failures_total = %v (present %v, %v), want 1 (the second surviving sentinel, counted by the agent started after that reboot)", v, ok, err)
	}
	e.waitSettled(30*time.Second, "on hold")
	// A third reboot could come --loop-backoff after the second: watch until then and
	// a little more.
	_ = testbed.Poll(ctx, time.Until(second.UpAt.Add(loopBackoff+10*time.Second)), "nothing (no third reboot)", func(context.Context) (bool, error) {
		return len(e.sim.Reboots()) > 2 || e.sim.State(e.node).Rebooting, nil
	})
	if r := e.sim.Reboots(); len(r) != 2 || e.sim.State(e.node).Rebooting {
		t.Errorf("%d reboots (rebooting now: %v), want 2: the node is on hold", len(r), e.sim.State(e.node).Rebooting)
	}
}
