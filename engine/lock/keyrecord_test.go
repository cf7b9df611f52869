package lock

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// downUnder is a Node mid-reboot on slot i of the test pool under slot value
// zone, with both second records, as the agent's cordon writes them.
func downUnder(name string, i int, zone string) *corev1.Node {
	n := rebootingNode(name, t0)
	n.Labels = map[string]string{
		nodestate.LabelHoldsSlot: HoldsSlotValue(testNS, SlotLeaseName(testPool, i)),
		nodestate.LabelHoldsKey:  HoldsKeyValue(testNS, testPool, zone),
	}
	return n
}

// finishReboot clears a node's phase and second records, as the agent's
// Finish does.
func finishReboot(t *testing.T, cs *fake.Clientset, name string) {
	t.Helper()
	ctx := context.Background()
	n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Annotations, n.Labels = nil, nil
	if _, err := cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func deleteLease(t *testing.T, cs *fake.Clientset, name string) {
	t.Helper()
	if err := cs.CoordinationV1().Leases(testNS).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete lease %s: %v", name, err)
	}
}

// withNodeStatus makes a Semaphore ask the API about holders (the default
// HolderStatus), so that a Node's phase annotation counts.
func withNodeStatus(c *Config) { c.HolderStatus = nil }

// TestDeletedKeyLeaseOfANodeMidRebootIsNotTaken: a, in zone-a, holds slot 0 and
// the zone's key Lease and is down; the key Lease is deleted. Slots are plenty,
// and the key Lease looks free, but a's Node records that it is mid-reboot under
// zone-a: b (zone-a) gets no slot until a has finished, while c (zone-b) does.
func TestDeletedKeyLeaseOfANodeMidRebootIsNotTaken(t *testing.T) {
	ctx := context.Background()
	cs := newClient(t, downUnder("a", 0, "zone-a"), node("b"), node("c"))
	clk := testingclock.NewFakeClock(t0)
	mustTry(t, newSem(t, cs, clk, "a", zoneN("zone-a", 1)), 1) // slot 0, as recorded
	deleteLease(t, cs, KeyLeaseName(testPool, "zone-a", 0))

	b := newSem(t, cs, clk, "b", zoneN("zone-a", 1))
	if h, ok, err := b.TryAcquire(ctx, 4); err != nil || ok {
		t.Fatalf("b (zone-a) TryAcquire while a is down under zone-a = %v, %v, %v; want no slot", h, ok, err)
	}
	mustRelease(t, mustTry(t, newSem(t, cs, clk, "c", zoneN("zone-b", 1)), 4))
	finishReboot(t, cs, "a")
	mustTry(t, b, 4)
}

// TestDeletedKeyLeaseWakesNoWaiter: b waits (Acquire) while a holds zone-a's key
// Lease; the Lease is deleted while a is down. b's watch sees the key free, but b
// does not take it; once a has finished, b's next look (a quarter TTL later, as
// the deletion of a record produces no event) takes it.
func TestDeletedKeyLeaseWakesNoWaiter(t *testing.T) {
	cs := newClient(t, downUnder("a", 0, "zone-a"), node("b"))
	clk := testingclock.NewFakeClock(t0)
	mustTry(t, newSem(t, cs, clk, "a", zoneN("zone-a", 1)), 1) // slot 0, as recorded
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var b *Semaphore
	var asked atomic.Int32 // b's looks at zone-a's recorded users
	b = newSem(t, cs, clk, "b", zoneN("zone-a", 1), func(c *Config) {
		c.KeyUsers = func(ctx context.Context, value string) ([]string, error) {
			defer asked.Add(1)
			return b.listBusy(ctx, nodestate.LabelHoldsKey, HoldsKeyValue(testNS, testPool, value), value)
		}
	})
	ch := acquireAsync(ctx, b, fixed(4))
	eventually(t, "b queued", func() bool { return len(queueOf(testPool, mustList(t, b))) == 1 })
	deleteLease(t, cs, KeyLeaseName(testPool, "zone-a", 0))
	eventually(t, "b about to claim the free key Lease", func() bool { return asked.Load() > 0 || received(ch)() })
	never(t, "b took a slot while a is down under zone-a", received(ch))
	finishReboot(t, cs, "a")
	never(t, "b took a slot before looking again", received(ch))
	clk.Step(testTTL / 4)
	eventually(t, "b acquired after a finished", received(ch))
	if r := <-ch; r.err != nil {
		t.Fatal(r.err)
	} else {
		mustRelease(t, r.held)
	}
}

// TestKeyUsersCountOncePerNode: with 2 per key, a node that holds a key Lease and
// is recorded mid-reboot under the value counts once; one whose key Lease was
// deleted still counts.
func TestKeyUsersCountOncePerNode(t *testing.T) {
	ctx := context.Background()
	cs := newClient(t, downUnder("a1", 0, "zone-a"), node("a2"), node("a3"))
	clk := testingclock.NewFakeClock(t0)
	ha1 := mustTry(t, newSem(t, cs, clk, "a1", zoneN("zone-a", 2)), 1) // slot 0, as recorded
	ha2 := mustTry(t, newSem(t, cs, clk, "a2", zoneN("zone-a", 2)), 10)
	a3 := newSem(t, cs, clk, "a3", zoneN("zone-a", 2))
	if _, ok, err := a3.TryAcquire(ctx, 10); err != nil || ok {
		t.Fatalf("a3 TryAcquire with a1 and a2 holding zone-a = %v, %v; want no slot", ok, err)
	}
	deleteLease(t, cs, ha1.key.Name)
	if _, ok, err := a3.TryAcquire(ctx, 10); err != nil || ok {
		t.Fatalf("a3 TryAcquire with a1 down (its key Lease deleted) and a2 holding zone-a = %v, %v; want no slot", ok, err)
	}
	mustRelease(t, ha2)
	mustTry(t, a3, 10)
}

// TestDeletedKeyLeaseRace: a is down under zone-a and its key Lease was deleted;
// many zone-a nodes race for plenty of slots. None gets one while a is down; once
// a has finished, exactly slotsPerKey do (for 1 and 2 per key; with 2, one gets
// in while a is down, as a counts as one).
func TestDeletedKeyLeaseRace(t *testing.T) {
	for _, perKey := range []int{1, 2} {
		t.Run(fmt.Sprint(perKey), func(t *testing.T) {
			cs := newClient(t, downUnder("a", 0, "zone-a"))
			clk := testingclock.NewFakeClock(t0)
			ha := mustTry(t, newSem(t, cs, clk, "a", zoneN("zone-a", perKey)), 1) // slot 0, as recorded
			deleteLease(t, cs, ha.key.Name)
			var racers []*Semaphore
			for i := range 12 {
				racers = append(racers, newSem(t, cs, clk, fmt.Sprintf("b%d", i), zoneN("zone-a", perKey)))
			}
			var won sync.Map // racers holding a slot: they would "win" it again
			race := func() int32 {
				var wins atomic.Int32
				var wg sync.WaitGroup
				start := make(chan struct{})
				for _, s := range racers {
					if _, ok := won.Load(s.holder); ok {
						continue
					}
					wg.Go(func() {
						<-start
						for range 3 { // a loser may find a key Lease still free
							_, ok, err := s.TryAcquire(context.Background(), 20)
							if err != nil {
								t.Errorf("TryAcquire: %v", err)
							}
							if ok {
								wins.Add(1)
								won.Store(s.holder, true)
								return
							}
						}
					})
				}
				close(start)
				wg.Wait()
				return wins.Load()
			}
			if got := race(); got != int32(perKey-1) {
				t.Fatalf("%d zone-a nodes won while a is down under zone-a, want %d", got, perKey-1)
			}
			finishReboot(t, cs, "a")
			if got := race(); got != 1 {
				t.Fatalf("%d more zone-a nodes won once a finished, want 1 (zone-a's last key Lease)", got)
			}
		})
	}
}

// TestResumeKeepsTheKeyOfANodeMidReboot: a holds slot 1 and zone-a's key Lease
// and is down; only its slot Lease is deleted. Its agent comes back while a is
// still mid-reboot: Resume finds no slot but keeps the key Lease, so b (zone-a)
// gets neither slot 0, which is free, nor, after the key Lease expires, the key:
// a is still busy. Once a has finished, ReleaseKeys frees the key and b goes.
func TestResumeKeepsTheKeyOfANodeMidReboot(t *testing.T) {
	ctx := context.Background()
	cs := newClient(t, downUnder("a", 1, "zone-a"), node("b"), node("x"))
	clk := testingclock.NewFakeClock(t0)
	hx := mustTry(t, newSem(t, cs, clk, "x", zoneN("zone-b", 1)), 1)
	mustTry(t, newSem(t, cs, clk, "a", zoneN("zone-a", 1)), 2) // slot 1: x holds 0
	mustRelease(t, hx)                                         // slot 0 is free
	deleteLease(t, cs, SlotLeaseName(testPool, 1))

	a := newSem(t, cs, clk, "a", zoneN("zone-a", 1), withNodeStatus)
	if h, ok, err := a.Resume(ctx); err != nil || ok {
		t.Fatalf("Resume after the slot Lease was deleted = %v, %v, %v; want no slot", h, ok, err)
	}
	if got := keyHolders(t, a, "zone-a", 1)[0]; got != "a" {
		t.Fatalf("zone-a's key Lease held by %q after a resumed mid-reboot, want a", got)
	}
	b := newSem(t, cs, clk, "b", zoneN("zone-a", 1), withNodeStatus)
	if h, ok, err := b.TryAcquire(ctx, 2); err != nil || ok {
		t.Fatalf("b TryAcquire while a is mid-reboot = %v, %v, %v; want no slot", h, ok, err)
	}
	clk.Step(testTTL + DefaultSkew) // the key Lease expires by b's clock: a is still busy
	if h, ok, err := b.TryAcquire(ctx, 2); err != nil || ok {
		t.Fatalf("b TryAcquire past the key Lease's expiry while a is mid-reboot = %v, %v, %v; want no slot", h, ok, err)
	}

	finishReboot(t, cs, "a")
	if err := a.ReleaseKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if got := keyHolders(t, a, "zone-a", 1)[0]; got != "" {
		t.Fatalf("zone-a's key Lease held by %q after ReleaseKeys, want free", got)
	}
	mustTry(t, b, 2)
}

// TestReleaseKeysKeepsTheKeyOfAHeldSlot: ReleaseKeys gives up nothing while the
// node holds a slot (its key Lease backs it).
func TestReleaseKeysKeepsTheKeyOfAHeldSlot(t *testing.T) {
	cs := newClient(t)
	clk := testingclock.NewFakeClock(t0)
	a := newSem(t, cs, clk, "a", zoneN("zone-a", 1))
	h := mustTry(t, a, 2)
	if err := a.ReleaseKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := keyHolders(t, a, "zone-a", 1)[0]; got != "a" {
		t.Fatalf("zone-a's key Lease held by %q after ReleaseKeys with a slot held, want a", got)
	}
	mustRelease(t, h)
}

// TestLostKeyRaceIsForgottenOnceSeen: b lost the race to create zone-a's key Lease
// (a created it). Once b's watch has shown a's Lease, the lost race is forgotten:
// when the Lease is gone again (deleted, a having finished), b claims it instead of
// avoiding it for good.
func TestLostKeyRaceIsForgottenOnceSeen(t *testing.T) {
	cs := newClient(t)
	clk := testingclock.NewFakeClock(t0)
	b := newSem(t, cs, clk, "b", zoneN("zone-a", 1))
	key := KeyLeaseName(testPool, "zone-a", 0)
	in := planInput{now: t0, slots: 2, perKey: 1, leases: map[string]*coordinationv1.Lease{}, avoid: map[string]string{key: ""}, verdicts: map[string]verdict{}}
	pruneAvoid(&in)
	if p := b.plan(&in, nil); p.ok {
		t.Fatalf("b plans to create %s right after losing that race (its view is stale)", p.keyName)
	}
	mustTry(t, newSem(t, cs, clk, "a", zoneN("zone-a", 1)), 1)
	in.leases = mustList(t, b) // the watch shows a's key Lease
	pruneAvoid(&in)
	deleteLease(t, cs, key)
	in.leases = mustList(t, b)
	pruneAvoid(&in)
	if p := b.plan(&in, nil); !p.ok || p.keyName != key {
		t.Fatalf("b's plan once a's key Lease came and went: ok=%v key %q, want %s", p.ok, p.keyName, key)
	}
}
