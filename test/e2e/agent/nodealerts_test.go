package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// TestNodeScopedAlertBlocksOnlyItsNode: with the real Prometheus and Alertmanager of the
// bed and the default blockers.alerts.nodeLabels, an alert labelled node=A (and one
// whose instance is A's name with a port) blocks only A, and an alert without node labels
// blocks both nodes. Once the cluster-wide alert clears, B reboots while A stays blocked;
// once A's alerts clear, A reboots. The oracle is the simulator's record of when each
// host was down: A is never down before its alerts cleared, B never before the
// cluster-wide one did.
func TestNodeScopedAlertBlocksOnlyItsNode(t *testing.T) {
	c := newCluster(t, map[string]int{"user": 2})
	nodes := c.allNodes()
	a, b := nodes[0], nodes[1]
	ctx := context.Background()
	suffix := strings.ToUpper(c.id)
	onA, instanceA, everywhere := "E2ENodeDown"+suffix, "E2EExporterDown"+suffix, "E2EClusterDegraded"+suffix
	fire := map[string]map[string]string{
		onA:        {"node": a, "severity": "page"},
		instanceA:  {"instance": a + ":9100"},
		everywhere: {"severity": "warning"},
	}
	for name, labels := range fire {
		if err := c.bed.FireAlert(ctx, name, testbed.AlertOptions{Labels: labels}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.bed.RemoveAlert(context.Background(), name) })
	}
	for name := range fire {
		if err := c.bed.WaitPrometheusAlert(ctx, name, "firing", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	// Only this test's alerts count, whatever else the shared Prometheus holds; the user
	// pool could reboot both nodes at once, so only the alerts hold them back.
	cfg := c.writeConfig(twoPools, fmt.Sprintf("blockers:\n  alerts:\n    filterRegexp: \"^(%s|%s|%s)$\"\n    filterMatchOnly: true\n", onA, instanceA, everywhere))
	sim := c.simulate(testbed.SimConfig{Command: c.agentCommand(cfg,
		"--prometheus-url", c.bed.PrometheusURL, "--alertmanager-url", c.bed.AlertmanagerURL)})
	watchA, watchB := c.watchBlocked(sim, a), c.watchBlocked(sim, b)
	for _, n := range nodes {
		if err := sim.SetRebootRequired(n, true); err != nil {
			t.Fatal(err)
		}
	}
	clusterWide := "alert " + everywhere + " is firing"
	namesA := []string{
		"alert " + onA + " is firing on this node (node=" + a + ")",
		"alert " + instanceA + " is firing on this node (instance=" + a + ":9100)",
	}
	c.waitNode(a, time.Minute, "blocked by its own alerts and the cluster-wide one", func(n *corev1.Node) bool {
		d := decisionOf(n)
		return strings.Contains(d, namesA[0]) && strings.Contains(d, namesA[1]) && strings.Contains(d, clusterWide)
	})
	nb := c.waitNode(b, time.Minute, "blocked by the cluster-wide alert", func(n *corev1.Node) bool {
		return strings.Contains(decisionOf(n), clusterWide)
	})
	if d := decisionOf(nb); strings.Contains(d, onA) || strings.Contains(d, instanceA) {
		t.Fatalf("%s is blocked by %s's alerts: %s", b, a, d)
	}
	watchA.holds()
	watchB.holds()

	if err := c.bed.ClearAlert(ctx, everywhere); err != nil {
		t.Fatal(err)
	}
	clearedEverywhere := time.Now()
	if _, err := sim.WaitForReboots(ctx, 1, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if r := sim.Reboots(); r[0].Node != b {
		t.Fatalf("first reboot is %s, want %s (the node without alerts of its own): %+v", r[0].Node, b, r)
	}
	// B is back and A's alerts still fire: A decides again, still blocked by them alone.
	c.waitNode(a, time.Minute, "still blocked by its own alerts only", func(n *corev1.Node) bool {
		d := decisionOf(n)
		return strings.Contains(d, namesA[0]) && !strings.Contains(d, clusterWide)
	})
	watchA.rec.Stop()
	if tr, ok := watchA.rec.FirstSince(time.Time{}, func(tr testbed.NodeTransition) bool {
		return tr.Unschedulable || tr.Annotations[nodestate.AnnotationPhase] != ""
	}); ok {
		t.Fatalf("%s was cordoned or entered the pipeline at %s while its alerts fired; changes:%s", a, tr.At.Format(time.RFC3339Nano), watchA.rec)
	}

	for _, name := range []string{onA, instanceA} {
		if err := c.bed.ClearAlert(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	clearedA := time.Now()
	if _, err := sim.WaitForReboots(ctx, 2, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	down := map[string][]testbed.DownInterval{}
	for _, iv := range sim.DownIntervals() {
		down[iv.Node] = append(down[iv.Node], iv)
	}
	for node, after := range map[string]time.Time{a: clearedA, b: clearedEverywhere} {
		if len(down[node]) != 1 {
			t.Errorf("%s was down %d times, want once: %+v", node, len(down[node]), down[node])
			continue
		}
		if from := down[node][0].From; from.Before(after) {
			t.Errorf("%s went down at %s, while an alert blocking it still fired (cleared at %s)", node, from.Format(time.RFC3339Nano), after.Format(time.RFC3339Nano))
		}
	}
}
