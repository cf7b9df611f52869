package recovery

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/rebootgate/rebootgate/test/testbed"
)

// TestSoakRestartsAfterNotReady (finding 9): with --soak 10s the node must stay
// healthy for 10s before it is uncordoned. It goes NotReady 3s into the soak for 3s;
// the soak keeps checking health and starts over, so the uncordon comes at least 10s
// after the node is Ready again — not 10s after the soak first began.
func TestSoakRestartsAfterNotReady(t *testing.T) {
	t.Parallel()
	const soak = 10 * time.Second
	e := newEnv(t)
	rec := e.record()
	e.start(testbed.SimConfig{Command: e.args("--soak", soak.String())})
	ctx := context.Background()
	e.requireReboot()
	reboots, err := e.sim.WaitForReboots(ctx, 1, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// The simulator starts the agent once the node is Ready with its new boot ID: the
	// soak begins about then. The fault is scheduled from that moment.
	up := reboots[0].UpAt
	time.Sleep(time.Until(up.Add(3 * time.Second)))
	if n := e.get(); !n.Spec.Unschedulable || phaseOf(n) != "Verifying" {
		t.Fatalf("3s into the soak: unschedulable=%v phase=%q, want cordoned in Verifying", n.Spec.Unschedulable, phaseOf(n))
	}
	if err := e.patchAnnotations(ctx, map[string]*string{testbed.PoweredOffAnnotation: ptr("true")}, false); err != nil {
		t.Fatal(err)
	}
	e.waitNode(30*time.Second, "NotReady during the soak", testbed.NodeNotReady)
	notReady := time.Now()
	time.Sleep(time.Until(notReady.Add(3 * time.Second)))
	if err := e.patchAnnotations(ctx, map[string]*string{testbed.PoweredOffAnnotation: nil}, false); err != nil {
		t.Fatal(err)
	}
	e.waitNode(30*time.Second, "Ready again", testbed.NodeReady)
	readyAgain := time.Now()
	if n := e.get(); !n.Spec.Unschedulable {
		t.Fatalf("uncordoned while it was NotReady (soak over at %s, NotReady at %s); node changes:%s",
			up.Add(soak).Format(time.RFC3339Nano), notReady.Format(time.RFC3339Nano), rec)
	}
	e.waitSettled(soak+time.Minute, "after the soak")
	_, uncordons := rec.Cordons()
	if len(uncordons) != 1 {
		t.Fatalf("%d uncordons, want 1; node changes:%s", len(uncordons), rec)
	}
	// Ready is seen here up to a poll interval after it happened; allow that much.
	if healthy := uncordons[0].Sub(readyAgain); healthy < soak-300*time.Millisecond {
		t.Errorf("uncordoned %s after the node was Ready again, want ≥ --soak %s (the soak clock must restart on a failure); first soak began ~%s",
			healthy.Round(time.Millisecond), soak, up.Format(time.RFC3339Nano))
	}
	if got := len(e.sim.Reboots()); got != 1 {
		t.Errorf("%d reboots, want 1", got)
	}
}

// TestHealthGateTimeoutEscalates (finding 9): a pool health gate that does not pass
// within --ready-timeout is reported (a HealthGateTimeout Event) rather than waited on
// silently, and the agent keeps waiting: the node is uncordoned only after the gate
// passes.
func TestHealthGateTimeoutEscalates(t *testing.T) {
	t.Parallel()
	const label = "e2e-healthy"
	e := newEnv(t)
	e.writeConfig(`  healthGate:
  - name: e2e-healthy
    expression: 'node.labels[?"` + label + `"] == optional.of("yes")'
    message: "the test has not labelled the node healthy yet"
`)
	rec := e.record()
	e.start(testbed.SimConfig{Command: e.args("--ready-timeout", "5s")})
	ctx := context.Background()
	e.requireReboot()
	if _, err := e.sim.WaitForReboots(ctx, 1, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	ev := e.waitEvent("HealthGateTimeout", time.Minute)
	if ev.Type != "Warning" {
		t.Errorf("HealthGateTimeout event of type %s, want Warning", ev.Type)
	}
	if n := e.get(); !n.Spec.Unschedulable || phaseOf(n) != "Verifying" {
		t.Fatalf("after HealthGateTimeout: unschedulable=%v phase=%q, want still cordoned in Verifying", n.Spec.Unschedulable, phaseOf(n))
	}
	passed := time.Now()
	patch := `{"metadata":{"labels":{"` + label + `":"yes"}}}`
	if _, err := e.bed.Client.CoreV1().Nodes().Patch(ctx, e.node, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitSettled(time.Minute, "once the health gate passes")
	if _, uncordons := rec.Cordons(); len(uncordons) != 1 || uncordons[0].Before(passed) {
		t.Errorf("uncordons %v, want one, after the gate passed at %s; node changes:%s", uncordons, passed.Format(time.RFC3339Nano), rec)
	}
}
