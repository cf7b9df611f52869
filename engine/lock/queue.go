package lock

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The waiting queue. A node that wants a slot creates a ticket, a Lease
// rebootgate-<pool>-q-<hash of its name> in the pool (so the waiters' one
// informer sees it), and only the first k waiters in ticket order, for k
// claimable slots, try to claim; everyone else only watches. A hand-off then
// costs one claim and one ticket deletion however many nodes wait, and nodes
// take their turn first come, first served.
//
// A ticket has no holderIdentity (it locks nothing); its waiter is named by
// AnnotationWaiter. Order is the API server's creationTimestamp (whole
// seconds), then the waiter's queued-at time (spec.acquireTime), then the
// waiter's name.
//
// Liveness does not depend on tickets: a ticket whose waiter does not claim
// within QueueGrace of its turn (on the observer's clock) is passed over, and
// one passed over for a further TTL is deleted by the waiter that claims
// behind it. A waiter whose agent restarts touches its ticket (a new version)
// and is no longer passed over. Safety never depends on tickets either: the
// slot Leases are claimed exactly as without a queue.

const (
	// AnnotationWaiter names the node a ticket Lease belongs to.
	AnnotationWaiter = "rebootgate.io/waiter"
	// DefaultQueueGrace is how long a waiter whose turn it is may take to
	// claim before the waiters behind it pass it over.
	DefaultQueueGrace = 10 * time.Second

	ticketSuffixPrefix = "q-"
)

// ticketLeaseName is the name of node's ticket in pool. The node name is
// hashed so that any node name fits.
func ticketLeaseName(pool, node string) string {
	return hashedLeaseName(pool, ticketSuffixPrefix, node)
}

func isTicketLease(pool, name string) bool { return isHashedLease(pool, ticketSuffixPrefix, name) }

// ticket is one waiter's place in the queue.
type ticket struct {
	lease   *coordinationv1.Lease
	waiter  string
	value   string // the waiter's slot value, "" without a slot key
	created time.Time
	queued  time.Time
}

// queueOf returns the pool's tickets in FIFO order.
func queueOf(pool string, leases map[string]*coordinationv1.Lease) []ticket {
	var q []ticket
	for name, l := range leases {
		if !isTicketLease(pool, name) || l.Annotations[AnnotationWaiter] == "" {
			continue
		}
		t := ticket{lease: l, waiter: l.Annotations[AnnotationWaiter], value: l.Annotations[AnnotationSlotValue], created: l.CreationTimestamp.Time}
		if l.Spec.AcquireTime != nil {
			t.queued = l.Spec.AcquireTime.Time
		}
		q = append(q, t)
	}
	slices.SortFunc(q, func(a, b ticket) int {
		if c := a.created.Compare(b.created); c != 0 {
			return c
		}
		if c := a.queued.Compare(b.queued); c != 0 {
			return c
		}
		return cmp.Compare(a.waiter, b.waiter)
	})
	return q
}

// queueInput is what deciding whose turn it is depends on.
type queueInput struct {
	now    time.Time
	me     string
	queue  []ticket
	free   int                 // slots claimable now
	active map[string]bool     // nodes holding a live slot: their tickets are on the way out
	busy   map[string]bool     // slot values whose key Leases other nodes hold, all of them: those waiters cannot claim now
	due    map[string]dueSince // when each ticket's current version was first seen due
	grace  time.Duration
	ttl    time.Duration
}

// dueSince is when a waiter was first seen at a position that should claim.
type dueSince struct {
	version string
	at      time.Time
}

// queueTurn is the outcome of queueTurn.
type queueTurn struct {
	mine   bool // this node's ticket is in the queue
	turn   bool // this node may claim now
	rank   int  // waiters that may claim before this node (its index among the free slots when turn)
	ahead  int  // waiters ahead of this node that count, whatever the free slots
	wakeAt time.Time
	stale  []*coordinationv1.Lease // passed over for longer than a TTL: the claimer deletes them
	due    map[string]dueSince     // the new due records
}

// turnOf decides whether in.me may claim one of in.free slots now. It is pure:
// the caller keeps the returned due records for the next call.
func turnOf(in queueInput) queueTurn {
	out := queueTurn{due: map[string]dueSince{}}
	count := 0 // waiters ahead that will claim, or are waiting to
	for _, t := range in.queue {
		if t.waiter == in.me {
			out.mine = true
			break
		}
		if in.active[t.waiter] || (t.value != "" && in.busy[t.value]) {
			continue // holds a slot already, or cannot take one now
		}
		out.ahead++
		if count >= in.free {
			count++
			continue
		}
		// Its turn: it should claim at once. Remember since when.
		d, ok := in.due[t.lease.Name]
		if !ok || d.version != t.lease.ResourceVersion {
			d = dueSince{version: t.lease.ResourceVersion, at: in.now}
		}
		out.due[t.lease.Name] = d
		passOver := d.at.Add(in.grace)
		if in.now.Before(passOver) {
			count++
			if out.wakeAt.IsZero() || passOver.Before(out.wakeAt) {
				out.wakeAt = passOver
			}
			continue
		}
		// It let its turn pass: its agent is gone or stuck. Pass it over.
		if !in.now.Before(passOver.Add(in.ttl)) {
			out.stale = append(out.stale, t.lease)
		}
	}
	out.rank = count
	out.turn = count < in.free
	return out
}

// newTicket is this node's ticket, queued at now.
func (s *Semaphore) newTicket(now time.Time) *coordinationv1.Lease {
	mt := metav1.NewMicroTime(now)
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name: s.ticketName, Namespace: s.namespace,
			Labels:      map[string]string{LabelPool: s.pool},
			Annotations: map[string]string{AnnotationWaiter: s.holder},
		},
		Spec: coordinationv1.LeaseSpec{AcquireTime: &mt, RenewTime: &mt},
	}
	if s.slotValue != "" {
		l.Annotations[AnnotationSlotValue] = s.slotValue
	}
	return l
}

// enqueue creates this node's ticket. An existing one (ours, not yet in the
// watch's cache) is kept and returned.
func (s *Semaphore) enqueue(ctx context.Context) (*coordinationv1.Lease, error) {
	leases := s.client.CoordinationV1().Leases(s.namespace)
	out, err := leases.Create(ctx, s.newTicket(s.clock.Now()), metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		if out, err = leases.Get(ctx, s.ticketName, metav1.GetOptions{}); err != nil {
			return nil, fmt.Errorf("get ticket %s: %w", s.ticketName, err)
		}
		return out, nil
	case err != nil:
		return nil, fmt.Errorf("create ticket %s: %w", s.ticketName, err)
	}
	s.log.Debug("queued for a slot", "ticket", s.ticketName)
	return out, nil
}

// touch writes a new version of this node's existing ticket, keeping its
// place: waiters that passed it over while its agent was down see it alive.
func (s *Semaphore) touch(ctx context.Context, cur *coordinationv1.Lease) error {
	l := cur.DeepCopy()
	l.Spec.RenewTime = ptrTo(metav1.NewMicroTime(s.clock.Now()))
	_, err := s.client.CoordinationV1().Leases(s.namespace).Update(ctx, l, metav1.UpdateOptions{})
	if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
		return fmt.Errorf("touch ticket %s: %w", cur.Name, err)
	}
	return nil
}

// dropTicket deletes a ticket Lease, only at the version given when uid is
// set: a waiter that came back and touched its ticket keeps it.
func (s *Semaphore) dropTicket(ctx context.Context, name string, uid types.UID, version string) error {
	opts := metav1.DeleteOptions{}
	if uid != "" {
		opts.Preconditions = &metav1.Preconditions{UID: &uid}
		if version != "" {
			opts.Preconditions.ResourceVersion = &version
		}
	}
	err := s.client.CoordinationV1().Leases(s.namespace).Delete(ctx, name, opts)
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete ticket %s: %w", name, err)
	}
	return nil
}

// Leave gives up this node's place in the queue (its reboot is no longer
// allowed or needed). It is a no-op when the node is not queued.
func (s *Semaphore) Leave(ctx context.Context) error {
	s.mu.Lock()
	queued := s.queued
	s.queued = false
	s.mu.Unlock()
	if !queued {
		return nil
	}
	if err := s.dropTicket(ctx, s.ticketName, "", ""); err != nil {
		return fmt.Errorf("leave the queue of pool %q: %w", s.pool, err)
	}
	s.log.Info("left the queue for a slot", "ticket", s.ticketName)
	return nil
}

func (s *Semaphore) setQueued(v bool) {
	s.mu.Lock()
	s.queued = v
	s.mu.Unlock()
}
