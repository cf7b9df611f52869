package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/rebootgate/rebootgate/engine/lock"
	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// TestAgentRebootsWithFakeAPI runs the whole agent loop against a fake API: the
// sentinel appears, the agent decides, takes a slot, cordons, drains, runs the reboot
// command; the test plays the host and changes the boot ID; the agent verifies,
// uncordons and releases.
func TestAgentRebootsWithFakeAPI(t *testing.T) {
	client := fake.NewClientset(fakeNode("n1", "boot-1"))
	ctx := fakeReboot(t, client, Config{NodeName: "n1"}, nil)
	n, _ := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	if !strings.Contains(n.Annotations[nodestate.AnnotationDecision], `"allowed":true`) || n.Annotations[nodestate.AnnotationLastReboot] == "" {
		t.Errorf("annotations = %v", n.Annotations)
	}
}

// fakeNode is a Ready node of pool user with a boot ID.
func fakeNode(name, bootID string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"agentpool": "user"}},
		Status: corev1.NodeStatus{
			NodeInfo:   corev1.NodeSystemInfo{BootID: bootID},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
}

// fakeReboot runs the agent of cfg.NodeName (cfg completed with a sentinel, a reboot
// command and short timings) through one whole reboot on the fake API and stops it
// once the node is idle, uncordoned and its slot released, and settled (if not nil)
// holds of it. It returns a context still valid for reading the result.
func fakeReboot(t *testing.T, client *fake.Clientset, cfg Config, settled func(*corev1.Node) bool) context.Context {
	t.Helper()
	dir := t.TempDir()
	sentinel := filepath.Join(dir, "reboot-required")
	requested := filepath.Join(dir, "reboot-requested")
	cfg.Namespace, cfg.SentinelPath, cfg.RebootCommand = "rebootgate", sentinel, []string{"touch", requested}
	cfg.RecheckInterval, cfg.LockJitter, cfg.RebootTimeout, cfg.ReadyTimeout = 500*time.Millisecond, -1, time.Minute, time.Minute
	a, err := New(cfg, client, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()

	if err := os.WriteFile(sentinel, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the reboot command", func() bool { _, err := os.Stat(requested); return err == nil })
	n, err := client.CoreV1().Nodes().Get(ctx, cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !n.Spec.Unschedulable || nodestate.StateOf(n).Phase != nodestate.PhaseRebooting {
		t.Fatalf("at the reboot: unschedulable=%v phase=%q", n.Spec.Unschedulable, nodestate.StateOf(n).Phase)
	}
	// The host reboots: new boot ID, sentinel gone.
	n.Status.NodeInfo.BootID += "-next"
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(sentinel); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "uncordon and slot release", func() bool {
		n, err := client.CoreV1().Nodes().Get(ctx, cfg.NodeName, metav1.GetOptions{})
		if err != nil || n.Spec.Unschedulable || nodestate.StateOf(n).Phase != nodestate.PhaseIdle {
			return false
		}
		holders, n0 := slotHolders(ctx, client)
		return holders == "" && n0 > 0 && (settled == nil || settled(n))
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return ctx
}

// slotHolders lists the holders of the Leases in namespace rebootgate ("" when none is
// held, or the list failed) and counts the Leases.
func slotHolders(ctx context.Context, client *fake.Clientset) (string, int) {
	leases, err := client.CoordinationV1().Leases("rebootgate").List(ctx, metav1.ListOptions{})
	if err != nil {
		return "list failed: " + err.Error(), 0
	}
	var holders []string
	for _, l := range leases.Items {
		if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
			holders = append(holders, l.Name+" by "+*l.Spec.HolderIdentity)
		}
	}
	return strings.Join(holders, ", "), len(leases.Items)
}

// runAgent builds the agent of cfg on client, logging to t, and runs it until the
// returned context (bounded by timeout) ends or stop is called; stop fails t if Run
// returned an error other than its cancellation.
func runAgent(t *testing.T, cfg Config, client *fake.Clientset, timeout time.Duration) (context.Context, func()) {
	t.Helper()
	a, err := New(cfg, client, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return ctx, func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestSentinelGoneWhileWaitingForSlot: a node waiting for a busy slot whose sentinel
// disappears must not reboot when the slot frees.
func TestSentinelGoneWhileWaitingForSlot(t *testing.T) {
	dir := t.TempDir()
	sentinel := filepath.Join(dir, "reboot-required")
	requested := filepath.Join(dir, "reboot-requested")
	other := "n2"
	renew := metav1.NewMicroTime(time.Now())
	ttl := int32(120)
	client := fake.NewClientset(
		&corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "n1"},
			Status: corev1.NodeStatus{
				NodeInfo:   corev1.NodeSystemInfo{BootID: "boot-1"},
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			},
		},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: other}},
		&coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: "rebootgate-default-0", Namespace: "rebootgate", Labels: map[string]string{lock.LabelPool: "default"}},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &other, RenewTime: &renew, AcquireTime: &renew, LeaseDurationSeconds: &ttl},
		},
	)
	if err := os.WriteFile(sentinel, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, stop := runAgent(t, Config{
		NodeName: "n1", Namespace: "rebootgate", SentinelPath: sentinel,
		RebootCommand: []string{"touch", requested}, RecheckInterval: 200 * time.Millisecond, LockJitter: -1,
	}, client, 20*time.Second)
	waitFor(t, ctx, "an allowed decision", func() bool {
		n, err := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		return err == nil && strings.Contains(n.Annotations[nodestate.AnnotationDecision], `"allowed":true`)
	})
	if err := os.Remove(sentinel); err != nil {
		t.Fatal(err)
	}
	// Free the slot: the waiting agent may take it, but must not reboot.
	l, err := client.CoordinationV1().Leases("rebootgate").Get(ctx, "rebootgate-default-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l.Spec.HolderIdentity = nil
	if _, err := client.CoordinationV1().Leases("rebootgate").Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the reboot-required condition to clear", func() bool {
		n, err := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		return err == nil && n.Annotations[nodestate.AnnotationRebootRequired] == ""
	})
	// The loop records the cleared sentinel only after the cycle that waited for the
	// slot has returned, pipeline included, so a wrong reboot would have happened by now.
	if _, err := os.Stat(requested); err == nil {
		t.Fatal("rebooted although the reboot was no longer required")
	}
	if n, _ := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{}); n.Spec.Unschedulable {
		t.Fatal("cordoned although the reboot was no longer required")
	}
	stop()
}

// TestFailedFinishIsRetriedUntilUncordoned: the patch that ends the reboot (uncordon,
// clear the phase) is refused three times; the reconcile loop retries it with back-off
// until it lands, and only then releases the slot.
func TestFailedFinishIsRetriedUntilUncordoned(t *testing.T) {
	dir := t.TempDir()
	sentinel := filepath.Join(dir, "reboot-required")
	requested := filepath.Join(dir, "reboot-requested")
	client := fake.NewClientset(&corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Status: corev1.NodeStatus{
			NodeInfo:   corev1.NodeSystemInfo{BootID: "boot-1"},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	})
	var denied atomic.Int32
	client.PrependReactor("patch", "nodes", func(action k8stesting.Action) (bool, runtime.Object, error) {
		p, ok := action.(k8stesting.PatchAction)
		if ok && strings.Contains(string(p.GetPatch()), `"unschedulable":false`) && denied.Load() < 3 {
			denied.Add(1)
			return true, nil, apierrors.NewForbidden(corev1.Resource("nodes"), "n1", errors.New("denied by a test"))
		}
		return false, nil, nil
	})
	ctx, stop := runAgent(t, Config{
		NodeName: "n1", Namespace: "rebootgate", SentinelPath: sentinel,
		RebootCommand: []string{"touch", requested}, RecheckInterval: 500 * time.Millisecond,
		LockJitter: -1, RebootTimeout: time.Minute, ReadyTimeout: time.Minute,
		ErrorBackoff: 50 * time.Millisecond, PollInterval: 50 * time.Millisecond,
	}, client, 30*time.Second)
	if err := os.WriteFile(sentinel, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the reboot command", func() bool { _, err := os.Stat(requested); return err == nil })
	n, err := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.NodeInfo.BootID = "boot-2"
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(sentinel); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "uncordon after the refused patches", func() bool {
		n, err := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		return err == nil && !n.Spec.Unschedulable && nodestate.StateOf(n).Phase == nodestate.PhaseIdle
	})
	if got := denied.Load(); got != 3 {
		t.Fatalf("the finishing patch was refused %d times, want 3 (the test did not exercise the retry)", got)
	}
	waitFor(t, ctx, "slot release", func() bool {
		leases, err := client.CoordinationV1().Leases("rebootgate").List(ctx, metav1.ListOptions{})
		if err != nil || len(leases.Items) == 0 {
			return false
		}
		for _, l := range leases.Items {
			if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
				return false
			}
		}
		return true
	})
	stop()
}

// TestFailedSlotClaimBacksOff: every claim of a slot fails (here: the namespace does
// not exist). The agent retries on the lock's error back-off (1 s, 2 s, 4 s, ...),
// not each time its decision at the head of the queue is refreshed; before, that
// refresh woke the waiter at once and it retried five times a second.
func TestFailedSlotClaimBacksOff(t *testing.T) {
	dir := t.TempDir()
	sentinel := filepath.Join(dir, "reboot-required")
	if err := os.WriteFile(sentinel, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset(fakeNode("n1", "boot-1"))
	var claims atomic.Int32
	client.PrependReactor("create", "leases", func(action k8stesting.Action) (bool, runtime.Object, error) {
		l := action.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease)
		if strings.HasPrefix(l.Name, "rebootgate-default-") && !strings.Contains(l.Name, "-q-") { // a slot, not a queue ticket
			claims.Add(1)
		}
		return true, nil, apierrors.NewNotFound(corev1.Resource("namespaces"), "rebootgate")
	})
	ctx, stop := runAgent(t, Config{
		NodeName: "n1", Namespace: "rebootgate", SentinelPath: sentinel,
		RebootCommand: []string{"false"}, RecheckInterval: time.Minute, LockJitter: 50 * time.Millisecond,
	}, client, 20*time.Second)
	waitFor(t, ctx, "a first claim", func() bool { return claims.Load() > 0 })
	start := time.Now()
	time.Sleep(2500 * time.Millisecond)
	// Claims after the first one come no earlier than 1 s and 1+2 s later: at most 2
	// more in 2.5 s (a slow machine makes fewer, never more).
	if n, took := claims.Load(), time.Since(start); n > 3 {
		t.Errorf("%d claims of a slot in %v after the first; want at most 3 in all on the 1 s, 2 s back-off", n, took.Round(time.Millisecond))
	}
	stop()
}

// TestSlotLostBeforeCordonWaitsAgain: the slot's Lease is lost between the claim and
// the cordon (here: the confirming write finds it gone, as after an API server
// restart). The agent gives the slot back and, the reboot still needed and allowed,
// waits for a slot again and reboots. Before, it released and then waited for an
// event that never came (the chaos rollout's seed 2: silent for minutes).
func TestSlotLostBeforeCordonWaitsAgain(t *testing.T) {
	dir := t.TempDir()
	sentinel := filepath.Join(dir, "reboot-required")
	requested := filepath.Join(dir, "reboot-requested")
	if err := os.WriteFile(sentinel, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset(fakeNode("n1", "boot-1"))
	var lost atomic.Bool
	client.PrependReactor("update", "leases", func(action k8stesting.Action) (bool, runtime.Object, error) {
		l := action.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease)
		if strings.Contains(l.Name, "-q-") || lost.Load() || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != "n1" {
			return false, nil, nil
		}
		lost.Store(true) // the first write renewing n1's hold: the Lease is gone
		return true, nil, apierrors.NewNotFound(coordinationv1.Resource("leases"), l.Name)
	})
	ctx, stop := runAgent(t, Config{
		NodeName: "n1", Namespace: "rebootgate", SentinelPath: sentinel,
		RebootCommand: []string{"touch", requested}, RecheckInterval: time.Minute, LockJitter: -1,
		ErrorBackoff: 50 * time.Millisecond,
	}, client, 20*time.Second)
	waitFor(t, ctx, "the reboot command after the lost slot", func() bool { _, err := os.Stat(requested); return err == nil })
	if !lost.Load() {
		t.Fatal("the slot was never lost: the test did not exercise the loss")
	}
	stop()
}
