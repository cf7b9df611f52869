package notify

import (
	"sync"
	"time"

	"github.com/rebootgate/rebootgate/engine/decision"
)

// BlockedTooLong tracks since when a node that needs a reboot has been denied by the
// gate, and signals once per blocked stretch when that has lasted Threshold. A stretch
// starts at the first denied observation while a reboot is required and ends when the
// gate allows the node or the reboot is no longer required; a new stretch can fire
// again. Time comes only from Observe's argument. Waiting for a lock slot after an
// allowing decision is not "blocked". It is safe for concurrent use.
type BlockedTooLong struct {
	threshold time.Duration

	mu    sync.Mutex
	since time.Time // start of the current stretch; zero when not blocked
	fired bool      // the current stretch has fired
}

// NewBlockedTooLong returns a tracker firing after threshold; a threshold <= 0 disables
// it (Observe never fires, Since still tracks).
func NewBlockedTooLong(threshold time.Duration) *BlockedTooLong {
	return &BlockedTooLong{threshold: threshold}
}

// Observe records one decision for the node at now. required says whether the node
// needs a reboot. It returns true exactly once per blocked stretch: at the first
// observation at least the threshold after the stretch began.
func (b *BlockedTooLong) Observe(now time.Time, required bool, d decision.Decision) (fire bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !required || d.Allowed {
		b.since, b.fired = time.Time{}, false
		return false
	}
	if b.since.IsZero() {
		b.since = now
	}
	if b.fired || b.threshold <= 0 || now.Sub(b.since) < b.threshold {
		return false
	}
	b.fired = true
	return true
}

// Since is when the current blocked stretch began, or the zero time when the node is
// not blocked. It is the Event.Since of a BlockedTooLong notification.
func (b *BlockedTooLong) Since() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.since
}
