package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/rebootgate/rebootgate/engine/agent/nodeops"
	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/detect"
	"github.com/rebootgate/rebootgate/engine/lock"
	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/engine/notify"
	"github.com/rebootgate/rebootgate/engine/pipeline"
	"github.com/rebootgate/rebootgate/engine/source"
)

// requeueNow asks the loop to reconcile again at once: the step just taken changed
// the node's state and the next one may follow.
const requeueNow = time.Nanosecond

// loop is the agent's level-triggered reconcile loop: on every wake-up it observes
// everything and takes the one step the node's state calls for; an error is retried
// with exponential back-off, whatever step it came from.
func (a *Agent) loop(ctx context.Context) {
	timer := a.clock.NewTimer(time.Hour)
	timer.Stop()
	errDelay := time.Duration(0)
	for {
		next, err := a.reconcile(ctx)
		if ctx.Err() != nil {
			return
		}
		a.recordLoop(err)
		if err != nil {
			errDelay = min(max(2*errDelay, a.cfg.ErrorBackoff), a.cfg.MaxErrorBackoff)
			a.log.Error("reconcile failed; retrying", "err", err, "retryIn", errDelay)
			a.metrics.Errors.WithLabelValues(a.cfg.NodeName, "reconcile").Inc()
			next = errDelay
		} else {
			errDelay = 0
		}
		if next > 0 {
			timer.Reset(next)
		}
		if next == requeueNow {
			<-timer.C()
			// Observe a sentinel change before the next step, even when steps follow
			// one another at once (a gate closed at the head of the slot queue).
			select {
			case st := <-a.detectorStates:
				a.setNeeded(ctx, st)
			default:
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case st := <-a.detectorStates:
			a.setNeeded(ctx, st)
		case <-a.pokes:
		case <-a.source.Changed():
		case <-timer.C():
		}
		timer.Stop()
	}
}

// recordLoop keeps what /healthz reports: since when the loop has been failing.
func (a *Agent) recordLoop(err error) {
	a.loopMu.Lock()
	defer a.loopMu.Unlock()
	a.lastErr = err
	switch {
	case err == nil:
		a.failingSince = time.Time{}
	case a.failingSince.IsZero():
		a.failingSince = a.clock.Now()
	}
}

// loopHealth is nil unless the loop has failed on every pass for UnhealthyAfter.
func (a *Agent) loopHealth() error {
	a.loopMu.Lock()
	defer a.loopMu.Unlock()
	if a.failingSince.IsZero() || a.clock.Since(a.failingSince) < a.cfg.UnhealthyAfter {
		return nil
	}
	return fmt.Errorf("reconcile failing since %s: %w", a.failingSince.UTC().Format(time.RFC3339), a.lastErr)
}

// reconcile observes the node and takes one step. It returns when to look again
// without an event (0: only on events).
func (a *Agent) reconcile(ctx context.Context) (time.Duration, error) {
	n, err := a.node()
	if err != nil {
		return 0, fmt.Errorf("node %s: %w", a.cfg.NodeName, err)
	}
	st := nodestate.StateOf(n)
	if wait := a.awaitOwnWrite(st); wait > 0 {
		return wait, nil
	}
	a.setPhase(st.Phase)
	a.syncPolicyStatus(ctx, n, st)
	a.metrics.OnHold.WithLabelValues(a.cfg.NodeName).Set(boolValue(n.Annotations[a.holdAnnotation()] != ""))
	a.reportDegraded()
	if a.cfg.DryRun && st.Phase == nodestate.PhaseIdle {
		return a.reconcileDryRun(ctx, st)
	}
	// A reboot in progress goes on in dry-run too (I3), its gate closed (see gate):
	// before the reboot request it is undone, after it it finishes.
	if st.Phase == nodestate.PhaseIdle {
		a.resumed, a.healthySince = false, time.Time{}
		clear(a.stalled)
		if err := a.releaseStaleKuredLock(ctx); err != nil {
			return 0, err
		}
	} else if err := a.resumeSlot(ctx, n, st); err != nil {
		return 0, err
	}
	now := a.clock.Now()
	obs := pipeline.Observation{Now: now, State: st, BootID: n.Status.NodeInfo.BootID, Ready: isReady(n), Needed: a.needed.Needed}
	var d decision.Decision
	switch {
	case st.Phase == nodestate.PhaseIdle && !a.needed.Needed:
		// Nothing to decide: a slot still held (a failed release) is given back.
		if err := a.executor.PreferNoSchedule(ctx, false); err != nil {
			return 0, err
		}
	case st.Phase == nodestate.PhaseIdle:
		if a.held != nil {
			// About to cordon: the sentinel is read again rather than trusted from
			// the last event the loop saw (it may have gone while waiting for a slot).
			d = a.gate(ctx, false)
		} else {
			d = a.decide(ctx)
		}
		a.report(ctx, d)
		if !d.Allowed {
			// Not about to reboot: pods need not avoid this node (kured: outside
			// the window or no longer needed).
			if err := a.executor.PreferNoSchedule(ctx, false); err != nil {
				return 0, err
			}
		}
		if a.blocked != nil && a.blocked.Observe(now, true, d) {
			_ = a.notifier.Notify(ctx, notify.Event{Kind: notify.KindBlockedTooLong, Node: a.cfg.NodeName, Pool: d.Pool, Decision: &d, Since: a.blocked.Since()})
		}
	case st.Phase == nodestate.PhaseVerifying:
		// Finishing needs no config: only the health gate reads it, when there is one.
		obs.Healthy = obs.Ready && a.healthy(ctx, st)
		if !obs.Healthy {
			a.healthySince = time.Time{}
		} else if a.healthySince.IsZero() {
			a.healthySince = now
		}
		obs.HealthySince = a.healthySince
		obs.Needed = a.detector.Check(ctx).Needed
	default:
		// Past the cordon: re-checked under the last good config and policies.
		d = a.gate(ctx, true)
		obs.Needed = d.Allowed || a.needed.Needed
	}
	obs.Allowed, obs.Why = d.Allowed, firstReason(d)
	obs.Slot = a.slotStatus(ctx, st.Phase != nodestate.PhaseIdle)
	step := pipeline.Next(obs, a.timing())
	a.syncConditions(ctx, n, st, d)
	a.log.Debug("reconcile", "phase", st.Phase, "step", step.String(), "slot", obs.Slot)
	renew := time.Duration(0)
	if st.Phase != nodestate.PhaseIdle {
		renew = a.keepKuredLock(ctx, n)
	}
	next, err := a.execute(ctx, n, st, step, d)
	if renew > 0 && err == nil && (next == 0 || renew < next) {
		next = renew // look again in time to renew kured's lock (a long soak)
	}
	return next, err
}

// reportDegraded sets rebootgate_detection_degraded: a sentinel or config file that
// cannot be watched is polled instead, and noticed later.
func (a *Agent) reportDegraded() {
	sentinel, config := a.degraded()
	a.metrics.DetectionDegraded.WithLabelValues(a.cfg.NodeName, "sentinel").Set(boolValue(sentinel))
	a.metrics.DetectionDegraded.WithLabelValues(a.cfg.NodeName, "config").Set(boolValue(config))
}

// degraded says which files are polled because no inotify watch could be set up.
func (a *Agent) degraded() (sentinel, config bool) {
	if d, ok := a.detector.(detect.Degrader); ok {
		sentinel = d.Degraded()
	}
	return sentinel, a.source.ConfigDegraded()
}

// degradedStatus is what /healthz and the RebootRequired condition say of degraded
// detection; "" when every file is watched.
func (a *Agent) degradedStatus() string {
	var polled []string
	sentinel, config := a.degraded()
	if sentinel {
		polled = append(polled, fmt.Sprintf("the sentinel every %s", detect.DegradedPeriod))
	}
	if config {
		polled = append(polled, fmt.Sprintf("the config file every %s", source.DegradedConfigPollInterval))
	}
	if len(polled) == 0 {
		return ""
	}
	return "detection degraded (no inotify instance): polling " + strings.Join(polled, " and ")
}

// written is the progress of the agent's last write of the node's state, until the
// informer's copy shows it.
type written struct {
	phase    nodestate.Phase
	attempts int
	at       time.Time
}

// wrote remembers a successful write of st.
func (a *Agent) wrote(st nodestate.State, err error) {
	if err != nil {
		return
	}
	a.lastWrite = &written{phase: st.Phase, attempts: st.Attempts, at: a.clock.Now()}
}

// awaitOwnWrite says how long to wait before acting on st, read from the informer's
// cache: a copy older than the agent's own last write would repeat a step (a second
// reboot request). The informer's event for the write wakes the loop anyway; after a
// few seconds without it, the cache's copy is taken as the truth.
func (a *Agent) awaitOwnWrite(st nodestate.State) time.Duration {
	w := a.lastWrite
	switch {
	case w == nil:
		return 0
	case st.Phase == w.phase && st.Attempts == w.attempts, a.clock.Since(w.at) > 5*time.Second:
		a.lastWrite = nil
		return 0
	}
	return 50 * time.Millisecond
}

func (a *Agent) timing() pipeline.Timing {
	return pipeline.Timing{RebootDelay: a.cfg.RebootDelay, RebootTimeout: a.cfg.RebootTimeout, RebootAttempts: a.cfg.RebootAttempts, Soak: a.cfg.Soak}
}

// execute carries out one step.
func (a *Agent) execute(ctx context.Context, n *corev1.Node, st nodestate.State, step pipeline.Step, d decision.Decision) (time.Duration, error) {
	switch step.Action {
	case pipeline.ActWait:
		return a.wait(ctx, st, step, d), nil
	case pipeline.ActAcquire:
		return a.takeSlot(ctx, n, d)
	case pipeline.ActRelease:
		// Decide again at once: a reboot still needed waits for a slot anew, and
		// no event would come to say so (the node did not change).
		return requeueNow, a.releaseSlot(ctx)
	case pipeline.ActCordon:
		if ok, wait, err := a.takeKuredLock(ctx, n); !ok {
			return wait, err
		}
		if err := a.confirmSlot(ctx, false); err != nil {
			return requeueNow, err
		}
		st, err := a.executor.Cordon(ctx, st, a.heldRef)
		a.wrote(st, err)
		return requeueNow, err
	case pipeline.ActDrain:
		return a.drain(ctx, st)
	case pipeline.ActRequestReboot:
		return a.requestReboot(ctx, st)
	case pipeline.ActMarkRebooted:
		// From the request, read from the node: the process that made it died with
		// the host.
		if !st.RequestedAt.IsZero() {
			a.metrics.RebootDuration.WithLabelValues(a.cfg.NodeName, st.Pool).Observe(a.clock.Since(st.RequestedAt).Seconds())
		}
		st, err := a.executor.Rebooted(ctx, st)
		a.wrote(st, err)
		return requeueNow, err
	case pipeline.ActUndo, pipeline.ActFinish:
		return a.finish(ctx, st, step)
	}
	return 0, fmt.Errorf("unknown step %q", step.Action)
}

// wait schedules the next look while nothing can be done; it also escalates a
// Verifying node that stays not Ready or unhealthy beyond the ready timeout.
func (a *Agent) wait(ctx context.Context, st nodestate.State, step pipeline.Step, d decision.Decision) time.Duration {
	switch st.Phase {
	case nodestate.PhaseIdle:
		if !a.needed.Needed {
			return 0
		}
		if step.After > 0 {
			return step.After
		}
		return a.nextCheck(d)
	case nodestate.PhaseVerifying:
		overdue := st.Since.Add(a.cfg.ReadyTimeout)
		if a.clock.Now().Before(overdue) {
			poll := a.cfg.PollInterval
			if step.After > 0 {
				poll = min(poll, step.After)
			}
			return min(poll, overdue.Sub(a.clock.Now())+time.Millisecond)
		}
		if step.Reason == "waiting for the node to be Ready" {
			a.escalate(ctx, "ready", nodeops.ReasonNotReady, "not Ready %s after the reboot; still waiting (the slot stays held)", a.cfg.ReadyTimeout)
			a.notBack(ctx, st.Pool, st.Slot, a.cfg.NodeName, st.Since)
		} else if step.Reason == "waiting for the health gate" {
			a.escalate(ctx, "health", nodeops.ReasonHealthGateTimeout, "the health gate has not passed %s after the reboot; still waiting (the slot stays held)", a.cfg.ReadyTimeout)
		}
		return a.cfg.PollInterval
	}
	if step.After > 0 {
		return step.After
	}
	return a.cfg.PollInterval
}

// escalate reports, once per phase, a step that waits beyond its timeout.
func (a *Agent) escalate(_ context.Context, step, reason, format string, args ...any) {
	if a.stalled[step] {
		return
	}
	a.stalled[step] = true
	a.metrics.Stalled.WithLabelValues(a.cfg.NodeName, step).Set(1)
	a.executor.Event(corev1.EventTypeWarning, reason, format, args...)
}

// notBack reports a slot holder that has not come back from its reboot: an Event on
// its Node and on the slot's Lease, a metric and a notification, once per reboot.
// It is called by the node itself and by agents waiting for a slot of its pool.
func (a *Agent) notBack(ctx context.Context, pool, lease, holder string, since time.Time) {
	key := holder + "@" + since.UTC().Format(time.RFC3339)
	a.notBackMu.Lock()
	seen := a.notBackSeen[key]
	a.notBackSeen[key] = true
	a.notBackMu.Unlock()
	if seen {
		return
	}
	after := "its reboot"
	if !since.IsZero() {
		after = a.clock.Since(since).Round(time.Second).String()
	}
	msg := fmt.Sprintf("node %s has not come back after %s; it keeps slot %s and the rollout of pool %s stops here", holder, after, lease, pool)
	a.log.Warn(msg)
	nodeRef := &corev1.ObjectReference{Kind: "Node", Name: holder, UID: types.UID(holder)}
	a.recorder.Event(nodeRef, corev1.EventTypeWarning, nodeops.ReasonNodeNotBack, msg)
	if lease != "" {
		a.recorder.Event(lock.LeaseRef(a.cfg.Namespace, lease), corev1.EventTypeWarning, nodeops.ReasonNodeNotBack, msg)
	}
	a.metrics.HolderNotBack.WithLabelValues(pool, holder).Set(1)
	_ = a.notifier.Notify(ctx, notify.Event{Kind: notify.KindNotBack, Node: holder, Pool: pool, Since: since, Detail: after})
}

// holderBack withdraws the report of another node's holding that ended: the holder is
// back, gone, or its slot changed hands.
func (a *Agent) holderBack(pool, holder string) {
	a.notBackMu.Lock()
	for key := range a.notBackSeen {
		if strings.HasPrefix(key, holder+"@") {
			delete(a.notBackSeen, key)
		}
	}
	a.notBackMu.Unlock()
	a.metrics.HolderNotBack.DeleteLabelValues(pool, holder)
	a.log.Info("slot holder reported as not back is back, gone, or no longer holds the slot", "pool", pool, "slotHolder", holder)
}

// takeSlot waits for a slot of the node's pool; the next pass cordons.
func (a *Agent) takeSlot(ctx context.Context, n *corev1.Node, d decision.Decision) (time.Duration, error) {
	engine, err := a.source.Current()
	if err != nil {
		return a.cfg.RecheckInterval, nil
	}
	pool, err := engine.PoolOf(n, a.clock.Now())
	if err != nil {
		return a.cfg.RecheckInterval, nil
	}
	if d.Pool != pool.Name || (pool.SlotKey != "" && d.SlotKey == "") {
		// The decision is from another config, or it could not compute the key (it
		// then denies the reboot): never wait without the key, which would escape
		// the per-key limit.
		return requeueNow, nil
	}
	ref := nodeops.SlotRef{Pool: pool.Name, Value: d.SlotKey}
	sem, err := a.semaphore(ref.Pool, ref.Value)
	if err != nil {
		return 0, fmt.Errorf("slot semaphore of pool %s: %w", pool.Name, err)
	}
	// While it waits, pods prefer other nodes (kured's --prefer-no-schedule-taint).
	if err := a.executor.PreferNoSchedule(ctx, true); err != nil {
		return 0, err
	}
	held, err := a.acquire(ctx, sem, ref)
	switch {
	case errors.Is(err, errGateClosed):
		a.log.Info("stopped waiting for a slot", "why", err)
		return requeueNow, nil
	case err != nil:
		return 0, fmt.Errorf("taking a slot of pool %s: %w", pool.Name, err)
	}
	ref.Name = held.Name()
	a.held, a.heldRef = held, ref
	a.metrics.SlotsHeld.WithLabelValues(a.cfg.NodeName, ref.Pool).Set(1)
	return requeueNow, nil
}

// resumeSlot picks up, once per process and reboot, the slot this node held before
// the agent restarted (the reboot killed it, or it crashed). The node's annotations
// name the semaphore, so no config is needed.
func (a *Agent) resumeSlot(ctx context.Context, n *corev1.Node, st nodestate.State) error {
	if a.held != nil || a.resumed {
		return nil
	}
	ref := nodeops.SlotRef{Name: st.Slot, Pool: st.Pool, Value: st.SlotValue}
	if ref.Pool == "" {
		// Recorded by an older agent: only the config knows the pool (the last good
		// one: resuming a reboot in progress needs no new config).
		engine, err := a.source.LastGood()
		if err != nil {
			a.resumed = true
			return nil
		}
		now := a.clock.Now()
		pool, err := engine.PoolOf(n, now)
		if err != nil {
			a.resumed = true
			return nil
		}
		ref.Pool = pool.Name
		if ref.Value, err = engine.SlotKeyOf(n, now); err != nil {
			// Resume the slot anyway (the reboot may be half done), without the key.
			a.log.Warn("resuming without the slot-key Lease", "err", err)
		}
	}
	sem, err := a.semaphore(ref.Pool, ref.Value)
	if err != nil {
		a.resumed = true
		return fmt.Errorf("slot semaphore of pool %s: %w", ref.Pool, err)
	}
	held, ok, err := sem.Resume(ctx)
	if err != nil {
		return fmt.Errorf("resuming the slot of pool %s: %w", ref.Pool, err)
	}
	a.resumed = true
	if !ok {
		a.log.Info("no slot to resume", "phase", st.Phase, "pool", ref.Pool)
		return nil
	}
	ref.Name = held.Name()
	a.held, a.heldRef = held, ref
	a.metrics.SlotsHeld.WithLabelValues(a.cfg.NodeName, ref.Pool).Set(1)
	a.log.Info("resumed the reboot", "phase", st.Phase, "slot", ref.Name)
	return nil
}

// slotStatus is the slot as known now: lost, or above a lowered concurrency.
func (a *Agent) slotStatus(ctx context.Context, inFlight bool) pipeline.SlotStatus {
	switch {
	case a.held == nil:
		return pipeline.SlotNone
	case a.held.Err() != nil:
		return pipeline.SlotLost
	case a.held.Index() >= a.slotLimit(ctx, inFlight):
		return pipeline.SlotOverLimit
	}
	return pipeline.SlotHeld
}

// slotLimit is the held slot's pool's concurrency: under the current config before the
// cordon, under the last good one after it (inFlight).
func (a *Agent) slotLimit(ctx context.Context, inFlight bool) int {
	if inFlight {
		return a.heldSlots(ctx, a.heldRef.Pool)
	}
	return a.currentSlots(ctx, a.heldRef.Pool)
}

// confirmSlot proves, by a write to its Lease at this moment, that the slot is held
// and within the pool's limit — right before each disruptive step (inFlight: after
// the cordon, see slotLimit).
func (a *Agent) confirmSlot(ctx context.Context, inFlight bool) error {
	if a.held == nil {
		return errors.New("no slot is held")
	}
	if err := a.held.Confirm(ctx); err != nil {
		if errors.Is(err, lock.ErrLost) {
			a.executor.Event(corev1.EventTypeWarning, nodeops.ReasonSlotLost, "slot %s lost: %v", a.heldRef.Name, err)
		}
		return fmt.Errorf("confirming slot %s: %w", a.heldRef.Name, err)
	}
	if slots := a.slotLimit(ctx, inFlight); a.held.Index() >= slots {
		return fmt.Errorf("%w: slot %s is not below the pool's concurrency %d", nodeops.ErrCancelled, a.heldRef.Name, slots)
	}
	return a.confirmKuredLock(ctx)
}

func (a *Agent) releaseSlot(ctx context.Context) error {
	if a.held == nil {
		return nil
	}
	a.releaseKuredLockOrLater(ctx)
	if err := a.held.Release(ctx); err != nil {
		return fmt.Errorf("releasing slot %s: %w", a.heldRef.Name, err)
	}
	a.metrics.SlotsHeld.WithLabelValues(a.cfg.NodeName, a.heldRef.Pool).Set(0)
	a.held = nil
	return nil
}

// errAbandoned cancels a drain whose reboot may no longer go ahead.
var errAbandoned = errors.New("drain abandoned")

// errDrainTimeout ends a drain that outlasted --drain-timeout.
var errDrainTimeout = errors.New("the drain timed out")

// drain evicts the node's pods under a guard that re-checks the gate and the slot on
// every change and every GuardInterval, and abandons the drain when either fails.
func (a *Agent) drain(ctx context.Context, st nodestate.State) (time.Duration, error) {
	if err := a.confirmSlot(ctx, true); err != nil {
		return requeueNow, err
	}
	dctx, cancel := context.WithCancelCause(ctx)
	guardDone := make(chan struct{})
	go func() {
		defer close(guardDone)
		t := a.clock.NewTicker(a.cfg.GuardInterval)
		defer t.Stop()
		for {
			select {
			case <-dctx.Done():
				return
			case <-a.held.Lost():
				cancel(fmt.Errorf("%w: the slot was lost: %w", errAbandoned, a.held.Err()))
				return
			case <-a.pokes:
			case <-a.source.Changed():
			case <-t.C():
			}
			if d := a.gate(dctx, true); dctx.Err() == nil && !d.Allowed {
				cancel(fmt.Errorf("%w: the gate closed: %s", errAbandoned, firstReason(d)))
				return
			}
			if s := a.slotStatus(dctx, true); dctx.Err() == nil && s != pipeline.SlotHeld {
				cancel(fmt.Errorf("%w: slot %s", errAbandoned, s))
				return
			}
			if err := a.confirmKuredLock(dctx); dctx.Err() == nil && errors.Is(err, nodeops.ErrCancelled) {
				cancel(fmt.Errorf("%w: %w", errAbandoned, err))
				return
			}
			if n, err := a.node(); err == nil {
				a.keepKuredLock(dctx, n) // a long drain must not outlast kured's TTL
			}
		}
	}()
	start := a.clock.Now()
	err := a.sleep(dctx, a.cfg.Drain.Delay) // kured's --drain-delay, under the guard
	if err == nil {
		// --drain-timeout bounds the whole drain, all attempts, as in kured.
		tctx, stop := context.WithTimeoutCause(dctx, a.cfg.Drain.Timeout, fmt.Errorf("%w after %s", errDrainTimeout, a.cfg.Drain.Timeout))
		err = a.executor.Drain(tctx)
		if errors.Is(context.Cause(tctx), errDrainTimeout) {
			err = context.Cause(tctx)
		}
		stop()
	}
	cause := context.Cause(dctx)
	cancel(nil)
	<-guardDone
	a.metrics.DrainDuration.WithLabelValues(a.cfg.NodeName, st.Pool).Observe(a.clock.Since(start).Seconds())
	switch {
	case errors.Is(cause, errAbandoned):
		a.executor.Event(corev1.EventTypeWarning, nodeops.ReasonDrainAbandoned, "%v; uncordoning, then releasing the slot", cause)
		return a.finish(ctx, st, pipeline.Step{Action: pipeline.ActUndo, Reason: cause.Error()})
	case ctx.Err() != nil:
		return 0, ctx.Err()
	case err != nil && !a.cfg.ForceReboot:
		a.executor.Event(corev1.EventTypeWarning, nodeops.ReasonDrainFailed, "%v; uncordoning, then releasing the slot", err)
		return a.finish(ctx, st, pipeline.Step{Action: pipeline.ActUndo, Failure: true, Reason: "drain failed: " + err.Error()})
	case err != nil:
		a.executor.Event(corev1.EventTypeWarning, nodeops.ReasonDrainFailed, "%v; rebooting anyway (force reboot)", err)
	}
	st.DrainForced = err != nil // recorded with the phase: the node is not Drained
	st, err = a.executor.Drained(ctx, st)
	a.wrote(st, err)
	return requeueNow, err
}

// requestReboot asks the host to reboot. The very last thing before the request is
// the final check: fresh alerts and gate, and the slot confirmed held.
func (a *Agent) requestReboot(ctx context.Context, st nodestate.State) (time.Duration, error) {
	if st.Attempts > 0 {
		a.executor.Event(corev1.EventTypeWarning, nodeops.ReasonRebootNotObserved, "boot ID still %s %s after reboot request %d; asking again",
			st.BootIDBefore, a.cfg.RebootTimeout, st.Attempts)
	}
	st, err := a.executor.RequestReboot(ctx, st, func(ctx context.Context) error {
		if a.alerts != nil {
			a.alerts.Invalidate()
		}
		if d := a.gate(ctx, true); !d.Allowed {
			return fmt.Errorf("the gate closed: %s", firstReason(d))
		}
		return a.confirmSlot(ctx, true)
	})
	if errors.Is(err, nodeops.ErrCancelled) {
		return a.finish(ctx, st, pipeline.Step{Action: pipeline.ActUndo, Reason: err.Error(), Failure: st.Attempts > 1})
	}
	a.wrote(st, err)
	return requeueNow, err
}

// finish ends the reboot (Finish) or stops it before it happened (Undo), then
// releases the slot.
func (a *Agent) finish(ctx context.Context, st nodestate.State, step pipeline.Step) (time.Duration, error) {
	var slot nodeops.Slot
	switch {
	case a.cfg.KuredLock != nil:
		slot = slotAndKuredLock{a: a, held: a.held}
	case a.held != nil:
		slot = a.held
	}
	if step.Failure {
		a.metrics.Failures.WithLabelValues(a.cfg.NodeName, failureKind(st.Phase, step.Action)).Inc()
	}
	if err := a.executor.Finish(ctx, st, step, slot); err != nil {
		return 0, err
	}
	if a.held == nil {
		a.releaseKeys(ctx, st)
	}
	a.wrote(nodestate.State{}, nil)
	a.ended = step.Action // the conditions' reason on the next pass
	if a.held != nil {
		a.metrics.SlotsHeld.WithLabelValues(a.cfg.NodeName, a.heldRef.Pool).Set(0)
		a.held = nil
	}
	for step := range a.stalled {
		a.metrics.Stalled.WithLabelValues(a.cfg.NodeName, step).Set(0)
	}
	if st.Pool != "" {
		a.metrics.HolderNotBack.DeleteLabelValues(st.Pool, a.cfg.NodeName)
	}
	if step.Action == pipeline.ActFinish {
		a.metrics.Reboots.WithLabelValues(a.cfg.NodeName, st.Pool).Inc()
	}
	if step.Action == pipeline.ActFinish && !st.StartedAt.IsZero() {
		// From the cordon, read from the node: an agent restarted by the reboot
		// measures the whole of it.
		a.metrics.TotalDuration.WithLabelValues(a.cfg.NodeName, st.Pool).Observe(a.clock.Since(st.StartedAt).Seconds())
	}
	a.log.Info("reboot ended", "step", step.String(), "failure", step.Failure)
	a.setNeeded(ctx, a.detector.Check(ctx))
	return requeueNow, nil
}

// releaseKeys gives back, after a reboot that ended without its slot, the slot-key
// Lease the lock kept while the node was mid-reboot (its slot Lease had been
// deleted): the next node of its key value then need not wait for it to expire. A
// failure only delays that node.
func (a *Agent) releaseKeys(ctx context.Context, st nodestate.State) {
	if st.Pool == "" || st.SlotValue == "" {
		return
	}
	sem, err := a.semaphore(st.Pool, st.SlotValue)
	if err == nil {
		err = sem.ReleaseKeys(ctx)
	}
	if err != nil {
		a.log.Warn("releasing the slot-key Lease of a reboot that ended without its slot failed; it expires", "pool", st.Pool, "slotValue", st.SlotValue, "err", err)
	}
}

func failureKind(ph nodestate.Phase, act pipeline.Action) string {
	switch {
	case act == pipeline.ActFinish:
		return "sentinel-survived-reboot"
	case ph == nodestate.PhaseRebooting:
		return "reboot-not-observed"
	}
	return "drain"
}

// healthy runs the pool's health gate, the last good config's; without a config that
// ever loaded there is none to run, and a node that finished its reboot is not held
// back by a broken config.
func (a *Agent) healthy(ctx context.Context, st nodestate.State) bool {
	if _, err := a.source.LastGood(); err != nil {
		return true
	}
	ok, why := a.healthGate(ctx)
	if !ok && why != a.lastHealthWhy {
		a.executor.Event(corev1.EventTypeNormal, nodeops.ReasonHealthGateWaiting, "waiting for the health gate: %s", why)
	}
	a.lastHealthWhy = why
	return ok
}

// reconcileDryRun decides and reports for an idle node; it starts nothing. A slot or
// kured lock left over from a reboot that ended (a failed release) is given back.
func (a *Agent) reconcileDryRun(ctx context.Context, _ nodestate.State) (time.Duration, error) {
	if err := a.releaseSlot(ctx); err != nil {
		return 0, err
	}
	if err := a.releaseStaleKuredLock(ctx); err != nil {
		return 0, err
	}
	if !a.needed.Needed {
		return 0, nil
	}
	d := a.decide(ctx)
	a.report(ctx, d)
	if !d.Allowed {
		return a.nextCheck(d), nil
	}
	engine, err := a.source.Current()
	if err != nil {
		return a.cfg.RecheckInterval, nil
	}
	n, err := a.node()
	if err != nil {
		return a.cfg.RecheckInterval, nil
	}
	pool, err := engine.PoolOf(n, a.clock.Now())
	if err != nil {
		return a.cfg.RecheckInterval, nil
	}
	a.dryRunSlots(ctx, pool, a.slots(ctx, engine, pool))
	return a.cfg.RecheckInterval, nil
}

// holdAnnotation is the last good config's hold annotation, or the default without
// one: a broken update must not make a held node look free.
func (a *Agent) holdAnnotation() string {
	if engine, err := a.source.LastGood(); err == nil && engine.Config().HoldAnnotation != "" {
		return engine.Config().HoldAnnotation
	}
	return config.DefaultHoldAnnotation
}

func (a *Agent) executorConfig() nodeops.Config {
	var rebooter nodeops.Rebooter = &nodeops.CommandRebooter{Command: a.cfg.RebootCommand, Nsenter: a.cfg.Nsenter}
	if a.cfg.RebootMethod == "signal" {
		rebooter = &nodeops.SignalRebooter{Signal: syscall.Signal(a.cfg.RebootSignal)}
	}
	return nodeops.Config{
		Client: a.client, NodeName: a.cfg.NodeName, Namespace: a.cfg.Namespace, Node: a.node, Clock: a.clock, Logger: a.baseLog, Recorder: a.recorder,
		Drainer:               &nodeops.KubectlDrainer{Client: a.client, Options: a.cfg.Drain, Logger: a.baseLog, Sleep: a.sleep},
		Rebooter:              rebooter,
		PreRebootLabels:       a.cfg.PreRebootLabels,
		PostRebootLabels:      a.cfg.PostRebootLabels,
		PreferNoScheduleTaint: a.cfg.PreferNoScheduleTaint,
		KuredAnnotations:      a.cfg.KuredAnnotations,
		LockReleaseDelay:      a.cfg.LockReleaseDelay,
		MaxFailures:           a.cfg.MaxFailures,
		LoopBackoff:           a.cfg.LoopBackoff,
		FailureBackoff:        a.cfg.FailureBackoff,
		MaxBackoff:            a.cfg.MaxFailureBackoff,
		HoldAnnotation:        a.holdAnnotation,
		OnPhase:               a.setPhase,
		OnStep: func(ctx context.Context, step pipeline.Step) {
			kind := map[pipeline.Action]notify.Kind{
				pipeline.ActDrain: notify.KindDrain, pipeline.ActRequestReboot: notify.KindReboot, pipeline.ActFinish: notify.KindUncordon,
			}[step.Action]
			// The decision that allowed this reboot, for templates over .Decision.
			// (A node the cache cannot give has none: reportedOn(nil) is nil.)
			n, _ := a.node()
			d := reportedOn(n)
			pool := a.heldRef.Pool // the held or resumed slot's, from the node's state
			if pool == "" && d != nil {
				pool = d.Pool
			}
			// Errors are logged by the notifier; a notification never stops a reboot.
			_ = a.notifier.Notify(ctx, notify.Event{Kind: kind, Node: a.cfg.NodeName, Pool: pool, Decision: d})
		},
		OnHold: func(ctx context.Context, reason string) {
			a.metrics.OnHold.WithLabelValues(a.cfg.NodeName).Set(1)
			_ = a.notifier.Notify(ctx, notify.Event{Kind: notify.KindHold, Node: a.cfg.NodeName, Pool: a.heldRef.Pool, Detail: reason})
		},
	}
}

func firstReason(d decision.Decision) string {
	if len(d.Reasons) == 0 {
		return "no reason given"
	}
	return d.Reasons[0].Message
}

func isReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
