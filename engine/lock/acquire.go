package lock

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// raceLostError reports that a guarded write lost to another writer: the
// Lease named changed (or appeared) after the version we based the write on.
type raceLostError struct {
	lease string
	rv    string // the version we wrote against; "" for a create
	err   error
}

func (e *raceLostError) Error() string {
	return fmt.Sprintf("lease %s changed under us (someone else won): %v", e.lease, e.err)
}
func (e *raceLostError) Unwrap() error { return e.err }

// slotInUseError reports a slot whose Lease looks free while a node that held
// it is still mid-reboot (the Lease was deleted under it).
type slotInUseError struct {
	lease string
	users []string
}

func (e *slotInUseError) Error() string {
	return fmt.Sprintf("slot %s is still used by %v, mid-reboot", e.lease, e.users)
}

// keyInUseError reports a slot-key value whose key Leases look claimable while
// nodes recorded as mid-reboot under it (a key Lease was deleted under one)
// already make up its SlotsPerKey.
type keyInUseError struct {
	value  string
	users  []string
	perKey int
}

func (e *keyInUseError) Error() string {
	return fmt.Sprintf("slot-key value %q is used by %v, mid-reboot or holding its key Leases (%d per key)", e.value, e.users, e.perKey)
}

// AcquireOption changes how one Acquire waits.
type AcquireOption func(*acquireOptions)

type acquireOptions struct {
	beforeClaim func(context.Context) error
	perKey      func() int
}

// BeforeClaim sets a check run when this node's turn has come and a slot is
// free, right before it claims: the gate, re-checked at the head of the
// queue. An error gives the node's place up (the queue goes on without it)
// and is returned by Acquire, wrapped.
func BeforeClaim(check func(context.Context) error) AcquireOption {
	return func(o *acquireOptions) { o.beforeClaim = check }
}

// SlotsPerKey makes Acquire read how many nodes per slot value may hold a
// slot from perKey before every attempt, as it reads the slot count, instead
// of using [Config.SlotsPerKey]: a changed config then reaches a waiting node.
// A result below 1 counts as 1.
func SlotsPerKey(perKey func() int) AcquireOption {
	return func(o *acquireOptions) { o.perKey = perKey }
}

// Acquire blocks until this node holds a slot of the pool or ctx is done.
// slots is called before every attempt, so a percentage concurrency follows
// the pool's current size; a result below 1 means that no slot may be taken.
//
// The node queues (see queue.go): it creates a ticket and claims only when
// fewer waiters are ahead of it than slots are free. It keeps its ticket when
// ctx ends, so an agent that restarts keeps its place; call Leave when the
// reboot is no longer wanted.
//
// While it waits, Acquire watches the pool's Leases and re-plans on every
// event; it sets no timers except the jitter before an unqueued attempt and
// one for the earliest moment a blocking Lease or a waiter ahead may be
// passed over. If this node already holds a slot (an earlier run crashed),
// Acquire returns it.
func (s *Semaphore) Acquire(ctx context.Context, slots func() int, opts ...AcquireOption) (*Held, error) {
	if slots == nil {
		return nil, errors.New("acquire: slots func is nil")
	}
	var o acquireOptions
	for _, opt := range opts {
		opt(&o)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the informer: a node that holds a slot watches nothing

	store, changed, err := s.watchPool(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire slot in pool %q: %w", s.pool, err)
	}
	in := planInput{avoid: map[string]string{}, verdicts: map[string]verdict{}}
	if mine := poolLeases(s.pool, store.List())[s.ticketName]; mine != nil {
		// Queued before this agent (re)started: show the waiters behind that
		// we are alive, so that they stop passing us over.
		if err := s.touch(ctx, mine); err != nil {
			s.log.Warn("touching our ticket failed", "ticket", s.ticketName, "error", err)
		}
		s.setQueued(true)
	}
	var pending *coordinationv1.Lease // our ticket, created but maybe not yet in the cache
	unqueued := false                 // our ticket was refused: claim as the slots allow
	woken := false                    // jitter applies only to attempts prompted by an event or timer
	errDelay := time.Duration(0)
	for {
		recheck := s.recheckChan() // before slots(): a Recheck after this point wakes us
		in.now = s.clock.Now()
		in.slots = slots()
		in.perKey = s.slotsPerKey
		if o.perKey != nil {
			in.perKey = o.perKey()
		}
		in.leases = poolLeases(s.pool, store.List())
		if pending != nil {
			if _, ok := in.leases[s.ticketName]; ok {
				pending = nil
			} else {
				in.leases[s.ticketName] = pending
			}
		}
		in.observedAt = s.observe(in.now, in.leases)
		pruneVerdicts(&in)
		pruneAvoid(&in)
		p, q, err := s.planTurn(ctx, &in)
		if err != nil {
			return nil, fmt.Errorf("acquire slot in pool %q: %w", s.pool, err)
		}
		s.reportStuck(p.stuck)
		if !p.mine && !q.mine && pending == nil && !unqueued {
			// Queue even when a slot looks free: nodes that start waiting together
			// (one patch run across the fleet) then take turns instead of racing.
			if pending, err = s.enqueue(ctx); err != nil {
				s.log.Warn("queueing for a slot failed; waiting unqueued", "error", err)
				unqueued = true // retrying on every event would cost a write per waiter per hand-off
			} else {
				s.setQueued(true)
				continue // plan again with our ticket in the queue
			}
		}
		if p.ok && pending != nil {
			// Our ticket is not in the watch's cache yet. Once it is, so is every
			// ticket created before it (a watch delivers in commit order): only
			// then do we know who is ahead. Its event wakes us.
			p.ok = false
		}
		if p.ok && !p.mine && !q.mine && woken && s.jitter > 0 {
			// Unqueued waiters woken by the same event race for the free
			// slot; spreading their attempts lets one win cleanly.
			if err := s.sleep(ctx, rand.N(s.jitter)+1); err != nil {
				return nil, fmt.Errorf("acquire slot in pool %q: %w", s.pool, err)
			}
			woken = false
			continue // re-plan on the cache as it is now
		}
		if p.ok && !p.mine && o.beforeClaim != nil {
			if err := o.beforeClaim(ctx); err != nil {
				if lerr := s.Leave(ctx); lerr != nil {
					s.log.Warn("giving up our place failed; it will be passed over", "error", lerr)
				}
				return nil, fmt.Errorf("acquire slot in pool %q: %w", s.pool, err)
			}
		}
		if p.ok {
			for _, l := range q.stale {
				s.log.Info("deleting the ticket of a waiter that let its turn pass", "ticket", l.Name, "waiter", l.Annotations[AnnotationWaiter])
				if err := s.dropTicket(ctx, l.Name, l.UID, l.ResourceVersion); err != nil {
					s.log.Warn("deleting a stale ticket failed", "error", err)
				}
			}
			h, err := s.execute(ctx, &p)
			if err == nil {
				if q.mine { // (a pending ticket never claims: see above)
					if err := s.dropTicket(ctx, s.ticketName, "", ""); err != nil {
						s.log.Warn("deleting our ticket failed; the waiters pass it over", "error", err)
					}
				}
				s.setQueued(false)
				return h, nil
			}
			var lost *raceLostError
			var inUse *slotInUseError
			var keyInUse *keyInUseError
			switch {
			case errors.As(err, &lost):
				// Normal under contention: the winner's write is on its way
				// to our cache; wait for it instead of retrying blind.
				in.avoid[lost.lease] = lost.rv
				s.log.Debug("lost a race for a slot", "lease", lost.lease)
				errDelay = 0
			case errors.As(err, &inUse):
				// Its Lease is gone but its holder is still mid-reboot: no event
				// will tell us when it finishes, so look again in a while.
				s.log.Info("slot is free but a node is still mid-reboot on it", "lease", inUse.lease, "nodes", inUse.users)
				p.wakeNoLaterThan(in.now.Add(max(s.ttl/4, time.Second)))
			case errors.As(err, &keyInUse):
				// As for a slot: a key Lease is gone under a node still mid-reboot.
				s.log.Info("slot-key Lease is free but nodes are still mid-reboot under its value",
					"slotValue", keyInUse.value, "nodes", keyInUse.users, "slotsPerKey", keyInUse.perKey)
				p.wakeNoLaterThan(in.now.Add(max(s.ttl/4, time.Second)))
			case ctx.Err() != nil:
				return nil, fmt.Errorf("acquire slot in pool %q: %w", s.pool, ctx.Err())
			default:
				errDelay = min(max(2*errDelay, time.Second), 30*time.Second)
				s.log.Warn("claiming a slot failed, retrying", "error", err, "retryIn", errDelay)
				p.wakeNoLaterThan(in.now.Add(errDelay))
			}
		}
		if err := s.wait(ctx, changed, recheck, p.wakeAt); err != nil {
			return nil, fmt.Errorf("acquire slot in pool %q: %w", s.pool, err)
		}
		woken = true
	}
}

// planTurn plans, then lets the queue say whether it is this node's turn: a
// plan that may claim is held back (ok=false) while the waiters ahead take
// the free slots. Holders of Leases that stopped being renewed are asked
// about only when this node is near enough the head for their slots to
// matter, so a long queue costs the API server nothing extra.
func (s *Semaphore) planTurn(ctx context.Context, in *planInput) (plan, queueTurn, error) {
	var p plan
	var q queueTurn
	for round := 0; ; round++ {
		p = s.plan(in, rand.IntN)
		q = s.turn(in, &p)
		if p.ok && !p.mine {
			if !q.turn {
				p.ok = false
			} else if q.mine {
				// Waiters at ranks 0..k-1 take distinct free slots.
				s.choose(&p, in, p.free[q.rank%len(p.free)])
			}
		}
		p.wakeNoLaterThan(q.wakeAt)
		// Each round checks only holders not checked before, and a verdict can
		// unblock the next stage (a gone slot holder, then its stale slot-key
		// mutex), so a few rounds settle it.
		if p.ok || len(p.checks) == 0 || q.ahead >= in.slots || round == 3 {
			s.mu.Lock()
			s.due = q.due
			s.mu.Unlock()
			return p, q, nil
		}
		if err := s.checkHolders(ctx, in, p.checks); err != nil {
			return plan{}, queueTurn{}, err
		}
	}
}

// turn asks the queue about this node's turn given plan p's free slots.
func (s *Semaphore) turn(in *planInput, p *plan) queueTurn {
	s.mu.Lock()
	due := s.due
	s.mu.Unlock()
	return turnOf(queueInput{
		now: in.now, me: s.holder, queue: queueOf(s.pool, in.leases), free: len(p.free),
		active: p.holders, busy: p.busyKeys, due: due, grace: s.grace, ttl: s.ttl,
	})
}

// Recheck wakes every waiting Acquire to call its slots func again. Call it
// when the slot count may have changed without any Lease changing, e.g. when
// a percentage concurrency is resolved against a pool that just grew.
func (s *Semaphore) Recheck() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recheck != nil {
		close(s.recheck)
		s.recheck = nil
	}
}

func (s *Semaphore) recheckChan() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recheck == nil {
		s.recheck = make(chan struct{})
	}
	return s.recheck
}

// TryAcquire makes one attempt, from one List, to take a slot out of slots.
// It returns ok=false without error when every slot is busy or another node
// won the race. A foreign Lease is never reclaimed the first time this
// Semaphore sees its current version (see Config.Skew): repeated calls on one
// Semaphore can reclaim one that stopped changing.
func (s *Semaphore) TryAcquire(ctx context.Context, slots int) (*Held, bool, error) {
	leases, err := s.listPool(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("try to acquire slot in pool %q: %w", s.pool, err)
	}
	now := s.clock.Now()
	in := planInput{now: now, slots: slots, perKey: s.slotsPerKey, leases: leases, observedAt: s.observe(now, leases), verdicts: map[string]verdict{}}
	p, err := s.planChecked(ctx, &in)
	if err != nil {
		return nil, false, fmt.Errorf("try to acquire slot in pool %q: %w", s.pool, err)
	}
	s.reportStuck(p.stuck)
	if !p.ok {
		return nil, false, nil
	}
	h, err := s.execute(ctx, &p)
	var lost *raceLostError
	var inUse *slotInUseError
	var keyInUse *keyInUseError
	switch {
	case err == nil:
		return h, true, nil
	case errors.As(err, &lost), errors.As(err, &inUse), errors.As(err, &keyInUse):
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("try to acquire slot in pool %q: %w", s.pool, err)
}

// Resume finds a slot that this node already holds (after an agent restart,
// possibly after a reboot during which the lease expired) and keeps renewing
// it. ok is false if the node holds none, including when another node took
// the slot over or its Lease was deleted meanwhile. A key Lease held without a
// slot (a crash between the two writes) is released, but only if this node is
// not mid-reboot: a node whose slot Lease was deleted while it was down is
// still down or unverified, and its key Lease is then the one record left
// that holds the other nodes of its value back (see [Semaphore.ReleaseKeys]).
func (s *Semaphore) Resume(ctx context.Context) (*Held, bool, error) {
	leases, err := s.listPool(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("resume slot in pool %q: %w", s.pool, err)
	}
	slot, index := s.heldSlot(leases)
	if slot == nil {
		st, err := s.holderStatus(ctx, s.holder)
		switch {
		case err != nil:
			// Fail closed: keep the key Lease, which expires into the
			// busy-holder rule (and is reclaimed once this node is idle).
			s.log.Warn("resumed no slot; keeping our slot-key Lease, as this node's own reboot phase cannot be read", "error", err)
		case st.Busy:
			s.log.Warn("resumed no slot (its Lease was deleted or taken over) while this node is mid-reboot; keeping our slot-key Lease until the reboot ends")
		default:
			s.releaseKeys(ctx, leases)
		}
		return nil, false, nil
	}
	now := s.clock.Now()
	observedAt := s.observe(now, leases)
	var heldKey *coordinationv1.Lease
	if s.slotValue != "" {
		in := planInput{now: now, perKey: s.slotsPerKey, leases: leases, observedAt: observedAt}
		var p plan
		if name, ok := s.pickKey(&in, &p, s.liveSlotHolders(&in)); !ok {
			// Other nodes hold every key Lease of our value: keep the slot
			// anyway (our reboot may be half done) but say so; this needs a human.
			s.log.Warn("resumed slot but other nodes hold every slot-key Lease of its value", "slotValue", s.slotValue, "slotsPerKey", max(s.slotsPerKey, 1))
		} else if heldKey, err = s.claim(ctx, name, leases[name], now); err != nil {
			s.log.Warn("resumed slot without its slot-key Lease", "lease", name, "error", err)
			heldKey = nil
		}
	}
	renewed, err := s.claim(ctx, slot.Name, slot, now)
	var lost *raceLostError
	switch {
	case errors.As(err, &lost):
		if heldKey != nil {
			_ = s.clear(ctx, heldKey)
		}
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("resume slot in pool %q: %w", s.pool, err)
	}
	s.log.Info("resumed slot", "lease", renewed.Name)
	return s.newHeld(renewed, index, heldKey), true, nil
}

// ReleaseKeys gives up the key Leases this node holds while it holds no slot
// of the pool: a reboot that ended without its slot (the slot Lease was
// deleted while the node was down, and [Semaphore.Resume] kept the key)
// frees its value at once instead of a TTL later. Call it only once the node's
// phase is cleared. Key Leases are kept while the node holds a slot.
func (s *Semaphore) ReleaseKeys(ctx context.Context) error {
	leases, err := s.listPool(ctx)
	if err != nil {
		return fmt.Errorf("release slot-key Leases in pool %q: %w", s.pool, err)
	}
	if slot, _ := s.heldSlot(leases); slot == nil {
		s.releaseKeys(ctx, leases)
	}
	return nil
}

// heldSlot is the lowest slot Lease of leases this node holds (nil, -1: none).
func (s *Semaphore) heldSlot(leases map[string]*coordinationv1.Lease) (*coordinationv1.Lease, int) {
	var slot *coordinationv1.Lease
	index := -1
	for name, l := range leases {
		if i, ok := slotIndex(s.pool, name); ok && holderOf(l) == s.holder && (index < 0 || i < index) {
			slot, index = l, i
		}
	}
	return slot, index
}

// releaseKeys clears the key Leases of leases held by this node; a failure is
// logged (the Lease expires, and is reclaimed once this node is idle).
func (s *Semaphore) releaseKeys(ctx context.Context, leases map[string]*coordinationv1.Lease) {
	for name, l := range leases {
		if isKeyLease(s.pool, name) && holderOf(l) == s.holder {
			if err := s.clear(ctx, l); err != nil {
				s.log.Warn("releasing a slot-key Lease held without a slot failed; it will expire", "lease", name, "error", err)
			} else {
				s.log.Info("released a slot-key Lease held without a slot", "lease", name)
			}
		}
	}
}

// planChecked plans and, if the plan is blocked by Leases that stopped being
// renewed, asks about their holders and plans again.
func (s *Semaphore) planChecked(ctx context.Context, in *planInput) (plan, error) {
	// Each round checks only holders not checked before, and a verdict can
	// unblock the next stage (a gone slot holder, then its stale slot-key
	// mutex), so a few rounds settle it.
	for range 3 {
		p := s.plan(in, rand.IntN)
		if p.ok || len(p.checks) == 0 {
			return p, nil
		}
		if err := s.checkHolders(ctx, in, p.checks); err != nil {
			return plan{}, err
		}
	}
	return s.plan(in, rand.IntN), nil
}

// checkHolders records a HolderStatus verdict for each of leases' holders.
func (s *Semaphore) checkHolders(ctx context.Context, in *planInput, leases []*coordinationv1.Lease) error {
	for _, l := range leases {
		holder := holderOf(l)
		st, err := s.holderStatus(ctx, holder)
		switch {
		case err != nil && ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			// Fail closed: taking the slot of a holder that may be down
			// could put two nodes of the pool down at once. The check is
			// repeated after a TTL.
			s.log.Warn("checking on a slot holder failed; its slot stays taken", "lease", l.Name, "slotHolder", holder, "error", err)
			st = nodestate.HolderStatus{Exists: true, Busy: true}
		case !st.Exists:
			s.log.Info("slot holder's node is gone; its lease can be reclaimed", "lease", l.Name, "slotHolder", holder)
		}
		in.verdicts[l.Name] = verdict{key: verdictKey(l), status: st, at: in.now}
	}
	return nil
}

// execute performs a plan: the slot-key Lease first, then the slot. Right
// before, it reads the second records: the Nodes mid-reboot on the slot, and
// those mid-reboot under the slot value, which count with the value's live
// key holders against SlotsPerKey.
func (s *Semaphore) execute(ctx context.Context, p *plan) (*Held, error) {
	users, err := s.slotUsers(ctx, p.slotName)
	if err != nil {
		return nil, err
	}
	if len(users) > 0 {
		return nil, &slotInUseError{lease: p.slotName, users: users}
	}
	if p.keyName != "" {
		if err := s.checkKeyUsers(ctx, p); err != nil {
			return nil, err
		}
	}
	now := s.clock.Now()
	var key *coordinationv1.Lease
	if p.keyName != "" {
		var err error
		if key, err = s.claim(ctx, p.keyName, p.keyLease, now); err != nil {
			return nil, err
		}
	}
	slot, err := s.claim(ctx, p.slotName, p.slotLease, now)
	if err != nil {
		if key != nil {
			// Holding the key Lease without a slot would block our value for nothing.
			if cerr := s.clear(ctx, key); cerr != nil {
				s.log.Warn("releasing the slot-key Lease after a lost race failed; it will expire", "lease", key.Name, "error", cerr)
			}
		}
		return nil, err
	}
	s.log.Info("acquired slot", "lease", slot.Name, "slotValue", s.slotValue)
	return s.newHeld(slot, p.slotIndex, key), nil
}

// checkKeyUsers fails with a keyInUseError when the other nodes holding the
// slot value's key Leases live (p.keyHolders) and those recorded on their
// Nodes as mid-reboot under it are together SlotsPerKey or more: a node whose
// key Lease was deleted while it is down still counts.
func (s *Semaphore) checkKeyUsers(ctx context.Context, p *plan) error {
	recorded, err := s.keyUsers(ctx, s.slotValue)
	if err != nil {
		return err
	}
	users := slices.Sorted(maps.Keys(p.keyHolders))
	for _, n := range recorded {
		if n != s.holder && !slices.Contains(users, n) {
			users = append(users, n)
		}
	}
	if len(users) >= max(p.perKey, 1) {
		return &keyInUseError{value: s.slotValue, users: users, perKey: max(p.perKey, 1)}
	}
	return nil
}

// claim writes this node as holder of the Lease name, based on cur (nil: the
// Lease does not exist). The write is a Create or an Update guarded by cur's
// resourceVersion, so it fails with a raceLostError if anyone wrote first.
func (s *Semaphore) claim(ctx context.Context, name string, cur *coordinationv1.Lease, now time.Time) (*coordinationv1.Lease, error) {
	leases := s.client.CoordinationV1().Leases(s.namespace)
	mt := metav1.NewMicroTime(now)
	seconds := ttlSeconds(s.ttl)
	if cur == nil {
		l := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.namespace, Labels: map[string]string{LabelPool: s.pool}},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptrTo(s.holder),
				LeaseDurationSeconds: &seconds,
				AcquireTime:          &mt,
				RenewTime:            &mt,
				LeaseTransitions:     ptrTo(int32(1)),
			},
		}
		s.annotate(l)
		out, err := leases.Create(ctx, l, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil, &raceLostError{lease: name, err: err}
		}
		if err != nil {
			return nil, fmt.Errorf("create lease %s: %w", name, err)
		}
		return out, nil
	}
	l := cur.DeepCopy()
	if holderOf(l) != s.holder {
		l.Spec.AcquireTime = &mt
		l.Spec.LeaseTransitions = ptrTo(ptrValue(l.Spec.LeaseTransitions) + 1)
	}
	l.Spec.HolderIdentity = ptrTo(s.holder)
	l.Spec.RenewTime = &mt
	l.Spec.LeaseDurationSeconds = &seconds
	if l.Labels == nil {
		l.Labels = map[string]string{}
	}
	l.Labels[LabelPool] = s.pool
	s.annotate(l)
	// l carries cur's resourceVersion: the API server rejects the update with
	// 409 if the Lease changed since we looked.
	out, err := leases.Update(ctx, l, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil, &raceLostError{lease: name, rv: cur.ResourceVersion, err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("update lease %s: %w", name, err)
	}
	return out, nil
}

func (s *Semaphore) annotate(l *coordinationv1.Lease) {
	if s.slotValue == "" {
		delete(l.Annotations, AnnotationSlotValue)
		return
	}
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[AnnotationSlotValue] = s.slotValue
}

// clear gives up a Lease that cur says we hold: the holder is cleared rather
// than the object deleted (see Held.Release). If the Lease changed meanwhile
// it is re-read, and cleared only if it is still ours.
func (s *Semaphore) clear(ctx context.Context, cur *coordinationv1.Lease) error {
	leases := s.client.CoordinationV1().Leases(s.namespace)
	for attempt := 0; attempt < 3; attempt++ {
		if holderOf(cur) != s.holder {
			return nil // not ours any more: nothing to give up
		}
		l := cur.DeepCopy()
		mt := metav1.NewMicroTime(s.clock.Now())
		l.Spec.HolderIdentity = nil
		l.Spec.AcquireTime = nil
		l.Spec.RenewTime = &mt // when it was freed, for status and debugging
		delete(l.Annotations, AnnotationSlotValue)
		_, err := leases.Update(ctx, l, metav1.UpdateOptions{})
		switch {
		case err == nil, apierrors.IsNotFound(err):
			return nil
		case !apierrors.IsConflict(err):
			return fmt.Errorf("clear lease %s: %w", cur.Name, err)
		}
		if cur, err = leases.Get(ctx, cur.Name, metav1.GetOptions{}); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("clear lease %s: %w", l.Name, err)
		}
	}
	return fmt.Errorf("clear lease %s: kept conflicting", cur.Name)
}

// watchPool starts an informer on the pool's Leases, bound to ctx, and waits
// for its first List. changed receives a token after every event; it never
// blocks the informer (one pending token is enough to make us re-plan).
func (s *Semaphore) watchPool(ctx context.Context) (cache.Store, <-chan struct{}, error) {
	selector := labels.SelectorFromSet(labels.Set{LabelPool: s.pool}).String()
	leases := s.client.CoordinationV1().Leases(s.namespace)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.LabelSelector = selector
			return leases.List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.LabelSelector = selector
			return leases.Watch(ctx, opts)
		},
	}
	inf := cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, s.client), &coordinationv1.Lease{}, 0, cache.Indexers{})
	changed := make(chan struct{}, 1)
	notify := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify() },
		UpdateFunc: func(any, any) { notify() },
		DeleteFunc: func(any) { notify() },
	}); err != nil {
		return nil, nil, fmt.Errorf("watch leases: %w", err)
	}
	go inf.RunWithContext(ctx)
	select {
	case <-inf.HasSyncedChecker().Done():
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	return inf.GetStore(), changed, nil
}

func (s *Semaphore) listPool(ctx context.Context) (map[string]*coordinationv1.Lease, error) {
	list, err := s.client.CoordinationV1().Leases(s.namespace).List(ctx, metav1.ListOptions{
		LabelSelector:   labels.SelectorFromSet(labels.Set{LabelPool: s.pool}).String(),
		ResourceVersion: "", // a quorum read: TryAcquire and Resume must not act on a stale cache
	})
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	objs := make([]any, len(list.Items))
	for i := range list.Items {
		objs[i] = &list.Items[i]
	}
	return poolLeases(s.pool, objs), nil
}

// poolLeases indexes the Leases that belong to pool by name. The label
// selector already filters on the server; the name check guards against a
// stray label on someone else's Lease.
func poolLeases(pool string, objs []any) map[string]*coordinationv1.Lease {
	out := make(map[string]*coordinationv1.Lease, len(objs))
	for _, o := range objs {
		l, ok := o.(*coordinationv1.Lease)
		if !ok || l.Labels[LabelPool] != pool {
			continue
		}
		if _, isSlot := slotIndex(pool, l.Name); isSlot || isKeyLease(pool, l.Name) || isTicketLease(pool, l.Name) {
			out[l.Name] = l
		}
	}
	return out
}

func isKeyLease(pool, name string) bool { return isHashedLease(pool, keySuffixPrefix, name) }

// wait returns when the pool's Leases changed, on Recheck, at wakeAt (if not
// zero), or with ctx's error.
func (s *Semaphore) wait(ctx context.Context, changed, recheck <-chan struct{}, wakeAt time.Time) error {
	var fire <-chan time.Time
	if !wakeAt.IsZero() {
		t := s.clock.NewTimer(max(wakeAt.Sub(s.clock.Now()), time.Millisecond))
		defer t.Stop()
		fire = t.C()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-changed:
	case <-recheck:
	case <-fire:
	}
	return nil
}

func (s *Semaphore) sleep(ctx context.Context, d time.Duration) error {
	t := s.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}

func ptrTo[T any](v T) *T { return &v }

func ptrValue[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
