package agent

import (
	"cmp"
	"context"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// notBackWatch follows the slot holders of other nodes that the lock saw stuck (their
// Lease expired while they are mid-reboot). A reboot may well outlast a Lease's TTL, so
// a holder is reported as not back only once its phase is older than the reboot and
// ready timeouts, once per holding; the report (rebootgate_holder_not_back among
// others) is cleared when the holder is back (its phase moved on, its Lease renewed) or
// the slot changed hands. It is level-triggered: every check reads the holder's Node and
// its Lease afresh, whatever was reported before.
type notBackWatch struct {
	client    kubernetes.Interface
	namespace string
	clock     clock.Clock
	// after is how long a holder may stay in one phase before it is not back: the
	// reboot timeout plus the ready timeout.
	after time.Duration
	// poll is how often a holding is looked at again while nothing is due earlier.
	poll time.Duration
	// report tells people that the holder is not back; clear withdraws it.
	report func(ctx context.Context, pool, lease, holder string, since time.Time)
	clear  func(pool, holder string)

	mu       sync.Mutex
	holdings map[holdingKey]*holding
	wake     chan struct{}
}

// holdingKey is one holder of one pool: it is reported once, whichever slot value's
// semaphore saw it.
type holdingKey struct{ pool, holder string }

// holding is a stuck holder as first seen.
type holding struct {
	lease string
	since time.Time
	// seen is when the lock reported it (the due time's base when since is unknown);
	// version is its Lease's resourceVersion then ("" until read): a renewal, by the
	// holder's agent come back, changes it.
	seen     time.Time
	version  string
	reported bool
}

func newNotBackWatch(client kubernetes.Interface, namespace string, clk clock.Clock, after, poll time.Duration,
	report func(ctx context.Context, pool, lease, holder string, since time.Time), clear func(pool, holder string)) *notBackWatch {
	return &notBackWatch{
		client: client, namespace: namespace, clock: clk, after: after, poll: poll, report: report, clear: clear,
		holdings: map[holdingKey]*holding{}, wake: make(chan struct{}, 1),
	}
}

// track is the lock's OnStuckHolder: it only records the holding (the lock's
// goroutine must not block) and wakes the watch.
func (w *notBackWatch) track(pool, lease, holder string, since time.Time) {
	w.mu.Lock()
	k := holdingKey{pool, holder}
	if h := w.holdings[k]; h != nil && h.lease == lease && h.since.Equal(since) {
		w.mu.Unlock()
		return
	}
	old := w.holdings[k]
	w.holdings[k] = &holding{lease: lease, since: since, seen: w.clock.Now()}
	w.mu.Unlock()
	if old != nil && old.reported {
		w.clear(pool, holder) // an earlier holding of this holder ended
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run checks the holdings whenever one is due, one is added, and every poll while
// there are any.
func (w *notBackWatch) run(ctx context.Context) {
	for {
		var timer clock.Timer
		var fired <-chan time.Time
		if next := w.check(ctx); next > 0 {
			timer = w.clock.NewTimer(next)
			fired = timer.C()
		}
		select {
		case <-ctx.Done():
		case <-w.wake:
		case <-fired:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// check looks at every holding: it reports those due and still stuck, and forgets (and
// clears the report of) those that are over. It returns when to look again (0: no
// holding left, wait for the next).
func (w *notBackWatch) check(ctx context.Context) time.Duration {
	w.mu.Lock()
	snapshot := make(map[holdingKey]holding, len(w.holdings))
	for k, h := range w.holdings {
		snapshot[k] = *h
	}
	w.mu.Unlock()
	next := time.Duration(0)
	soonest := func(d time.Duration) {
		if next == 0 || d < next {
			next = d
		}
	}
	for k, h := range snapshot {
		over, version := w.over(ctx, k, h)
		now := w.clock.Now()
		w.mu.Lock()
		cur := w.holdings[k]
		if cur == nil || cur.lease != h.lease || !cur.since.Equal(h.since) {
			w.mu.Unlock() // replaced meanwhile: the next check judges the new one
			continue
		}
		if over {
			delete(w.holdings, k)
			w.mu.Unlock()
			if cur.reported {
				w.clear(k.pool, k.holder)
			}
			continue
		}
		if cur.version == "" {
			cur.version = version
		}
		due := cmp.Or(h.since, h.seen).Add(w.after)
		report := !cur.reported && !now.Before(due)
		cur.reported = cur.reported || report
		w.mu.Unlock()
		if report {
			w.report(ctx, k.pool, h.lease, k.holder, h.since)
		}
		if until := due.Sub(now); !cur.reported && until > 0 {
			soonest(min(until, w.poll))
		} else {
			soonest(w.poll)
		}
	}
	return next
}

// over reads whether the holding has ended: the holder's Node is gone or its phase is
// no longer the one it was stuck in, or its Lease was renewed or names another holder.
// A read that fails says nothing: the holding stays. version is the Lease's
// resourceVersion ("" when it could not be read).
func (w *notBackWatch) over(ctx context.Context, k holdingKey, h holding) (bool, string) {
	n, err := w.client.CoreV1().Nodes().Get(ctx, k.holder, metav1.GetOptions{ResourceVersion: "0"})
	switch {
	case apierrors.IsNotFound(err):
		return true, ""
	case err != nil:
		return false, ""
	}
	st := nodestate.HolderStatusOf(n)
	if !st.Busy || (!st.Since.IsZero() && !h.since.IsZero() && !st.Since.Equal(h.since)) {
		return true, ""
	}
	l, err := w.client.CoordinationV1().Leases(w.namespace).Get(ctx, h.lease, metav1.GetOptions{ResourceVersion: "0"})
	if err != nil {
		// Deleted (the holder is still mid-reboot, by its Node) or unreadable.
		return false, ""
	}
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != k.holder {
		return true, "" // the slot changed hands
	}
	if h.version != "" && l.ResourceVersion != h.version {
		return true, "" // renewed: the holder's agent is back
	}
	return false, l.ResourceVersion
}
