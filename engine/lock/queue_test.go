package lock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	testingclock "k8s.io/utils/clock/testing"
)

// queued builds tickets in the order given (queued one second apart).
func queued(waiters ...string) []ticket {
	var q []ticket
	for i, w := range waiters {
		name, value, _ := strings.Cut(w, "@")
		q = append(q, ticket{
			lease:  &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: ticketLeaseName(testPool, name), ResourceVersion: "1"}},
			waiter: name, value: value, queued: t0.Add(time.Duration(i) * time.Second),
		})
	}
	return q
}

func TestTurnOfIsFirstComeFirstServed(t *testing.T) {
	q := queued("a", "b", "c", "d")
	for _, tc := range []struct {
		me         string
		free       int
		turn, mine bool
		rank       int
	}{
		{"a", 1, true, true, 0},
		{"b", 1, false, true, 1},
		{"b", 2, true, true, 1},
		{"d", 3, false, true, 3},
		{"new", 4, false, false, 4}, // unqueued: behind everybody
		{"new", 5, true, false, 4},
		{"a", 0, false, true, 0},
	} {
		got := turnOf(queueInput{now: t0, me: tc.me, queue: q, free: tc.free, grace: 10 * time.Second, ttl: testTTL})
		if got.turn != tc.turn || got.mine != tc.mine || got.rank != tc.rank {
			t.Errorf("%s with %d free: turn=%v mine=%v rank=%d, want %v %v %d", tc.me, tc.free, got.turn, got.mine, got.rank, tc.turn, tc.mine, tc.rank)
		}
	}
}

// TestTurnOfSkipsWaitersThatCannotClaim: a waiter that already holds a slot,
// or whose slot value's mutex is taken, does not hold up the queue.
func TestTurnOfSkipsWaitersThatCannotClaim(t *testing.T) {
	q := queued("a", "b@zone-1", "c@zone-2")
	got := turnOf(queueInput{now: t0, me: "c", queue: q, free: 1, active: map[string]bool{"a": true}, busy: map[string]bool{"zone-1": true}, grace: time.Second, ttl: testTTL})
	if !got.turn || got.rank != 0 {
		t.Errorf("c behind a slot holder and a blocked zone: turn=%v rank=%d, want its turn", got.turn, got.rank)
	}
}

// TestTurnOfPassesOverAWaiterThatLetsItsTurnPass: a head that does not claim
// within the grace is passed over, and deleted once passed over for a TTL.
func TestTurnOfPassesOverAWaiterThatLetsItsTurnPass(t *testing.T) {
	q := queued("dead", "b")
	in := queueInput{now: t0, me: "b", queue: q, free: 1, due: map[string]dueSince{}, grace: 10 * time.Second, ttl: testTTL}
	got := turnOf(in)
	if got.turn || !got.wakeAt.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("at first: turn=%v wakeAt=%v, want to wait until %v", got.turn, got.wakeAt, t0.Add(10*time.Second))
	}
	in.due, in.now = got.due, t0.Add(10*time.Second)
	got = turnOf(in)
	if !got.turn || len(got.stale) != 0 {
		t.Fatalf("after the grace: turn=%v stale=%d, want b's turn and nothing deleted yet", got.turn, len(got.stale))
	}
	in.due, in.now = got.due, t0.Add(10*time.Second+testTTL)
	if got = turnOf(in); !got.turn || len(got.stale) != 1 || got.stale[0].Name != ticketLeaseName(testPool, "dead") {
		t.Fatalf("a TTL later: turn=%v stale=%v, want dead's ticket deleted", got.turn, got.stale)
	}
	// A new version of its ticket (its agent came back) gives it its place again.
	q[0].lease.ResourceVersion = "2"
	if got = turnOf(in); got.turn {
		t.Errorf("after the head touched its ticket: b's turn, want the head's")
	}
}

// writeCounter counts Lease writes by verb, and 409s.
type writeCounter struct {
	mu     sync.Mutex
	writes map[string]int
}

func countWrites(cs interface {
	PrependReactor(verb, resource string, fn k8stesting.ReactionFunc)
}) *writeCounter {
	w := &writeCounter{writes: map[string]int{}}
	for _, verb := range []string{"create", "update", "delete"} {
		cs.PrependReactor(verb, "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
			w.mu.Lock()
			w.writes[verb]++
			w.mu.Unlock()
			return false, nil, nil
		})
	}
	return w
}

func (w *writeCounter) total() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, c := range w.writes {
		n += c
	}
	return n
}

// TestQueueHandsOffInOrderAtConstantCost: ten nodes wait for one slot; each
// release hands it to the longest waiter, and a hand-off costs the same few
// writes whoever waits (the claim and the ticket's deletion), not one per
// waiter.
func TestQueueHandsOffInOrderAtConstantCost(t *testing.T) {
	cs := newClient(t)
	holder := newSem(t, cs, testingclock.NewFakeClock(t0), "holder")
	h := mustTry(t, holder, 1)
	const n = 10
	chans := make([]<-chan acquireResult, n)
	for i := range n {
		// Each waiter queues after the previous one's ticket exists.
		s := newSem(t, cs, testingclock.NewFakeClock(t0.Add(time.Duration(i)*time.Second)), "w"+strconv.Itoa(i),
			func(c *Config) { c.Jitter = 500 * time.Millisecond })
		chans[i] = acquireAsync(context.Background(), s, fixed(1))
		eventually(t, fmt.Sprintf("w%d queued", i), func() bool { return ticketCount(t, cs) == i+1 })
	}
	w := countWrites(cs)
	for i := range n {
		before := w.total()
		mustRelease(t, h) // 1 write
		eventually(t, fmt.Sprintf("w%d acquires", i), received(chans[i]))
		r := <-chans[i]
		if r.err != nil {
			t.Fatal(r.err)
		}
		for j := i + 1; j < n; j++ {
			if len(chans[j]) > 0 {
				t.Fatalf("w%d acquired out of turn while w%d was served", j, i)
			}
		}
		eventually(t, "ticket deleted", func() bool { return ticketCount(t, cs) == n-i-1 })
		if got := w.total() - before; got != 3 {
			t.Errorf("hand-off %d took %d Lease writes, want 3: release, claim, ticket deletion", i, got)
		}
		h = r.held
	}
	mustRelease(t, h)
}

func ticketCount(t testing.TB, cs *fake.Clientset) int {
	t.Helper()
	list, err := cs.CoordinationV1().Leases(testNS).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list leases: %v", err)
	}
	n := 0
	for _, l := range list.Items {
		if isTicketLease(testPool, l.Name) {
			n++
		}
	}
	return n
}

// TestRestartedWaiterKeepsItsPlace: an agent killed while queued comes back
// to the same place, ahead of those who queued after it.
func TestRestartedWaiterKeepsItsPlace(t *testing.T) {
	cs := newClient(t)
	h := mustTry(t, newSem(t, cs, testingclock.NewFakeClock(t0), "holder"), 1)
	ctx, kill := context.WithCancel(context.Background())
	first := acquireAsync(ctx, newSem(t, cs, testingclock.NewFakeClock(t0), "b"), fixed(1))
	eventually(t, "b queued", func() bool { return ticketCount(t, cs) == 1 })
	kill()
	if r := <-first; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("killed waiter: %v", r.err)
	}
	c := acquireAsync(context.Background(), newSem(t, cs, testingclock.NewFakeClock(t0.Add(time.Second)), "c"), fixed(1))
	eventually(t, "c queued", func() bool { return ticketCount(t, cs) == 2 })
	b := acquireAsync(context.Background(), newSem(t, cs, testingclock.NewFakeClock(t0.Add(2*time.Second)), "b"), fixed(1))
	mustRelease(t, h)
	eventually(t, "b acquires", received(b))
	if len(c) > 0 {
		t.Fatal("c acquired before b, which queued first")
	}
	r := <-b
	if r.err != nil {
		t.Fatal(r.err)
	}
	mustRelease(t, r.held)
	eventually(t, "c acquires", received(c))
	mustRelease(t, (<-c).held)
}

// TestWaiterThatLetsItsTurnPassIsPassedOver: the queue does not stall on a
// waiter whose agent is gone: after the grace the next one claims, and its
// ticket is deleted a TTL later.
func TestWaiterThatLetsItsTurnPassIsPassedOver(t *testing.T) {
	cs := newClient(t)
	h := mustTry(t, newSem(t, cs, testingclock.NewFakeClock(t0), "holder"), 1)
	ctx, kill := context.WithCancel(context.Background())
	dead := acquireAsync(ctx, newSem(t, cs, testingclock.NewFakeClock(t0), "dead"), fixed(1))
	eventually(t, "dead queued", func() bool { return ticketCount(t, cs) == 1 })
	kill()
	<-dead
	clk := testingclock.NewFakeClock(t0.Add(time.Second)) // queues after dead
	ch := acquireAsync(context.Background(), newSem(t, cs, clk, "b", func(c *Config) { c.QueueGrace = 10 * time.Second }), fixed(1))
	eventually(t, "b queued", func() bool { return ticketCount(t, cs) == 2 })
	mustRelease(t, h)
	eventually(t, "b waits for the grace", func() bool { return clk.HasWaiters() })
	never(t, "b acquired within the grace", received(ch))
	clk.Step(10 * time.Second)
	eventually(t, "b acquires after the grace", received(ch))
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	if ticketCount(t, cs) != 1 {
		t.Errorf("tickets left %d, want the dead waiter's only (deleted only after a TTL)", ticketCount(t, cs))
	}
	mustRelease(t, r.held)
}

// TestBlockedHeadGivesItsPlaceUp: a head whose gate closes at its turn
// leaves the queue and the next waiter gets the slot.
func TestBlockedHeadGivesItsPlaceUp(t *testing.T) {
	cs := newClient(t)
	h := mustTry(t, newSem(t, cs, testingclock.NewFakeClock(t0), "holder"), 1)
	closed := errors.New("gate closed")
	bs := newSem(t, cs, testingclock.NewFakeClock(t0), "b")
	b := make(chan error, 1)
	go func() {
		_, err := bs.Acquire(context.Background(), fixed(1), BeforeClaim(func(context.Context) error { return closed }))
		b <- err
	}()
	eventually(t, "b queued", func() bool { return ticketCount(t, cs) == 1 })
	c := acquireAsync(context.Background(), newSem(t, cs, testingclock.NewFakeClock(t0.Add(time.Second)), "c"), fixed(1))
	eventually(t, "c queued", func() bool { return ticketCount(t, cs) == 2 })
	mustRelease(t, h)
	if err := <-b; !errors.Is(err, closed) {
		t.Fatalf("b: %v, want the gate's error", err)
	}
	eventually(t, "c acquires", received(c))
	r := <-c
	if r.err != nil {
		t.Fatal(r.err)
	}
	if n := ticketCount(t, cs); n != 0 {
		t.Errorf("%d tickets left, want none", n)
	}
	mustRelease(t, r.held)
}
