package nodeops

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/rebootgate/rebootgate/engine/lock"
	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/engine/pipeline"
)

const nodeName = "n1"

var t0 = time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC)

// harness is a node in a fake API with an executor, a fake clock and recording fakes
// for the drainer, rebooter and slot.
type harness struct {
	t        *testing.T
	client   *fake.Clientset
	clock    *clocktesting.FakeClock
	recorder *record.FakeRecorder
	ex       *Executor
	drainErr error
	reboots  int
	released int
	// schedulableAtRelease records whether the node was uncordoned before release.
	schedulableAtRelease bool
}

func newHarness(t *testing.T, unschedulable bool, cfg func(*Config)) *harness {
	h := &harness{t: t, clock: clocktesting.NewFakeClock(t0), recorder: record.NewFakeRecorder(100)}
	h.client = fake.NewClientset(&corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{"keep": "me"}},
		Spec:       corev1.NodeSpec{Unschedulable: unschedulable, Taints: []corev1.Taint{{Key: "other", Effect: corev1.TaintEffectNoSchedule}}},
		Status: corev1.NodeStatus{
			NodeInfo:   corev1.NodeSystemInfo{BootID: "boot-1"},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	})
	c := Config{
		Client: h.client, NodeName: nodeName, Clock: h.clock, Recorder: h.recorder, Drainer: h, Rebooter: h,
		Node: func() (*corev1.Node, error) {
			return h.client.CoreV1().Nodes().Get(context.Background(), nodeName, metav1.GetOptions{})
		},
		PreRebootLabels: map[string]string{"rebooting": "yes"}, PostRebootLabels: map[string]string{"rebooted": "yes"},
		PreferNoScheduleTaint: "rebootgate.io/rebooting", MaxFailures: 3, FailureBackoff: time.Minute, MaxBackoff: time.Hour,
	}
	if cfg != nil {
		cfg(&c)
	}
	ex, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	h.ex = ex
	return h
}

func (h *harness) node() *corev1.Node {
	n, err := h.client.CoreV1().Nodes().Get(context.Background(), nodeName, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

func (h *harness) Drain(context.Context, string) error { return h.drainErr }
func (h *harness) Reboot(context.Context) error        { h.reboots++; return nil }
func (h *harness) String() string                      { return "fake" }
func (h *harness) Name() string                        { return "rebootgate-p-0" }
func (h *harness) Release(context.Context) error {
	h.released++
	h.schedulableAtRelease = !h.node().Spec.Unschedulable
	return nil
}

var slot0 = SlotRef{Name: "rebootgate-p-0", Pool: "p"}

// TestCordonRecordsTheSlotKeyValue: a slot taken under a key value is recorded on
// the Node with that value (the second record of the per-key limit, which outlives
// a deleted key Lease) in the cordon's patch, and the finish removes it; a slot
// without a key value records none.
func TestCordonRecordsTheSlotKeyValue(t *testing.T) {
	h := newHarness(t, false, func(c *Config) { c.Namespace = "rg" })
	ctx := context.Background()
	st, err := h.ex.Cordon(ctx, nodestate.StateOf(h.node()), SlotRef{Name: "rebootgate-p-1", Pool: "p", Value: "zone-a"})
	if err != nil {
		t.Fatal(err)
	}
	n := h.node()
	if got, want := n.Labels[nodestate.LabelHoldsKey], lock.HoldsKeyValue("rg", "p", "zone-a"); got != want || nodestate.StateOf(n).Phase != nodestate.PhaseDraining {
		t.Fatalf("after cordon: label %s = %q, phase %q; want %q with the phase", nodestate.LabelHoldsKey, got, nodestate.StateOf(n).Phase, want)
	}
	if lock.HoldsKeyValue("rg", "p", "zone-a") == lock.HoldsKeyValue("other", "p", "zone-a") || lock.HoldsKeyValue("rg", "p", "zone-a") == lock.HoldsKeyValue("rg", "q", "zone-a") {
		t.Fatal("the key record does not tell namespaces or pools apart")
	}
	if err := h.ex.Finish(ctx, st, pipeline.Step{Action: pipeline.ActUndo, Reason: "test"}, h); err != nil {
		t.Fatal(err)
	}
	if v, ok := h.node().Labels[nodestate.LabelHoldsKey]; ok {
		t.Fatalf("label %s = %q left after finish", nodestate.LabelHoldsKey, v)
	}
	if _, err := h.ex.Cordon(ctx, nodestate.StateOf(h.node()), slot0); err != nil {
		t.Fatal(err)
	}
	if v, ok := h.node().Labels[nodestate.LabelHoldsKey]; ok {
		t.Fatalf("label %s = %q on a slot without a key value", nodestate.LabelHoldsKey, v)
	}
}

func TestCordonRecordsSlotAndFinishUncordonsBeforeRelease(t *testing.T) {
	h := newHarness(t, false, nil)
	ctx := context.Background()
	st, err := h.ex.Cordon(ctx, nodestate.StateOf(h.node()), slot0)
	if err != nil {
		t.Fatal(err)
	}
	n := h.node()
	got := nodestate.StateOf(n)
	if !n.Spec.Unschedulable || got.Phase != nodestate.PhaseDraining || !got.CordonedByUs || got.Pool != "p" || got.Slot != slot0.Name || n.Labels["rebooting"] != "yes" {
		t.Fatalf("after cordon: unschedulable=%v state=%+v labels=%v", n.Spec.Unschedulable, got, n.Labels)
	}
	if len(n.Spec.Taints) != 2 {
		t.Fatalf("taints = %v, want the admin's and ours", n.Spec.Taints)
	}
	if n.Labels[nodestate.LabelHoldsSlot] != lock.HoldsSlotValue("", slot0.Name) {
		t.Fatalf("label %s = %q, want the slot's Lease", nodestate.LabelHoldsSlot, n.Labels[nodestate.LabelHoldsSlot])
	}
	st, err = h.ex.Drained(ctx, st)
	if err != nil || nodestate.StateOf(h.node()).BootIDBefore != "boot-1" || nodestate.StateOf(h.node()).Phase != nodestate.PhaseRebooting {
		t.Fatalf("drained: %v %+v", err, nodestate.StateOf(h.node()))
	}
	h.clock.Step(95 * time.Second)
	st, err = h.ex.Rebooted(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	h.clock.Step(30*time.Second + 400*time.Millisecond)
	if err := h.ex.Finish(ctx, st, pipeline.Step{Action: pipeline.ActFinish}, h); err != nil {
		t.Fatal(err)
	}
	n = h.node()
	got = nodestate.StateOf(n)
	if d := n.Annotations[nodestate.AnnotationLastDuration]; d != "2m5s" || got.LastDuration != 125*time.Second {
		t.Fatalf("%s = %q (%v), want 2m5s from the cordon to the finish", nodestate.AnnotationLastDuration, d, got.LastDuration)
	}
	if n.Spec.Unschedulable || got.Phase != nodestate.PhaseIdle || got.LastReboot.IsZero() || got.Pool != "" || n.Labels["rebooting"] != "" || n.Labels["rebooted"] != "yes" || n.Labels["keep"] != "me" {
		t.Fatalf("after finish: unschedulable=%v state=%+v labels=%v", n.Spec.Unschedulable, got, n.Labels)
	}
	if _, ok := n.Labels[nodestate.LabelHoldsSlot]; ok {
		t.Fatalf("label %s left after finish", nodestate.LabelHoldsSlot)
	}
	if len(n.Spec.Taints) != 1 || n.Spec.Taints[0].Key != "other" {
		t.Fatalf("taints = %v, want only the admin's", n.Spec.Taints)
	}
	if h.released != 1 || !h.schedulableAtRelease {
		t.Fatalf("released %d times, schedulable at release %v: want once, after the uncordon", h.released, h.schedulableAtRelease)
	}
}

func TestAdminCordonedNodeStaysCordoned(t *testing.T) {
	h := newHarness(t, true, nil)
	ctx := context.Background()
	st, err := h.ex.Cordon(ctx, nodestate.StateOf(h.node()), slot0)
	if err != nil {
		t.Fatal(err)
	}
	if nodestate.StateOf(h.node()).CordonedByUs {
		t.Fatal("an admin's cordon was recorded as ours")
	}
	if err := h.ex.Finish(ctx, st, pipeline.Step{Action: pipeline.ActUndo, Reason: "gate closed"}, h); err != nil {
		t.Fatal(err)
	}
	if !h.node().Spec.Unschedulable {
		t.Fatal("rebootgate uncordoned a node an admin had cordoned")
	}
}

func TestFailuresBackOffThenHold(t *testing.T) {
	h := newHarness(t, false, nil)
	ctx := context.Background()
	wantBackoff := []time.Duration{time.Minute, 2 * time.Minute}
	for i := range 3 {
		st, err := h.ex.Cordon(ctx, nodestate.StateOf(h.node()), slot0)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.ex.Finish(ctx, st, pipeline.Step{Action: pipeline.ActUndo, Failure: true, Reason: "drain failed"}, h); err != nil {
			t.Fatal(err)
		}
		n := h.node()
		got := nodestate.StateOf(n)
		if n.Spec.Unschedulable {
			t.Fatalf("failure %d left the node cordoned", i+1)
		}
		if i < 2 {
			if got.Failures != i+1 || !got.RetryAfter.Equal(h.clock.Now().Add(wantBackoff[i]).Truncate(time.Second)) {
				t.Fatalf("failure %d: failures=%d retryAfter=%v, want %d and now+%v", i+1, got.Failures, got.RetryAfter, i+1, wantBackoff[i])
			}
			if n.Annotations["rebootgate.io/hold"] != "" {
				t.Fatalf("failure %d put the node on hold already", i+1)
			}
			continue
		}
		if hold := n.Annotations["rebootgate.io/hold"]; !strings.Contains(hold, "3 consecutive failures") || !strings.Contains(hold, "drain failed") {
			t.Fatalf("after 3 failures hold = %q", hold)
		}
		if got.Failures != 0 || !got.RetryAfter.IsZero() {
			t.Fatalf("on hold the count restarts: failures=%d retryAfter=%v", got.Failures, got.RetryAfter)
		}
	}
	if h.released != 3 {
		t.Fatalf("slot released %d times, want 3", h.released)
	}
	if !eventSeen(h.recorder, ReasonRebootHeld) {
		t.Fatal("no RebootHeld event")
	}
}

func TestUndoForAnOutsideReasonKeepsTheFailureCount(t *testing.T) {
	h := newHarness(t, false, nil)
	ctx := context.Background()
	st, _ := h.ex.Cordon(ctx, nodestate.StateOf(h.node()), slot0)
	_ = h.ex.Finish(ctx, st, pipeline.Step{Action: pipeline.ActUndo, Failure: true, Reason: "drain failed"}, h)
	st, _ = h.ex.Cordon(ctx, nodestate.StateOf(h.node()), slot0)
	if err := h.ex.Finish(ctx, st, pipeline.Step{Action: pipeline.ActUndo, Reason: "the gate closed"}, h); err != nil {
		t.Fatal(err)
	}
	if got := nodestate.StateOf(h.node()); got.Failures != 1 {
		t.Fatalf("failures = %d after an undo for the gate, want 1 (unchanged)", got.Failures)
	}
	st, _ = h.ex.Cordon(ctx, nodestate.StateOf(h.node()), slot0)
	st.Phase = nodestate.PhaseVerifying
	if err := h.ex.Finish(ctx, st, pipeline.Step{Action: pipeline.ActFinish}, h); err != nil {
		t.Fatal(err)
	}
	if got := nodestate.StateOf(h.node()); got.Failures != 0 || !got.RetryAfter.IsZero() {
		t.Fatalf("a verified reboot must reset the failures: %+v", got)
	}
}

func TestRequestRebootRunsTheFinalCheckLast(t *testing.T) {
	h := newHarness(t, false, nil)
	ctx := context.Background()
	st, _ := h.ex.Cordon(ctx, nodestate.StateOf(h.node()), slot0)
	st, _ = h.ex.Drained(ctx, st)
	var attemptsAtCheck int
	st2, err := h.ex.RequestReboot(ctx, st, func(context.Context) error {
		attemptsAtCheck = nodestate.StateOf(h.node()).Attempts
		return errors.New("node is on hold")
	})
	if !errors.Is(err, ErrCancelled) || h.reboots != 0 {
		t.Fatalf("err=%v reboots=%d, want ErrCancelled and no reboot", err, h.reboots)
	}
	if attemptsAtCheck != 1 {
		t.Fatalf("the attempt was not recorded before the final check (attempts %d)", attemptsAtCheck)
	}
	if _, err := h.ex.RequestReboot(ctx, st2, func(context.Context) error { return nil }); err != nil || h.reboots != 1 {
		t.Fatalf("err=%v reboots=%d, want one reboot", err, h.reboots)
	}
	if got := nodestate.StateOf(h.node()); got.Attempts != 2 || got.RequestedAt.IsZero() {
		t.Fatalf("state after request: %+v", got)
	}
}

func eventSeen(r *record.FakeRecorder, reason string) bool {
	for {
		select {
		case e := <-r.Events:
			if strings.Contains(e, reason) {
				return true
			}
		default:
			return false
		}
	}
}

// --annotate-nodes: kured's two annotations are written with the cordon, and the
// reboot-in-progress one is gone when the reboot ends; the other stays for tools.
func TestKuredAnnotations(t *testing.T) {
	h := newHarness(t, false, func(c *Config) { c.KuredAnnotations = true })
	ctx := context.Background()
	st, err := h.ex.Cordon(ctx, nodestate.StateOf(h.node()), slot0)
	if err != nil {
		t.Fatal(err)
	}
	want := t0.Format(time.RFC3339)
	a := h.node().Annotations
	if a[nodestate.AnnotationKuredRebootInProgress] != want || a[nodestate.AnnotationKuredMostRecentRebootNeeded] != want {
		t.Fatalf("after cordon: %s=%q %s=%q, want both %q", nodestate.AnnotationKuredRebootInProgress, a[nodestate.AnnotationKuredRebootInProgress],
			nodestate.AnnotationKuredMostRecentRebootNeeded, a[nodestate.AnnotationKuredMostRecentRebootNeeded], want)
	}
	st, _ = h.ex.Drained(ctx, st)
	st, _ = h.ex.Rebooted(ctx, st)
	if err := h.ex.Finish(ctx, st, pipeline.Step{Action: pipeline.ActFinish}, h); err != nil {
		t.Fatal(err)
	}
	a = h.node().Annotations
	if _, ok := a[nodestate.AnnotationKuredRebootInProgress]; ok || a[nodestate.AnnotationKuredMostRecentRebootNeeded] != want {
		t.Fatalf("after finish: annotations %v, want only %s=%q", a, nodestate.AnnotationKuredMostRecentRebootNeeded, want)
	}

	plain := newHarness(t, false, nil)
	if _, err := plain.ex.Cordon(ctx, nodestate.StateOf(plain.node()), slot0); err != nil {
		t.Fatal(err)
	}
	if _, ok := plain.node().Annotations[nodestate.AnnotationKuredRebootInProgress]; ok {
		t.Fatal("kured's annotation written without --annotate-nodes")
	}
}

// --lock-release-delay: the node is uncordoned at once and the slot released only
// after the delay.
func TestLockReleaseDelay(t *testing.T) {
	h := newHarness(t, false, func(c *Config) { c.LockReleaseDelay = time.Minute })
	ctx := context.Background()
	st, _ := h.ex.Cordon(ctx, nodestate.StateOf(h.node()), slot0)
	st, _ = h.ex.Drained(ctx, st)
	st, _ = h.ex.Rebooted(ctx, st)
	done := make(chan error, 1)
	go func() { done <- h.ex.Finish(ctx, st, pipeline.Step{Action: pipeline.ActFinish}, h) }()
	for deadline := time.Now().Add(10 * time.Second); !h.clock.HasWaiters(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Finish never started waiting out the release delay")
		}
	}
	if h.node().Spec.Unschedulable {
		t.Fatal("still cordoned during the release delay")
	}
	select {
	case err := <-done:
		t.Fatalf("Finish returned (%v) before the delay passed", err)
	default:
	}
	h.clock.Step(time.Minute)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if h.released != 1 {
		t.Fatalf("released %d times after the delay, want 1", h.released)
	}
}

// --prefer-no-schedule-taint while waiting for a slot: added and removed only when
// the node's taints differ, the admin's taints kept.
func TestPreferNoScheduleWhileWaiting(t *testing.T) {
	h := newHarness(t, false, nil)
	ctx := context.Background()
	for range 2 {
		if err := h.ex.PreferNoSchedule(ctx, true); err != nil {
			t.Fatal(err)
		}
	}
	if n := h.node(); len(n.Spec.Taints) != 2 || n.Spec.Taints[1].Key != "rebootgate.io/rebooting" || n.Spec.Taints[1].Effect != corev1.TaintEffectPreferNoSchedule {
		t.Fatalf("taints %v, want the admin's and ours (PreferNoSchedule)", n.Spec.Taints)
	}
	patches := 0
	for _, a := range h.client.Actions() {
		if a.GetVerb() == "patch" {
			patches++
		}
	}
	if patches != 1 {
		t.Fatalf("%d patches for two requests of the same taint, want 1", patches)
	}
	if err := h.ex.PreferNoSchedule(ctx, false); err != nil {
		t.Fatal(err)
	}
	if n := h.node(); len(n.Spec.Taints) != 1 || n.Spec.Taints[0].Key != "other" {
		t.Fatalf("taints %v, want only the admin's", n.Spec.Taints)
	}
}
