package pipeline

import (
	"fmt"
	"time"

	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// SlotStatus is what the node knows about its concurrency slot at this moment.
type SlotStatus string

// Slot statuses.
const (
	// SlotNone: the node holds no slot.
	SlotNone SlotStatus = "None"
	// SlotHeld: the node holds a slot within the pool's current limit.
	SlotHeld SlotStatus = "Held"
	// SlotLost: the slot was taken over, deleted or could not be renewed in time.
	SlotLost SlotStatus = "Lost"
	// SlotOverLimit: the slot is held, but its index is no longer below the pool's
	// concurrency (the limit was lowered; 0 pauses the pool).
	SlotOverLimit SlotStatus = "OverLimit"
)

// Observation is everything the next step of a node's reboot depends on, observed
// afresh on every pass of the agent's reconcile loop.
type Observation struct {
	Now   time.Time
	State nodestate.State
	// BootID is the Node's current status.nodeInfo.bootID; Ready its Ready condition.
	BootID string
	Ready  bool
	// Needed: the sentinel says a reboot is required.
	Needed bool
	// Allowed: the gate (schedule, blockers, alerts, hold annotation, back-off)
	// allows the reboot now. Observed for the phases before the reboot only.
	Allowed bool
	// Why is the gate's first reason when it does not allow the reboot.
	Why  string
	Slot SlotStatus
	// Healthy: the pool's post-reboot health gate passes (Ready alone without one).
	Healthy bool
	// HealthySince is when the node was last seen becoming healthy (zero: not yet).
	HealthySince time.Time
}

// Timing is the part of the configuration the lifecycle's waits depend on.
type Timing struct {
	RebootDelay    time.Duration
	RebootTimeout  time.Duration
	RebootAttempts int
	Soak           time.Duration
}

// Action is the one step the reconcile loop takes next.
type Action string

// Actions. Every disruptive one (Cordon, Drain, RequestReboot) is executed only after
// the slot is confirmed held by a write to its Lease at that moment.
const (
	ActWait          Action = "Wait"          // nothing to do until something changes (or After)
	ActAcquire       Action = "Acquire"       // wait for a slot of the pool
	ActRelease       Action = "Release"       // give back a slot held while idle
	ActCordon        Action = "Cordon"        // Idle → Draining
	ActDrain         Action = "Drain"         // Draining → Rebooting
	ActRequestReboot Action = "RequestReboot" // ask the host to reboot (Rebooting)
	ActMarkRebooted  Action = "MarkRebooted"  // Rebooting → Verifying: the boot ID changed
	ActUndo          Action = "Undo"          // back to Idle before a reboot: uncordon, then release
	ActFinish        Action = "Finish"        // Verifying → Idle: uncordon, then release
)

// Step is the outcome of [Next]: an action, why, whether it counts as a failure of
// this node's reboot (back-off, then hold), and when to look again for ActWait.
type Step struct {
	Action Action
	Reason string
	// Failure is set for Undo and Finish steps that count as a failed attempt.
	Failure bool
	// After is when to look again without any event (0: only on events).
	After time.Duration
}

func (s Step) String() string {
	out := string(s.Action)
	if s.Reason != "" {
		out += ": " + s.Reason
	}
	return out
}

// Next is the lifecycle's transition table: the one step that the observed state
// calls for. It is pure; the README's state diagram mirrors it.
//
//	phase      | entry                               | step when all holds          | exit
//	Idle       | —                                   | needed, allowed, no back-off | Acquire, then Cordon (slot confirmed)
//	Draining   | cordoned, slot held                 | slot held, needed, allowed   | Drain → Rebooting; else Undo
//	Rebooting  | drained, boot ID recorded           | delay over, slot, gate       | RequestReboot; new boot ID → Verifying
//	Verifying  | boot ID changed                     | Ready, healthy for Soak      | Finish → Idle (uncordon, release)
func Next(o Observation, t Timing) Step {
	st := o.State
	switch st.Phase {
	case nodestate.PhaseIdle:
		return nextIdle(o)
	case nodestate.PhaseCordoning, nodestate.PhaseDraining:
		if why := preRebootBlocker(o); why != "" {
			return Step{Action: ActUndo, Reason: why}
		}
		if st.Phase == nodestate.PhaseCordoning {
			// Written by an older agent before its cordon: cordon again (idempotent).
			return Step{Action: ActCordon}
		}
		return Step{Action: ActDrain}
	case nodestate.PhaseRebooting:
		return nextRebooting(o, t)
	case nodestate.PhaseVerifying:
		return nextVerifying(o, t)
	}
	return Step{Action: ActUndo, Reason: fmt.Sprintf("unknown phase %q", st.Phase)}
}

func nextIdle(o Observation) Step {
	held := o.Slot != SlotNone
	release := func(why string) Step {
		if held {
			return Step{Action: ActRelease, Reason: why}
		}
		return Step{Action: ActWait, Reason: why}
	}
	switch {
	case !o.Needed:
		return release("no reboot required")
	case o.Now.Before(o.State.RetryAfter):
		s := release(fmt.Sprintf("backing off after %d failure(s) until %s", o.State.Failures, o.State.RetryAfter.UTC().Format(time.RFC3339)))
		if s.Action == ActWait {
			s.After = o.State.RetryAfter.Sub(o.Now)
		}
		return s
	case !o.Allowed:
		return release("blocked: " + o.Why)
	case o.Slot == SlotNone:
		return Step{Action: ActAcquire}
	case o.Slot == SlotHeld:
		return Step{Action: ActCordon}
	}
	return release(slotReason(o.Slot))
}

// preRebootBlocker is why a node that has not asked for a reboot yet must stop ("":
// nothing stops it).
func preRebootBlocker(o Observation) string {
	switch {
	case o.Slot != SlotHeld:
		return slotReason(o.Slot)
	case !o.Needed:
		return "a reboot is no longer required"
	case !o.Allowed:
		return "the gate closed: " + o.Why
	}
	return ""
}

func slotReason(s SlotStatus) string {
	switch s {
	case SlotNone:
		return "no slot is held"
	case SlotLost:
		return "the slot was lost"
	case SlotOverLimit:
		return "the pool's concurrency was lowered below this slot"
	}
	return "slot " + string(s)
}

func nextRebooting(o Observation, t Timing) Step {
	st := o.State
	if st.BootIDBefore != "" && o.BootID != "" && o.BootID != st.BootIDBefore {
		return Step{Action: ActMarkRebooted}
	}
	if !st.RequestedAt.IsZero() {
		// A request is out: the host may go down at any moment, whatever happened to
		// the slot or the gate since, so wait for it rather than undo under it.
		if until := st.RequestedAt.Add(t.RebootTimeout); o.Now.Before(until) {
			return Step{Action: ActWait, Reason: "waiting for the reboot", After: until.Sub(o.Now)}
		}
	}
	if st.Attempts >= max(1, t.RebootAttempts) {
		return Step{Action: ActUndo, Failure: true, Reason: fmt.Sprintf(
			"the boot ID did not change after %d reboot request(s), %s each", st.Attempts, t.RebootTimeout)}
	}
	if why := preRebootBlocker(o); why != "" {
		// After an unanswered request, stopping is a failed attempt too.
		return Step{Action: ActUndo, Reason: why, Failure: st.Attempts > 0}
	}
	if st.Attempts == 0 {
		if until := st.Since.Add(t.RebootDelay); o.Now.Before(until) {
			return Step{Action: ActWait, Reason: "reboot delay", After: until.Sub(o.Now)}
		}
	}
	return Step{Action: ActRequestReboot}
}

func nextVerifying(o Observation, t Timing) Step {
	switch {
	case !o.Ready:
		return Step{Action: ActWait, Reason: "waiting for the node to be Ready"}
	case !o.Healthy || o.HealthySince.IsZero():
		return Step{Action: ActWait, Reason: "waiting for the health gate"}
	}
	if until := o.HealthySince.Add(t.Soak); o.Now.Before(until) {
		return Step{Action: ActWait, Reason: "soaking", After: until.Sub(o.Now)}
	}
	if o.Needed {
		return Step{Action: ActFinish, Failure: true, Reason: "a reboot is still required after a verified reboot"}
	}
	return Step{Action: ActFinish, Reason: "rebooted"}
}

// Backoff is the wait after the n-th consecutive failure: base doubled per failure,
// capped.
func Backoff(base, limit time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}
