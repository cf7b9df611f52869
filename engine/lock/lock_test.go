package lock

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/rebootgate/rebootgate/engine/nodestate"
)

func TestNewValidates(t *testing.T) {
	cs := newClient(t)
	ok := Config{Client: cs, Namespace: testNS, Pool: testPool, Holder: "n1"}
	for _, tc := range []struct {
		field string
		mut   func(*Config)
	}{
		{"Client", func(c *Config) { c.Client = nil }},
		{"Namespace", func(c *Config) { c.Namespace = "" }},
		{"Namespace", func(c *Config) { c.Namespace = "Bad_NS" }},
		{"Pool", func(c *Config) { c.Pool = "" }},
		{"Pool", func(c *Config) { c.Pool = "no spaces" }},
		{"Pool", func(c *Config) { c.Pool = strings.Repeat("p", 63) + "x" }},
		{"Holder", func(c *Config) { c.Holder = "" }},
		{"TTL", func(c *Config) { c.TTL = time.Millisecond }},
		{"Skew", func(c *Config) { c.TTL = 10 * time.Second; c.Skew = 5 * time.Second }},
		{"SlotsPerKey", func(c *Config) { c.SlotsPerKey = -1 }},
	} {
		cfg := ok
		tc.mut(&cfg)
		_, err := New(cfg)
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: got error %v, want one naming the field", tc.field, err)
		}
	}
	s, err := New(ok)
	if err != nil {
		t.Fatalf("New(valid): %v", err)
	}
	if s.ttl != DefaultTTL || s.jitter != DefaultJitter || s.skew != DefaultSkew || s.slotValue != "" || s.slotsPerKey != 1 {
		t.Errorf("defaults not applied: ttl=%v jitter=%v skew=%v value=%q perKey=%d", s.ttl, s.jitter, s.skew, s.slotValue, s.slotsPerKey)
	}
}

// TestTryAcquireRace: many nodes race for 2 slots of an empty pool at the
// same instant; the API server's optimistic concurrency lets exactly 2 win.
func TestTryAcquireRace(t *testing.T) {
	t.Run("empty pool (creates)", func(t *testing.T) { testTryAcquireRace(t, false) })
	t.Run("free leases (guarded updates)", func(t *testing.T) { testTryAcquireRace(t, true) })
}

func testTryAcquireRace(t *testing.T, existing bool) {
	cs := newClient(t)
	clk := testingclock.NewFakeClock(t0)
	if existing {
		for i := range 2 {
			mustRelease(t, mustTry(t, newSem(t, cs, clk, fmt.Sprintf("earlier-%d", i)), 2))
		}
	}
	const nodes = 16
	// Hold every List until all nodes have listed, so that they all plan on
	// the same snapshot and really collide on the writes. (A reactor cannot
	// do this: the fake runs reactors under one lock.)
	barrier := &listBarrier{n: nodes, all: make(chan struct{})}
	client := &barrierClient{Clientset: cs, barrier: barrier}
	var wins atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range nodes {
		s := newSem(t, cs, clk, fmt.Sprintf("node-%d", i), func(c *Config) { c.Client = client })
		wg.Go(func() {
			<-start
			_, ok, err := s.TryAcquire(context.Background(), 2)
			if err != nil {
				t.Errorf("TryAcquire: %v", err)
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if got := wins.Load(); got != 2 {
		t.Fatalf("%d nodes got a slot, want exactly 2", got)
	}
	if got := heldCount(t, cs); got != 2 {
		t.Fatalf("%d slots held according to the API, want 2", got)
	}
}

// TestNeverMoreThanSlots: nodes loop Acquire → work → Release concurrently;
// at no time do more than 2 of them believe they hold a slot, and no slot is
// believed held by two. Their clocks lag each other by up to 90 minutes, so a
// waiter that judged expiry by the holder's renewTime would take live slots
// and the count of believers would exceed the limit. (Counting holders in
// the API could not catch that: with a fixed slot count there are never more
// slot Leases than slots.)
func TestNeverMoreThanSlots(t *testing.T) {
	cs := newClient(t)
	const (
		nodes  = 10
		rounds = 3
		slots  = 2
	)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var occ occupancy
	var wg sync.WaitGroup
	for i := range nodes {
		// Frozen clocks: only events drive hand-offs.
		clk := testingclock.NewFakeClock(t0.Add(-time.Duration(i) * 10 * time.Minute))
		s := newSem(t, cs, clk, fmt.Sprintf("node-%d", i))
		wg.Go(func() {
			for range rounds {
				h, err := s.Acquire(ctx, fixed(slots))
				if err != nil {
					t.Errorf("%s: Acquire: %v", s.holder, err)
					return
				}
				if err := occ.enter(s.holder, h.Name(), slots); err != nil {
					t.Error(err)
				}
				// The API agrees, for as long as the node holds.
				for range 3 {
					runtime.Gosched()
					if got := holderOf(getLease(t, cs, h.Name())); got != s.holder {
						t.Errorf("%s holds %s but the API says %q", s.holder, h.Name(), got)
					}
				}
				occ.leave(s.holder, h.Name())
				if err := h.Release(ctx); err != nil {
					t.Errorf("%s: Release: %v", s.holder, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if m := occ.maxHolders(); m > slots || m < 1 {
		t.Fatalf("max concurrent holders %d, want 1..%d", m, slots)
	}
	if got := heldCount(t, cs); got != 0 {
		t.Fatalf("%d slots still held after everyone released", got)
	}
}

// occupancy tracks which node believes it holds which slot.
type occupancy struct {
	mu      sync.Mutex
	holders map[string]string // slot Lease → node
	max     int
}

// enter records that node believes it holds slot, and fails if another node
// believes so too or if more than limit nodes now hold slots.
func (o *occupancy) enter(node, slot string, limit int) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.holders == nil {
		o.holders = map[string]string{}
	}
	if prev, taken := o.holders[slot]; taken {
		o.max = max(o.max, len(o.holders)+1)
		return fmt.Errorf("%s and %s both hold %s", prev, node, slot)
	}
	o.holders[slot] = node
	o.max = max(o.max, len(o.holders))
	if len(o.holders) > limit {
		return fmt.Errorf("%d nodes hold slots at once, limit %d: %v", len(o.holders), limit, o.holders)
	}
	return nil
}

// leave records that node no longer holds slot.
func (o *occupancy) leave(node, slot string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.holders[slot] == node {
		delete(o.holders, slot)
	}
}

func (o *occupancy) maxHolders() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.max
}

// TestReleaseWakesWaiter: the waiter is woken by the watch, not by a timer:
// its fake clock never moves, and while it waits it has exactly one timer
// (for the holder's suspect/expiry instant), no polling ticker.
func TestReleaseWakesWaiter(t *testing.T) {
	cs := newClient(t)
	holderClock := testingclock.NewFakeClock(t0)
	waiterClock := testingclock.NewFakeClock(t0)
	a := newSem(t, cs, holderClock, "node-a")
	b := newSem(t, cs, waiterClock, "node-b")
	h := mustTry(t, a, 1)

	ch := acquireAsync(context.Background(), b, fixed(1))
	eventually(t, "waiter to wait", waiterClock.HasWaiters)
	never(t, "acquired a busy slot", received(ch))
	if n := waiterClock.Waiters(); n != 1 {
		t.Fatalf("waiter has %d timers, want 1 (the expiry timer)", n)
	}

	start := time.Now()
	mustRelease(t, h)
	eventually(t, "waiter to take the freed slot", received(ch))
	r := <-ch
	if r.err != nil {
		t.Fatalf("Acquire: %v", r.err)
	}
	t.Logf("hand-off latency (fake client, no jitter): %v", time.Since(start))
	if r.held.Name() != SlotLeaseName(testPool, 0) {
		t.Errorf("got %s", r.held.Name())
	}
	if l := getLease(t, cs, r.held.Name()); holderOf(l) != "node-b" || ptrValue(l.Spec.LeaseTransitions) != 2 {
		t.Errorf("lease holder %q transitions %d, want node-b and 2", holderOf(l), ptrValue(l.Spec.LeaseTransitions))
	}
	mustRelease(t, r.held)
}

// TestJitterDelaysAttempt: a waiter that could not queue (its ticket was
// refused) races unqueued, so it does not write before its jitter timer fires.
func TestJitterDelaysAttempt(t *testing.T) {
	cs := newClient(t)
	cs.PrependReactor("create", "leases", func(a k8stesting.Action) (bool, k8sruntime.Object, error) {
		if isTicketLease(testPool, a.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease).Name) {
			return true, nil, apierrors.NewForbidden(coordinationv1.Resource("leases"), "ticket", errors.New("quota"))
		}
		return false, nil, nil
	})
	holderClock := testingclock.NewFakeClock(t0)
	waiterClock := testingclock.NewFakeClock(t0)
	a := newSem(t, cs, holderClock, "node-a")
	b := newSem(t, cs, waiterClock, "node-b", func(c *Config) { c.Jitter = 500 * time.Millisecond })
	h := mustTry(t, a, 1)
	ch := acquireAsync(context.Background(), b, fixed(1))
	eventually(t, "waiter to wait", waiterClock.HasWaiters)
	mustRelease(t, h)
	// The expiry timer is replaced by the jitter timer once the event lands.
	eventually(t, "jitter timer", func() bool {
		l := getLease(t, cs, SlotLeaseName(testPool, 0))
		return holderOf(l) == "" && waiterClock.Waiters() == 1 && len(ch) == 0
	})
	never(t, "acquired before the jitter elapsed", received(ch))
	waiterClock.Step(500 * time.Millisecond)
	eventually(t, "acquire after the jitter", received(ch))
	if r := <-ch; r.err != nil {
		t.Fatal(r.err)
	} else {
		mustRelease(t, r.held)
	}
}

// TestExpiredLeaseTakenOver: a lease whose holder stopped renewing (node
// still exists, idle) is taken over only once TTL+skew have passed since the
// waiter first saw it, and its holder is asked about again at expiry.
func TestExpiredLeaseTakenOver(t *testing.T) {
	cs := newClient(t)
	clk := testingclock.NewFakeClock(t0)
	putLease(t, cs, SlotLeaseName(testPool, 0), "stuck", t0, testTTL)
	var checks atomic.Int32
	b := newSem(t, cs, clk, "node-b", func(c *Config) {
		c.HolderStatus = func(context.Context, string) (nodestate.HolderStatus, error) {
			checks.Add(1)
			return nodestate.HolderStatus{Exists: true}, nil
		}
	})
	ch := acquireAsync(context.Background(), b, fixed(1))
	eventually(t, "suspect timer", clk.HasWaiters)
	clk.Step(testTTL / 2) // missed renewals: node checked, exists
	eventually(t, "expiry timer", clk.HasWaiters)
	if checks.Load() != 1 {
		t.Fatalf("node existence checked %d times, want 1", checks.Load())
	}
	clk.Step(testTTL/2 + DefaultSkew - time.Millisecond) // not past the skew allowance
	eventually(t, "expiry timer re-armed", clk.HasWaiters)
	never(t, "took over within the skew allowance", received(ch))
	clk.Step(time.Millisecond)
	eventually(t, "take-over", received(ch))
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	if checks.Load() != 2 {
		t.Errorf("holder checked %d times, want 2 (suspect, then expired)", checks.Load())
	}
	l := getLease(t, cs, r.held.Name())
	if holderOf(l) != "node-b" || ptrValue(l.Spec.LeaseTransitions) != 2 || !l.Spec.AcquireTime.Time.Equal(clk.Now()) {
		t.Errorf("lease after take-over: holder %q transitions %d acquired %v", holderOf(l), ptrValue(l.Spec.LeaseTransitions), l.Spec.AcquireTime)
	}
	mustRelease(t, r.held)
}

// TestDeletedNodeLeaseReclaimed: a lease held by a node that no longer exists
// is reclaimed as soon as its holder has missed a renewal, long before its
// TTL. The default HolderStatus (a GET of the Node) is used.
func TestDeletedNodeLeaseReclaimed(t *testing.T) {
	t.Run("fresh lease, after a missed renewal", func(t *testing.T) {
		cs := newClient(t, node("node-b"))
		clk := testingclock.NewFakeClock(t0)
		putLease(t, cs, SlotLeaseName(testPool, 0), "deleted-node", t0, testTTL)
		b := newSem(t, cs, clk, "node-b", func(c *Config) { c.HolderStatus = nil })
		ch := acquireAsync(context.Background(), b, fixed(1))
		eventually(t, "suspect timer", clk.HasWaiters)
		never(t, "reclaimed a freshly renewed lease", received(ch))
		clk.Step(testTTL / 2)
		eventually(t, "reclaim", received(ch))
		r := <-ch
		if r.err != nil {
			t.Fatal(r.err)
		}
		if got := clk.Now().Sub(t0); got >= testTTL {
			t.Errorf("reclaimed after %v, want before the TTL %v", got, testTTL)
		}
		mustRelease(t, r.held)
	})
	t.Run("old renewTime, not on first sight", func(t *testing.T) {
		cs := newClient(t, node("node-b"))
		clk := testingclock.NewFakeClock(t0)
		putLease(t, cs, SlotLeaseName(testPool, 0), "deleted-node", t0.Add(-time.Hour), testTTL)
		b := newSem(t, cs, clk, "node-b", func(c *Config) { c.HolderStatus = nil })
		if _, ok, err := b.TryAcquire(context.Background(), 1); ok || err != nil {
			t.Fatalf("TryAcquire on first sight: ok=%v err=%v, want not ok", ok, err)
		}
		clk.Step(testTTL / 2)
		h, ok, err := b.TryAcquire(context.Background(), 1)
		if err != nil || !ok {
			t.Fatalf("TryAcquire after a missed renewal: ok=%v err=%v", ok, err)
		}
		mustRelease(t, h)
	})
	t.Run("holder check error keeps the lease past expiry", func(t *testing.T) {
		cs := newClient(t)
		clk := testingclock.NewFakeClock(t0)
		putLease(t, cs, SlotLeaseName(testPool, 0), "maybe", t0, testTTL)
		b := newSem(t, cs, clk, "node-b", func(c *Config) {
			c.HolderStatus = func(context.Context, string) (nodestate.HolderStatus, error) {
				return nodestate.HolderStatus{}, errors.New("apiserver unavailable")
			}
		})
		for _, step := range []time.Duration{0, testTTL / 2, testTTL, 3 * time.Hour} {
			clk.Step(step)
			if _, ok, err := b.TryAcquire(context.Background(), 1); ok || err != nil {
				t.Fatalf("TryAcquire %v after first sight: ok=%v err=%v, want not ok and no error", clk.Now().Sub(t0), ok, err)
			}
		}
	})
}

// TestResumeAfterRestart: an agent marks its node as rebooting, "reboots"
// (its process and renewals stop for far longer than the TTL), and resumes
// the same slot; meanwhile no other node could take it.
func TestResumeAfterRestart(t *testing.T) {
	cs := newClient(t, rebootingNode("node-a", t0))
	beforeClock := testingclock.NewFakeClock(t0)
	a := newSem(t, cs, beforeClock, "node-a")
	h := mustTry(t, a, 1)
	// The old process is gone; beforeClock never moves again, so it never renews.

	afterClock := testingclock.NewFakeClock(t0.Add(5 * time.Minute))
	other := newSem(t, cs, afterClock, "node-b", func(c *Config) { c.HolderStatus = nil })
	for _, step := range []time.Duration{0, testTTL, 2 * time.Hour} {
		afterClock.Step(step)
		if _, ok, err := other.TryAcquire(context.Background(), 1); ok || err != nil {
			t.Fatalf("another node took the lease of a rebooting node %v after first sight: ok=%v err=%v", afterClock.Now().Sub(t0.Add(5*time.Minute)), ok, err)
		}
	}
	a2 := newSem(t, cs, afterClock, "node-a")
	h2, ok, err := a2.Resume(context.Background())
	if err != nil || !ok {
		t.Fatalf("Resume: ok=%v err=%v", ok, err)
	}
	if h2.Name() != h.Name() {
		t.Errorf("resumed %s, held %s", h2.Name(), h.Name())
	}
	l := getLease(t, cs, h2.Name())
	if *l.Spec.LeaseDurationSeconds != ttlSeconds(testTTL) || !l.Spec.RenewTime.Time.Equal(afterClock.Now()) {
		t.Errorf("after Resume: duration %ds renewed %v, want the normal TTL renewed now", *l.Spec.LeaseDurationSeconds, l.Spec.RenewTime)
	}
	if !l.Spec.AcquireTime.Time.Equal(t0) || ptrValue(l.Spec.LeaseTransitions) != 1 {
		t.Errorf("Resume counted as a new acquisition: acquired %v transitions %d", l.Spec.AcquireTime, ptrValue(l.Spec.LeaseTransitions))
	}
	// Acquire after a restart returns the slot already held, too.
	h3, err := a2.Acquire(context.Background(), fixed(1))
	if err != nil || h3.Name() != h.Name() {
		t.Fatalf("Acquire while holding: %v %v", h3, err)
	}
	h3.stopOnce.Do(func() { close(h3.stop) }) // one Held per slot in real use
	mustRelease(t, h2)
	if _, ok, _ := a2.Resume(context.Background()); ok {
		t.Errorf("Resume after Release found a slot")
	}
	if _, ok, err := other.TryAcquire(context.Background(), 1); !ok || err != nil {
		t.Errorf("slot not free after Release: ok=%v err=%v", ok, err)
	}
}

// TestResumeAfterTakeOver: a lease that expired during the downtime and was
// taken over is not resumed.
func TestResumeAfterTakeOver(t *testing.T) {
	cs := newClient(t)
	a := newSem(t, cs, testingclock.NewFakeClock(t0), "node-a")
	mustTry(t, a, 1)
	later := testingclock.NewFakeClock(t0.Add(time.Hour))
	b := newSem(t, cs, later, "node-b")
	if _, ok, err := b.TryAcquire(context.Background(), 1); ok || err != nil {
		t.Fatalf("took over on first sight: ok=%v err=%v", ok, err)
	}
	later.Step(testTTL + DefaultSkew) // node-a is idle (not rebooting): its expired lease is free game
	hb := mustTry(t, b, 1)
	if _, ok, err := newSem(t, cs, later, "node-a").Resume(context.Background()); ok || err != nil {
		t.Fatalf("Resume of a taken-over slot: ok=%v err=%v", ok, err)
	}
	mustRelease(t, hb)
}

// TestSlotKeyOnePerValue: with 3 slots, two nodes of zone-a can never hold
// slots together, while zone-b proceeds in parallel.
func TestSlotKeyOnePerValue(t *testing.T) {
	cs := newClient(t)
	clk := testingclock.NewFakeClock(t0)
	zone := func(z string) func(*Config) { return func(c *Config) { c.SlotValue = z } }
	a1 := newSem(t, cs, clk, "a1", zone("zone-a"))
	a2 := newSem(t, cs, testingclock.NewFakeClock(t0), "a2", zone("zone-a"))
	b1 := newSem(t, cs, clk, "b1", zone("zone-b"))

	ha1 := mustTry(t, a1, 3)
	hb1 := mustTry(t, b1, 3)
	if _, ok, err := a2.TryAcquire(context.Background(), 3); ok || err != nil {
		t.Fatalf("second zone-a node got a slot: ok=%v err=%v", ok, err)
	}
	key := getLease(t, cs, KeyLeaseName(testPool, "zone-a", 0))
	if holderOf(key) != "a1" || key.Annotations[AnnotationSlotValue] != "zone-a" {
		t.Errorf("zone-a mutex: holder %q annotations %v", holderOf(key), key.Annotations)
	}

	ha2 := acquiredAfter(t, acquireAsync(context.Background(), a2, fixed(3)), ha1, "second zone-a node acquired")
	hs, err := Holders(context.Background(), cs, testNS, testPool)
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]string{}
	for _, h := range hs {
		values[h.Node] = h.SlotValue
	}
	if len(hs) != 2 || values["a2"] != "zone-a" || values["b1"] != "zone-b" {
		t.Errorf("holders %+v", hs)
	}
	mustRelease(t, ha2)
	mustRelease(t, hb1)
}

// TestSlotKeyRace: many nodes of one zone race for plenty of slots; the
// mutex lease lets exactly one through.
func TestSlotKeyRace(t *testing.T) {
	cs := newClient(t)
	clk := testingclock.NewFakeClock(t0)
	var wins atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 12 {
		s := newSem(t, cs, clk, fmt.Sprintf("a%d", i), func(c *Config) { c.SlotValue = "zone-a" })
		wg.Go(func() {
			<-start
			_, ok, err := s.TryAcquire(context.Background(), 10)
			if err != nil {
				t.Errorf("TryAcquire: %v", err)
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if wins.Load() != 1 || heldCount(t, cs) != 1 {
		t.Fatalf("%d zone-a nodes won (API shows %d holders), want 1", wins.Load(), heldCount(t, cs))
	}
}

// TestShrinkingSlots: concurrency drops from 3 to 2 while 3 hold slots. The
// waiter starts only when fewer than 2 remain, and never on slot 2.
func TestShrinkingSlots(t *testing.T) {
	cs := newClient(t)
	clk := testingclock.NewFakeClock(t0)
	var held []*Held
	for _, n := range []string{"a", "b", "c"} {
		held = append(held, mustTry(t, newSem(t, cs, clk, n), 3))
	}
	bySlot := map[int]*Held{}
	for _, h := range held {
		bySlot[h.Index()] = h
	}
	var slots atomic.Int32
	slots.Store(2)
	d := newSem(t, cs, testingclock.NewFakeClock(t0), "d")
	ch := acquireAsync(context.Background(), d, func() int { return int(slots.Load()) })
	mustRelease(t, bySlot[2]) // slot 2 is now free but beyond the limit
	never(t, "acquired while 2 others still hold slots", received(ch))
	mustRelease(t, bySlot[0])
	eventually(t, "acquire once fewer than 2 hold slots", received(ch))
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.held.Index() != 0 {
		t.Errorf("took slot %d, want 0 (slot 2 is beyond the limit)", r.held.Index())
	}
	mustRelease(t, r.held)
	mustRelease(t, bySlot[1])

	// A shrunk pool with only an index >= slots free: nothing to take.
	for _, n := range []string{"e", "f"} {
		mustTry(t, newSem(t, cs, clk, n), 2)
	}
	if _, ok, err := newSem(t, cs, clk, "g").TryAcquire(context.Background(), 2); ok || err != nil {
		t.Errorf("took a slot beyond the limit: ok=%v err=%v", ok, err)
	}
}

// TestZeroSlotsBlocks: a pool resolved to 0 slots (e.g. 0% of a small pool)
// lets nobody in.
func TestZeroSlotsBlocks(t *testing.T) {
	cs := newClient(t)
	s := newSem(t, cs, testingclock.NewFakeClock(t0), "a")
	if _, ok, err := s.TryAcquire(context.Background(), 0); ok || err != nil {
		t.Fatalf("TryAcquire(0): ok=%v err=%v", ok, err)
	}
}

// TestAcquireCancel: cancelling the context ends a wait promptly.
func TestAcquireCancel(t *testing.T) {
	cs := newClient(t)
	clk := testingclock.NewFakeClock(t0)
	h := mustTry(t, newSem(t, cs, clk, "a"), 1)
	ctx, cancel := context.WithCancel(context.Background())
	waiterClock := testingclock.NewFakeClock(t0)
	ch := acquireAsync(ctx, newSem(t, cs, waiterClock, "b"), fixed(1))
	eventually(t, "waiter to wait", waiterClock.HasWaiters)
	start := time.Now()
	cancel()
	eventually(t, "Acquire to return", received(ch))
	r := <-ch
	if !errors.Is(r.err, context.Canceled) || r.held != nil {
		t.Fatalf("got %v, %v; want context.Canceled", r.held, r.err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("returned %v after cancel", d)
	}
	if waiterClock.HasWaiters() {
		t.Errorf("timer left behind after cancel")
	}
	mustRelease(t, h)
}

// TestLost: the Held reports loss when another node takes its lease over,
// when its lease is deleted, and when renewal fails until expiry.
func TestLost(t *testing.T) {
	t.Run("taken over", func(t *testing.T) {
		cs := newClient(t)
		clk := testingclock.NewFakeClock(t0)
		h := mustTry(t, newSem(t, cs, clk, "a"), 1)
		l := getLease(t, cs, h.Name())
		l.Spec.HolderIdentity = ptrTo("intruder")
		if _, err := cs.CoordinationV1().Leases(testNS).Update(context.Background(), l, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "renew timer", clk.HasWaiters)
		clk.Step(testTTL / 3)
		eventually(t, "Lost", func() bool { return isClosed(h.Lost()) })
		if !errors.Is(h.Err(), ErrLost) {
			t.Errorf("Err = %v, want ErrLost", h.Err())
		}
		mustRelease(t, h) // must not clear the intruder's lease
		if got := holderOf(getLease(t, cs, h.Name())); got != "intruder" {
			t.Errorf("Release cleared someone else's lease: holder %q", got)
		}
	})
	t.Run("deleted", func(t *testing.T) {
		cs := newClient(t)
		clk := testingclock.NewFakeClock(t0)
		h := mustTry(t, newSem(t, cs, clk, "a"), 1)
		if err := cs.CoordinationV1().Leases(testNS).Delete(context.Background(), h.Name(), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "renew timer", clk.HasWaiters)
		clk.Step(testTTL / 3)
		eventually(t, "Lost", func() bool { return isClosed(h.Lost()) })
		mustRelease(t, h)
	})
	t.Run("harmless edit is not a loss", func(t *testing.T) {
		cs := newClient(t)
		clk := testingclock.NewFakeClock(t0)
		h := mustTry(t, newSem(t, cs, clk, "a"), 1)
		l := getLease(t, cs, h.Name())
		l.Labels["team"] = "platform"
		if _, err := cs.CoordinationV1().Leases(testNS).Update(context.Background(), l, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "renew timer", clk.HasWaiters)
		clk.Step(testTTL / 3)
		eventually(t, "renewal", func() bool {
			return getLease(t, cs, h.Name()).Spec.RenewTime.Time.Equal(clk.Now())
		})
		if isClosed(h.Lost()) {
			t.Fatalf("lost after a label edit: %v", h.Err())
		}
		mustRelease(t, h)
	})
	t.Run("renewal failing until expiry", func(t *testing.T) {
		cs := newClient(t)
		clk := testingclock.NewFakeClock(t0)
		h := mustTry(t, newSem(t, cs, clk, "a"), 1)
		var failing atomic.Bool
		failing.Store(true)
		cs.PrependReactor("update", "leases", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
			if failing.Load() {
				return true, nil, apierrors.NewServiceUnavailable("etcd is sad")
			}
			return false, nil, nil
		})
		// Renewals fail from TTL/3 on, retried every 2s; the slot is lost
		// at TTL-skew after the last successful renewal, not before.
		lostAt := t0.Add(testTTL - DefaultSkew)
		for clk.Now().Before(lostAt) {
			if isClosed(h.Lost()) {
				t.Fatalf("lost at %v, before %v", clk.Now().Sub(t0), lostAt.Sub(t0))
			}
			eventually(t, "renew timer", clk.HasWaiters)
			clk.Step(time.Second)
		}
		eventually(t, "Lost", func() bool { return isClosed(h.Lost()) })
		if !errors.Is(h.Err(), ErrLost) {
			t.Errorf("Err = %v", h.Err())
		}
		failing.Store(false)
		mustRelease(t, h) // still ours in the API: Release frees it
		if heldCount(t, cs) != 0 {
			t.Errorf("slot still held after Release")
		}
	})
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestRenewal: a held lease is renewed every TTL/3 and never lost while the
// API works.
func TestRenewal(t *testing.T) {
	cs := newClient(t)
	clk := testingclock.NewFakeClock(t0)
	h := mustTry(t, newSem(t, cs, clk, "a", func(c *Config) { c.SlotValue = "zone-a" }), 1)
	for i := 1; i <= 6; i++ {
		eventually(t, "renew timer", clk.HasWaiters)
		clk.Step(testTTL / 3)
		want := clk.Now()
		eventually(t, "renewal", func() bool {
			return getLease(t, cs, h.Name()).Spec.RenewTime.Time.Equal(want) &&
				getLease(t, cs, KeyLeaseName(testPool, "zone-a", 0)).Spec.RenewTime.Time.Equal(want)
		})
	}
	if isClosed(h.Lost()) {
		t.Fatal(h.Err())
	}
	mustRelease(t, h)
	mustRelease(t, h) // idempotent
	if k := getLease(t, cs, KeyLeaseName(testPool, "zone-a", 0)); holderOf(k) != "" {
		t.Errorf("slot-key mutex still held by %q after Release", holderOf(k))
	}
}

func TestHolders(t *testing.T) {
	cs := newClient(t)
	clk := testingclock.NewFakeClock(t0)
	mustTry(t, newSem(t, cs, clk, "a", func(c *Config) { c.SlotValue = "zone-a" }), 3)
	clk.Step(time.Minute)
	mustTry(t, newSem(t, cs, clk, "b"), 3)
	// Another pool's lease is ignored.
	other := newSem(t, cs, clk, "z", func(c *Config) { c.Pool = "workers-2" })
	mustTry(t, other, 1)
	hs, err := Holders(context.Background(), cs, testNS, testPool)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 2 || hs[0].Slot > hs[1].Slot {
		t.Fatalf("holders %+v", hs)
	}
	for _, h := range hs {
		if h.Expires.Sub(h.Renewed) != testTTL || h.Since.IsZero() || h.Lease != SlotLeaseName(testPool, h.Slot) {
			t.Errorf("holder %+v", h)
		}
	}
}

func TestLeaseNames(t *testing.T) {
	if got := SlotLeaseName("workers", 3); got != "rebootgate-workers-3" {
		t.Errorf("SlotLeaseName = %q", got)
	}
	for name, want := range map[string]int{"rebootgate-workers-0": 0, "rebootgate-workers-12": 12} {
		if i, ok := slotIndex("workers", name); !ok || i != want {
			t.Errorf("slotIndex(%q) = %d, %v", name, i, ok)
		}
	}
	for _, name := range []string{"rebootgate-workers-", "rebootgate-workers-01", "rebootgate-workers--1", "rebootgate-workers-2-0", KeyLeaseName("workers", "zone-a", 0), "rebootgate-other-0"} {
		if _, ok := slotIndex("workers", name); ok {
			t.Errorf("slotIndex(%q) accepted", name)
		}
	}
	k := KeyLeaseName("workers", "Topology/Zone.A", 0)
	if !isKeyLease("workers", k) || k == KeyLeaseName("workers", "zone-b", 0) {
		t.Errorf("key lease name %q", k)
	}
}

// TestRecheck: a waiter blocked by a slot count of 0 re-reads it on Recheck,
// since a changed pool size produces no Lease event.
func TestRecheck(t *testing.T) {
	cs := newClient(t)
	clk := testingclock.NewFakeClock(t0)
	s := newSem(t, cs, clk, "a")
	var slots atomic.Int32
	var reads atomic.Int32
	ch := acquireAsync(context.Background(), s, func() int { reads.Add(1); return int(slots.Load()) })
	eventually(t, "first attempt", func() bool { return reads.Load() >= 1 })
	never(t, "acquired with 0 slots", received(ch))
	slots.Store(1)
	s.Recheck()
	eventually(t, "acquire after Recheck", received(ch))
	if r := <-ch; r.err != nil {
		t.Fatal(r.err)
	} else {
		mustRelease(t, r.held)
	}
	if clk.HasWaiters() {
		t.Errorf("timers left: %d", clk.Waiters())
	}
}

// TestDeletedNodeHoldingKeyAndSlot: a deleted node held both its zone's
// mutex and a slot; both are reclaimed in one go, not at the mutex's expiry.
func TestDeletedNodeHoldingKeyAndSlot(t *testing.T) {
	cs := newClient(t)
	clk := testingclock.NewFakeClock(t0)
	zoneA := func(c *Config) { c.SlotValue = "zone-a" }
	gone := newSem(t, cs, testingclock.NewFakeClock(t0.Add(-testTTL/2)), "gone", zoneA)
	mustTry(t, gone, 1) // its clock never moves again: it stopped renewing
	var checked sync.Map
	b := newSem(t, cs, clk, "b", zoneA, func(c *Config) {
		c.HolderStatus = func(_ context.Context, name string) (nodestate.HolderStatus, error) {
			checked.Store(name, true)
			return nodestate.HolderStatus{Exists: name != "gone"}, nil
		}
	})
	if _, ok, err := b.TryAcquire(context.Background(), 1); ok || err != nil {
		t.Fatalf("TryAcquire on first sight: ok=%v err=%v, want not ok", ok, err)
	}
	clk.Step(testTTL / 2) // the holder has missed a renewal since b first saw its leases
	h, ok, err := b.TryAcquire(context.Background(), 1)
	if err != nil || !ok {
		t.Fatalf("TryAcquire: ok=%v err=%v", ok, err)
	}
	if _, ok := checked.Load("gone"); !ok {
		t.Errorf("holder's node was never checked")
	}
	if k := getLease(t, cs, KeyLeaseName(testPool, "zone-a", 0)); holderOf(k) != "b" {
		t.Errorf("mutex holder %q", holderOf(k))
	}
	mustRelease(t, h)
}
