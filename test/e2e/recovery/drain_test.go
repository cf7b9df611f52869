package recovery

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// pdbRefusal is the apiserver's answer (429) to an eviction a PodDisruptionBudget
// forbids, which the drain reports while it retries.
const pdbRefusal = "violate the pod's disruption budget"

// guardedPod runs one pod on the node under a PDB that forbids evicting it
// (minAvailable 1 of 1), and returns the pod's name.
func (e *env) guardedPod() string {
	e.t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": "db-" + e.id}
	if _, err := e.bed.Client.CoreV1().Pods(e.ns).Create(ctx, testbed.NewPod(e.ns, "db", e.node, labels), metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.bed.WaitPodsRunning(ctx, e.ns, "app=db-"+e.id, 1, time.Minute); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.bed.Client.PolicyV1().PodDisruptionBudgets(e.ns).Create(ctx, testbed.NewPDB(e.ns, "db", labels, intstr.FromInt32(1)), metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.bed.WaitPDB(ctx, e.ns, "db", 1, time.Minute); err != nil {
		e.t.Fatal(err)
	}
	return "db"
}

// requirePodRunning checks that the guarded pod was never evicted.
func (e *env) requirePodRunning(name string) {
	e.t.Helper()
	p, err := e.bed.Client.CoreV1().Pods(e.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatalf("the PDB-guarded pod: %v", err)
	}
	if !testbed.PodRunning(p) {
		e.t.Fatalf("the PDB-guarded pod is not running: %s", p.Status.Phase)
	}
}

// waitHold waits for the hold annotation the agent sets after max-failures failures.
func (e *env) waitHold(timeout time.Duration, rec *testbed.NodeRecorder) *corev1.Node {
	e.t.Helper()
	n, err := e.bed.WaitNode(context.Background(), e.node, timeout, "on hold", func(n *corev1.Node) bool { return n.Annotations[nodestate.AnnotationHold] != "" })
	if err != nil {
		cordons, _ := rec.Cordons()
		failures := ""
		if n != nil {
			failures = n.Annotations[nodestate.AnnotationFailures]
		}
		e.t.Fatalf("%v; %d cordons meanwhile; failures annotation %q; node changes:%s", err, len(cordons), failures, rec)
	}
	return n
}

// TestDrainBlockedByPDBFailsAndHolds (finding 6 and 7, I4): a pod whose PDB forbids
// its eviction makes every drain fail within --drain-timeout (the eviction is refused
// with 429); each failed drain is undone — uncordoned, slot released — and counted,
// and after --max-failures of them the node goes on hold with the reason, never
// having asked for a reboot.
func TestDrainBlockedByPDBFailsAndHolds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pod := e.guardedPod()
	rec := e.record()
	e.start(testbed.SimConfig{Command: e.args("--drain-timeout", "4s", "--drain-attempts", "1", "--max-failures", "2")})
	e.requireReboot()
	n := e.waitHold(3*time.Minute, rec)
	if !strings.Contains(e.agentLog(), pdbRefusal) {
		t.Errorf("the agent log never shows an eviction refused by the PDB (%q)", pdbRefusal)
	}
	if ev := e.waitEvent("DrainFailed", 10*time.Second); ev.Type != corev1.EventTypeWarning {
		t.Errorf("DrainFailed event of type %s, want Warning", ev.Type)
	}
	held := e.waitEvent("RebootHeld", 30*time.Second)
	t.Logf("hold %q; RebootHeld: %s", n.Annotations[nodestate.AnnotationHold], held.Message)
	if !strings.Contains(strings.ToLower(n.Annotations[nodestate.AnnotationHold]), "drain") {
		t.Errorf("hold reason %q does not say the drain failed", n.Annotations[nodestate.AnnotationHold])
	}
	e.waitSettled(30*time.Second, "on hold")
	cordons, uncordons := rec.Cordons()
	if len(cordons) != 2 || len(uncordons) != 2 {
		t.Errorf("%d cordons and %d uncordons, want 2 and 2 (one per failed drain, each undone); node changes:%s", len(cordons), len(uncordons), rec)
	}
	e.requirePodRunning(pod)
	if r := e.sim.Reboots(); len(r) != 0 || e.sim.State(e.node).Rebooting {
		t.Errorf("a reboot was asked for although every drain failed: %v", r)
	}
	ctx := context.Background()
	if v, ok, err := e.metric(ctx, "rebootgate_on_hold", map[string]string{"node": e.node}); err != nil || !ok || v != 1 {
		t.Errorf("rebootgate_on_hold = %v (present %v, %v), want 1", v, ok, err)
	}
	if v, ok, err := e.metric(ctx, "rebootgate_failures_total", map[string]string{"node": e.node}); err != nil || !ok || v != 2 {
		t.Errorf("rebootgate_failures_total = %v (present %v, %v), want 2 (--max-failures, one per failed drain)", v, ok, err)
	}
}

// TestHoldDuringDrainAbandonsIt (finding 6, I5): while a drain waits on a PDB (with a
// long --drain-timeout), a hold annotation is added; the gate is re-checked during the
// drain, so the drain is abandoned (DrainAbandoned), the node uncordoned and the slot
// released, and no reboot is asked for.
func TestHoldDuringDrainAbandonsIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pod := e.guardedPod()
	e.start(testbed.SimConfig{Command: e.args("--drain-timeout", "10m")})
	e.requireReboot()
	e.waitNode(time.Minute, "draining", func(n *corev1.Node) bool { return phaseOf(n) == "Draining" && n.Spec.Unschedulable })
	// The drain is under way and stuck on the PDB.
	e.waitLog(pdbRefusal, time.Minute)
	held := time.Now()
	if err := e.patchAnnotations(context.Background(), map[string]*string{nodestate.AnnotationHold: ptr("e2e " + e.id + ": stop this reboot")}, false); err != nil {
		t.Fatal(err)
	}
	ev := e.waitEvent("DrainAbandoned", time.Minute)
	e.waitSettled(time.Minute, "after the hold")
	t.Logf("drain abandoned %s after the hold: %s", time.Since(held).Round(time.Millisecond), ev.Message)
	e.requirePodRunning(pod)
	if r := e.sim.Reboots(); len(r) != 0 || e.sim.State(e.node).Rebooting {
		t.Errorf("rebooted although held during the drain: %v", r)
	}
	if n := e.get(); !strings.HasPrefix(n.Annotations[nodestate.AnnotationHold], "e2e "+e.id) {
		t.Errorf("the operator's hold annotation was changed: %q", n.Annotations[nodestate.AnnotationHold])
	}
}
