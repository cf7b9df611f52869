package pipeline

import (
	"testing"
	"time"

	"github.com/rebootgate/rebootgate/engine/nodestate"
)

var t0 = time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC)

func TestNextTable(t *testing.T) {
	timing := Timing{RebootDelay: 30 * time.Second, RebootTimeout: 5 * time.Minute, RebootAttempts: 2, Soak: time.Minute}
	now := t0
	idle := nodestate.State{}
	draining := nodestate.State{Phase: nodestate.PhaseDraining, Since: now.Add(-time.Minute)}
	rebooting := nodestate.State{Phase: nodestate.PhaseRebooting, Since: now.Add(-time.Minute), BootIDBefore: "b1"}
	delaying := nodestate.State{Phase: nodestate.PhaseRebooting, Since: now.Add(-10 * time.Second), BootIDBefore: "b1"}
	requested := rebooting
	requested.Attempts, requested.RequestedAt = 1, now.Add(-time.Minute)
	timedOut := rebooting
	timedOut.Attempts, timedOut.RequestedAt = 1, now.Add(-10*time.Minute)
	exhausted := timedOut
	exhausted.Attempts = 2
	verifying := nodestate.State{Phase: nodestate.PhaseVerifying, Since: now.Add(-time.Minute), BootIDBefore: "b1"}
	backingOff := nodestate.State{Failures: 1, RetryAfter: now.Add(time.Minute)}

	ok := func(o Observation) Observation {
		o.Now, o.Needed, o.Allowed, o.Ready, o.Healthy, o.BootID = now, true, true, true, true, "b1"
		if o.Slot == "" {
			o.Slot = SlotHeld
		}
		return o
	}
	for _, tc := range []struct {
		name    string
		obs     Observation
		want    Action
		failure bool
	}{
		{"idle, not needed", Observation{Now: now, State: idle, Slot: SlotNone}, ActWait, false},
		{"idle, not needed, slot left over", Observation{Now: now, State: idle, Slot: SlotHeld}, ActRelease, false},
		{"idle, needed and allowed, no slot", ok(Observation{State: idle, Slot: SlotNone}), ActAcquire, false},
		{"idle, slot held", ok(Observation{State: idle}), ActCordon, false},
		{"idle, blocked with slot", func() Observation { o := ok(Observation{State: idle}); o.Allowed = false; return o }(), ActRelease, false},
		{"idle, backing off", ok(Observation{State: backingOff, Slot: SlotNone}), ActWait, false},
		{"idle, slot over a lowered limit", ok(Observation{State: idle, Slot: SlotOverLimit}), ActRelease, false},
		{"draining", ok(Observation{State: draining}), ActDrain, false},
		{"draining, slot lost", ok(Observation{State: draining, Slot: SlotLost}), ActUndo, false},
		{"draining, concurrency lowered", ok(Observation{State: draining, Slot: SlotOverLimit}), ActUndo, false},
		{"draining, gate closed", func() Observation { o := ok(Observation{State: draining}); o.Allowed = false; return o }(), ActUndo, false},
		{"draining, no longer needed", func() Observation { o := ok(Observation{State: draining}); o.Needed = false; return o }(), ActUndo, false},
		{"rebooting, during the reboot delay", ok(Observation{State: delaying}), ActWait, false},
		{"rebooting, hold during the reboot delay", func() Observation { o := ok(Observation{State: delaying}); o.Allowed = false; return o }(), ActUndo, false},
		{"rebooting, delay over", ok(Observation{State: rebooting}), ActRequestReboot, false},
		{"rebooting, request out: wait even without slot", ok(Observation{State: requested, Slot: SlotLost}), ActWait, false},
		{"rebooting, request timed out: ask again", ok(Observation{State: timedOut}), ActRequestReboot, false},
		{"rebooting, request timed out, gate closed: failure", func() Observation { o := ok(Observation{State: timedOut}); o.Allowed = false; return o }(), ActUndo, true},
		{"rebooting, attempts exhausted", ok(Observation{State: exhausted}), ActUndo, true},
		{"rebooting, boot ID changed", func() Observation { o := ok(Observation{State: requested}); o.BootID = "b2"; return o }(), ActMarkRebooted, false},
		{"verifying, not ready", func() Observation { o := ok(Observation{State: verifying}); o.Ready = false; return o }(), ActWait, false},
		{"verifying, healthy but soaking", func() Observation {
			o := ok(Observation{State: verifying})
			o.HealthySince = now.Add(-30 * time.Second)
			return o
		}(), ActWait, false},
		{"verifying, soaked", func() Observation {
			o := ok(Observation{State: verifying})
			o.HealthySince, o.Needed = now.Add(-time.Minute), false
			return o
		}(), ActFinish, false},
		{"verifying, sentinel survived the reboot", func() Observation {
			o := ok(Observation{State: verifying})
			o.HealthySince = now.Add(-time.Minute)
			return o
		}(), ActFinish, true},
		{"verifying, slot lost does not matter", func() Observation {
			o := ok(Observation{State: verifying, Slot: SlotLost})
			o.HealthySince, o.Needed = now.Add(-time.Minute), false
			return o
		}(), ActFinish, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Next(tc.obs, timing)
			if got.Action != tc.want || got.Failure != tc.failure {
				t.Fatalf("Next = %v (failure %v), want %s (failure %v)", got, got.Failure, tc.want, tc.failure)
			}
		})
	}
}

func TestNextWaitsUntilTheRightMoment(t *testing.T) {
	timing := Timing{RebootDelay: 30 * time.Second, RebootTimeout: 5 * time.Minute, RebootAttempts: 2, Soak: time.Minute}
	o := Observation{Now: t0, State: nodestate.State{Phase: nodestate.PhaseRebooting, Since: t0.Add(-10 * time.Second), BootIDBefore: "b1"},
		BootID: "b1", Needed: true, Allowed: true, Slot: SlotHeld}
	if got := Next(o, timing); got.Action != ActWait || got.After != 20*time.Second {
		t.Fatalf("reboot delay: %v after %v, want Wait after 20s", got, got.After)
	}
	o.State, o.Slot = nodestate.State{Failures: 2, RetryAfter: t0.Add(3 * time.Minute)}, SlotNone
	if got := Next(o, timing); got.Action != ActWait || got.After != 3*time.Minute {
		t.Fatalf("back-off: %v after %v, want Wait after 3m", got, got.After)
	}
}

func TestBackoffDoublesUpToTheLimit(t *testing.T) {
	for n, want := range map[int]time.Duration{1: time.Minute, 2: 2 * time.Minute, 3: 4 * time.Minute, 7: time.Hour, 30: time.Hour} {
		if got := Backoff(time.Minute, time.Hour, n); got != want {
			t.Errorf("Backoff(1m, 1h, %d) = %v, want %v", n, got, want)
		}
	}
}
