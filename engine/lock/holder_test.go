package lock

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// step advances a waiter's clock and waits until the waiter has acted on it:
// it either armed its next timer (a timer not yet due simply stays armed) or
// its Acquire returned, which fails the test.
func step(t *testing.T, clk *testingclock.FakeClock, d time.Duration, ch <-chan acquireResult) {
	t.Helper()
	clk.Step(d)
	eventually(t, "the waiter to arm its next timer", func() bool { return clk.HasWaiters() || len(ch) > 0 })
	if len(ch) > 0 {
		t.Fatalf("waiter acquired %v after the holder was first seen", clk.Now().Sub(t0))
	}
}

// observedVersion is the version of lease that s has recorded seeing.
func observedVersion(s *Semaphore, lease string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.observed[lease].version
}

// countNodeGets counts the GETs of Nodes made through cs.
func countNodeGets(cs interface {
	PrependReactor(verb, resource string, fn k8stesting.ReactionFunc)
}) *atomic.Int32 {
	var n atomic.Int32
	cs.PrependReactor("get", "nodes", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
		n.Add(1)
		return false, nil, nil
	})
	return &n
}

type stuckCall struct {
	lease, holder string
	since         time.Time
}

// stuckRecorder records OnStuckHolder calls.
type stuckRecorder struct {
	mu    sync.Mutex
	calls []stuckCall
}

func (r *stuckRecorder) record(lease, holder string, since time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, stuckCall{lease, holder, since})
}

func (r *stuckRecorder) get() []stuckCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]stuckCall(nil), r.calls...)
}

// TestHolderClockLagNotReclaimed: the holder's clock runs an hour behind the
// waiter's, so every renewTime it writes is long past by the waiter's clock.
// It keeps renewing, and the waiter, which judges expiry from when it saw
// each renewal, never takes its slot.
func TestHolderClockLagNotReclaimed(t *testing.T) {
	cs := newClient(t)
	holderClock := testingclock.NewFakeClock(t0.Add(-time.Hour))
	waiterClock := testingclock.NewFakeClock(t0)
	h := mustTry(t, newSem(t, cs, holderClock, "lagging"), 1)
	waiter := newSem(t, cs, waiterClock, "waiter")
	ch := acquireAsync(context.Background(), waiter, fixed(1))
	eventually(t, "waiter to wait", waiterClock.HasWaiters)

	for range 9 { // three TTLs of renewals
		never(t, "took the slot of a holder that keeps renewing", received(ch))
		eventually(t, "renew timer", holderClock.HasWaiters)
		holderClock.Step(testTTL / 3)
		renewedAt := holderClock.Now()
		eventually(t, "renewal", func() bool { return getLease(t, cs, h.Name()).Spec.RenewTime.Time.Equal(renewedAt) })
		rv := getLease(t, cs, h.Name()).ResourceVersion
		eventually(t, "waiter to see the renewal", func() bool { return observedVersion(waiter, h.Name()) == rv })
		step(t, waiterClock, testTTL/3, ch)
	}
	never(t, "took the slot of a holder that keeps renewing", received(ch))
	if got := holderOf(getLease(t, cs, h.Name())); got != "lagging" {
		t.Fatalf("slot holder %q, want the lagging node", got)
	}
	if isClosed(h.Lost()) {
		t.Fatalf("holder lost its slot: %v", h.Err())
	}
	mustRelease(t, h)
	eventually(t, "waiter to take the released slot", received(ch))
	if r := <-ch; r.err != nil {
		t.Fatal(r.err)
	} else {
		mustRelease(t, r.held)
	}
}

// TestBusyHolderKeepsSlot: a holder that is mid-reboot (phase annotation set)
// and stopped renewing keeps its slot for hours past its Lease's expiry; the
// waiter reports it as stuck once, re-checks it at most once per TTL, and
// takes the slot only when the holder turns idle without releasing (say its
// agent crashed right after finishing).
func TestBusyHolderKeepsSlot(t *testing.T) {
	phaseSince := t0.Add(-10 * time.Minute)
	cs := newClient(t, rebootingNode("rebooting", phaseSince))
	gets := countNodeGets(cs)
	clk := testingclock.NewFakeClock(t0)
	lease := SlotLeaseName(testPool, 0)
	putLease(t, cs, lease, "rebooting", t0, testTTL)
	var stuck stuckRecorder
	waiter := newSem(t, cs, clk, "waiter", func(c *Config) {
		c.HolderStatus = nil // the default: a GET of the Node
		c.OnStuckHolder = stuck.record
	})
	ch := acquireAsync(context.Background(), waiter, fixed(1))
	eventually(t, "waiter to wait", clk.HasWaiters)
	step(t, clk, testTTL/2, ch)             // suspect: holder checked, exists
	step(t, clk, testTTL/2+DefaultSkew, ch) // expired: checked again, busy
	const hours = 5
	for range hours * time.Hour / testTTL {
		step(t, clk, testTTL, ch)
	}
	never(t, "took the slot of a holder that is mid-reboot", received(ch))

	calls := stuck.get()
	if len(calls) != 1 {
		t.Fatalf("OnStuckHolder called %d times over %dh, want once: %+v", len(calls), hours, calls)
	}
	if c := calls[0]; c.lease != lease || c.holder != "rebooting" || !c.since.Equal(phaseSince) {
		t.Errorf("OnStuckHolder(%q, %q, %v), want (%q, %q, %v)", c.lease, c.holder, c.since, lease, "rebooting", phaseSince)
	}
	// One GET when suspect, one at expiry, then one per TTL.
	if max := int32(2 + hours*time.Hour/testTTL); gets.Load() > max {
		t.Errorf("%d Node GETs over %dh, want at most %d (one per TTL)", gets.Load(), hours, max)
	}

	n := rebootingNode("rebooting", phaseSince)
	n.Annotations = nil // finished its reboot, then its agent died before releasing
	if _, err := cs.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	clk.Step(testTTL)
	eventually(t, "waiter to take the slot of the idle holder", received(ch))
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.held.Name() != lease {
		t.Errorf("took %s, want %s", r.held.Name(), lease)
	}
	mustRelease(t, r.held)
}

// TestBusyHolderDeletedReclaimed: a holder that is mid-reboot keeps its slot
// until its Node is deleted; the waiter notices at its next check, within a
// TTL, and takes the slot.
func TestBusyHolderDeletedReclaimed(t *testing.T) {
	cs := newClient(t, rebootingNode("rebooting", t0))
	clk := testingclock.NewFakeClock(t0)
	putLease(t, cs, SlotLeaseName(testPool, 0), "rebooting", t0, testTTL)
	waiter := newSem(t, cs, clk, "waiter", func(c *Config) { c.HolderStatus = nil })
	ch := acquireAsync(context.Background(), waiter, fixed(1))
	eventually(t, "waiter to wait", clk.HasWaiters)
	step(t, clk, testTTL/2, ch)
	step(t, clk, testTTL/2+DefaultSkew, ch)
	step(t, clk, time.Hour, ch)
	never(t, "took the slot of a holder that is mid-reboot", received(ch))
	if err := cs.CoreV1().Nodes().Delete(context.Background(), "rebooting", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	clk.Step(testTTL)
	eventually(t, "waiter to take the slot of the deleted holder", received(ch))
	if r := <-ch; r.err != nil {
		t.Fatal(r.err)
	} else {
		mustRelease(t, r.held)
	}
}

// TestOnStuckHolderOncePerHolding: repeated attempts report one stuck holding
// once; the same holder stuck again on a new acquisition is reported again.
func TestOnStuckHolderOncePerHolding(t *testing.T) {
	cs := newClient(t)
	clk := testingclock.NewFakeClock(t0)
	lease := SlotLeaseName(testPool, 0)
	putLease(t, cs, lease, "rebooting", t0, testTTL)
	var stuck stuckRecorder
	waiter := newSem(t, cs, clk, "waiter", func(c *Config) {
		c.HolderStatus = func(context.Context, string) (nodestate.HolderStatus, error) {
			return nodestate.HolderStatus{Exists: true, Busy: true}, nil // no phase-since: the report falls back to renewTime
		}
		c.OnStuckHolder = stuck.record
	})
	try := func() {
		t.Helper()
		if _, ok, err := waiter.TryAcquire(context.Background(), 1); ok || err != nil {
			t.Fatalf("TryAcquire: ok=%v err=%v, want not ok", ok, err)
		}
	}
	try() // first sight
	clk.Step(testTTL + DefaultSkew)
	for range 3 {
		try()
		clk.Step(testTTL)
	}
	if calls := stuck.get(); len(calls) != 1 || !calls[0].since.Equal(t0) {
		t.Fatalf("OnStuckHolder calls %+v, want one with since = the lease's renewTime %v", calls, t0)
	}

	// The holder came back, released, and took the slot again later; then
	// it got stuck again.
	l := getLease(t, cs, lease)
	reacquired := metav1.NewMicroTime(clk.Now())
	l.Spec.AcquireTime, l.Spec.RenewTime = &reacquired, &reacquired
	if _, err := cs.CoordinationV1().Leases(testNS).Update(context.Background(), l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	try() // first sight of the new version
	clk.Step(testTTL + DefaultSkew)
	try()
	try()
	if calls := stuck.get(); len(calls) != 2 {
		t.Fatalf("OnStuckHolder calls %+v, want a second one for the new holding", calls)
	}
}

// TestObservationsForgetGoneLeases: the Semaphore's record of when it saw
// each Lease holds only the pool's current foreign-held Leases.
func TestObservationsForgetGoneLeases(t *testing.T) {
	cs := newClient(t)
	clk := testingclock.NewFakeClock(t0)
	for i, holder := range []string{"a", "b", "c"} {
		putLease(t, cs, SlotLeaseName(testPool, i), holder, t0, testTTL)
	}
	s := newSem(t, cs, clk, "waiter")
	recorded := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.observed)
	}
	if _, ok, err := s.TryAcquire(context.Background(), 3); ok || err != nil {
		t.Fatalf("TryAcquire: ok=%v err=%v, want not ok", ok, err)
	}
	if n := recorded(); n != 3 {
		t.Fatalf("%d Leases recorded, want 3", n)
	}
	if err := cs.CoordinationV1().Leases(testNS).Delete(context.Background(), SlotLeaseName(testPool, 0), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	l := getLease(t, cs, SlotLeaseName(testPool, 1))
	l.Spec.HolderIdentity = nil // released
	if _, err := cs.CoordinationV1().Leases(testNS).Update(context.Background(), l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h := mustTry(t, s, 3) // slot 0 or 1, both free now
	if n := recorded(); n != 1 {
		t.Errorf("%d Leases recorded after one was deleted and one released, want 1 (slot 2)", n)
	}
	mustRelease(t, h)
}
