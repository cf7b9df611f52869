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

	// mu serialises writes of the held Leases (renewals, Confirm, Release)
	// and guards the fields below.
	mu          sync.Mutex
	slot        *coordinationv1.Lease
	key         *coordinationv1.Lease // nil without a slot value
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

// Confirm renews the held Leases now and returns nil only if that write
// succeeded: the slot is then held for at least TTL-Skew from now, by this
// node's clock. Call it right before each disruptive step (cordon, drain,
// reboot request).
//
// If another node has taken a Lease over, or it was deleted, the slot is lost:
// Lost is closed, Err is set and Confirm returns an error wrapping ErrLost. So
// it does when the write keeps failing past the renewal deadline (as for the
// background renewal). Other errors (the API server unreachable, ctx done)
// are returned as they are: the slot may still be held, but it is not
// confirmed. Once the slot is lost or released, Confirm always fails with an
// error wrapping ErrLost.
func (h *Held) Confirm(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return fmt.Errorf("confirm %s: %w", h.name, h.err)
	}
	if h.released {
		return fmt.Errorf("confirm %s: %w: released", h.name, ErrLost)
	}
	if err := h.renewOrLoseLocked(ctx); err != nil {
		return fmt.Errorf("confirm %s: %w", h.name, err)
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
// The slot is released before the slot-key Lease, so that a value never has
// more slot holders than key Leases.
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
			// The slot is free already; the key Lease expires within a TTL.
			return fmt.Errorf("release slot-key Lease %s: %w", h.key.Name, err)
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
	t := h.s.clock.NewTimer(h.s.ttl / 3)
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
	err := h.renewOrLoseLocked(ctx)
	switch {
	case err == nil:
		return h.s.ttl / 3, false
	case ctx.Err() != nil, h.err != nil:
		return 0, true // Release is waiting, or the slot is lost
	}
	deadline := h.renewDeadlineLocked()
	h.s.log.Warn("renewing slot failed, retrying", "lease", h.name, "error", err, "expiresIn", deadline.Sub(h.s.clock.Now()))
	return min(renewRetry, deadline.Sub(h.s.clock.Now())), false
}

// renewDeadlineLocked is the instant by which a renewal must succeed: the
// lease must be ours by every clock, so Skew before it expires.
func (h *Held) renewDeadlineLocked() time.Time {
	return h.lastRenewed.Add(h.s.ttl - h.s.skew)
}

// renewOrLoseLocked renews once, bounded by the renewal deadline, and marks
// the slot lost (returning an error wrapping ErrLost) if a Lease was taken
// over or deleted, or if the deadline has passed. Any other error leaves the
// slot held but unconfirmed.
func (h *Held) renewOrLoseLocked(ctx context.Context) error {
	deadline := h.renewDeadlineLocked()
	rctx, cancel := context.WithTimeout(ctx, max(deadline.Sub(h.s.clock.Now()), time.Millisecond))
	err := h.renewLocked(rctx)
	cancel()
	var lost *raceLostError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &lost):
		return h.loseLocked(fmt.Errorf("%w: another node took lease %s over, or it was deleted: %w", ErrLost, lost.lease, err))
	case ctx.Err() != nil:
		return err // the caller gave up (Release stops the renewal this way)
	case !h.s.clock.Now().Before(deadline):
		return h.loseLocked(fmt.Errorf("%w: could not renew %s before it expired: %w", ErrLost, h.name, err))
	}
	return err
}

// renewLocked writes a fresh renewTime and the current ttl into the held
// Leases, key Lease first (it must outlive the slot). A conflict caused by a
// harmless change (say, a label edit) is retried on the fresh object; a
// Lease now held by someone else, or deleted, is a raceLostError.
func (h *Held) renewLocked(ctx context.Context) error {
	now := h.s.clock.Now()
	renew := func(cur *coordinationv1.Lease) (*coordinationv1.Lease, error) {
		out, err := h.s.claim(ctx, cur.Name, cur, now)
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
		return h.s.claim(ctx, cur.Name, fresh, now)
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

// loseLocked marks the slot lost with err (which wraps ErrLost) and returns err.
func (h *Held) loseLocked(err error) error {
	h.err = err
	h.s.log.Error("lost slot", "lease", h.name, "error", err)
	h.lostOnce.Do(func() { close(h.lost) })
	return err
}
