package summary

import (
	"context"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/disruption"
)

// Observer reads the published summary for one reader and remembers when that reader
// saw each version of it appear, on the reader's own clock: the summary's age is judged
// from then (decision.SummaryUsable), as a Lease's expiry is judged from when its
// holder's renewal was seen. The writer's stamp (ObservedAt) only dates a version more
// precisely within what the reader saw for itself, so a summary stamped in the future
// cannot stay fresh, and a writer whose clock is behind does not make it stale.
type Observer struct {
	client    kubernetes.Interface
	namespace string

	mu       sync.Mutex
	data     string    // the summary as last read ("" before the first read)
	seenAt   time.Time // when data appeared, as far as this reader can tell
	lastRead time.Time // when this reader last read the summary
}

// NewObserver returns an Observer of the summary in namespace.
func NewObserver(client kubernetes.Interface, namespace string) *Observer {
	return &Observer{client: client, namespace: namespace}
}

// Read reads the summary at now, the reader's clock just before it asks (earlier
// rather than later: a summary is taken as no younger than it is), and returns it with
// when this reader saw it appear.
func (o *Observer) Read(ctx context.Context, now time.Time) (*disruption.Summary, time.Time, error) {
	s, data, err := read(ctx, o.client, o.namespace)
	if err != nil {
		return nil, time.Time{}, err
	}
	return s, o.observe(data, s.ObservedAt, now), nil
}

// observe records that the summary read at now is data, stamped by its writer, and
// returns when it appeared. Data that changed since the last read appeared after that
// read and no later than now: within that interval the stamp dates it, when the stamp
// is plausible (not further ahead of now than clock skew explains); otherwise the
// earliest instant is taken, the last read, or never (zero: stale) on a first read.
// Unchanged data keeps the instant it was first seen, however often it is read.
func (o *Observer) observe(data string, stamp, now time.Time) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	if data != o.data || o.lastRead.IsZero() {
		o.data, o.seenAt = data, appeared(stamp, o.lastRead, now)
	}
	if now.After(o.lastRead) {
		o.lastRead = now
	}
	return o.seenAt
}

// appeared dates a version first read at now, the previous read being at lastRead
// (zero: none). The result is now minus an age, so that it keeps now's monotonic clock
// reading and later ages are measured on the reader's monotonic clock.
func appeared(stamp, lastRead, now time.Time) time.Time {
	if stamp.Sub(now) > decision.MaxSummaryClockSkew {
		if lastRead.IsZero() {
			return time.Time{}
		}
		return lastRead
	}
	age := max(now.Sub(stamp), 0) // a stamp a little ahead is taken as now
	if !lastRead.IsZero() {
		age = min(age, max(now.Sub(lastRead), 0)) // it was not there at the last read
	}
	return now.Add(-age)
}
