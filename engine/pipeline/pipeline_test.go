package pipeline

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/rebootgate/rebootgate/engine/decision"
)

const nodeName = "n1"

// harness is a node in a fake API, a fake clock that moves whenever the pipeline
// waits, and recording fakes for the drainer, rebooter and slot.
type harness struct {
	t        *testing.T
	client   *fake.Clientset
	clock    *clocktesting.FakeClock
	recorder *record.FakeRecorder
	drainErr error
	// rebootWorks makes the fake rebooter change the boot ID, as a real reboot would.
	rebootWorks bool
	reboots     int
	gateOpen    []bool // successive gate answers; the last one repeats
	gateCalls   int
	mu          sync.Mutex
	log         []string
	released    bool
	// schedulableAtRelease records whether the node was uncordoned before release.
	schedulableAtRelease bool
}

func newHarness(t *testing.T, unschedulable bool) *harness {
	h := &harness{
		t:           t,
		clock:       clocktesting.NewFakeClock(time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC)),
		recorder:    record.NewFakeRecorder(100),
		rebootWorks: true,
		gateOpen:    []bool{true},
	}
	h.client = fake.NewClientset(&corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{"keep": "me"}},
		Spec:       corev1.NodeSpec{Unschedulable: unschedulable, Taints: []corev1.Taint{{Key: "other", Effect: corev1.TaintEffectNoSchedule}}},
		Status: corev1.NodeStatus{
			NodeInfo:   corev1.NodeSystemInfo{BootID: "boot-1"},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	})
	return h
}

func (h *harness) node() *corev1.Node {
	n, err := h.client.CoreV1().Nodes().Get(context.Background(), nodeName, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

func (h *harness) note(s string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.log = append(h.log, s)
}

func (h *harness) Drain(context.Context, string) error { h.note("drain"); return h.drainErr }

func (h *harness) Reboot(ctx context.Context) error {
	h.note("reboot")
	h.reboots++
	if h.rebootWorks {
		n := h.node()
		n.Status.NodeInfo.BootID = "boot-2"
		_, err := h.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	}
	return nil
}

func (h *harness) String() string { return "fake" }

func (h *harness) Name() string { return "rebootgate-default-0" }

func (h *harness) Release(context.Context) error {
	h.note("release")
	h.released = true
	h.schedulableAtRelease = !h.node().Spec.Unschedulable
	return nil
}

func (h *harness) pipeline(mutate func(*Config)) *Pipeline {
	cfg := Config{
		Client:   h.client,
		NodeName: nodeName,
		Node: func() (*corev1.Node, error) {
			return h.client.CoreV1().Nodes().Get(context.Background(), nodeName, metav1.GetOptions{})
		},
		Clock:    h.clock,
		Recorder: h.recorder,
		Drainer:  h,
		Rebooter: h,
		Gate: func(context.Context) decision.Decision {
			i := min(h.gateCalls, len(h.gateOpen)-1)
			h.gateCalls++
			if h.gateOpen[i] {
				return decision.Decision{Allowed: true}
			}
			return decision.Decision{Reasons: []decision.Reason{{Source: "policy", Message: "window closed"}}}
		},
		PreRebootLabels:       map[string]string{"rebootgate.io/rebooting": "true"},
		PostRebootLabels:      map[string]string{"rebootgate.io/rebooted": "true"},
		PreferNoScheduleTaint: "rebootgate.io/reboot-pending",
		RebootTimeout:         time.Minute,
		RebootAttempts:        2,
		Soak:                  30 * time.Second,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

// run runs the pipeline while stepping the fake clock whenever it waits.
func (h *harness) run(p *Pipeline, slot Slot) (Outcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
				if h.clock.HasWaiters() {
					h.clock.Step(time.Second)
				}
			}
		}
	}()
	defer close(done)
	return p.Run(ctx, slot)
}

func (h *harness) events() string {
	var out []string
	for {
		select {
		case e := <-h.recorder.Events:
			out = append(out, strings.Fields(e)[1])
		default:
			return strings.Join(out, ",")
		}
	}
}

func TestHappyPath(t *testing.T) {
	h := newHarness(t, false)
	out, err := h.run(h.pipeline(nil), h)
	if err != nil || out != OutcomeRebooted {
		t.Fatalf("outcome %q, err %v", out, err)
	}
	n := h.node()
	if n.Spec.Unschedulable {
		t.Error("node left cordoned")
	}
	if !h.released || !h.schedulableAtRelease {
		t.Errorf("released %v, uncordoned before release %v", h.released, h.schedulableAtRelease)
	}
	for _, k := range []string{AnnotationPhase, AnnotationBootIDBefore, AnnotationCordonedByUs, AnnotationSlot} {
		if v, ok := n.Annotations[k]; ok {
			t.Errorf("annotation %s=%q left behind", k, v)
		}
	}
	if n.Annotations[AnnotationLastReboot] == "" {
		t.Error("last-reboot not recorded")
	}
	if n.Labels["rebootgate.io/rebooting"] != "" || n.Labels["rebootgate.io/rebooted"] != "true" || n.Labels["keep"] != "me" {
		t.Errorf("labels = %v", n.Labels)
	}
	if len(n.Spec.Taints) != 1 || n.Spec.Taints[0].Key != "other" {
		t.Errorf("taints = %v", n.Spec.Taints)
	}
	if got := strings.Join(h.log, ","); got != "drain,reboot,release" {
		t.Errorf("steps = %s", got)
	}
	if got := h.events(); got != "Cordoned,Draining,Rebooting,Rebooted,Uncordoned" {
		t.Errorf("events = %s", got)
	}
}

func TestAdminCordonedNodeStaysCordoned(t *testing.T) {
	h := newHarness(t, true)
	out, err := h.run(h.pipeline(nil), h)
	if err != nil || out != OutcomeRebooted {
		t.Fatalf("outcome %q, err %v", out, err)
	}
	if !h.node().Spec.Unschedulable {
		t.Error("an admin's cordon was undone")
	}
}

func TestDrainFailureUncordonsBeforeRelease(t *testing.T) {
	h := newHarness(t, false)
	h.drainErr = &DrainError{Node: nodeName, Attempts: 3, BlockedByPDB: true, Err: errors.New("evicting pod a/b: Too Many Requests")}
	out, err := h.run(h.pipeline(nil), h)
	if err != nil || out != OutcomeDrainFailed {
		t.Fatalf("outcome %q, err %v", out, err)
	}
	if !h.released || !h.schedulableAtRelease {
		t.Errorf("released %v, uncordoned before release %v", h.released, h.schedulableAtRelease)
	}
	if h.reboots != 0 {
		t.Error("rebooted after a failed drain")
	}
	n := h.node()
	if _, ok := n.Annotations[AnnotationPhase]; ok || len(n.Spec.Taints) != 1 || n.Labels["rebootgate.io/rebooting"] != "" {
		t.Errorf("not undone: annotations %v taints %v labels %v", n.Annotations, n.Spec.Taints, n.Labels)
	}
	if ev := h.events(); !strings.Contains(ev, "DrainFailed") {
		t.Errorf("events = %s", ev)
	}
}

func TestForceRebootRebootsDespiteDrainFailure(t *testing.T) {
	h := newHarness(t, false)
	h.drainErr = errors.New("timeout")
	out, err := h.run(h.pipeline(func(c *Config) { c.ForceReboot = true }), h)
	if err != nil || out != OutcomeRebooted || h.reboots != 1 {
		t.Fatalf("outcome %q, err %v, reboots %d", out, err, h.reboots)
	}
}

func TestGateClosingBeforeRebootUndoes(t *testing.T) {
	h := newHarness(t, false)
	h.gateOpen = []bool{true, false} // open when the slot is taken, closed right before the reboot
	out, err := h.run(h.pipeline(nil), h)
	if err != nil || out != OutcomeDenied {
		t.Fatalf("outcome %q, err %v", out, err)
	}
	if h.reboots != 0 || !h.schedulableAtRelease {
		t.Errorf("reboots %d, uncordoned before release %v", h.reboots, h.schedulableAtRelease)
	}
}

func TestGateClosedAtStartReleasesOnly(t *testing.T) {
	h := newHarness(t, false)
	h.gateOpen = []bool{false}
	out, err := h.run(h.pipeline(nil), h)
	if err != nil || out != OutcomeDenied || !h.released || len(h.log) != 1 {
		t.Fatalf("outcome %q, err %v, steps %v", out, err, h.log)
	}
	if _, ok := h.node().Annotations[AnnotationPhase]; ok {
		t.Error("state written for a denied run")
	}
}

func TestResumeAfterRebootVerifiesAndFinishes(t *testing.T) {
	h := newHarness(t, false)
	// The agent was killed by the reboot: the node carries phase Rebooting, the old
	// boot ID and our cordon; the host came back with a new boot ID.
	n := h.node()
	n.Spec.Unschedulable = true
	n.Annotations = map[string]string{AnnotationPhase: "Rebooting", AnnotationBootIDBefore: "boot-0", AnnotationCordonedByUs: "true", AnnotationSlot: "rebootgate-default-0", AnnotationAttempts: "1"}
	if _, err := h.client.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err := h.run(h.pipeline(nil), h)
	if err != nil || out != OutcomeRebooted || h.reboots != 0 {
		t.Fatalf("outcome %q, err %v, reboots %d", out, err, h.reboots)
	}
	if h.node().Spec.Unschedulable || !h.schedulableAtRelease {
		t.Error("not uncordoned before release")
	}
}

func TestResumeWithoutSlotBeforeRebootUndoes(t *testing.T) {
	h := newHarness(t, false)
	n := h.node()
	n.Spec.Unschedulable = true
	n.Annotations = map[string]string{AnnotationPhase: "Draining", AnnotationCordonedByUs: "true"}
	if _, err := h.client.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err := h.run(h.pipeline(nil), nil)
	if err != nil || out != OutcomeNoSlot {
		t.Fatalf("outcome %q, err %v", out, err)
	}
	if h.node().Spec.Unschedulable || len(h.log) != 0 {
		t.Errorf("unschedulable %v, steps %v", h.node().Spec.Unschedulable, h.log)
	}
}

func TestRebootThatNeverHappensGivesUp(t *testing.T) {
	h := newHarness(t, false)
	h.rebootWorks = false
	out, err := h.run(h.pipeline(nil), h)
	if err != nil || out != OutcomeGaveUp {
		t.Fatalf("outcome %q, err %v", out, err)
	}
	if h.reboots != 2 || h.node().Spec.Unschedulable || !h.schedulableAtRelease {
		t.Errorf("reboots %d (want 2), unschedulable %v", h.reboots, h.node().Spec.Unschedulable)
	}
	if ev := h.events(); strings.Count(ev, "RebootNotObserved") != 2 || !strings.Contains(ev, "RebootFailed") {
		t.Errorf("events = %s", ev)
	}
}

func TestHealthGateAndLoopSuspicion(t *testing.T) {
	h := newHarness(t, false)
	checks := 0
	out, err := h.run(h.pipeline(func(c *Config) {
		c.HealthGate = func(context.Context) (bool, string) {
			checks++
			return checks > 3, "2 nodes of pool default are not Ready"
		}
		c.RebootRequired = func(context.Context) (bool, error) { return true, nil }
	}), h)
	if err != nil || out != OutcomeRebooted {
		t.Fatalf("outcome %q, err %v", out, err)
	}
	ev := h.events()
	if strings.Count(ev, "HealthGateWaiting") != 1 || !strings.Contains(ev, "RebootLoopSuspected") {
		t.Errorf("events = %s (one HealthGateWaiting for an unchanged reason, and a loop warning)", ev)
	}
}
