package nodeops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/rebootgate/rebootgate/engine/lock"
	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/engine/pipeline"
)

// Event reasons on the Node.
const (
	ReasonCordoned          = "Cordoned"
	ReasonDraining          = "Draining"
	ReasonDrainFailed       = "DrainFailed"
	ReasonRebooting         = "Rebooting"
	ReasonRebootCancelled   = "RebootCancelled"
	ReasonRebootNotObserved = "RebootNotObserved"
	ReasonRebootFailed      = "RebootFailed"
	ReasonRebooted          = "Rebooted"
	ReasonNotReady          = "NotReadyAfterReboot"
	ReasonHealthGateWaiting = "HealthGateWaiting"
	ReasonUncordoned        = "Uncordoned"
	ReasonDrainAbandoned    = "DrainAbandoned"
	ReasonSlotLost          = "SlotLost"
	ReasonRebootHeld        = "RebootHeld"
	ReasonNodeNotBack       = "NodeNotBack"
	ReasonHealthGateTimeout = "HealthGateTimeout"
	ReasonRetryScheduled    = "RebootRetryScheduled"
)

// Slot is a held concurrency slot.
type Slot interface {
	Name() string
	Release(ctx context.Context) error
}

// SlotRef names a slot and its semaphore, recorded on the Node at the cordon so that
// the reboot can be resumed and finished without any config.
type SlotRef struct {
	Name, Pool, Value string
}

// Config wires an [Executor].
type Config struct {
	Client   kubernetes.Interface
	NodeName string
	// Namespace holds the slot Leases (it scopes the rebootgate.io/holds-slot and
	// holds-key labels).
	Namespace string
	// Node returns this node as the agent's informer last saw it (no API request).
	Node     func() (*corev1.Node, error)
	Clock    clock.Clock
	Logger   *slog.Logger
	Recorder record.EventRecorder
	Drainer  Drainer
	Rebooter Rebooter

	PreRebootLabels  map[string]string
	PostRebootLabels map[string]string
	// PreferNoScheduleTaint is a taint key set (PreferNoSchedule) while the node waits
	// for a slot (see PreferNoSchedule) and while it reboots.
	PreferNoScheduleTaint string
	// KuredAnnotations writes kured's --annotate-nodes annotations: both at the cordon,
	// and the reboot-in-progress one removed when the reboot ends.
	KuredAnnotations bool
	// LockReleaseDelay is kured's --lock-release-delay: after a reboot the node is
	// uncordoned, and the slot released only this long afterwards.
	LockReleaseDelay time.Duration
	// MaxFailures consecutive failures put the node on hold (HoldAnnotation, with
	// the reason); FailureBackoff is the first back-off, doubled per failure up to
	// MaxBackoff.
	MaxFailures    int
	FailureBackoff time.Duration
	MaxBackoff     time.Duration
	// LoopBackoff is the least time between two reboots (reboot-loop protection): its
	// end is recorded with the reboot (AnnotationLoopBackoffUntil), and the decision
	// denies until then.
	LoopBackoff time.Duration
	// HoldAnnotation returns the annotation key that holds a node (the config's).
	HoldAnnotation func() string
	// OnPhase is told each phase written (metrics).
	OnPhase func(nodestate.Phase)
	// OnStep, if set, is told when draining starts, right before the reboot request,
	// and after the uncordon (notifications). It runs synchronously: before a reboot,
	// the process may not live long after it returns.
	OnStep func(ctx context.Context, step pipeline.Step)
	// OnHold, if set, is told when the node is put on hold (metric, notification).
	OnHold func(ctx context.Context, reason string)
}

// Notification steps passed to OnStep.
var (
	StepDrain    = pipeline.Step{Action: pipeline.ActDrain}
	StepReboot   = pipeline.Step{Action: pipeline.ActRequestReboot}
	StepUncordon = pipeline.Step{Action: pipeline.ActFinish}
)

// Executor carries out the lifecycle's steps on one node. Every step writes the
// node's new state in the same patch as the change it describes, so whatever fails
// between two steps, the next pass of the reconcile loop sees where things are.
type Executor struct {
	cfg Config
	ref *corev1.ObjectReference
}

// New validates the config.
func New(cfg Config) (*Executor, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("nodeops: Client is required")
	case cfg.NodeName == "":
		return nil, errors.New("nodeops: NodeName is required")
	case cfg.Node == nil:
		return nil, errors.New("nodeops: Node is required")
	case cfg.Drainer == nil || cfg.Rebooter == nil:
		return nil, errors.New("nodeops: Drainer and Rebooter are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Recorder == nil {
		cfg.Recorder = &record.FakeRecorder{}
	}
	cfg.MaxFailures = max(1, cfg.MaxFailures)
	cfg.FailureBackoff = orDuration(cfg.FailureBackoff, time.Minute)
	cfg.MaxBackoff = orDuration(cfg.MaxBackoff, time.Hour)
	if cfg.HoldAnnotation == nil {
		cfg.HoldAnnotation = func() string { return nodestate.AnnotationHold }
	}
	// Kubelet uses the node name as the UID of Node events; doing the same makes
	// kubectl describe node show ours.
	ref := &corev1.ObjectReference{Kind: "Node", Name: cfg.NodeName, UID: types.UID(cfg.NodeName)}
	return &Executor{cfg: cfg, ref: ref}, nil
}

func (p *Executor) step(ctx context.Context, s pipeline.Step) {
	if p.cfg.OnStep != nil {
		p.cfg.OnStep(ctx, s)
	}
}

// Cordon applies the pre-reboot labels and taint and cordons, recording in the same
// patch the phase Draining, the slot, and whether the node was schedulable — so an
// admin's cordon is never undone.
func (p *Executor) Cordon(ctx context.Context, st nodestate.State, slot SlotRef) (nodestate.State, error) {
	st.Phase, st.Slot, st.Pool, st.SlotValue = nodestate.PhaseDraining, slot.Name, slot.Pool, slot.Value
	st.Attempts, st.RequestedAt, st.BootIDBefore, st.StartedAt = 0, time.Time{}, "", p.cfg.Clock.Now()
	st.DrainForced = false
	var cordonedByUs bool
	st, err := p.save(ctx, st, func(n *corev1.Node, patch *nodestate.Patch) {
		cordonedByUs = !n.Spec.Unschedulable || nodestate.StateOf(n).CordonedByUs
		patch.Metadata.Labels = stringPtrs(p.cfg.PreRebootLabels)
		// The second record of the holding (slot, and key value if any), which
		// outlives a deleted Lease.
		patch.Metadata.Labels[nodestate.LabelHoldsSlot] = ptr(lock.HoldsSlotValue(p.cfg.Namespace, slot.Name))
		if slot.Value != "" {
			patch.Metadata.Labels[nodestate.LabelHoldsKey] = ptr(lock.HoldsKeyValue(p.cfg.Namespace, slot.Pool, slot.Value))
		} else if _, ok := n.Labels[nodestate.LabelHoldsKey]; ok {
			patch.Metadata.Labels[nodestate.LabelHoldsKey] = nil
		}
		patch.Spec = &nodestate.PatchSpec{Unschedulable: ptr(true)}
		if taints, changed := withTaint(n.Spec.Taints, p.cfg.PreferNoScheduleTaint, true); changed {
			patch.Spec.Taints = &taints
		}
		if cordonedByUs {
			patch.Metadata.Annotations[nodestate.AnnotationCordonedByUs] = ptr("true")
		}
		if p.cfg.KuredAnnotations {
			now := p.cfg.Clock.Now().Format(time.RFC3339)
			if _, ok := n.Annotations[nodestate.AnnotationKuredRebootInProgress]; !ok {
				patch.Metadata.Annotations[nodestate.AnnotationKuredRebootInProgress] = ptr(now)
			}
			patch.Metadata.Annotations[nodestate.AnnotationKuredMostRecentRebootNeeded] = ptr(now)
		}
	})
	if err != nil {
		return st, err
	}
	st.CordonedByUs = cordonedByUs
	p.event(corev1.EventTypeNormal, ReasonCordoned, "cordoned for reboot (slot %s)", st.Slot)
	return st, nil
}

// Drain evicts the node's pods. ctx carries the agent's guard: it is cancelled (with
// a cause) when the gate closes or the slot is lost while draining.
func (p *Executor) Drain(ctx context.Context) error {
	p.event(corev1.EventTypeNormal, ReasonDraining, "draining for reboot")
	p.step(ctx, StepDrain)
	return p.cfg.Drainer.Drain(ctx, p.cfg.NodeName)
}

// Drained records the move to Rebooting with the boot ID to compare against (and
// st.DrainForced, a drain that failed under force reboot).
func (p *Executor) Drained(ctx context.Context, st nodestate.State) (nodestate.State, error) {
	n, err := p.cfg.Node()
	if err != nil {
		return st, fmt.Errorf("reading node %s: %w", p.cfg.NodeName, err)
	}
	st.Phase, st.BootIDBefore, st.Attempts, st.RequestedAt = nodestate.PhaseRebooting, n.Status.NodeInfo.BootID, 0, time.Time{}
	return p.save(ctx, st, nil)
}

// ErrCancelled wraps the reason a final check stopped a reboot request.
var ErrCancelled = errors.New("reboot cancelled")

// RequestReboot records the attempt, tells people, runs final — the very last check
// (fresh gate, slot confirmed held) — and only then asks the host to reboot. A final
// error is returned wrapped in ErrCancelled and nothing is requested.
func (p *Executor) RequestReboot(ctx context.Context, st nodestate.State, final func(ctx context.Context) error) (nodestate.State, error) {
	st.Attempts++
	st.RequestedAt = p.cfg.Clock.Now()
	// Recorded first: an agent that dies right after the request must not ask again
	// before the reboot timeout.
	st, err := p.save(ctx, st, nil)
	if err != nil {
		return st, err
	}
	p.step(ctx, StepReboot)
	if err := final(ctx); err != nil {
		p.event(corev1.EventTypeNormal, ReasonRebootCancelled, "not rebooting: %v", err)
		return st, fmt.Errorf("%w: %w", ErrCancelled, err)
	}
	p.event(corev1.EventTypeNormal, ReasonRebooting, "rebooting (%s), attempt %d", p.cfg.Rebooter, st.Attempts)
	if err := p.cfg.Rebooter.Reboot(ctx); err != nil {
		p.event(corev1.EventTypeWarning, ReasonRebootFailed, "%v", err)
	}
	return st, nil
}

// Rebooted records the move to Verifying once the boot ID changed.
func (p *Executor) Rebooted(ctx context.Context, st nodestate.State) (nodestate.State, error) {
	st.Phase, st.LastReboot = nodestate.PhaseVerifying, p.cfg.Clock.Now()
	st.LoopBackoffUntil = st.LastReboot.Add(p.cfg.LoopBackoff)
	st, err := p.save(ctx, st, nil)
	if err == nil {
		p.event(corev1.EventTypeNormal, ReasonRebooted, "rebooted: boot ID changed from %s", st.BootIDBefore)
	}
	return st, err
}

// Finish ends a reboot (Finish) or stops one before it happened (Undo): in one patch
// it clears the state, uncordons when rebootgate cordoned, removes the taint and
// pre-reboot labels, applies the post-reboot labels after a reboot, and books a
// failure: back-off, or after MaxFailures consecutive ones, the hold annotation.
// Only then is the slot released (slot may be nil).
func (p *Executor) Finish(ctx context.Context, st nodestate.State, s pipeline.Step, slot Slot) error {
	rebooted := s.Action == pipeline.ActFinish
	last := nodestate.State{LastReboot: st.LastReboot, LoopBackoffUntil: st.LoopBackoffUntil, LastDuration: st.LastDuration}
	if rebooted && !st.StartedAt.IsZero() {
		last.LastDuration = p.cfg.Clock.Since(st.StartedAt).Round(time.Second)
	}
	hold := ""
	if s.Failure {
		last.Failures = st.Failures + 1
		if last.Failures >= p.cfg.MaxFailures {
			hold = fmt.Sprintf("%d consecutive failures, the last: %s", last.Failures, s.Reason)
			last.Failures = 0
		} else {
			last.RetryAfter = p.cfg.Clock.Now().Add(pipeline.Backoff(p.cfg.FailureBackoff, p.cfg.MaxBackoff, last.Failures))
		}
	} else if !rebooted {
		// Stopped for an outside reason (gate, slot): the count stands.
		last.Failures, last.RetryAfter = st.Failures, st.RetryAfter
	}
	holdKey := p.cfg.HoldAnnotation()
	var labels map[string]string
	if rebooted {
		labels = p.cfg.PostRebootLabels
	}
	_, err := p.save(ctx, last, func(n *corev1.Node, patch *nodestate.Patch) {
		if nodestate.StateOf(n).CordonedByUs {
			patch.Spec = &nodestate.PatchSpec{Unschedulable: ptr(false)}
		}
		if taints, changed := withTaint(n.Spec.Taints, p.cfg.PreferNoScheduleTaint, false); changed {
			if patch.Spec == nil {
				patch.Spec = &nodestate.PatchSpec{}
			}
			patch.Spec.Taints = &taints
		}
		patch.Metadata.Labels = map[string]*string{nodestate.LabelHoldsSlot: nil, nodestate.LabelHoldsKey: nil}
		for k := range p.cfg.PreRebootLabels {
			if _, keep := labels[k]; !keep {
				patch.Metadata.Labels[k] = nil
			}
		}
		for k, v := range labels {
			patch.Metadata.Labels[k] = ptr(v)
		}
		if hold != "" {
			patch.Metadata.Annotations[holdKey] = ptr(hold)
		}
		if _, ok := n.Annotations[nodestate.AnnotationKuredRebootInProgress]; ok && p.cfg.KuredAnnotations {
			patch.Metadata.Annotations[nodestate.AnnotationKuredRebootInProgress] = nil
		}
	})
	if err != nil {
		return err
	}
	switch {
	case hold != "":
		p.event(corev1.EventTypeWarning, ReasonRebootHeld, "on hold (%s): %s; remove the annotation to try again", holdKey, hold)
		if p.cfg.OnHold != nil {
			p.cfg.OnHold(ctx, hold)
		}
	case s.Failure:
		p.event(corev1.EventTypeWarning, ReasonRetryScheduled, "failure %d of %d: %s; retrying after %s",
			last.Failures, p.cfg.MaxFailures, s.Reason, last.RetryAfter.UTC().Format(time.RFC3339))
	case !rebooted:
		p.cfg.Logger.Info("undid reboot preparation", "node", p.cfg.NodeName, "phase", st.Phase, "why", s.Reason)
	}
	if st.CordonedByUs {
		p.event(corev1.EventTypeNormal, ReasonUncordoned, "uncordoned")
	}
	if rebooted {
		p.step(ctx, StepUncordon)
	}
	if slot == nil {
		return nil
	}
	if rebooted && p.cfg.LockReleaseDelay > 0 {
		// kured's throttle: the node is back in service, the next one waits a little.
		p.cfg.Logger.Info("delaying the slot's release", "node", p.cfg.NodeName, "delay", p.cfg.LockReleaseDelay)
		t := p.cfg.Clock.NewTimer(p.cfg.LockReleaseDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C():
		}
	}
	if err := slot.Release(ctx); err != nil {
		return fmt.Errorf("releasing slot %s: %w", slot.Name(), err)
	}
	return nil
}

// PreferNoSchedule adds (want) or removes the PreferNoSchedule taint, writing only
// when the node's taints differ; kured sets it while the node waits for the lock, so
// that pods evicted from rebooting nodes prefer other nodes.
func (p *Executor) PreferNoSchedule(ctx context.Context, want bool) error {
	if p.cfg.PreferNoScheduleTaint == "" {
		return nil
	}
	n, err := p.cfg.Node()
	if err != nil {
		return fmt.Errorf("reading node %s: %w", p.cfg.NodeName, err)
	}
	if _, changed := withTaint(n.Spec.Taints, p.cfg.PreferNoScheduleTaint, want); !changed {
		return nil
	}
	return p.patchNode(ctx, "setting taint "+p.cfg.PreferNoScheduleTaint, func(n *corev1.Node, patch *nodestate.Patch) bool {
		taints, changed := withTaint(n.Spec.Taints, p.cfg.PreferNoScheduleTaint, want)
		patch.Spec = &nodestate.PatchSpec{Taints: &taints}
		return changed
	})
}

// Event records an event on the node (and logs it).
func (p *Executor) Event(eventType, reason, format string, args ...any) {
	p.event(eventType, reason, format, args...)
}

// save writes the state (and any extra change) to the Node in one merge patch guarded
// by the resourceVersion, retrying on conflicts with a fresh read.
func (p *Executor) save(ctx context.Context, st nodestate.State, extra func(*corev1.Node, *nodestate.Patch)) (nodestate.State, error) {
	if st.Phase != nodestate.PhaseIdle {
		st.Since = p.cfg.Clock.Now()
	} else {
		st.Since = time.Time{}
	}
	err := p.patchNode(ctx, fmt.Sprintf("recording phase %q", st.Phase), func(n *corev1.Node, patch *nodestate.Patch) bool {
		patch.Metadata.Annotations = st.Annotations()
		if extra != nil {
			extra(n, patch)
		}
		return true
	})
	if err == nil && p.cfg.OnPhase != nil {
		p.cfg.OnPhase(st.Phase)
	}
	return st, err
}

// patchNode writes one merge patch built from a fresh read of the node, guarded by its
// resourceVersion and retried on conflicts; build returns false when there is nothing
// to write.
func (p *Executor) patchNode(ctx context.Context, what string, build func(*corev1.Node, *nodestate.Patch) bool) error {
	nodes := p.cfg.Client.CoreV1().Nodes()
	for attempt := 0; ; attempt++ {
		n, err := nodes.Get(ctx, p.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading node %s: %w", p.cfg.NodeName, err)
		}
		patch := &nodestate.Patch{Metadata: nodestate.PatchMeta{ResourceVersion: n.ResourceVersion}}
		if !build(n, patch) {
			return nil
		}
		data, err := patch.Bytes()
		if err != nil {
			return err
		}
		_, err = nodes.Patch(ctx, p.cfg.NodeName, types.MergePatchType, data, metav1.PatchOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsConflict(err) || attempt >= 10 {
			return fmt.Errorf("%s on node %s: %w", what, p.cfg.NodeName, err)
		}
	}
}

func (p *Executor) event(eventType, reason, format string, args ...any) {
	p.cfg.Recorder.Eventf(p.ref, eventType, reason, format, args...)
	p.cfg.Logger.Info(fmt.Sprintf(format, args...), "node", p.cfg.NodeName, "reason", reason)
}

// withTaint returns taints with the PreferNoSchedule taint key added or removed.
func withTaint(taints []corev1.Taint, key string, want bool) ([]corev1.Taint, bool) {
	if key == "" {
		return taints, false
	}
	out := make([]corev1.Taint, 0, len(taints)+1)
	found := false
	for _, t := range taints {
		if t.Key == key && t.Effect == corev1.TaintEffectPreferNoSchedule {
			found = true
			if !want {
				continue
			}
		}
		out = append(out, t)
	}
	if want && !found {
		out = append(out, corev1.Taint{Key: key, Effect: corev1.TaintEffectPreferNoSchedule})
	}
	return out, found != want
}

func stringPtrs(m map[string]string) map[string]*string {
	out := make(map[string]*string, len(m))
	for k, v := range m {
		out[k] = ptr(v)
	}
	return out
}

func ptr[T any](v T) *T { return &v }
