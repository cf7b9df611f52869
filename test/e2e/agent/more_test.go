package agent

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// TestWindowOpens: outside the window nothing happens; when it opens, the node reboots.
func TestWindowOpens(t *testing.T) {
	c := newCluster(t, map[string]int{"user": 2})
	open := time.Now().UTC().Add(25 * time.Second).Truncate(time.Second)
	pools := userPoolOpeningAt(open, 2)
	sim := c.simulate(testbed.SimConfig{Command: c.agentCommand(c.writeConfig(pools, ""))})
	watched := map[string]*blocked{}
	for _, n := range c.allNodes() {
		watched[n] = c.watchBlocked(sim, n)
		if err := sim.SetRebootRequired(n, true); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.allNodes() {
		c.waitNode(n, time.Minute, "blocked by the window", func(n *corev1.Node) bool {
			return strings.Contains(decisionOf(n), "outside every reboot window (next allowed "+open.Format(time.RFC3339))
		})
	}
	reboots, err := sim.WaitForReboots(context.Background(), 2, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reboots {
		if r.RequestedAt.Before(open) {
			t.Errorf("%s asked for its reboot at %s, before the window opened at %s", r.Node, r.RequestedAt, open)
		}
	}
	// Nothing at all happened to a node before the window opened: its first cordon
	// (or pipeline phase), as the watch saw it, is at or after the opening.
	for n, b := range watched {
		tr, ok := b.rec.FirstSince(time.Time{}, func(tr testbed.NodeTransition) bool {
			return tr.Unschedulable || tr.Annotations[nodestate.AnnotationPhase] != ""
		})
		if !ok {
			t.Errorf("%s rebooted without ever being seen cordoned or in the pipeline; changes:%s", n, b.rec)
		} else if tr.At.Before(open) {
			t.Errorf("%s cordoned or in the pipeline at %s, before the window opened at %s; changes:%s", n, tr.At.Format(time.RFC3339Nano), open, b.rec)
		}
	}
}

// TestAlertBlocksAndSilenceUnblocks: a firing alert blocks; an Alertmanager silence on
// it unblocks, and the node reboots.
func TestAlertBlocksAndSilenceUnblocks(t *testing.T) {
	c := newCluster(t, map[string]int{"user": 1})
	n := c.allNodes()[0]
	ctx := context.Background()
	alert := "E2EDiskPressure" + strings.ToUpper(c.id)
	if err := c.bed.FireAlert(ctx, alert, testbed.AlertOptions{Labels: map[string]string{"severity": "page"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.bed.RemoveAlert(context.Background(), alert) })
	if _, err := c.bed.WaitAlertmanagerAlert(ctx, alert, time.Minute, nil); err != nil {
		t.Fatal(err)
	}
	// Only this test's alert counts, whatever else the shared Prometheus holds.
	cfg := c.writeConfig(twoPools, fmt.Sprintf("blockers:\n  alerts:\n    filterRegexp: \"^%s$\"\n    filterMatchOnly: true\n", alert))
	sim := c.simulate(testbed.SimConfig{Command: c.agentCommand(cfg,
		"--prometheus-url", c.bed.PrometheusURL, "--alertmanager-url", c.bed.AlertmanagerURL)})
	b := c.watchBlocked(sim, n)
	if err := sim.SetRebootRequired(n, true); err != nil {
		t.Fatal(err)
	}
	c.waitNode(n, time.Minute, "blocked by the alert", func(n *corev1.Node) bool {
		return strings.Contains(decisionOf(n), "alert "+alert+" is firing")
	})
	b.holds()
	id, err := c.bed.Silence(ctx, map[string]string{"alertname": alert}, time.Hour, "e2e: silence unblocks the reboot")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.bed.ExpireSilence(context.Background(), id) })
	if _, err := sim.WaitForReboots(ctx, 1, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
}

// TestAgentKilledDuringDrainResumes: the agent is SIGKILLed while a PDB holds its
// drain; the restarted agent (as a DaemonSet would restart it) resumes from the
// recorded phase, finishes the drain once the PDB allows it, and reboots.
func TestAgentKilledDuringDrainResumes(t *testing.T) {
	c := newCluster(t, map[string]int{"user": 1})
	n := c.allNodes()[0]
	ctx := context.Background()
	labels := map[string]string{"app": "db-" + c.id}
	pod := testbed.NewPod(c.ns, "db", n, labels)
	if _, err := c.bed.Client.CoreV1().Pods(c.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.bed.WaitPodsRunning(ctx, c.ns, "app=db-"+c.id, 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	pdbs := c.bed.Client.PolicyV1().PodDisruptionBudgets(c.ns)
	if _, err := pdbs.Create(ctx, testbed.NewPDB(c.ns, "db", labels, intstr.FromInt32(1)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.bed.WaitPDB(ctx, c.ns, "db", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	sim := c.simulate(testbed.SimConfig{Command: c.agentCommand(c.writeConfig(twoPools, ""), "--drain-timeout", "10m"), RestartOnExit: true})
	if err := sim.SetRebootRequired(n, true); err != nil {
		t.Fatal(err)
	}
	c.waitNode(n, time.Minute, "draining", func(n *corev1.Node) bool { return nodestate.StateOf(n).Phase == nodestate.PhaseDraining })
	before := sim.State(n)
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := testbed.Poll(ctx, time.Minute, "the agent restarted", func(context.Context) (bool, error) {
		st := sim.State(n)
		return st.Running && st.Starts > before.Starts, nil
	}); err != nil {
		t.Fatal(err)
	}
	if ph := nodestate.StateOf(c.node(n)).Phase; ph != nodestate.PhaseDraining || !c.node(n).Spec.Unschedulable {
		t.Fatalf("after the kill: phase %q, unschedulable %v; want still draining and cordoned", ph, c.node(n).Spec.Unschedulable)
	}
	if err := pdbs.Delete(ctx, "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.WaitForReboots(ctx, 1, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	c.waitNode(n, time.Minute, "uncordoned and idle", func(n *corev1.Node) bool {
		return !n.Spec.Unschedulable && nodestate.StateOf(n).Phase == nodestate.PhaseIdle
	})
}

// TestPercentageConcurrency: "50%" of a 4-node pool lets 2 reboot at once, never more.
func TestPercentageConcurrency(t *testing.T) {
	c := newCluster(t, map[string]int{"user": 4})
	pools := `- name: user
  selector: 'node.labels[?"e2e-run"] == optional.of("` + c.id + `")'
  concurrency: "50%"
`
	sim := c.simulate(testbed.SimConfig{Command: c.agentCommand(c.writeConfig(pools, "")), RebootDelay: 2 * time.Second})
	s := c.sample()
	for _, n := range c.allNodes() {
		if err := sim.SetRebootRequired(n, true); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sim.WaitForReboots(context.Background(), 4, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	// Four nodes want a reboot at once and each pipeline lasts seconds: both slots
	// are used, and never a third.
	if busy := s.maxBusy(); busy["user"] != 2 {
		t.Errorf("most nodes rebooting at once: %v, want 2 (50%% of 4)", busy)
	}
}
