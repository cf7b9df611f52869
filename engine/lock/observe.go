package lock

import (
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
)

// observation is when this node first saw one version of a foreign Lease.
type observation struct {
	version string // resourceVersion: any write, a renewal above all, changes it
	at      time.Time
}

// observe records now as the first sight of every foreign-held Lease whose
// version is new to s, forgets Leases that are gone or no longer foreign-held,
// and returns when each current version was first seen.
//
// This is client-go leader election's rule: a holder's renewTime is written by
// its clock, which may lag ours by any amount, so a waiter judges expiry only
// from when it saw the Lease change. A Lease seen for the first time therefore
// starts its full duration now, however old its renewTime: nothing is ever
// reclaimed on first sight.
func (s *Semaphore) observe(now time.Time, leases map[string]*coordinationv1.Lease) map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]time.Time, len(leases))
	for name, l := range leases {
		if h := holderOf(l); h == "" || h == s.holder {
			continue
		}
		o, ok := s.observed[name]
		if !ok || o.version != l.ResourceVersion {
			o = observation{version: l.ResourceVersion, at: now}
			s.observed[name] = o
		}
		out[name] = o.at
	}
	for name := range s.observed {
		if _, ok := out[name]; !ok {
			delete(s.observed, name)
		}
	}
	for name := range s.stuckReported {
		if _, ok := out[name]; !ok {
			delete(s.stuckReported, name)
		}
	}
	return out
}

// reportStuck tells OnStuckHolder about each stuck holding not reported yet.
// It runs on the caller's goroutine, outside s.mu.
func (s *Semaphore) reportStuck(stuck []stuckHolder) {
	for _, st := range stuck {
		s.mu.Lock()
		fresh := s.stuckReported[st.lease] != st.key
		s.stuckReported[st.lease] = st.key
		s.mu.Unlock()
		if !fresh {
			continue
		}
		s.log.Warn("slot holder has not come back; its slot stays taken and the pool waits",
			"lease", st.lease, "slotHolder", st.holder, "since", st.since)
		if s.onStuck != nil {
			s.onStuck(st.lease, st.holder, st.since)
		}
	}
}

// pruneVerdicts drops holder checks of Leases that are no longer in the pool,
// so that a long wait keeps one verdict per Lease at most.
func pruneVerdicts(in *planInput) {
	for name := range in.verdicts {
		if _, ok := in.leases[name]; !ok {
			delete(in.verdicts, name)
		}
	}
}

// pruneAvoid drops the lost races whose Lease the watch now shows at another
// version (or present, or gone): the stale view they guarded against is gone,
// and a Lease that later returns to the avoided state (deleted again, say) is a
// new state that may be claimed.
func pruneAvoid(in *planInput) {
	for name, rv := range in.avoid {
		cur := ""
		if l := in.leases[name]; l != nil {
			cur = l.ResourceVersion
		}
		if cur != rv {
			delete(in.avoid, name)
		}
	}
}
