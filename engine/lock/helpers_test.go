package lock

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	k8stesting "k8s.io/client-go/testing"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/rebootgate/rebootgate/engine/nodestate"
)

const (
	testNS   = "rebootgate"
	testPool = "workers"
	testTTL  = time.Minute
)

var t0 = time.Date(2026, 11, 21, 3, 0, 0, 0, time.UTC)

// newClient returns a fake clientset whose Leases behave like the API
// server's for the purpose of this package: Create sets a resourceVersion,
// and Update is rejected with 409 unless it carries the current one. The
// stock fake accepts any Update, which would make every race test vacuous.
// The simple tracker is used because field management (NewClientset) costs
// milliseconds per write and would swamp the hand-off measurement.
func newClient(t testing.TB, objs ...runtime.Object) *fake.Clientset {
	t.Helper()
	cs := fake.NewSimpleClientset(objs...)
	gvr := coordinationv1.SchemeGroupVersion.WithResource("leases")
	gr := gvr.GroupResource()
	tracker := cs.Tracker()
	// The fake already runs reactors under one lock; mu makes the
	// check-and-write atomicity explicit, as etcd's compare-and-swap is.
	var mu sync.Mutex
	var version int64 = 1000
	cs.PrependReactor("create", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		l := a.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		if l.ResourceVersion != "" {
			return true, nil, apierrors.NewBadRequest("resourceVersion should not be set on objects to be created")
		}
		version++
		l.ResourceVersion = strconv.FormatInt(version, 10)
		if err := tracker.Create(gvr, l, a.GetNamespace()); err != nil {
			return true, nil, err
		}
		return true, l.DeepCopy(), nil
	})
	cs.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		l := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		cur, err := tracker.Get(gvr, a.GetNamespace(), l.Name)
		if err != nil {
			return true, nil, err
		}
		if rv := cur.(*coordinationv1.Lease).ResourceVersion; l.ResourceVersion != rv {
			return true, nil, apierrors.NewConflict(gr, l.Name, fmt.Errorf("resourceVersion %q is not the current %q", l.ResourceVersion, rv))
		}
		version++
		l.ResourceVersion = strconv.FormatInt(version, 10)
		if err := tracker.Update(gvr, l, a.GetNamespace()); err != nil {
			return true, nil, err
		}
		return true, l.DeepCopy(), nil
	})
	return cs
}

func node(name string) *corev1.Node { return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}} }

// rebootingNode is a Node whose agent is mid-reboot since since.
func rebootingNode(name string, since time.Time) *corev1.Node {
	n := node(name)
	n.Annotations = map[string]string{nodestate.AnnotationPhase: "Rebooting", nodestate.AnnotationPhaseSince: since.UTC().Format(time.RFC3339)}
	return n
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// newSem builds a Semaphore for holder with test defaults: no jitter, the
// given fake clock, every holder node existing and idle unless mut says
// otherwise.
func newSem(t testing.TB, cs *fake.Clientset, clk *testingclock.FakeClock, holder string, mut ...func(*Config)) *Semaphore {
	t.Helper()
	cfg := Config{
		Client:    cs,
		Namespace: testNS,
		Pool:      testPool,
		Holder:    holder,
		TTL:       testTTL,
		Jitter:    -1,
		Clock:     clk,
		HolderStatus: func(context.Context, string) (nodestate.HolderStatus, error) {
			return nodestate.HolderStatus{Exists: true}, nil
		},
		Logger: discard,
	}
	for _, m := range mut {
		m(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func fixed(n int) func() int { return func() int { return n } }

// eventually waits (a short, bounded real-time wait) until cond holds.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// never checks that cond stays false for a short while.
func never(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(150 * time.Millisecond)
	for time.Now().Before(deadline) {
		if cond() {
			t.Fatalf("unexpectedly %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

type acquireResult struct {
	held *Held
	err  error
}

// acquireAsync starts Acquire in a goroutine.
func acquireAsync(ctx context.Context, s *Semaphore, slots func() int) <-chan acquireResult {
	ch := make(chan acquireResult, 1)
	go func() {
		h, err := s.Acquire(ctx, slots)
		ch <- acquireResult{h, err}
	}()
	return ch
}

// acquiredAfter checks that the Acquire behind ch gets a slot only once
// release is released, and returns that slot.
func acquiredAfter(t testing.TB, ch <-chan acquireResult, release *Held, what string) *Held {
	t.Helper()
	never(t, what+" before the release", received(ch))
	mustRelease(t, release)
	eventually(t, what+" after the release", received(ch))
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.held
}

func received(ch <-chan acquireResult) func() bool {
	return func() bool { return len(ch) > 0 }
}

func mustTry(t testing.TB, s *Semaphore, slots int) *Held {
	t.Helper()
	h, ok, err := s.TryAcquire(context.Background(), slots)
	if err != nil || !ok {
		t.Fatalf("TryAcquire(%s): ok=%v err=%v", s.holder, ok, err)
	}
	return h
}

func mustRelease(t testing.TB, h *Held) {
	t.Helper()
	if err := h.Release(context.Background()); err != nil {
		t.Fatalf("Release %s: %v", h.Name(), err)
	}
}

func getLease(t testing.TB, cs *fake.Clientset, name string) *coordinationv1.Lease {
	t.Helper()
	l, err := cs.CoordinationV1().Leases(testNS).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get lease %s: %v", name, err)
	}
	return l
}

// putLease creates a slot Lease as another (possibly departed) node left it.
func putLease(t testing.TB, cs *fake.Clientset, name, holder string, renewed time.Time, ttl time.Duration) {
	t.Helper()
	mt := metav1.NewMicroTime(renewed)
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, Labels: map[string]string{LabelPool: testPool}},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptrTo(holder),
			LeaseDurationSeconds: ptrTo(ttlSeconds(ttl)),
			AcquireTime:          &mt,
			RenewTime:            &mt,
			LeaseTransitions:     ptrTo(int32(1)),
		},
	}
	if _, err := cs.CoordinationV1().Leases(testNS).Create(context.Background(), l, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create lease %s: %v", name, err)
	}
}

func heldCount(t testing.TB, cs *fake.Clientset) int {
	t.Helper()
	hs, err := Holders(context.Background(), cs, testNS, testPool)
	if err != nil {
		t.Fatalf("Holders: %v", err)
	}
	return len(hs)
}

// barrierClient delays Lease Lists until n of them are in flight.
type barrierClient struct {
	*fake.Clientset
	barrier *listBarrier
}

type listBarrier struct {
	n     int32
	count atomic.Int32
	all   chan struct{}
}

func (c *barrierClient) CoordinationV1() coordinationv1client.CoordinationV1Interface {
	return barrierCoordination{c.Clientset.CoordinationV1(), c.barrier}
}

type barrierCoordination struct {
	coordinationv1client.CoordinationV1Interface
	barrier *listBarrier
}

func (b barrierCoordination) Leases(ns string) coordinationv1client.LeaseInterface {
	return barrierLeases{b.CoordinationV1Interface.Leases(ns), b.barrier}
}

type barrierLeases struct {
	coordinationv1client.LeaseInterface
	barrier *listBarrier
}

func (b barrierLeases) List(ctx context.Context, opts metav1.ListOptions) (*coordinationv1.LeaseList, error) {
	list, err := b.LeaseInterface.List(ctx, opts)
	if b.barrier.count.Add(1) == b.barrier.n {
		close(b.barrier.all)
	}
	select {
	case <-b.barrier.all:
	case <-time.After(5 * time.Second):
	}
	return list, err
}
