package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/lock"
	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// slotKeyConfig keys slots by zone and rack: a computed key, so only the decision's
// value (not a label read by the agent) can name the right Leases.
const slotKeyConfig = `apiVersion: rebootgate.io/v1alpha1
kind: RebootGateConfig
pools:
- name: user
  concurrency: 5
  slotKey: 'node.labels["zone"] + "-" + node.labels["rack"]'
`

// startSlotKeyAgent runs an agent for n1 (with labels) whose sentinel exists, next
// to n2, which holds slot 0 and the "a-r1" key Lease; it returns the reboot marker
// and a context that ends with the agent's 20 s.
func startSlotKeyAgent(t *testing.T, labels map[string]string) (ctx context.Context, client *fake.Clientset, requested string, stop func()) {
	t.Helper()
	dir := t.TempDir()
	sentinel := filepath.Join(dir, "reboot-required")
	requested = filepath.Join(dir, "reboot-requested")
	other := "n2"
	renew := metav1.NewMicroTime(time.Now())
	ttl := int32(120)
	held := func(name string) *coordinationv1.Lease {
		return &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "rebootgate", Labels: map[string]string{lock.LabelPool: "user"},
				Annotations: map[string]string{lock.AnnotationSlotValue: "a-r1"}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &other, RenewTime: &renew, AcquireTime: &renew, LeaseDurationSeconds: &ttl},
		}
	}
	client = fake.NewClientset(
		&corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: labels},
			Status: corev1.NodeStatus{
				NodeInfo:   corev1.NodeSystemInfo{BootID: "boot-1"},
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			},
		},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: other}},
		held(lock.SlotLeaseName("user", 0)),
		held(keyLease("a-r1")),
	)
	if err := os.WriteFile(sentinel, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, stop = runSlotKeyAgent(t, client, Config{SentinelPath: sentinel, RebootCommand: []string{"touch", requested}})
	return ctx, client, requested, stop
}

// runSlotKeyAgent runs n1's agent under slotKeyConfig with cfg's sentinel, reboot
// command and flags; the context ends with the agent's 20 s, stop ends it sooner.
func runSlotKeyAgent(t *testing.T, client kubernetes.Interface, cfg Config) (context.Context, func()) {
	t.Helper()
	inline, err := config.Parse([]byte(slotKeyConfig))
	if err != nil {
		t.Fatal(err)
	}
	cfg.NodeName, cfg.Namespace, cfg.InlineConfig = "n1", "rebootgate", inline
	cfg.RecheckInterval, cfg.LockJitter, cfg.RebootTimeout, cfg.ReadyTimeout = 200*time.Millisecond, -1, time.Minute, time.Minute
	a, err := New(cfg, client, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return ctx, func() {
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// keyLease is the name of the first key Lease of value in pool user.
func keyLease(value string) string { return lock.KeyLeaseName("user", value, 0) }

func leases(t *testing.T, client kubernetes.Interface) []coordinationv1.Lease {
	t.Helper()
	list, err := client.CoordinationV1().Leases("rebootgate").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// TestAgentWaitsUnderTheDecisionsSlotKey: the agent queues and claims under the key
// its decision computed ("a-r1"), so it waits while n2 holds that key and reboots
// once n2 gives it back.
func TestAgentWaitsUnderTheDecisionsSlotKey(t *testing.T) {
	ctx, client, requested, stop := startSlotKeyAgent(t, map[string]string{"zone": "a", "rack": "r1"})
	defer stop()
	waitFor(t, ctx, "n1 queued under key a-r1", func() bool {
		for _, l := range leases(t, client) {
			if l.Annotations[lock.AnnotationWaiter] == "n1" && l.Annotations[lock.AnnotationSlotValue] == "a-r1" {
				return true
			}
		}
		return false
	})
	n, _ := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	if d := n.Annotations[nodestate.AnnotationDecision]; !strings.Contains(d, `"allowed":true`) || !strings.Contains(d, `"slotKey":"a-r1"`) {
		t.Fatalf("decision = %s, want allowed with slotKey a-r1", d)
	}
	time.Sleep(500 * time.Millisecond) // a few re-checks: 4 slots are free, only the key is taken
	if _, err := os.Stat(requested); err == nil || n.Spec.Unschedulable {
		t.Fatal("n1 went ahead while n2 held its key")
	}
	for _, name := range []string{lock.SlotLeaseName("user", 0), keyLease("a-r1")} {
		l, err := client.CoordinationV1().Leases("rebootgate").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		l.Spec.HolderIdentity = nil
		if _, err := client.CoordinationV1().Leases("rebootgate").Update(ctx, l, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, ctx, "the reboot command", func() bool { _, err := os.Stat(requested); return err == nil })
	n, _ = client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	if st := nodestate.StateOf(n); st.SlotValue != "a-r1" || st.Pool != "user" {
		t.Errorf("node state slot %q pool %q value %q, want user/a-r1", st.Slot, st.Pool, st.SlotValue)
	}
	key, err := client.CoordinationV1().Leases("rebootgate").Get(ctx, keyLease("a-r1"), metav1.GetOptions{})
	if err != nil || key.Spec.HolderIdentity == nil || *key.Spec.HolderIdentity != "n1" {
		t.Errorf("key Lease of a-r1: %v %+v, want held by n1", err, key)
	}
}

// TestAgentWithoutSlotKeyNeverWaits: without the rack label n1's key cannot be
// computed; the decision denies it naming the pool and expression, and it never
// queues or takes a slot although four are free.
func TestAgentWithoutSlotKeyNeverWaits(t *testing.T) {
	ctx, client, requested, stop := startSlotKeyAgent(t, map[string]string{"zone": "a"})
	defer stop()
	waitFor(t, ctx, "a decision", func() bool {
		n, err := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		return err == nil && n.Annotations[nodestate.AnnotationDecision] != ""
	})
	time.Sleep(500 * time.Millisecond) // a few re-checks
	n, _ := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	d := n.Annotations[nodestate.AnnotationDecision]
	for _, want := range []string{`"allowed":false`, `"source":"slotKey"`, `pool \"user\": slot key node.labels[\"zone\"] + \"-\" + node.labels[\"rack\"]`, "no such key: rack"} {
		if !strings.Contains(d, want) {
			t.Errorf("decision %s lacks %s", d, want)
		}
	}
	for _, l := range leases(t, client) {
		if l.Annotations[lock.AnnotationWaiter] == "n1" || (l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == "n1") {
			t.Errorf("n1 queued or holds %s", l.Name)
		}
	}
	if _, err := os.Stat(requested); err == nil || n.Spec.Unschedulable {
		t.Fatal("n1 rebooted without a slot key")
	}
}

// TestAgentKeepsItsKeyWhileMidRebootWithoutItsSlot: n1's agent restarts after the
// reboot, still not Ready, and finds its slot Lease deleted (an operator, or a
// cleanup, removed it while n1 was down) but its key Lease. It keeps the key while it
// is mid-reboot, so that no other node of its zone goes down meanwhile, and gives it
// back once its reboot has ended.
func TestAgentKeepsItsKeyWhileMidRebootWithoutItsSlot(t *testing.T) {
	since := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	renew := metav1.NewMicroTime(time.Now().Add(-time.Minute))
	me, ttl := "n1", int32(120)
	client := fake.NewClientset(
		&corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:   "n1",
				Labels: map[string]string{"zone": "a", "rack": "r1", nodestate.LabelHoldsKey: lock.HoldsKeyValue("rebootgate", "user", "a-r1")},
				Annotations: map[string]string{
					nodestate.AnnotationPhase: string(nodestate.PhaseVerifying), nodestate.AnnotationPhaseSince: since,
					nodestate.AnnotationSlot: lock.SlotLeaseName("user", 1), nodestate.AnnotationPool: "user", nodestate.AnnotationSlotValue: "a-r1",
					nodestate.AnnotationBootIDBefore: "boot-1",
				},
			},
			Status: corev1.NodeStatus{
				NodeInfo:   corev1.NodeSystemInfo{BootID: "boot-2"},
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse}},
			},
		},
		&coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: keyLease("a-r1"), Namespace: "rebootgate", Labels: map[string]string{lock.LabelPool: "user"},
				Annotations: map[string]string{lock.AnnotationSlotValue: "a-r1"}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &me, RenewTime: &renew, AcquireTime: &renew, LeaseDurationSeconds: &ttl},
		},
	)
	ctx, stop := runSlotKeyAgent(t, client, Config{
		SentinelPath: filepath.Join(t.TempDir(), "reboot-required"), RebootCommand: []string{"false"}, MaintenanceConditions: true,
	})
	defer stop()
	keyHolder := func() string {
		l, err := client.CoordinationV1().Leases("rebootgate").Get(ctx, keyLease("a-r1"), metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	node := func() *corev1.Node {
		n, err := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// The lifecycle conditions are written on the pass that resumed (or not) the slot.
	waitFor(t, ctx, "the agent's first pass (lifecycle conditions written)", func() bool {
		return len(node().Status.Conditions) > 1
	})
	if h := keyHolder(); h != "n1" {
		t.Fatalf("key Lease held by %q after the agent resumed mid-reboot without its slot, want n1", h)
	}
	n := node()
	for i := range n.Status.Conditions { // n1 is Ready: it finishes
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			n.Status.Conditions[i].Status = corev1.ConditionTrue
		}
	}
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the reboot to end and the key Lease to be given back", func() bool {
		return nodestate.StateOf(node()).Phase == nodestate.PhaseIdle && keyHolder() == ""
	})
	if _, ok := node().Labels[nodestate.LabelHoldsKey]; ok {
		t.Errorf("label %s left after the reboot ended", nodestate.LabelHoldsKey)
	}
}
