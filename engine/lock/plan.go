package lock

import (
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"

	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// leaseState is what a Lease means to one would-be holder.
type leaseState int

const (
	stateFree        leaseState = iota // absent, or no holder
	stateMine                          // held by this node (e.g. before a restart)
	stateReclaimable                   // expired and its holder gone or idle, or its holder gone
	stateLive                          // held by another node that may still be working
)

// planInput is everything a planning decision depends on. Planning is pure so
// that the race-prone part (the writes) stays small and the rules are easy to
// test.
type planInput struct {
	now   time.Time
	slots int
	// perKey is how many nodes per slot value may hold a slot; below 1 counts as 1.
	perKey int
	// leases are this pool's Leases by name, as last seen.
	leases map[string]*coordinationv1.Lease
	// observedAt maps a foreign-held Lease's name to when this node first saw
	// its current version (see Semaphore.observe).
	observedAt map[string]time.Time
	// avoid maps a Lease name to the resourceVersion ("" for "absent") at
	// which a write of ours lost a race: our view of it is stale, so we do
	// not try it again before the watch shows a newer version (then the entry
	// is dropped, see pruneAvoid).
	avoid map[string]string
	// verdicts holds the latest holder check per Lease name.
	verdicts map[string]verdict
}

// verdict is the answer of one HolderStatus check. It applies only while the
// Lease stays at the version it was made for: a renewal proves the holder
// alive anyway.
type verdict struct {
	key    string // verdictKey of the Lease when checked
	status nodestate.HolderStatus
	at     time.Time
}

// stuckHolder is a slot Lease kept live only because its holder is busy.
type stuckHolder struct {
	lease, holder string
	since         time.Time
	key           string // stuckKey: one report per holding
}

// plan is the outcome of planning: which Leases to write, or when to look again.
type plan struct {
	ok        bool
	mine      bool  // the slot is one this node already holds
	free      []int // the claimable slots, by index
	holders   map[string]bool
	busyKeys  map[string]bool // slot values whose key Leases other nodes hold live, all perKey of them
	slotName  string
	slotIndex int
	slotLease *coordinationv1.Lease // nil: create it
	keyName   string                // the key Lease to claim first; "" without a slot value
	keyLease  *coordinationv1.Lease // nil: create it
	// keyHolders are the other nodes holding key Leases of this node's slot
	// value live, and perKey how many may; execute adds the nodes recorded on
	// their Nodes as mid-reboot under the value (Config.KeyUsers).
	keyHolders map[string]bool
	perKey     int
	// wakeAt is the earliest instant at which a Lease that blocks us may
	// become reclaimable without any event (zero if none).
	wakeAt time.Time
	// checks are foreign Leases whose holders must be asked about (see
	// HolderStatus) before they can be judged.
	checks []*coordinationv1.Lease
	// stuck are the slots kept live only because their holders are busy.
	stuck []stuckHolder
}

func (p *plan) wakeNoLaterThan(t time.Time) {
	if !t.IsZero() && (p.wakeAt.IsZero() || t.Before(p.wakeAt)) {
		p.wakeAt = t
	}
}

// verdictKey identifies the version of a Lease a verdict was made for.
func verdictKey(l *coordinationv1.Lease) string {
	return l.ResourceVersion + "/" + holderOf(l)
}

// stuckKey identifies one holding of a Lease: a holder that releases and
// takes the same slot again, and gets stuck again, is reported again.
func stuckKey(l *coordinationv1.Lease) string {
	acquired := ""
	if l.Spec.AcquireTime != nil {
		acquired = l.Spec.AcquireTime.UTC().Format(time.RFC3339Nano)
	}
	return holderOf(l) + "@" + acquired
}

// judgement is what classify concludes about one Lease.
type judgement struct {
	state leaseState
	// wake is, for a live Lease, when to look at it again without an event.
	wake time.Time
	// check: the holder must be asked about before the Lease can be judged.
	check bool
	// stuck: live only because its holder is busy although the Lease expired.
	stuck      bool
	stuckSince time.Time
}

// classify says what l means to s at in.now.
//
// Timing is by this node's clock only: a foreign Lease is suspect from
// leaseDuration/2 after this node first saw its current version (a healthy
// holder renews every third of it, and each renewal is a new version), and
// expired from leaseDuration+Skew after. A suspect Lease whose holder node is
// gone is reclaimable; an expired one is reclaimable unless its holder is
// busy (mid-reboot), which keeps it live however long that takes and is
// re-checked once per TTL.
func (s *Semaphore) classify(in *planInput, l *coordinationv1.Lease) judgement {
	h := holderOf(l)
	switch {
	case h == "":
		return judgement{state: stateFree}
	case h == s.holder:
		return judgement{state: stateMine}
	}
	seen, ok := in.observedAt[l.Name]
	if !ok {
		seen = in.now // not recorded yet: this is its first sight
	}
	d := leaseDuration(l)
	if d <= 0 {
		d = s.ttl // malformed (we never write one): assume ours
	}
	suspect := seen.Add(d / 2)
	expired := seen.Add(d + s.skew)
	if in.now.Before(suspect) {
		// Healthy holders renew before suspect, and each renewal is an event
		// that re-plans, so this timer only fires for a holder that went quiet.
		return judgement{state: stateLive, wake: suspect}
	}
	v, checked := in.verdicts[l.Name]
	checked = checked && v.key == verdictKey(l)
	if in.now.Before(expired) {
		switch {
		case !checked:
			return judgement{state: stateLive, wake: expired, check: true}
		case !v.status.Exists:
			return judgement{state: stateReclaimable}
		}
		return judgement{state: stateLive, wake: expired}
	}
	// Expired: only a verdict made since, and within a TTL, decides.
	if !checked || v.at.Before(expired) || !in.now.Before(v.at.Add(s.ttl)) {
		return judgement{state: stateLive, wake: in.now, check: true}
	}
	if !v.status.Exists || !v.status.Busy {
		return judgement{state: stateReclaimable}
	}
	since := v.status.Since
	if since.IsZero() {
		since = renewedAt(l)
	}
	return judgement{state: stateLive, wake: v.at.Add(s.ttl), stuck: true, stuckSince: since}
}

func avoided(in *planInput, name string, l *coordinationv1.Lease) bool {
	rv, ok := in.avoid[name]
	if !ok {
		return false
	}
	if l == nil {
		return rv == ""
	}
	return rv == l.ResourceVersion
}

// plan picks the slot (and key Lease) to claim, if any. pick chooses one of n
// free slots, at random in production so that waiters woken together spread
// over the free slots instead of all racing for the lowest one.
func (s *Semaphore) plan(in *planInput, pick func(n int) int) plan {
	p := plan{holders: map[string]bool{}, busyKeys: map[string]bool{}}
	live := 0
	mine := -1
	liveHolders := map[string]time.Time{} // holder → wake time of its live slot
	for name, l := range in.leases {
		i, ok := slotIndex(s.pool, name)
		if !ok {
			continue
		}
		j := s.classify(in, l)
		switch j.state {
		case stateMine:
			if mine < 0 || i < mine {
				mine = i
			}
		case stateLive:
			// Live holders of slots >= slots count too: when concurrency
			// shrinks, nobody new starts until enough of them have finished.
			live++
			liveHolders[holderOf(l)] = j.wake
			p.holders[holderOf(l)] = true
			p.wakeNoLaterThan(j.wake)
			if j.check {
				p.checks = append(p.checks, l)
			}
			if j.stuck {
				p.stuck = append(p.stuck, stuckHolder{lease: name, holder: holderOf(l), since: j.stuckSince, key: stuckKey(l)})
			}
		}
	}

	perKey := max(in.perKey, 1)
	liveKeys := map[string]int{} // slot value → key Leases other nodes hold live
	for name, l := range in.leases {
		if isKeyLease(s.pool, name) && s.classify(in, l).state == stateLive {
			if v := l.Annotations[AnnotationSlotValue]; v != "" {
				liveKeys[v]++
				if liveKeys[v] >= perKey {
					p.busyKeys[v] = true
				}
			}
		}
	}

	var free []int
	if mine >= 0 {
		// Ours already (an earlier run crashed after taking it): keep it,
		// whatever the count, as a reboot may be in progress.
		free = []int{mine}
		p.mine = true
	} else if live < in.slots {
		for i := 0; i < in.slots; i++ {
			name := SlotLeaseName(s.pool, i)
			l := in.leases[name]
			if avoided(in, name, l) {
				continue
			}
			if st := s.classify(in, l).state; st == stateFree || st == stateReclaimable {
				free = append(free, i)
			}
		}
	}
	p.free = free
	if len(free) == 0 {
		return p
	}

	if s.slotValue != "" {
		name, ok := s.pickKey(in, &p, liveHolders)
		if !ok {
			return p
		}
		p.keyName, p.keyLease = name, in.leases[name]
	}

	i := free[0]
	if len(free) > 1 && pick != nil {
		i = free[pick(len(free))]
	}
	p.ok = true
	s.choose(&p, in, i)
	return p
}

// pickKey chooses the key Lease of this node's slot value to claim before a
// slot: one it holds already (it crashed between the two writes, or resumes
// its slot, even if the count shrank meanwhile), else a free
// or reclaimable one of the value's perKey Leases. ok is false while other
// nodes hold perKey of the value's key Leases live; those it waits for are
// recorded in p (wake time, holder checks), and so are the live holders and
// the count (p.keyHolders, p.perKey), for the check of the value's recorded
// users right before the claim.
//
// Each key Lease has at most one holder (the API server's optimistic
// concurrency decides), a node claims one of its value's first perKey names
// before its slot and gives it up after, so at most perKey nodes per value
// hold slots. Live key Leases of the value beyond the first perKey (left by a
// larger count) count too, as live slots beyond the slot count do.
func (s *Semaphore) pickKey(in *planInput, p *plan, liveHolders map[string]time.Time) (string, bool) {
	perKey := max(in.perKey, 1)
	p.perKey, p.keyHolders = perKey, map[string]bool{}
	names := make(map[string]bool, perKey)
	for j := range perKey {
		names[KeyLeaseName(s.pool, s.slotValue, j)] = true
	}
	mine := ""
	for name, l := range in.leases {
		if !isKeyLease(s.pool, name) || (!names[name] && l.Annotations[AnnotationSlotValue] != s.slotValue) {
			continue
		}
		j := s.classify(in, l)
		switch j.state {
		case stateMine:
			if !avoided(in, name, l) && (mine == "" || name < mine) {
				mine = name
			}
		case stateLive:
			// A stuck key holder is reported through its slot, not here.
			p.keyHolders[holderOf(l)] = true
			p.wakeNoLaterThan(j.wake)
			if j.check {
				p.checks = append(p.checks, l)
			}
		}
	}
	if mine != "" {
		return mine, true
	}
	if len(p.keyHolders) >= perKey {
		return "", false
	}
	for j := range perKey {
		name := KeyLeaseName(s.pool, s.slotValue, j)
		l := in.leases[name]
		if avoided(in, name, l) {
			continue
		}
		switch s.classify(in, l).state {
		case stateFree:
			return name, true
		case stateReclaimable:
			// The key Lease is stale, but its holder may still hold a live
			// slot (the two are renewed a few milliseconds apart): wait for
			// that slot too, so the value never has one holder too many.
			if wake, ok := liveHolders[holderOf(l)]; ok {
				p.wakeNoLaterThan(wake)
				continue
			}
			return name, true
		}
	}
	return "", false
}

// liveSlotHolders maps the holders of the pool's live foreign slots to when to
// look at their slots again (as plan does).
func (s *Semaphore) liveSlotHolders(in *planInput) map[string]time.Time {
	out := map[string]time.Time{}
	for name, l := range in.leases {
		if _, ok := slotIndex(s.pool, name); ok {
			if j := s.classify(in, l); j.state == stateLive {
				out[holderOf(l)] = j.wake
			}
		}
	}
	return out
}

// choose makes slot i the one p claims.
func (s *Semaphore) choose(p *plan, in *planInput, i int) {
	p.slotIndex = i
	p.slotName = SlotLeaseName(s.pool, i)
	p.slotLease = in.leases[p.slotName]
}
