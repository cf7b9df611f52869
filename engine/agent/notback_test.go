package agent

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/rebootgate/rebootgate/engine/agent/nodeops"
	"github.com/rebootgate/rebootgate/engine/lock"
	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/engine/notify"
)

// notBackBed is a waiter's agent (n1) on a fake API and a fake clock, with node h1
// mid-reboot since t0 holding slot 0 of pool default, its Lease last renewed at t0.
type notBackBed struct {
	t        *testing.T
	a        *Agent
	client   *fake.Clientset
	clk      *clocktesting.FakeClock
	events   *record.FakeRecorder
	notified *notifications
	t0       time.Time
	lease    string
}

// notifications records what the agent sent.
type notifications struct {
	mu  sync.Mutex
	got []notify.Event
}

func (n *notifications) Notify(_ context.Context, ev notify.Event) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.got = append(n.got, ev)
	return nil
}

func (n *notifications) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.got)
}

const (
	notBackRebootTimeout = 10 * time.Minute
	notBackReadyTimeout  = 5 * time.Minute
)

func newNotBackBed(t *testing.T) *notBackBed {
	t.Helper()
	b := &notBackBed{t: t, t0: time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC), lease: lock.SlotLeaseName("default", 0)}
	b.client = fake.NewClientset(fakeNode("n1", "boot-1"), b.holderNode(nodestate.PhaseRebooting, b.t0), slotLease(b.lease, "h1", b.t0))
	a, err := New(Config{
		NodeName: "n1", Namespace: "rebootgate", SentinelPath: filepath.Join(t.TempDir(), "reboot-required"),
		RebootTimeout: notBackRebootTimeout, ReadyTimeout: notBackReadyTimeout, RecheckInterval: time.Minute,
	}, b.client, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	// The clock, the Event recorder and the notifier are the test's, before the
	// semaphore and the watch are made with them.
	b.clk = clocktesting.NewFakeClock(b.t0.Add(time.Minute))
	b.events, b.notified = record.NewFakeRecorder(100), &notifications{}
	a.clock, a.recorder, a.notifier = b.clk, b.events, b.notified
	a.notBacks = newNotBackWatch(b.client, "rebootgate", b.clk, a.cfg.RebootTimeout+a.cfg.ReadyTimeout, a.cfg.RecheckInterval, a.notBack, a.holderBack)
	b.a = a
	return b
}

// holderNode is h1 in phase since.
func (b *notBackBed) holderNode(phase nodestate.Phase, since time.Time) *corev1.Node {
	n := fakeNode("h1", "boot-h1")
	n.Annotations = map[string]string{nodestate.AnnotationPhase: string(phase), nodestate.AnnotationPhaseSince: since.Format(time.RFC3339)}
	return n
}

// seeStuck lets n1's semaphore of pool default see h1's Lease expire while h1 is
// mid-reboot (as a waiter's Acquire does): the lock reports h1 stuck.
func (b *notBackBed) seeStuck() {
	b.t.Helper()
	sem, err := b.a.semaphore("default", "")
	if err != nil {
		b.t.Fatal(err)
	}
	ctx := context.Background()
	if _, ok, err := sem.TryAcquire(ctx, 1); err != nil || ok {
		b.t.Fatalf("first look: took=%v err=%v, want the slot busy", ok, err)
	}
	b.clk.Step(lock.DefaultTTL + lock.DefaultSkew + time.Second) // expired, judged on n1's clock
	if _, ok, err := sem.TryAcquire(ctx, 1); err != nil || ok {
		b.t.Fatalf("look after the expiry: took=%v err=%v, want the slot kept (h1 is mid-reboot)", ok, err)
	}
	b.a.notBacks.check(ctx)
}

// notBackMetric is rebootgate_holder_not_back{pool=default,holder=h1} as the agent's
// registry serves it, and whether the series exists.
func (b *notBackBed) notBackMetric() (float64, bool) {
	b.t.Helper()
	families, err := b.a.registry.Gather()
	if err != nil {
		b.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "rebootgate_holder_not_back" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["pool"] == "default" && labels["holder"] == "h1" {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

// reports counts the NodeNotBack Events and the notifications sent.
func (b *notBackBed) reports() (events, notifications int) {
	for {
		select {
		case e := <-b.events.Events:
			if strings.HasPrefix(e, corev1.EventTypeWarning+" "+nodeops.ReasonNodeNotBack+" ") {
				events++
			}
		default:
			return events, b.notified.count()
		}
	}
}

// at sets the clock to t0+d and lets the watch check.
func (b *notBackBed) at(d time.Duration) {
	b.clk.SetTime(b.t0.Add(d))
	b.a.notBacks.check(context.Background())
}

// TestNotBackOnlyAfterRebootAndReadyTimeouts (issue 18, 6): a waiter sees a slot
// holder's Lease expire about two minutes into its reboot, which is normal; it reports
// the holder as not back (Events on its Node and Lease, one notification,
// rebootgate_holder_not_back=1) only once the holder's phase is older than
// --reboot-timeout + --ready-timeout, once however often it looks, and clears the
// metric when the holder is back.
func TestNotBackOnlyAfterRebootAndReadyTimeouts(t *testing.T) {
	b := newNotBackBed(t)
	b.seeStuck()
	due := notBackRebootTimeout + notBackReadyTimeout
	if v, ok := b.notBackMetric(); ok {
		t.Fatalf("%s into h1's reboot, when its Lease expired: rebootgate_holder_not_back = %v, want no series before %s", b.clk.Now().Sub(b.t0), v, due)
	}
	if ev, n := b.reports(); ev != 0 || n != 0 {
		t.Fatalf("when h1's Lease expired: %d NodeNotBack events and %d notifications, want none", ev, n)
	}
	b.at(due - time.Second)
	if v, ok := b.notBackMetric(); ok {
		t.Fatalf("a second before %s: rebootgate_holder_not_back = %v, want no series", due, v)
	}
	b.at(due)
	if v, ok := b.notBackMetric(); !ok || v != 1 {
		t.Fatalf("at %s: rebootgate_holder_not_back = %v (series %v), want 1", due, v, ok)
	}
	b.at(due + time.Minute)
	b.seeStuck() // the lock reporting it again (another Acquire) changes nothing
	b.at(due + 5*time.Minute)
	if ev, n := b.reports(); ev != 2 || n != 1 {
		t.Errorf("%d NodeNotBack events and %d notifications, want 2 (h1's Node and its Lease) and 1: once per holding", ev, n)
	}

	// h1 comes back: its agent moves it on to Verifying.
	if _, err := b.client.CoreV1().Nodes().Update(context.Background(), b.holderNode(nodestate.PhaseVerifying, b.t0.Add(due+6*time.Minute)), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	b.at(due + 6*time.Minute)
	if v, ok := b.notBackMetric(); ok {
		t.Errorf("after h1 came back: rebootgate_holder_not_back = %v, want the series gone", v)
	}
}

// TestNotBackClearedWhenSlotChangesHands (issue 18, 6): the report of a holder that is
// not back is withdrawn once its slot's Lease names another holder.
func TestNotBackClearedWhenSlotChangesHands(t *testing.T) {
	b := newNotBackBed(t)
	b.seeStuck()
	due := notBackRebootTimeout + notBackReadyTimeout
	b.at(due)
	if v, ok := b.notBackMetric(); !ok || v != 1 {
		t.Fatalf("at %s: rebootgate_holder_not_back = %v (series %v), want 1", due, v, ok)
	}
	ctx := context.Background()
	l, err := b.client.CoordinationV1().Leases("rebootgate").Get(ctx, b.lease, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other := "h2"
	l.Spec.HolderIdentity = &other
	if _, err := b.client.CoordinationV1().Leases("rebootgate").Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	b.at(due + time.Minute)
	if v, ok := b.notBackMetric(); ok {
		t.Errorf("after the slot went to h2: rebootgate_holder_not_back{node=h1} = %v, want the series gone", v)
	}
}

// slotLease is a slot Lease of pool default in namespace rebootgate held by holder,
// last renewed at renew, for the default TTL.
func slotLease(name, holder string, renew time.Time) *coordinationv1.Lease {
	at, ttl := metav1.NewMicroTime(renew), int32(lock.DefaultTTL/time.Second)
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "rebootgate", Labels: map[string]string{lock.LabelPool: "default"}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, RenewTime: &at, AcquireTime: &at, LeaseDurationSeconds: &ttl},
	}
}
