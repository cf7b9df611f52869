package lock

import (
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
)

// leaseState is what a Lease means to one would-be holder.
type leaseState int

const (
	stateFree        leaseState = iota // absent, or no holder
	stateMine                          // held by this node (e.g. before a restart)
	stateReclaimable                   // expired, or its holder node is gone
	stateLive                          // held by another node that may still be working
)

// planInput is everything a planning decision depends on. Planning is pure so
// that the race-prone part (the writes) stays small and the rules are easy to
// test.
type planInput struct {
	now   time.Time
	slots int
	// leases are this pool's Leases by name, as last seen.
	leases map[string]*coordinationv1.Lease
	// avoid maps a Lease name to the resourceVersion ("" for "absent") at
	// which a write of ours lost a race: our view of it is stale, so we do
	// not try it again before the watch shows a newer version.
	avoid map[string]string
	// nodeGone holds node-existence verdicts keyed by verdictKey.
	nodeGone map[string]bool
}

// plan is the outcome of planning: which Leases to write, or when to look again.
type plan struct {
	ok        bool
	slotName  string
	slotIndex int
	slotLease *coordinationv1.Lease // nil: create it
	keyLease  *coordinationv1.Lease // nil: create it (only with a slot value)
	// wakeAt is the earliest instant at which a Lease that blocks us may
	// become reclaimable without any event (zero if none).
	wakeAt time.Time
	// suspects are foreign Leases whose holders missed a renewal and whose
	// node existence has not been checked yet.
	suspects []*coordinationv1.Lease
}

func (p *plan) wakeNoLaterThan(t time.Time) {
	if !t.IsZero() && (p.wakeAt.IsZero() || t.Before(p.wakeAt)) {
		p.wakeAt = t
	}
}

// verdictKey identifies one node-existence check: it holds until the Lease
// changes (a renewal proves the holder alive anyway).
func verdictKey(l *coordinationv1.Lease) string {
	return l.Name + "@" + l.ResourceVersion + "/" + holderOf(l)
}

// classify says what l means to s at in.now. For a live Lease it also returns
// when it should be looked at again and whether its holder's node must be
// checked.
func (s *Semaphore) classify(in *planInput, l *coordinationv1.Lease) (st leaseState, wake time.Time, suspect bool) {
	h := holderOf(l)
	switch {
	case h == "":
		return stateFree, time.Time{}, false
	case h == s.holder:
		return stateMine, time.Time{}, false
	}
	exp := expiresAt(l)
	if exp.IsZero() {
		return stateReclaimable, time.Time{}, false
	}
	// The holder's clock may run behind ours: only Skew after its own expiry
	// do we know it has stopped claiming the lease.
	expired := exp.Add(s.skew)
	if !in.now.Before(expired) {
		return stateReclaimable, time.Time{}, false
	}
	if sus := suspectAt(l); in.now.Before(sus) {
		// Healthy holders renew before sus, and each renewal is an event that
		// re-plans, so this timer only fires for a holder that went quiet.
		return stateLive, sus, false
	}
	gone, checked := in.nodeGone[verdictKey(l)]
	switch {
	case !checked:
		return stateLive, expired, true
	case gone:
		return stateReclaimable, time.Time{}, false
	}
	return stateLive, expired, false
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

// plan picks the slot (and key mutex) to claim, if any. pick chooses one of n
// free slots, at random in production so that waiters woken together spread
// over the free slots instead of all racing for the lowest one.
func (s *Semaphore) plan(in *planInput, pick func(n int) int) plan {
	var p plan
	live := 0
	mine := -1
	liveHolders := map[string]time.Time{} // holder → wake time of its live slot
	for name, l := range in.leases {
		i, ok := slotIndex(s.pool, name)
		if !ok {
			continue
		}
		st, wake, suspect := s.classify(in, l)
		switch st {
		case stateMine:
			if mine < 0 || i < mine {
				mine = i
			}
		case stateLive:
			// Live holders of slots >= slots count too: when concurrency
			// shrinks, nobody new starts until enough of them have finished.
			live++
			liveHolders[holderOf(l)] = wake
			p.wakeNoLaterThan(wake)
			if suspect {
				p.suspects = append(p.suspects, l)
			}
		}
	}

	var free []int
	if mine >= 0 {
		// Ours already (an earlier run crashed after taking it): keep it,
		// whatever the count, as a reboot may be in progress.
		free = []int{mine}
	} else if live < in.slots {
		for i := 0; i < in.slots; i++ {
			name := SlotLeaseName(s.pool, i)
			l := in.leases[name]
			if avoided(in, name, l) {
				continue
			}
			if st, _, _ := s.classify(in, l); st == stateFree || st == stateReclaimable {
				free = append(free, i)
			}
		}
	}
	if len(free) == 0 {
		return p
	}

	if s.keyName != "" {
		kl := in.leases[s.keyName]
		if avoided(in, s.keyName, kl) {
			return p
		}
		st, wake, suspect := s.classify(in, kl)
		switch st {
		case stateLive:
			p.wakeNoLaterThan(wake)
			if suspect {
				p.suspects = append(p.suspects, kl)
			}
			return p
		case stateReclaimable:
			// The mutex is stale, but its holder may still hold a live slot
			// (the two are renewed a few milliseconds apart): wait for that
			// slot too, so one value never has two holders.
			if wake, ok := liveHolders[holderOf(kl)]; ok {
				p.wakeNoLaterThan(wake)
				return p
			}
		}
		p.keyLease = kl
	}

	i := free[0]
	if len(free) > 1 && pick != nil {
		i = free[pick(len(free))]
	}
	p.ok = true
	p.slotIndex = i
	p.slotName = SlotLeaseName(s.pool, i)
	p.slotLease = in.leases[p.slotName]
	return p
}
