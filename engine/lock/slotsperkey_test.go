package lock

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	testingclock "k8s.io/utils/clock/testing"
)

func zoneN(zone string, perKey int) func(*Config) {
	return func(c *Config) { c.SlotValue, c.SlotsPerKey = zone, perKey }
}

// keyHolders maps each key Lease of value (the first n names) to its holder.
func keyHolders(t *testing.T, s *Semaphore, value string, n int) []string {
	t.Helper()
	leases, err := s.listPool(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, n)
	for j := range n {
		out[j] = holderOf(leases[KeyLeaseName(testPool, value, j)])
	}
	return out
}

// TestSlotsPerKeyTwo: with 2 slots per zone and plenty of slots, two zone-a
// nodes hold slots at once, a third waits, zone-b is unaffected; the third
// takes the key Lease the first gives back.
func TestSlotsPerKeyTwo(t *testing.T) {
	cs := newClient(t)
	clk := testingclock.NewFakeClock(t0)
	a1 := newSem(t, cs, clk, "a1", zoneN("zone-a", 2))
	a2 := newSem(t, cs, clk, "a2", zoneN("zone-a", 2))
	a3 := newSem(t, cs, testingclock.NewFakeClock(t0), "a3", zoneN("zone-a", 2))
	b1 := newSem(t, cs, clk, "b1", zoneN("zone-b", 2))

	ha1 := mustTry(t, a1, 10)
	ha2 := mustTry(t, a2, 10)
	hb1 := mustTry(t, b1, 10)
	if _, ok, err := a3.TryAcquire(context.Background(), 10); ok || err != nil {
		t.Fatalf("third zone-a node got a slot: ok=%v err=%v", ok, err)
	}
	keys := keyHolders(t, a1, "zone-a", 2)
	if !(keys[0] == "a1" && keys[1] == "a2") && !(keys[0] == "a2" && keys[1] == "a1") {
		t.Fatalf("zone-a key Leases held by %v, want a1 and a2", keys)
	}
	freed := 0
	if keys[1] == "a1" {
		freed = 1
	}

	ha3 := acquiredAfter(t, acquireAsync(context.Background(), a3, fixed(10)), ha1, "third zone-a node acquired")
	if got := keyHolders(t, a1, "zone-a", 2)[freed]; got != "a3" {
		t.Errorf("key Lease %d held by %q, want a3", freed, got)
	}
	if heldCount(t, cs) != 3 {
		t.Errorf("%d holders, want a2, a3, b1", heldCount(t, cs))
	}
	for _, h := range []*Held{ha2, ha3, hb1} {
		mustRelease(t, h)
	}
}

// TestSlotsPerKeyRace: many nodes of one zone race for plenty of slots; the
// key Leases let exactly slotsPerKey through, for 1 and 2.
func TestSlotsPerKeyRace(t *testing.T) {
	for _, perKey := range []int{1, 2} {
		t.Run(fmt.Sprint(perKey), func(t *testing.T) {
			cs := newClient(t)
			clk := testingclock.NewFakeClock(t0)
			var wins atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range 12 {
				s := newSem(t, cs, clk, fmt.Sprintf("a%d", i), zoneN("zone-a", perKey))
				wg.Go(func() {
					<-start
					// Retry lost races: a loser may find a key Lease still free.
					for range 3 {
						_, ok, err := s.TryAcquire(context.Background(), 10)
						if err != nil {
							t.Errorf("TryAcquire: %v", err)
						}
						if ok {
							wins.Add(1)
							return
						}
					}
				})
			}
			close(start)
			wg.Wait()
			if wins.Load() != int32(perKey) || heldCount(t, cs) != perKey {
				t.Fatalf("%d zone-a nodes won (API shows %d holders), want %d", wins.Load(), heldCount(t, cs), perKey)
			}
		})
	}
}

// TestQueueSkipsFullKey: a zone-a waiter at the head of the queue, whose zone
// already has its 2 nodes, does not hold up a zone-b waiter behind it for the
// one free slot.
func TestQueueSkipsFullKey(t *testing.T) {
	cs := newClient(t)
	clk := testingclock.NewFakeClock(t0)
	ha1 := mustTry(t, newSem(t, cs, clk, "a1", zoneN("zone-a", 2)), 3)
	ha2 := mustTry(t, newSem(t, cs, clk, "a2", zoneN("zone-a", 2)), 3)

	a3 := newSem(t, cs, clk, "a3", zoneN("zone-a", 2))
	cha3 := acquireAsync(context.Background(), a3, fixed(3))
	eventually(t, "a3 queued", func() bool { return len(queueOf(testPool, mustList(t, a3))) == 1 })
	chb1 := acquireAsync(context.Background(), newSem(t, cs, clk, "b1", zoneN("zone-b", 2)), fixed(3))
	eventually(t, "b1 to pass the blocked zone-a waiter", received(chb1))
	mustRelease(t, acquiredAfter(t, cha3, ha1, "a3 acquired while zone-a is full"))
	r := <-chb1
	if r.err != nil {
		t.Fatal(r.err)
	}
	mustRelease(t, r.held)
	mustRelease(t, ha2)
}

func mustList(t *testing.T, s *Semaphore) map[string]*coordinationv1.Lease {
	t.Helper()
	leases, err := s.listPool(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return leases
}

// TestSlotsPerKeyShrinks: the count per key drops from 2 to 1 while two
// zone-a nodes hold slots; a waiter reading the new count starts only once
// neither holds one (the holder of key Lease 1 still counts).
func TestSlotsPerKeyShrinks(t *testing.T) {
	cs := newClient(t)
	clk := testingclock.NewFakeClock(t0)
	held := map[string]*Held{}
	for _, n := range []string{"a1", "a2"} {
		held[n] = mustTry(t, newSem(t, cs, clk, n, zoneN("zone-a", 2)), 10)
	}
	keys := keyHolders(t, newSem(t, cs, clk, "x"), "zone-a", 2)
	a3 := newSem(t, cs, clk, "a3", zoneN("zone-a", 2))
	ch := make(chan acquireResult, 1)
	go func() {
		h, err := a3.Acquire(context.Background(), fixed(10), SlotsPerKey(fixed(1)))
		ch <- acquireResult{h, err}
	}()
	mustRelease(t, held[keys[0]]) // key Lease 0 is free, but key Lease 1's holder is live
	h := acquiredAfter(t, ch, held[keys[1]], "a3 acquired while another zone-a node holds a slot")
	if got := keyHolders(t, a3, "zone-a", 2); got[0] != "a3" || got[1] != "" {
		t.Errorf("key Leases held by %v, want [a3 \"\"]", got)
	}
	mustRelease(t, h)
}

// TestResumeKeepsItsKeyLease: a node that crashed holding a slot and key
// Lease 1 of its zone picks both up again; one that crashed between the two
// writes gives its key Lease back.
func TestResumeKeepsItsKeyLease(t *testing.T) {
	cs := newClient(t)
	clk := testingclock.NewFakeClock(t0)
	mustTry(t, newSem(t, cs, clk, "a1", zoneN("zone-a", 2)), 10)
	mustTry(t, newSem(t, cs, clk, "a2", zoneN("zone-a", 2)), 10)
	mine := 0
	if keyHolders(t, newSem(t, cs, clk, "x"), "zone-a", 2)[1] == "a2" {
		mine = 1
	}
	h, ok, err := newSem(t, cs, clk, "a2", zoneN("zone-a", 2)).Resume(context.Background())
	if err != nil || !ok {
		t.Fatalf("Resume: ok=%v err=%v", ok, err)
	}
	if got := keyHolders(t, newSem(t, cs, clk, "x"), "zone-a", 2)[mine]; got != "a2" {
		t.Errorf("key Lease %d held by %q after Resume, want a2", mine, got)
	}
	mustRelease(t, h)
	if got := keyHolders(t, newSem(t, cs, clk, "x"), "zone-a", 2); got[mine] != "" {
		t.Errorf("key Leases %v after Release, want %d free", got, mine)
	}

	// a3 claimed a key Lease and crashed before its slot: Resume frees it.
	a3 := newSem(t, cs, clk, "a3", zoneN("zone-a", 2))
	name := KeyLeaseName(testPool, "zone-a", 1-mine)
	if _, err := a3.claim(context.Background(), name, getLease(t, cs, name), clk.Now()); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := a3.Resume(context.Background()); ok || err != nil {
		t.Fatalf("Resume without a slot: ok=%v err=%v", ok, err)
	}
	if got := keyHolders(t, newSem(t, cs, clk, "x"), "zone-a", 2)[1-mine]; got != "" {
		t.Errorf("orphaned key Lease still held by %q", got)
	}
}
