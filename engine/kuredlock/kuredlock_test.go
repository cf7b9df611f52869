package kuredlock

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
)

var t0 = time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)

func newLocks(t *testing.T, annotation string, maxOwners int, nodes ...string) (*fake.Clientset, *clocktesting.FakeClock, []*Lock) {
	t.Helper()
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kured"}}
	if annotation != "" {
		ds.Annotations = map[string]string{DefaultAnnotation: annotation}
	}
	client := fake.NewClientset(ds)
	clk := clocktesting.NewFakeClock(t0)
	var locks []*Lock
	for _, n := range nodes {
		l := &Lock{Client: client, Namespace: "kube-system", DaemonSet: "kured", Annotation: DefaultAnnotation, NodeID: n, MaxOwners: maxOwners, Clock: clk}
		if err := l.Validate(); err != nil {
			t.Fatal(err)
		}
		locks = append(locks, l)
	}
	return client, clk, locks
}

func annotation(t *testing.T, c *fake.Clientset) (string, bool) {
	t.Helper()
	ds, err := c.AppsV1().DaemonSets("kube-system").Get(context.Background(), "kured", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, ok := ds.Annotations[DefaultAnnotation]
	return v, ok
}

func mustAcquire(t *testing.T, l *Lock, want bool) {
	t.Helper()
	got, holders, err := l.Acquire(context.Background(), false)
	if err != nil || got != want {
		t.Fatalf("%s: Acquire = %v (holders %v), %v; want %v", l.NodeID, got, holders, err, want)
	}
}

// The one-holder form is kured's JSON, field for field; release deletes it.
func TestOneHolder(t *testing.T) {
	c, _, l := newLocks(t, "", 1, "n1", "n2")
	got, _, err := l[0].Acquire(context.Background(), true)
	if err != nil || !got {
		t.Fatalf("Acquire = %v, %v", got, err)
	}
	v, _ := annotation(t, c)
	if want := `{"nodeID":"n1","metadata":{"unschedulable":true},"created":"2026-12-02T06:00:00Z","TTL":0}`; v != want {
		t.Fatalf("annotation\n %s\nwant kured's\n %s", v, want)
	}
	mustAcquire(t, l[0], true) // already held: still held, nothing written twice
	_, holders, err := l[1].Acquire(context.Background(), false)
	if err != nil || len(holders) != 1 || holders[0] != "n1" {
		t.Fatalf("second node: holders %v, %v", holders, err)
	}
	if err := l[1].Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := annotation(t, c); !ok {
		t.Fatal("a node that did not hold the lock released it")
	}
	if err := l[0].Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v, ok := annotation(t, c); ok {
		t.Fatalf("annotation %q left after release", v)
	}
	mustAcquire(t, l[1], true)
}

// An entry whose TTL passed is free for the taking; TTL 0 never expires, and an entry
// without a TTL is judged by the reader's.
func TestExpiry(t *testing.T) {
	c, _, l := newLocks(t, `{"nodeID":"gone","metadata":{"unschedulable":false},"created":"2026-12-02T05:00:00Z","TTL":1800000000000}`, 1, "n1")
	mustAcquire(t, l[0], true)
	if v, _ := annotation(t, c); !strings.Contains(v, `"nodeID":"n1"`) {
		t.Fatalf("annotation %s, want n1's entry over the expired one", v)
	}

	_, _, l = newLocks(t, `{"nodeID":"dead","metadata":{"unschedulable":false},"created":"2026-01-01T00:00:00Z","TTL":0}`, 1, "n1")
	mustAcquire(t, l[0], false) // never expires: the rollout halts, as in kured
	l[0].TTL = time.Hour
	mustAcquire(t, l[0], true) // recorded no TTL: judged by ours
}

// The multi-holder form: at most maxOwners live entries; expired ones are dropped in
// the same write; release removes only this node's entry.
func TestMultiHolder(t *testing.T) {
	c, clk, l := newLocks(t, "", 2, "n1", "n2", "n3")
	l[0].TTL = time.Minute
	mustAcquire(t, l[0], true)
	mustAcquire(t, l[1], true)
	mustAcquire(t, l[2], false)
	var m multi
	v, _ := annotation(t, c)
	if err := json.Unmarshal([]byte(v), &m); err != nil || m.MaxOwners != 2 || len(m.Locks) != 2 {
		t.Fatalf("annotation %s: %v", v, err)
	}
	if !strings.HasPrefix(v, `{"maxOwners":2,"locks":[{"nodeID":"n1","metadata":{"unschedulable":false},"created":"2026-12-02T06:00:00Z","TTL":60000000000}`) {
		t.Fatalf("annotation %s is not kured's multi-holder JSON", v)
	}
	clk.Step(time.Minute) // n1's entry expires
	mustAcquire(t, l[2], true)
	v, _ = annotation(t, c)
	if strings.Contains(v, `"n1"`) || !strings.Contains(v, `"n2"`) || !strings.Contains(v, `"n3"`) {
		t.Fatalf("annotation %s, want n2 and n3 with n1's expired entry dropped", v)
	}
	if err := l[1].Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	held, err := l[2].Holding(context.Background())
	if v, _ = annotation(t, c); err != nil || !held || strings.Contains(v, `"n2"`) {
		t.Fatalf("after n2's release: %s (n3 holding %v, %v)", v, held, err)
	}
}

// The other form than our concurrency implies means the fleets disagree on
// --concurrency: an error naming the annotation, never a guess.
func TestFormatMismatch(t *testing.T) {
	_, _, l := newLocks(t, `{"maxOwners":2,"locks":[]}`, 1, "n1")
	if _, _, err := l[0].Acquire(context.Background(), false); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "--concurrency") {
		t.Fatalf("one-holder lock over a multi-holder annotation: %v", err)
	}
	_, _, l = newLocks(t, `{"nodeID":"n9","metadata":{"unschedulable":false},"created":"2026-12-02T05:00:00Z","TTL":0}`, 3, "n1")
	if _, _, err := l[0].Acquire(context.Background(), false); !errors.Is(err, ErrFormat) {
		t.Fatalf("multi-holder lock over a one-holder annotation: %v", err)
	}
	_, _, l = newLocks(t, `not json`, 1, "n1")
	if err := l[0].Release(context.Background()); !errors.Is(err, ErrFormat) {
		t.Fatalf("release over garbage: %v", err)
	}
}

// Writes are guarded by the resourceVersion: a conflict is re-read, and a node that
// lost the race sees the winner.
func TestConflictIsReread(t *testing.T) {
	c, _, l := newLocks(t, "", 1, "n1", "n2")
	raced := false
	c.PrependReactor("update", "daemonsets", func(k8stesting.Action) (bool, runtime.Object, error) {
		if raced {
			return false, nil, nil
		}
		raced = true
		// Another node wins between our read and our write (the tracker, not the
		// client: the fake holds its lock while reactors run).
		gvr := appsv1.SchemeGroupVersion.WithResource("daemonsets")
		obj, err := c.Tracker().Get(gvr, "kube-system", "kured")
		if err != nil {
			t.Error(err)
		}
		ds := obj.(*appsv1.DaemonSet).DeepCopy()
		ds.Annotations = map[string]string{DefaultAnnotation: `{"nodeID":"n2","metadata":{"unschedulable":false},"created":"2026-12-02T06:00:00Z","TTL":0}`}
		if err := c.Tracker().Update(gvr, ds, "kube-system"); err != nil {
			t.Error(err)
		}
		return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "daemonsets"}, "kured", errors.New("changed"))
	})
	got, holders, err := l[0].Acquire(context.Background(), false)
	if err != nil || got || len(holders) != 1 || holders[0] != "n2" {
		t.Fatalf("after losing the race: acquired %v holders %v, %v", got, holders, err)
	}
}

func TestValidate(t *testing.T) {
	for _, l := range []Lock{
		{Client: fake.NewClientset(), Namespace: "kube-system", Annotation: DefaultAnnotation, NodeID: "n", MaxOwners: 1},
		{Client: fake.NewClientset(), Namespace: "kube-system", DaemonSet: "kured", Annotation: DefaultAnnotation, NodeID: "n"},
		{Client: fake.NewClientset(), Namespace: "kube-system", DaemonSet: "kured", Annotation: DefaultAnnotation, NodeID: "n", MaxOwners: 1, TTL: -1},
	} {
		if err := l.Validate(); err == nil {
			t.Errorf("%+v: no error", l)
		}
	}
}

func TestNextExpiry(t *testing.T) {
	c, _, l := newLocks(t, `{"maxOwners":3,"locks":[`+
		`{"nodeID":"a","metadata":{"unschedulable":false},"created":"2026-12-02T05:30:00Z","TTL":3600000000000},`+
		`{"nodeID":"b","metadata":{"unschedulable":false},"created":"2026-12-02T05:50:00Z","TTL":900000000000},`+
		`{"nodeID":"c","metadata":{"unschedulable":false},"created":"2026-12-02T05:00:00Z","TTL":0}]}`, 3, "n1")
	ds, err := c.AppsV1().DaemonSets("kube-system").Get(context.Background(), "kured", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if at, ok := l[0].NextExpiry(ds); !ok || !at.Equal(t0.Add(5*time.Minute)) {
		t.Fatalf("next expiry %v %v, want b's at 06:05", at, ok)
	}
}

// TestKeepRenewsAndRetakes (issue 18, 6): Keep writes nothing while this node's entry
// is younger than a third of the TTL, renews it (created=now, the metadata kept)
// after that, takes it again when it expired with room in the lock, and says who
// holds the lock when it expired without room.
func TestKeepRenewsAndRetakes(t *testing.T) {
	c, clk, l := newLocks(t, "", 1, "n1", "n2")
	for _, lk := range l {
		lk.TTL = time.Minute
	}
	ctx := context.Background()
	if got, _, err := l[0].Acquire(ctx, true); err != nil || !got {
		t.Fatalf("Acquire = %v, %v", got, err)
	}
	entry := func() Entry {
		t.Helper()
		v, _ := annotation(t, c)
		var e Entry
		if err := json.Unmarshal([]byte(v), &e); err != nil {
			t.Fatalf("annotation %q: %v", v, err)
		}
		return e
	}
	clk.Step(19 * time.Second)
	if held, _, created, err := l[0].Keep(ctx, false); err != nil || !held || !created.Equal(t0) || !entry().Created.Equal(t0) {
		t.Fatalf("19s in: Keep = %v, %v, %v; entry %+v; want held, not rewritten", held, created, err, entry())
	}
	clk.Step(time.Second)
	if held, _, created, err := l[0].Keep(ctx, false); err != nil || !held || !created.Equal(t0.Add(20*time.Second)) {
		t.Fatalf("20s in: Keep = %v, %v, %v; want renewed", held, created, err)
	}
	if e := entry(); !e.Created.Equal(t0.Add(20*time.Second)) || !e.Metadata.Unschedulable || e.TTL != time.Minute {
		t.Fatalf("renewed entry %+v: want created 20s in, unschedulable kept from the acquisition, TTL 1m", e)
	}
	// 70s after the acquisition, 50s after the renewal: still held by n1.
	clk.Step(50 * time.Second)
	if got, holders, err := l[1].Acquire(ctx, false); err != nil || got {
		t.Fatalf("n2 took the lock 50s after n1's renewal (TTL 1m): %v %v %v", got, holders, err)
	}
	// Expired, nobody took it: Keep takes it again.
	clk.Step(time.Minute)
	if held, _, _, err := l[0].Keep(ctx, false); err != nil || !held {
		t.Fatalf("expired with room: Keep = %v, %v; want taken again", held, err)
	}
	// Expired and taken by n2: not held, n2 named.
	clk.Step(2 * time.Minute)
	if got, _, err := l[1].Acquire(ctx, false); err != nil || !got {
		t.Fatalf("n2 could not take the expired lock: %v %v", got, err)
	}
	if held, holders, _, err := l[0].Keep(ctx, false); err != nil || held || len(holders) != 1 || holders[0] != "n2" {
		t.Fatalf("taken by n2: Keep = %v, %v, %v; want not held, holders [n2]", held, holders, err)
	}
}
