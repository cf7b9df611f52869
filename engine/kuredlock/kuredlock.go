// Package kuredlock takes part in kured's reboot lock, so that kured agents and
// rebootgate agents in one cluster (a migration in progress) never reboot more nodes
// together than kured's --concurrency allows.
//
// kured's lock is one annotation (default weave.works/kured-node-lock) on kured's
// DaemonSet. With concurrency 1 its value is one entry,
//
//	{"nodeID":"n1","metadata":{"unschedulable":false},"created":"2026-12-02T06:00:00Z","TTL":0}
//
// and with concurrency N > 1 it is {"maxOwners":N,"locks":[entry, ...]}. An entry
// whose TTL (nanoseconds) is positive expires TTL after created; a TTL of 0 never
// expires (an entry that recorded none is judged by the reader's TTL, as kured does).
// Every write is a GET of the DaemonSet and an UPDATE carrying its resourceVersion, so
// the API server decides races; a conflict is re-read and retried.
//
// A rebootgate agent takes this lock after its own slot and before the cordon, and
// gives it back before the slot; kured agents take only this lock, so no agent ever
// waits for one lock while holding the other in the opposite order.
package kuredlock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
)

// DefaultAnnotation is kured's --lock-annotation default.
const DefaultAnnotation = "weave.works/kured-node-lock"

// Entry is one holder of kured's lock, in kured's JSON.
type Entry struct {
	NodeID   string    `json:"nodeID"`
	Metadata Metadata  `json:"metadata"`
	Created  time.Time `json:"created"`
	// TTL is a time.Duration in nanoseconds, as kured writes it; 0 never expires.
	TTL time.Duration `json:"TTL"`
}

// Metadata is what kured remembers across the reboot: whether the node was already
// cordoned before, so that it is not uncordoned afterwards.
type Metadata struct {
	Unschedulable bool `json:"unschedulable"`
}

// multi is the value with concurrency > 1.
type multi struct {
	MaxOwners int     `json:"maxOwners"`
	Locks     []Entry `json:"locks"`
}

// Lock is this node's side of kured's lock.
type Lock struct {
	Client kubernetes.Interface
	// Namespace and DaemonSet locate kured's DaemonSet (--ds-namespace, --ds-name);
	// Annotation is --lock-annotation.
	Namespace, DaemonSet, Annotation string
	// NodeID is this node (the entry's nodeID).
	NodeID string
	// MaxOwners is kured's --concurrency: 1 writes the one-entry form, more the
	// multi-holder form. It must match the kured agents' setting.
	MaxOwners int
	// TTL is written into this node's entry and judges entries that recorded none
	// (kured's --lock-ttl); 0 never expires.
	TTL   time.Duration
	Clock clock.Clock
}

// ErrFormat is an annotation this lock cannot read: not kured's JSON, or the other
// form than MaxOwners implies (the kured agents run with another --concurrency).
var ErrFormat = errors.New("kured lock annotation")

// Validate names the first bad setting.
func (l *Lock) Validate() error {
	switch {
	case l.Client == nil:
		return errors.New("kured lock: no client")
	case l.Namespace == "" || l.DaemonSet == "":
		return fmt.Errorf("kured lock: DaemonSet %q in namespace %q: both are required (--ds-name, --ds-namespace)", l.DaemonSet, l.Namespace)
	case l.Annotation == "":
		return errors.New("kured lock: --lock-annotation is empty")
	case l.NodeID == "":
		return errors.New("kured lock: no node name")
	case l.MaxOwners < 1:
		return fmt.Errorf("kured lock: concurrency %d is less than 1", l.MaxOwners)
	case l.TTL < 0:
		return fmt.Errorf("kured lock: TTL %v is negative", l.TTL)
	}
	return nil
}

func (l *Lock) now() time.Time {
	if l.Clock == nil {
		return time.Now()
	}
	return l.Clock.Now()
}

// expired is kured's rule: a positive TTL (the entry's, else the reader's) has passed
// since created.
func (l *Lock) expired(e Entry) bool {
	ttl := e.TTL
	if ttl == 0 {
		ttl = l.TTL
	}
	return ttl > 0 && !l.now().Before(e.Created.Add(ttl))
}

// entries parses the annotation of ds: every entry, expired or not. An absent
// annotation is no entry.
func (l *Lock) entries(ds *appsv1.DaemonSet) ([]Entry, error) {
	v, ok := ds.Annotations[l.Annotation]
	if !ok || strings.TrimSpace(v) == "" {
		return nil, nil
	}
	if l.MaxOwners > 1 {
		var m multi
		if err := json.Unmarshal([]byte(v), &m); err != nil || (m.Locks == nil && m.MaxOwners == 0) {
			return nil, l.formatError(v, "the multi-holder form {\"maxOwners\":N,\"locks\":[...]}")
		}
		return m.Locks, nil
	}
	var e Entry
	if err := json.Unmarshal([]byte(v), &e); err != nil || e.NodeID == "" {
		return nil, l.formatError(v, "the one-holder form {\"nodeID\":...}")
	}
	return []Entry{e}, nil
}

func (l *Lock) formatError(v, want string) error {
	if len(v) > 200 {
		v = v[:200] + "…"
	}
	return fmt.Errorf("%w %s on DaemonSet %s/%s is not %s, which concurrency %d implies (give the kured agents' --concurrency): %q",
		ErrFormat, l.Annotation, l.Namespace, l.DaemonSet, want, l.MaxOwners, v)
}

// Holders are the nodes holding the lock now (unexpired entries), as read from ds.
func (l *Lock) Holders(ds *appsv1.DaemonSet) ([]string, error) {
	all, err := l.entries(ds)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range all {
		if !l.expired(e) {
			out = append(out, e.NodeID)
		}
	}
	return out, nil
}

// NextExpiry is when the first live entry of ds with a TTL expires (false: none
// will), the one moment the lock can free up without a write to wake waiters.
func (l *Lock) NextExpiry(ds *appsv1.DaemonSet) (time.Time, bool) {
	all, err := l.entries(ds)
	if err != nil {
		return time.Time{}, false
	}
	var next time.Time
	for _, e := range all {
		ttl := e.TTL
		if ttl == 0 {
			ttl = l.TTL
		}
		if at := e.Created.Add(ttl); ttl > 0 && !l.expired(e) && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	return next, !next.IsZero()
}

// HeldBy reports whether ds's annotation has an unexpired entry of this node.
func (l *Lock) HeldBy(ds *appsv1.DaemonSet) (bool, error) {
	holders, err := l.Holders(ds)
	return slices.Contains(holders, l.NodeID), err
}

// Holding reads kured's DaemonSet now and reports whether this node holds the lock.
func (l *Lock) Holding(ctx context.Context) (bool, error) {
	ds, err := l.get(ctx)
	if err != nil {
		return false, err
	}
	return l.HeldBy(ds)
}

// Acquire takes the lock for this node when there is room, recording whether the
// node was already cordoned. It returns true when this node holds it (also when it
// already did), and the holders otherwise.
func (l *Lock) Acquire(ctx context.Context, unschedulable bool) (bool, []string, error) {
	ok, holders, _, err := l.acquire(ctx, unschedulable, false)
	return ok, holders, err
}

// RenewEvery is how often a holder with a TTL renews its entry (Keep): a third of the
// TTL, so that two renewals may fail before it expires. 0 without a TTL.
func (l *Lock) RenewEvery() time.Duration { return l.TTL / 3 }

// Keep keeps this node's entry valid for as long as it holds the lock (kured's TTL
// must not free the lock under a node that is still rebooting): an unexpired entry
// older than RenewEvery gets created=now, its metadata kept; an expired or missing
// one is taken again if there is room. It returns whether this node holds the lock,
// the holders otherwise, and its entry's created time.
func (l *Lock) Keep(ctx context.Context, unschedulable bool) (bool, []string, time.Time, error) {
	return l.acquire(ctx, unschedulable, true)
}

// acquire is Acquire and, with renew, Keep.
func (l *Lock) acquire(ctx context.Context, unschedulable, renew bool) (bool, []string, time.Time, error) {
	var (
		holders []string
		created time.Time
	)
	acquired := false
	err := l.update(ctx, func(ds *appsv1.DaemonSet) (string, bool, error) {
		all, err := l.entries(ds)
		if err != nil {
			return "", false, err
		}
		var live []Entry
		holders, acquired = holders[:0], false // a retry after a conflict starts afresh
		mine := Entry{NodeID: l.NodeID, Metadata: Metadata{Unschedulable: unschedulable}, TTL: l.TTL}
		for _, e := range all {
			switch {
			case e.NodeID == l.NodeID:
				// Ours, live or expired: what the node was before the cordon is kept.
				mine.Metadata = e.Metadata
				if !l.expired(e) {
					acquired, created = true, e.Created
				}
			case !l.expired(e):
				live = append(live, e)
				holders = append(holders, e.NodeID)
			}
		}
		now := l.now().UTC()
		switch {
		case acquired && (!renew || l.TTL == 0 || now.Sub(created) < l.RenewEvery()):
			return "", false, nil
		case !acquired && len(live) >= l.MaxOwners:
			return "", false, nil
		}
		mine.Created, created, acquired = now, now, true
		if l.MaxOwners == 1 {
			return marshal(mine)
		}
		// Expired entries are dropped in the same write, as kured does.
		return marshal(multi{MaxOwners: l.MaxOwners, Locks: append(live, mine)})
	})
	if err != nil || !acquired {
		return false, holders, time.Time{}, err
	}
	return true, nil, created, nil
}

// Release removes this node's entry; without one there is nothing to do.
func (l *Lock) Release(ctx context.Context) error {
	return l.update(ctx, func(ds *appsv1.DaemonSet) (string, bool, error) {
		all, err := l.entries(ds)
		if err != nil {
			return "", false, err
		}
		rest := slices.DeleteFunc(slices.Clone(all), func(e Entry) bool { return e.NodeID == l.NodeID })
		switch {
		case len(rest) == len(all):
			return "", false, nil
		case l.MaxOwners == 1:
			return "", true, nil // deleting the annotation, as kured releases
		}
		return marshal(multi{MaxOwners: l.MaxOwners, Locks: rest})
	})
}

func marshal(v any) (string, bool, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", false, fmt.Errorf("encoding kured lock: %w", err)
	}
	return string(data), true, nil
}

func (l *Lock) get(ctx context.Context) (*appsv1.DaemonSet, error) {
	ds, err := l.Client.AppsV1().DaemonSets(l.Namespace).Get(ctx, l.DaemonSet, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading kured's DaemonSet %s/%s: %w", l.Namespace, l.DaemonSet, err)
	}
	return ds, nil
}

// update reads the DaemonSet, lets change decide the annotation's new value (write
// false: nothing to write; value "" with write true: delete it) and writes it with an
// UPDATE guarded by the resourceVersion, re-reading after a conflict.
func (l *Lock) update(ctx context.Context, change func(*appsv1.DaemonSet) (value string, write bool, err error)) error {
	for attempt := 0; ; attempt++ {
		ds, err := l.get(ctx)
		if err != nil {
			return err
		}
		value, write, err := change(ds)
		if err != nil || !write {
			return err
		}
		if ds.Annotations == nil {
			ds.Annotations = map[string]string{}
		}
		if value == "" {
			delete(ds.Annotations, l.Annotation)
		} else {
			ds.Annotations[l.Annotation] = value
		}
		_, err = l.Client.AppsV1().DaemonSets(l.Namespace).Update(ctx, ds, metav1.UpdateOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsConflict(err) || attempt >= 20 {
			return fmt.Errorf("writing kured's lock on DaemonSet %s/%s: %w", l.Namespace, l.DaemonSet, err)
		}
		select { // kured waits a second after a conflict; a short pause spreads retries
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(50*(attempt+1)) * time.Millisecond):
		}
	}
}
