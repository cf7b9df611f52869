package lock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ErrLost is the cause reported by [Held.Err] when the slot was lost.
var ErrLost = errors.New("slot lost")

// renewRetry bounds the wait between failed renewals.
const renewRetry = 2 * time.Second

// Held is a slot this node holds. It is renewed in the background until
// Release, or until it is lost.
type Held struct {
	s     *Semaphore
	index int
	name  string

	// mu serialises writes of the held Leases (renewals, Extend, Release) and
	// guards the fields below.
	mu          sync.Mutex
	slot        *coordinationv1.Lease
	key         *coordinationv1.Lease // nil without a slot value
	ttl         time.Duration
	lastRenewed time.Time
	released    bool
	err         error

	lost     chan struct{}
	lostOnce sync.Once
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

func (s *Semaphore) newHeld(slot *coordinationv1.Lease, index int, key *coordinationv1.Lease) *Held {
	h := &Held{
		s:           s,
		index:       index,
		name:        slot.Name,
		slot:        slot,
		key:         key,
		ttl:         s.ttl,
		lastRenewed: s.clock.Now(),
		lost:        make(chan struct{}),
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
	}
	go h.renewLoop()
	return h
}

// Name is the name of the slot's Lease, e.g. rebootgate-workers-1.
func (h *Held) Name() string { return h.name }

// Index is the slot's index in [0, slots) (or above, if concurrency shrank
// after it was taken).
func (h *Held) Index() int { return h.index }

// Lost is closed when the slot is lost: another node took the Lease over (or
// it was deleted), or renewal kept failing until the Lease was about to
// expire. The pipeline must then stop before doing anything disruptive. It is
// not closed by Release.
func (h *Held) Lost() <-chan struct{} { return h.lost }

// Err is nil while the slot is held and, once Lost is closed, wraps ErrLost
// with the reason.
func (h *Held) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// Extend sets the lease duration to ttl from now on and writes it at once.
// Call it right before rebooting with a ttl that covers the downtime, so that
// the slot does not expire while the agent is down and another node does not
// start a reboot meanwhile; Resume restores the configured TTL.
func (h *Held) Extend(ctx context.Context, ttl time.Duration) error {
	if ttl < time.Second {
		return fmt.Errorf("extend %s: ttl %v must be at least 1s", h.name, ttl)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.released {
		return fmt.Errorf("extend %s: already released", h.name)
	}
	if h.err != nil {
		return fmt.Errorf("extend %s: %w", h.name, h.err)
	}
	h.ttl = ttl
	if err := h.renewLocked(ctx); err != nil {
		return fmt.Errorf("extend %s: %w", h.name, err)
	}
	return nil
}

// Release stops the renewal and frees the slot at once, so that the next
// waiter sees the change through its watch. It is idempotent, and it gives up
// only Leases still held by this node.
//
// The holder is cleared (a guarded Update) rather than the Lease deleted:
// it is the same single write, but the object's history survives
// (leaseTransitions counts the hand-offs of that slot), `rebootgate status`
// can show free slots, there is no create/delete churn in etcd, and a
// stale release can never remove a Lease that another node has just taken.
// The slot is released before the slot-key mutex, so that two nodes with the
// same value never hold slots at once.
func (h *Held) Release(ctx context.Context) error {
	h.stopOnce.Do(func() { close(h.stop) })
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.released {
		return nil
	}
	if err := h.s.clear(ctx, h.slot); err != nil {
		return fmt.Errorf("release %s: %w", h.name, err)
	}
	if h.key != nil {
		if err := h.s.clear(ctx, h.key); err != nil {
			// The slot is free already; the mutex expires within a TTL.
			return fmt.Errorf("release slot-key mutex %s: %w", h.key.Name, err)
		}
	}
	h.released = true
	h.s.log.Info("released slot", "lease", h.name)
	return nil
}

func (h *Held) renewLoop() {
	defer close(h.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-h.stop:
			cancel() // abort a renewal in flight
		case <-ctx.Done():
		}
	}()
	h.mu.Lock()
	interval := h.ttl / 3
	h.mu.Unlock()
	t := h.s.clock.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C():
		}
		next, stop := h.renewTick(ctx)
		if stop {
			return
		}
		t.Reset(next)
	}
}

// renewTick renews once and says when to try next, or to stop.
func (h *Held) renewTick(ctx context.Context) (time.Duration, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.released || h.err != nil {
		return 0, true
	}
	// The renewal must succeed while the lease is still ours by every clock:
	// Skew before it expires.
	deadline := h.lastRenewed.Add(h.ttl - h.s.skew)
	rctx, cancel := context.WithTimeout(ctx, max(deadline.Sub(h.s.clock.Now()), time.Millisecond))
	err := h.renewLocked(rctx)
	cancel()
	var lost *raceLostError
	switch {
	case err == nil:
		return h.ttl / 3, false
	case ctx.Err() != nil:
		return 0, true // Release is waiting
	case errors.As(err, &lost):
		h.loseLocked(fmt.Errorf("%w: another node took lease %s over: %w", ErrLost, lost.lease, err))
		return 0, true
	}
	now := h.s.clock.Now()
	if !now.Before(deadline) {
		h.loseLocked(fmt.Errorf("%w: could not renew %s before it expired: %w", ErrLost, h.name, err))
		return 0, true
	}
	h.s.log.Warn("renewing slot failed, retrying", "lease", h.name, "error", err, "expiresIn", deadline.Sub(now))
	return min(renewRetry, deadline.Sub(now)), false
}

// renewLocked writes a fresh renewTime and the current ttl into the held
// Leases, mutex first (it must outlive the slot). A conflict caused by a
// harmless change (say, a label edit) is retried on the fresh object; a
// Lease now held by someone else, or deleted, is a raceLostError.
func (h *Held) renewLocked(ctx context.Context) error {
	now := h.s.clock.Now()
	renew := func(cur *coordinationv1.Lease) (*coordinationv1.Lease, error) {
		out, err := h.s.writeHolder(ctx, cur.Name, cur, now, h.ttl)
		var lost *raceLostError
		if !errors.As(err, &lost) || apierrors.IsNotFound(err) {
			return out, err
		}
		fresh, gerr := h.s.client.CoordinationV1().Leases(h.s.namespace).Get(ctx, cur.Name, metav1.GetOptions{})
		if gerr != nil {
			if apierrors.IsNotFound(gerr) {
				return nil, &raceLostError{lease: cur.Name, err: gerr}
			}
			return nil, fmt.Errorf("renew %s: %w", cur.Name, gerr)
		}
		if holderOf(fresh) != h.s.holder {
			return nil, &raceLostError{lease: cur.Name, rv: fresh.ResourceVersion, err: fmt.Errorf("held by %q now", holderOf(fresh))}
		}
		return h.s.writeHolder(ctx, cur.Name, fresh, now, h.ttl)
	}
	if h.key != nil {
		k, err := renew(h.key)
		if err != nil {
			return err
		}
		h.key = k
	}
	sl, err := renew(h.slot)
	if err != nil {
		return err
	}
	h.slot = sl
	h.lastRenewed = now
	return nil
}

func (h *Held) loseLocked(err error) {
	h.err = err
	h.s.log.Error("lost slot", "lease", h.name, "error", err)
	h.lostOnce.Do(func() { close(h.lost) })
}
