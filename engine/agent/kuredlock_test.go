package agent

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/rebootgate/rebootgate/engine/kuredlock"
	"github.com/rebootgate/rebootgate/engine/lock"
	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// kuredDaemonSet is kured's DaemonSet with node's entry in its lock, created at
// created with ttl.
func kuredDaemonSet(t *testing.T, node string, created time.Time, ttl time.Duration) *appsv1.DaemonSet {
	t.Helper()
	data, err := json.Marshal(kuredlock.Entry{NodeID: node, Created: created, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kured",
		Annotations: map[string]string{kuredlock.DefaultAnnotation: string(data)}}}
}

// verifyingNode is n1 back from its reboot, cordoned by rebootgate, in Verifying
// since since, holding slot 0 of pool default.
func verifyingNode(since time.Time) *corev1.Node {
	n := fakeNode("n1", "boot-2")
	n.Spec.Unschedulable = true
	n.Annotations = map[string]string{
		nodestate.AnnotationPhase: string(nodestate.PhaseVerifying), nodestate.AnnotationPhaseSince: since.UTC().Format(time.RFC3339),
		nodestate.AnnotationCordonedByUs: "true", nodestate.AnnotationBootIDBefore: "boot-1",
		nodestate.AnnotationSlot: lock.SlotLeaseName("default", 0), nodestate.AnnotationPool: "default",
	}
	return n
}

func kuredLockConfig(ttl time.Duration) *kuredlock.Lock {
	return &kuredlock.Lock{Namespace: "kube-system", DaemonSet: "kured", Annotation: kuredlock.DefaultAnnotation, MaxOwners: 1, TTL: ttl}
}

// kuredHolders reads who holds kured's lock now, by lk's clock.
func kuredHolders(t *testing.T, client *fake.Clientset, lk *kuredlock.Lock) []string {
	t.Helper()
	ds, err := client.AppsV1().DaemonSets("kube-system").Get(context.Background(), "kured", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	holders, err := lk.Holders(ds)
	if err != nil {
		t.Fatal(err)
	}
	return holders
}

// TestKuredEntryKeptThroughVerifyingAndSoak (issue 18, 6): a node that took kured's
// lock (TTL 1m) and soaks for 10 minutes after its reboot keeps its entry valid the
// whole time: a kured agent reading the lock at any moment sees it held by this node.
func TestKuredEntryKeptThroughVerifyingAndSoak(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	const ttl = time.Minute
	client := fake.NewClientset(verifyingNode(t0), kuredDaemonSet(t, "n1", t0, ttl))
	a, err := New(Config{
		NodeName: "n1", Namespace: "rebootgate", SentinelPath: filepath.Join(t.TempDir(), "reboot-required"),
		Soak: 10 * time.Minute, KuredLock: kuredLockConfig(ttl),
	}, client, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(t0.Add(5 * time.Second))
	a.clock, a.cfg.KuredLock.Clock = clk, clk
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := a.startInformers(ctx); err != nil {
		t.Fatal(err)
	}
	// A kured agent's view of the lock, on the same clock.
	kured := kuredLockConfig(ttl)
	kured.Client, kured.NodeID, kured.Clock = client, "kured-node", clk
	for clk.Now().Before(t0.Add(10 * time.Minute)) {
		next, err := a.reconcile(ctx)
		if err != nil {
			t.Fatalf("%s into Verifying: %v", clk.Now().Sub(t0), err)
		}
		if ph := nodestate.StateOf(mustNode(t, client)).Phase; ph != nodestate.PhaseVerifying {
			t.Fatalf("%s into Verifying: phase %q, want still Verifying (soaking)", clk.Now().Sub(t0), ph)
		}
		if next <= 0 || next > ttl {
			t.Fatalf("%s into Verifying: next look in %v, want within kured's TTL %v", clk.Now().Sub(t0), next, ttl)
		}
		clk.Step(next)
		if h := kuredHolders(t, client, kured); len(h) != 1 || h[0] != "n1" {
			t.Fatalf("%s into Verifying (soaking): kured's lock is held by %v, want n1 (its entry must not expire)", clk.Now().Sub(t0), h)
		}
	}
}

func mustNode(t *testing.T, client *fake.Clientset) *corev1.Node {
	t.Helper()
	n, err := client.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestKuredReleaseFailureDoesNotHoldTheSlot (issue 18, 6): while every write of kured's
// DaemonSet fails, a node that finishes its reboot still releases its slot, so the
// pool goes on; once the writes succeed again, its idle agent gives kured's lock back
// by itself.
func TestKuredReleaseFailureDoesNotHoldTheSlot(t *testing.T) {
	now := time.Now()
	lease := lock.SlotLeaseName("default", 0)
	client := fake.NewClientset(verifyingNode(now.Add(-time.Minute)), kuredDaemonSet(t, "n1", now.Add(-time.Minute), 0), slotLease(lease, "n1", now))
	var failKured atomic.Bool
	failKured.Store(true)
	client.PrependReactor("update", "daemonsets", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failKured.Load() {
			return true, nil, apierrors.NewInternalError(errKuredWrite)
		}
		return false, nil, nil
	})
	a, err := New(Config{
		NodeName: "n1", Namespace: "rebootgate", SentinelPath: filepath.Join(t.TempDir(), "reboot-required"),
		KuredLock: kuredLockConfig(0), RecheckInterval: 500 * time.Millisecond, MaxErrorBackoff: time.Second,
	}, client, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitFor(t, ctx, "the node finished and its slot released while kured's lock cannot be written", func() bool {
		n, err := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		if err != nil || n.Spec.Unschedulable || nodestate.StateOf(n).Phase != nodestate.PhaseIdle {
			return false
		}
		l, err := client.CoordinationV1().Leases("rebootgate").Get(ctx, lease, metav1.GetOptions{})
		return err == nil && (l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "")
	})
	if h := kuredHolders(t, client, a.cfg.KuredLock); len(h) != 1 || h[0] != "n1" {
		t.Fatalf("kured's lock held by %v while its writes fail, want still n1", h)
	}
	failKured.Store(false)
	waitFor(t, ctx, "kured's lock given back once its writes succeed", func() bool {
		return len(kuredHolders(t, client, a.cfg.KuredLock)) == 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

var errKuredWrite = errors.New("kured's DaemonSet cannot be written (test)")
