package pipeline

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

	"github.com/rebootgate/rebootgate/engine/decision"
)

// Event reasons on the Node.
const (
	ReasonCordoned            = "Cordoned"
	ReasonDraining            = "Draining"
	ReasonDrainFailed         = "DrainFailed"
	ReasonRebooting           = "Rebooting"
	ReasonRebootCancelled     = "RebootCancelled"
	ReasonRebootNotObserved   = "RebootNotObserved"
	ReasonRebootFailed        = "RebootFailed"
	ReasonRebooted            = "Rebooted"
	ReasonNotReady            = "NotReadyAfterReboot"
	ReasonHealthGateWaiting   = "HealthGateWaiting"
	ReasonRebootLoopSuspected = "RebootLoopSuspected"
	ReasonUncordoned          = "Uncordoned"
)

// Slot is a held concurrency slot.
type Slot interface {
	Name() string
	Release(ctx context.Context) error
}

// Outcome says how a run ended.
type Outcome string

// Outcomes.
const (
	OutcomeRebooted    Outcome = "Rebooted"
	OutcomeDenied      Outcome = "Denied"      // the gate closed before the reboot; undone
	OutcomeDrainFailed Outcome = "DrainFailed" // undone: uncordoned, then released
	OutcomeNoSlot      Outcome = "NoSlot"      // resumed without a slot before the reboot; undone
	OutcomeGaveUp      Outcome = "GaveUp"      // the host never rebooted; undone
)

// Config wires a Pipeline.
type Config struct {
	Client   kubernetes.Interface
	NodeName string
	// Node returns this node as the agent's informer last saw it (no API request).
	Node     func() (*corev1.Node, error)
	Clock    clock.Clock
	Logger   *slog.Logger
	Recorder record.EventRecorder
	Drainer  Drainer
	Rebooter Rebooter
	// Gate decides again with fresh facts: after the slot is taken and right before
	// the reboot.
	Gate func(ctx context.Context) decision.Decision
	// HealthGate, if set, must pass after the node is Ready again before it is
	// uncordoned (for example: every node of the pool Ready, no firing alerts).
	HealthGate func(ctx context.Context) (ok bool, why string)
	// RebootRequired, if set, is asked after a verified reboot: still true means the
	// reboot did not clear the need, which is reported as a suspected loop.
	RebootRequired func(ctx context.Context) (bool, error)

	PreRebootLabels  map[string]string
	PostRebootLabels map[string]string
	// PreferNoScheduleTaint is a taint key set (PreferNoSchedule) while rebooting.
	PreferNoScheduleTaint string
	// ForceReboot reboots even when the drain fails (kured's --force-reboot).
	ForceReboot bool
	// RebootDelay waits between the drain and the reboot (kured's --reboot-delay).
	RebootDelay time.Duration
	// RebootTimeout is how long to wait for a new boot ID after asking for a reboot.
	RebootTimeout time.Duration
	// RebootAttempts bounds the reboot requests before giving up.
	RebootAttempts int
	// ReadyTimeout is how long to wait for Ready before warning (waiting goes on).
	ReadyTimeout time.Duration
	// Soak is how long the node must stay healthy before it is uncordoned.
	Soak time.Duration
	// PollInterval paces waits on the informer cache (never the API).
	PollInterval time.Duration
	// OnPhase is told each phase change (metrics).
	OnPhase func(Phase)
	// OnStep, if set, is told when draining starts, right before the reboot request,
	// and after the uncordon (notifications). It runs synchronously: before a reboot,
	// the process may not live long after it returns.
	OnStep func(ctx context.Context, step Step)
}

// Step is a moment worth telling people about.
type Step string

// Steps.
const (
	StepDrain    Step = "drain"
	StepReboot   Step = "reboot"
	StepUncordon Step = "uncordon"
)

func (p *Pipeline) step(ctx context.Context, s Step) {
	if p.cfg.OnStep != nil {
		p.cfg.OnStep(ctx, s)
	}
}

// Pipeline reboots one node. Methods are not safe for concurrent use; the agent runs one
// pipeline at a time.
type Pipeline struct {
	cfg Config
	ref *corev1.ObjectReference
}

// New validates the config.
func New(cfg Config) (*Pipeline, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("pipeline: Client is required")
	case cfg.NodeName == "":
		return nil, errors.New("pipeline: NodeName is required")
	case cfg.Node == nil:
		return nil, errors.New("pipeline: Node is required")
	case cfg.Drainer == nil || cfg.Rebooter == nil:
		return nil, errors.New("pipeline: Drainer and Rebooter are required")
	case cfg.Gate == nil:
		return nil, errors.New("pipeline: Gate is required")
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
	cfg.PollInterval = orDuration(cfg.PollInterval, time.Second)
	cfg.RebootTimeout = orDuration(cfg.RebootTimeout, 10*time.Minute)
	cfg.ReadyTimeout = orDuration(cfg.ReadyTimeout, 10*time.Minute)
	cfg.RebootAttempts = max(1, cfg.RebootAttempts)
	// Kubelet uses the node name as the UID of Node events; doing the same makes
	// kubectl describe node show ours.
	ref := &corev1.ObjectReference{Kind: "Node", Name: cfg.NodeName, UID: types.UID(cfg.NodeName)}
	return &Pipeline{cfg: cfg, ref: ref}, nil
}

// Run carries the node from its recorded phase to the end. slot may be nil when the
// agent resumed and its slot was lost: phases before the reboot are then undone, while
// a node that already rebooted is still verified and uncordoned, which only reduces risk.
func (p *Pipeline) Run(ctx context.Context, slot Slot) (Outcome, error) {
	node, err := p.cfg.Node()
	if err != nil {
		return "", fmt.Errorf("reading node %s: %w", p.cfg.NodeName, err)
	}
	st := StateOf(node)
	if st.Phase == PhaseIdle {
		if slot == nil {
			return OutcomeNoSlot, nil
		}
		if d := p.cfg.Gate(ctx); !d.Allowed {
			return OutcomeDenied, p.release(ctx, slot)
		}
		st = State{Phase: PhaseCordoning, Slot: slot.Name(), LastReboot: st.LastReboot}
		if st, err = p.save(ctx, st, nil); err != nil {
			return "", err
		}
	}
	if slot == nil && st.Phase != PhaseVerifying && !p.rebooted(st) {
		p.cfg.Logger.Warn("resumed without a slot before the reboot: undoing", "node", p.cfg.NodeName, "phase", st.Phase)
		return OutcomeNoSlot, p.undo(ctx, st, nil, "the slot was lost while the agent was down")
	}
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		var outcome Outcome
		switch st.Phase {
		case PhaseCordoning:
			st, err = p.cordon(ctx, st)
		case PhaseDraining:
			st, outcome, err = p.drain(ctx, st, slot)
		case PhaseRebooting:
			st, outcome, err = p.reboot(ctx, st, slot)
		case PhaseVerifying:
			return p.verify(ctx, st, slot)
		default:
			return "", fmt.Errorf("node %s: unknown phase %q in annotation %s", p.cfg.NodeName, st.Phase, AnnotationPhase)
		}
		if err != nil || outcome != "" {
			return outcome, err
		}
	}
}

func (p *Pipeline) rebooted(st State) bool {
	n, err := p.cfg.Node()
	return err == nil && st.Phase == PhaseRebooting && st.BootIDBefore != "" && n.Status.NodeInfo.BootID != st.BootIDBefore
}

// cordon applies the pre-reboot labels and taint and cordons, recording in the same
// patch whether the node was schedulable — so an admin's cordon is never undone.
func (p *Pipeline) cordon(ctx context.Context, st State) (State, error) {
	st.Phase = PhaseDraining
	var cordonedByUs bool
	st, err := p.save(ctx, st, func(n *corev1.Node, patch *nodePatch) {
		cordonedByUs = !n.Spec.Unschedulable || StateOf(n).CordonedByUs
		patch.Metadata.Labels = stringPtrs(p.cfg.PreRebootLabels)
		patch.Spec = &patchSpec{Unschedulable: ptr(true)}
		if taints, changed := withTaint(n.Spec.Taints, p.cfg.PreferNoScheduleTaint, true); changed {
			patch.Spec.Taints = &taints
		}
		if cordonedByUs {
			patch.Metadata.Annotations[AnnotationCordonedByUs] = ptr("true")
		}
	})
	if err != nil {
		return st, err
	}
	st.CordonedByUs = cordonedByUs
	p.event(corev1.EventTypeNormal, ReasonCordoned, "cordoned for reboot (slot %s)", st.Slot)
	return st, nil
}

func (p *Pipeline) drain(ctx context.Context, st State, slot Slot) (State, Outcome, error) {
	p.event(corev1.EventTypeNormal, ReasonDraining, "draining for reboot")
	p.step(ctx, StepDrain)
	err := p.cfg.Drainer.Drain(ctx, p.cfg.NodeName)
	if err != nil {
		if ctx.Err() != nil {
			return st, "", ctx.Err()
		}
		if !p.cfg.ForceReboot {
			p.event(corev1.EventTypeWarning, ReasonDrainFailed, "%v; uncordoning, then releasing the slot", err)
			return st, OutcomeDrainFailed, p.undo(ctx, st, slot, "drain failed")
		}
		p.event(corev1.EventTypeWarning, ReasonDrainFailed, "%v; rebooting anyway (force reboot)", err)
	}
	n, err := p.cfg.Node()
	if err != nil {
		return st, "", fmt.Errorf("reading node %s: %w", p.cfg.NodeName, err)
	}
	st.Phase = PhaseRebooting
	st.BootIDBefore = n.Status.NodeInfo.BootID
	st, err = p.save(ctx, st, nil)
	return st, "", err
}

// reboot asks for a reboot and waits for the boot ID to change. On a real host the
// agent dies here and the next agent resumes in this phase with a new boot ID.
func (p *Pipeline) reboot(ctx context.Context, st State, slot Slot) (State, Outcome, error) {
	for {
		n, err := p.cfg.Node()
		if err != nil {
			return st, "", fmt.Errorf("reading node %s: %w", p.cfg.NodeName, err)
		}
		if n.Status.NodeInfo.BootID != st.BootIDBefore {
			st.Phase, st.LastReboot, st.Attempts = PhaseVerifying, p.cfg.Clock.Now(), 0
			st, err = p.save(ctx, st, nil)
			return st, "", err
		}
		if st.Attempts >= p.cfg.RebootAttempts {
			p.event(corev1.EventTypeWarning, ReasonRebootFailed, "the boot ID did not change after %d reboot request(s); uncordoning and releasing the slot", st.Attempts)
			return st, OutcomeGaveUp, p.undo(ctx, st, slot, "the reboot never happened")
		}
		if d := p.cfg.Gate(ctx); !d.Allowed {
			p.event(corev1.EventTypeNormal, ReasonRebootCancelled, "the gate closed before the reboot: %s", firstReason(d))
			return st, OutcomeDenied, p.undo(ctx, st, slot, "the gate closed before the reboot")
		}
		if err := p.sleep(ctx, p.cfg.RebootDelay); err != nil {
			return st, "", err
		}
		st.Attempts++
		if st, err = p.save(ctx, st, nil); err != nil {
			return st, "", err
		}
		// The agent dies with the host and cannot renew its slot while it is down: extend
		// the slot over the expected downtime so no other node starts meanwhile.
		if ext, ok := slot.(interface {
			Extend(ctx context.Context, ttl time.Duration) error
		}); ok && slot != nil {
			if err := ext.Extend(ctx, p.cfg.RebootTimeout+p.cfg.ReadyTimeout); err != nil {
				p.cfg.Logger.Warn("could not extend the slot over the reboot", "node", p.cfg.NodeName, "err", err)
			}
		}
		p.event(corev1.EventTypeNormal, ReasonRebooting, "rebooting (%s), attempt %d", p.cfg.Rebooter, st.Attempts)
		p.step(ctx, StepReboot)
		if err := p.cfg.Rebooter.Reboot(ctx); err != nil {
			p.event(corev1.EventTypeWarning, ReasonRebootFailed, "%v", err)
		}
		changed, err := p.waitFor(ctx, p.cfg.RebootTimeout, func(n *corev1.Node) bool {
			return n.Status.NodeInfo.BootID != st.BootIDBefore
		})
		if err != nil {
			return st, "", err
		}
		if !changed {
			p.event(corev1.EventTypeWarning, ReasonRebootNotObserved, "boot ID still %s %s after the reboot request", st.BootIDBefore, p.cfg.RebootTimeout)
			// Back off before asking again: the host may be slow to shut down.
			if err := p.sleep(ctx, time.Duration(st.Attempts)*p.cfg.PollInterval*10); err != nil {
				return st, "", err
			}
		}
	}
}

// verify waits for Ready, the health gate and the soak time, then uncordons, applies the
// post-reboot labels and releases the slot — in that order.
func (p *Pipeline) verify(ctx context.Context, st State, slot Slot) (Outcome, error) {
	for warned := false; ; warned = true {
		ready, err := p.waitFor(ctx, p.cfg.ReadyTimeout, isReady)
		if err != nil {
			return "", err
		}
		if ready {
			break
		}
		if !warned {
			p.event(corev1.EventTypeWarning, ReasonNotReady, "not Ready %s after the reboot; still waiting", p.cfg.ReadyTimeout)
		}
	}
	if p.cfg.HealthGate != nil {
		for reported := ""; ; {
			ok, why := p.cfg.HealthGate(ctx)
			if ok {
				break
			}
			if why != reported {
				p.event(corev1.EventTypeNormal, ReasonHealthGateWaiting, "waiting for the health gate: %s", why)
				reported = why
			}
			if err := p.sleep(ctx, p.cfg.PollInterval*5); err != nil {
				return "", err
			}
		}
	}
	if err := p.sleep(ctx, p.cfg.Soak); err != nil {
		return "", err
	}
	p.event(corev1.EventTypeNormal, ReasonRebooted, "rebooted: boot ID changed from %s", st.BootIDBefore)
	if p.cfg.RebootRequired != nil {
		if still, err := p.cfg.RebootRequired(ctx); err == nil && still {
			p.event(corev1.EventTypeWarning, ReasonRebootLoopSuspected, "a reboot is still required after a verified reboot; not rebooting again before the back-off")
		}
	}
	return OutcomeRebooted, p.finish(ctx, st, slot, p.cfg.PostRebootLabels)
}

// undo reverts a run that stops before the reboot: uncordon (if we cordoned) first,
// then release the slot.
func (p *Pipeline) undo(ctx context.Context, st State, slot Slot, why string) error {
	p.cfg.Logger.Info("undoing reboot preparation", "node", p.cfg.NodeName, "phase", st.Phase, "why", why)
	return p.finish(ctx, st, slot, nil)
}

// finish clears the state, uncordons when we cordoned and removes the taint and
// pre-reboot labels in one patch, and only then releases the slot.
func (p *Pipeline) finish(ctx context.Context, st State, slot Slot, labels map[string]string) error {
	last := State{LastReboot: st.LastReboot}
	_, err := p.save(ctx, last, func(n *corev1.Node, patch *nodePatch) {
		if StateOf(n).CordonedByUs {
			patch.Spec = &patchSpec{Unschedulable: ptr(false)}
		}
		if taints, changed := withTaint(n.Spec.Taints, p.cfg.PreferNoScheduleTaint, false); changed {
			if patch.Spec == nil {
				patch.Spec = &patchSpec{}
			}
			patch.Spec.Taints = &taints
		}
		patch.Metadata.Labels = map[string]*string{}
		for k := range p.cfg.PreRebootLabels {
			if _, keep := labels[k]; !keep {
				patch.Metadata.Labels[k] = nil
			}
		}
		for k, v := range labels {
			patch.Metadata.Labels[k] = ptr(v)
		}
	})
	if err != nil {
		return err
	}
	if st.CordonedByUs {
		p.event(corev1.EventTypeNormal, ReasonUncordoned, "uncordoned")
	}
	if st.Phase == PhaseVerifying {
		p.step(ctx, StepUncordon)
	}
	return p.release(ctx, slot)
}

func (p *Pipeline) release(ctx context.Context, slot Slot) error {
	if slot == nil {
		return nil
	}
	if err := slot.Release(ctx); err != nil {
		return fmt.Errorf("releasing slot %s: %w", slot.Name(), err)
	}
	return nil
}

// save writes the state (and any extra change) to the Node in one merge patch guarded
// by the resourceVersion, retrying on conflicts with a fresh read.
func (p *Pipeline) save(ctx context.Context, st State, extra func(*corev1.Node, *nodePatch)) (State, error) {
	if st.Phase != PhaseIdle {
		st.Since = p.cfg.Clock.Now()
	} else {
		st.Since = time.Time{}
	}
	nodes := p.cfg.Client.CoreV1().Nodes()
	for attempt := 0; ; attempt++ {
		n, err := nodes.Get(ctx, p.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return st, fmt.Errorf("reading node %s: %w", p.cfg.NodeName, err)
		}
		patch := &nodePatch{Metadata: patchMeta{ResourceVersion: n.ResourceVersion, Annotations: st.annotations()}}
		if extra != nil {
			extra(n, patch)
		}
		data, err := patch.bytes()
		if err != nil {
			return st, err
		}
		_, err = nodes.Patch(ctx, p.cfg.NodeName, types.MergePatchType, data, metav1.PatchOptions{})
		if err == nil {
			if p.cfg.OnPhase != nil {
				p.cfg.OnPhase(st.Phase)
			}
			return st, nil
		}
		if !apierrors.IsConflict(err) || attempt >= 10 {
			return st, fmt.Errorf("recording phase %q on node %s: %w", st.Phase, p.cfg.NodeName, err)
		}
	}
}

// waitFor polls the informer's copy of the node until cond holds or timeout passes.
func (p *Pipeline) waitFor(ctx context.Context, timeout time.Duration, cond func(*corev1.Node) bool) (bool, error) {
	deadline := p.cfg.Clock.Now().Add(timeout)
	for {
		if n, err := p.cfg.Node(); err == nil && cond(n) {
			return true, nil
		}
		if !p.cfg.Clock.Now().Before(deadline) {
			return false, nil
		}
		if err := p.sleep(ctx, p.cfg.PollInterval); err != nil {
			return false, err
		}
	}
}

func (p *Pipeline) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-p.cfg.Clock.After(d):
		return nil
	}
}

func (p *Pipeline) event(eventType, reason, format string, args ...any) {
	p.cfg.Recorder.Eventf(p.ref, eventType, reason, format, args...)
	p.cfg.Logger.Info(fmt.Sprintf(format, args...), "node", p.cfg.NodeName, "reason", reason)
}

func isReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
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

func firstReason(d decision.Decision) string {
	if len(d.Reasons) == 0 {
		return "no reason given"
	}
	return d.Reasons[0].Message
}

func stringPtrs(m map[string]string) map[string]*string {
	out := make(map[string]*string, len(m))
	for k, v := range m {
		out[k] = ptr(v)
	}
	return out
}

func ptr[T any](v T) *T { return &v }
