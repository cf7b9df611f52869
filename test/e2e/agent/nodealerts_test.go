package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/engine/summary"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// TestNodeScopedAlertBlocksOnlyItsNode: with the real Prometheus and Alertmanager of the
// bed, the real summarizer publishing the node index, and the default
// blockers.alerts.nodeLabels, an alert labelled node=A (and one whose instance is A's
// name with a port) blocks only A, and an alert without node labels blocks both nodes. Once the cluster-wide alert clears, B reboots while A stays blocked;
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
	c.fireAll(map[string]map[string]string{
		onA:        {"node": a, "severity": "page"},
		instanceA:  {"instance": a + ":9100"},
		everywhere: {"severity": "warning"},
	})
	// Only this test's alerts count, whatever else the shared Prometheus holds; the user
	// pool could reboot both nodes at once, so only the alerts hold them back.
	cfg := c.writeConfig(twoPools, fmt.Sprintf("blockers:\n  alerts:\n    filterRegexp: \"^(%s|%s|%s)$\"\n    filterMatchOnly: true\n", onA, instanceA, everywhere))
	// B learns from the node index that instance A:9100 is A (without it, B could not
	// tell, and would be blocked too: TestNodeScopedAlertWithoutIndexFailsClosed).
	testbed.StartSummarizer(t, binary, c.bed.Kubeconfig, c.ns, cfg, "summarizer-"+c.id)
	c.waitNodeIndex()
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
	checkDownOnceAfter(t, sim, map[string]time.Time{a: clearedA, b: clearedEverywhere})
}

// checkDownOnceAfter checks, by the simulator's record, that each node was down exactly
// once, and not before the time its blocking alerts cleared.
func checkDownOnceAfter(t *testing.T, sim *testbed.Simulator, cleared map[string]time.Time) {
	t.Helper()
	down := map[string][]testbed.DownInterval{}
	for _, iv := range sim.DownIntervals() {
		down[iv.Node] = append(down[iv.Node], iv)
	}
	for node, after := range cleared {
		if len(down[node]) != 1 {
			t.Errorf("%s was down %d times, want once: %+v", node, len(down[node]), down[node])
			continue
		}
		if from := down[node][0].From; from.Before(after) {
			t.Errorf("%s went down at %s, while an alert blocking it still fired (cleared at %s)", node, from.Format(time.RFC3339Nano), after.Format(time.RFC3339Nano))
		}
	}
}

// giveAddresses gives each node an InternalIP of its own in 10.251.X.0/24 (X from the
// test's id; kwok gives every node the same one) and returns them: a merge patch of the
// node's status, which kwok keeps. The addresses are never connected to.
func (c *cluster) giveAddresses(nodes ...string) map[string]string {
	c.t.Helper()
	x, err := strconv.ParseUint(c.id[:2], 16, 8)
	if err != nil {
		c.t.Fatal(err)
	}
	ips := map[string]string{}
	for i, node := range nodes {
		ip := fmt.Sprintf("10.251.%d.%d", x, i+1)
		ips[node] = ip
		patch := fmt.Sprintf(`{"status":{"addresses":[{"type":"InternalIP","address":%q},{"type":"Hostname","address":%q}]}}`, ip, node)
		if _, err := c.bed.Client.CoreV1().Nodes().Patch(context.Background(), node, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
			c.t.Fatalf("setting %s's InternalIP: %v", node, err)
		}
		c.waitNode(node, time.Minute, "InternalIP "+ip, func(n *corev1.Node) bool {
			return len(n.Status.Addresses) > 0 && n.Status.Addresses[0] == corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip}
		})
	}
	return ips
}

// waitNodeIndex waits until the summarizer has published the node summary naming a
// node index, so that the agents' first decisions have it.
func (c *cluster) waitNodeIndex() {
	c.t.Helper()
	if err := testbed.Poll(context.Background(), time.Minute, "the node summary naming a node index", func(ctx context.Context) (bool, error) {
		cm, err := c.bed.Client.CoreV1().ConfigMaps(c.ns).Get(ctx, summary.ConfigMapName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		var s disruption.Summary
		return json.Unmarshal([]byte(cm.Data[summary.DataKey]), &s) == nil && s.NodeIndex != nil, nil
	}); err != nil {
		c.t.Fatal(err)
	}
}

// fireAll fires the alerts (name → labels) through the bed's Prometheus, removes them
// at the test's end, and waits until Prometheus has them firing.
func (c *cluster) fireAll(alerts map[string]map[string]string) {
	c.t.Helper()
	ctx := context.Background()
	for name, labels := range alerts {
		if err := c.bed.FireAlert(ctx, name, testbed.AlertOptions{Labels: labels}); err != nil {
			c.t.Fatal(err)
		}
		c.t.Cleanup(func() { _ = c.bed.RemoveAlert(context.Background(), name) })
	}
	for name := range alerts {
		if err := c.bed.WaitPrometheusAlert(ctx, name, "firing", time.Minute); err != nil {
			c.t.Fatal(err)
		}
	}
}

// TestPodInstanceAlertBlocksEveryNode: with the real summarizer, an alert whose instance
// is a pod's address (no node's) blocks every node, as kured does, saying it names no
// node; an alert whose instance is node X's InternalIP blocks only X. No host goes down
// while the pod's alert fires (the simulator's record), X stays untouched while its own
// alert fires, and each reboots once its alerts clear.
func TestPodInstanceAlertBlocksEveryNode(t *testing.T) {
	c := newCluster(t, map[string]int{"user": 3})
	nodes := c.allNodes()
	a, b, x := nodes[0], nodes[1], nodes[2]
	ips := c.giveAddresses(a, b, x)
	suffix := strings.ToUpper(c.id)
	pod, onX := "E2EPodCrashing"+suffix, "E2EExporterOnX"+suffix
	podInstance := strings.Replace(ips[a], "10.251.", "10.252.", 1) + ":8080" // a pod network address, no node's
	c.fireAll(map[string]map[string]string{
		pod: {"instance": podInstance, "job": "kube-state-metrics"},
		onX: {"instance": ips[x] + ":9100", "job": "node-exporter"},
	})
	cfg := c.writeConfig(`- name: user
  selector: 'node.labels[?"agentpool"] == optional.of("user")'
  concurrency: 3
`, fmt.Sprintf("blockers:\n  alerts:\n    filterRegexp: \"^(%s|%s)$\"\n    filterMatchOnly: true\n", pod, onX))
	testbed.StartSummarizer(t, binary, c.bed.Kubeconfig, c.ns, cfg, "summarizer-"+c.id)
	c.waitNodeIndex()
	sim := c.simulate(testbed.SimConfig{Command: c.agentCommand(cfg,
		"--prometheus-url", c.bed.PrometheusURL, "--alertmanager-url", c.bed.AlertmanagerURL)})
	watch := map[string]*blocked{}
	for _, n := range nodes {
		watch[n] = c.watchBlocked(sim, n)
		if err := sim.SetRebootRequired(n, true); err != nil {
			t.Fatal(err)
		}
	}
	byPod := "alert " + pod + " is firing (instance=" + podInstance + " names no node of the cluster (no node has that name or address), so it blocks every node)"
	onThisNode := "alert " + onX + " is firing on this node (instance=" + ips[x] + ":9100)"
	for _, n := range []string{a, b} {
		nd := c.waitNode(n, time.Minute, "blocked by the pod's alert", func(n *corev1.Node) bool { return strings.Contains(decisionOf(n), byPod) })
		if d := decisionOf(nd); strings.Contains(d, onX) {
			t.Fatalf("%s is blocked by %s's alert: %s", n, x, d)
		}
	}
	c.waitNode(x, time.Minute, "blocked by both alerts", func(n *corev1.Node) bool {
		d := decisionOf(n)
		return strings.Contains(d, byPod) && strings.Contains(d, onThisNode)
	})
	for _, n := range nodes {
		watch[n].holds()
	}

	ctx := context.Background()
	if err := c.bed.ClearAlert(ctx, pod); err != nil {
		t.Fatal(err)
	}
	clearedPod := time.Now()
	if _, err := sim.WaitForReboots(ctx, 2, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	// a and b are back; X decides again, blocked by its own alert alone.
	c.waitNode(x, time.Minute, "blocked by its own alert only", func(n *corev1.Node) bool {
		d := decisionOf(n)
		return strings.Contains(d, onThisNode) && !strings.Contains(d, pod)
	})
	watch[x].holds()
	if err := c.bed.ClearAlert(ctx, onX); err != nil {
		t.Fatal(err)
	}
	clearedX := time.Now()
	if _, err := sim.WaitForReboots(ctx, 3, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	checkDownOnceAfter(t, sim, map[string]time.Time{a: clearedPod, b: clearedPod, x: clearedX})
}

// TestNodeScopedAlertWithoutIndexFailsClosed: without a summarizer there is no node
// index, so an alert whose instance is node X's InternalIP cannot be resolved by the
// other nodes: it blocks every node (fail closed), each decision saying why; X is
// blocked by it as its own. Once the summarizer publishes the index, the other node
// learns the address is X's and reboots, while X stays blocked and untouched.
func TestNodeScopedAlertWithoutIndexFailsClosed(t *testing.T) {
	c := newCluster(t, map[string]int{"user": 2})
	nodes := c.allNodes()
	a, x := nodes[0], nodes[1]
	ips := c.giveAddresses(a, x)
	onX := "E2ENoIndexOnX" + strings.ToUpper(c.id)
	instance := ips[x] + ":9100"
	c.fireAll(map[string]map[string]string{onX: {"instance": instance}})
	cfg := c.writeConfig(twoPools, fmt.Sprintf("blockers:\n  alerts:\n    filterRegexp: \"^%s$\"\n    filterMatchOnly: true\n", onX))
	sim := c.simulate(testbed.SimConfig{Command: c.agentCommand(cfg,
		"--prometheus-url", c.bed.PrometheusURL, "--alertmanager-url", c.bed.AlertmanagerURL)})
	watchA, watchX := c.watchBlocked(sim, a), c.watchBlocked(sim, x)
	for _, n := range nodes {
		if err := sim.SetRebootRequired(n, true); err != nil {
			t.Fatal(err)
		}
	}
	// The reason names the alert, why it cannot be resolved, and why there is no index
	// (the summary ConfigMap does not exist).
	unresolved := []string{
		"alert " + onX + " is firing (instance=" + instance + " is not this node's name or address, and which node it names is unknown without the node index (",
		"rebootgate-node-summary", "), so it blocks every node)",
	}
	onThisNode := "alert " + onX + " is firing on this node (instance=" + instance + ")"
	c.waitNode(a, time.Minute, "blocked by X's alert, which it cannot resolve", func(n *corev1.Node) bool {
		d := decisionOf(n)
		return strings.Contains(d, unresolved[0]) && strings.Contains(d, unresolved[1]) && strings.Contains(d, unresolved[2])
	})
	c.waitNode(x, time.Minute, "blocked by its own alert", func(n *corev1.Node) bool { return strings.Contains(decisionOf(n), onThisNode) })
	watchA.holds()
	watchX.holds()

	testbed.StartSummarizer(t, binary, c.bed.Kubeconfig, c.ns, cfg, "summarizer-"+c.id)
	indexed := time.Now()
	if _, err := sim.WaitForReboots(context.Background(), 1, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if r := sim.Reboots(); r[0].Node != a {
		t.Fatalf("first reboot is %s, want %s (the node the alert does not name): %+v", r[0].Node, a, r)
	}
	for _, iv := range sim.DownIntervals() {
		if iv.Node == a && iv.From.Before(indexed) {
			t.Errorf("%s went down at %s, before the node index existed (%s)", a, iv.From.Format(time.RFC3339Nano), indexed.Format(time.RFC3339Nano))
		}
	}
	c.waitNode(x, time.Minute, "still blocked by its own alert, after a's reboot", func(n *corev1.Node) bool {
		return strings.Contains(decisionOf(n), onThisNode)
	})
	watchX.holds()
}

// TestNodeIndexChangeReachesAgents: agents do not watch the node index, they read the
// shard they need again when the summary names a new hash for it. An alert whose
// instance is no node's address blocks both nodes; then that address becomes X's (as
// when an address is reused): the summarizer rewrites the index, the other node reads
// the changed shard, learns the alert is X's and reboots, while X stays blocked by it as
// its own and untouched. The oracle is the simulator's record: the other node is not
// down before the address moved.
func TestNodeIndexChangeReachesAgents(t *testing.T) {
	c := newCluster(t, map[string]int{"user": 2})
	nodes := c.allNodes()
	a, x := nodes[0], nodes[1]
	ips := c.giveAddresses(a, x)
	moved := strings.Replace(ips[x], "10.251.", "10.253.", 1) // no node's yet
	name := "E2EIndexChange" + strings.ToUpper(c.id)
	instance := moved + ":9100"
	c.fireAll(map[string]map[string]string{name: {"instance": instance}})
	cfg := c.writeConfig(twoPools, fmt.Sprintf("blockers:\n  alerts:\n    filterRegexp: \"^%s$\"\n    filterMatchOnly: true\n", name))
	testbed.StartSummarizer(t, binary, c.bed.Kubeconfig, c.ns, cfg, "summarizer-"+c.id)
	c.waitNodeIndex()
	sim := c.simulate(testbed.SimConfig{Command: c.agentCommand(cfg,
		"--prometheus-url", c.bed.PrometheusURL, "--alertmanager-url", c.bed.AlertmanagerURL)})
	watchA, watchX := c.watchBlocked(sim, a), c.watchBlocked(sim, x)
	for _, n := range nodes {
		if err := sim.SetRebootRequired(n, true); err != nil {
			t.Fatal(err)
		}
	}
	noNode := "alert " + name + " is firing (instance=" + instance + " names no node of the cluster (no node has that name or address), so it blocks every node)"
	for _, n := range nodes {
		c.waitNode(n, time.Minute, "blocked by an alert naming no node", func(n *corev1.Node) bool { return strings.Contains(decisionOf(n), noNode) })
	}
	watchA.holds()
	watchX.holds()

	patch := fmt.Sprintf(`{"status":{"addresses":[{"type":"InternalIP","address":%q},{"type":"Hostname","address":%q}]}}`, moved, x)
	if _, err := c.bed.Client.CoreV1().Nodes().Patch(context.Background(), x, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	movedAt := time.Now()
	c.waitNode(x, time.Minute, "blocked by the alert as its own", func(n *corev1.Node) bool {
		return strings.Contains(decisionOf(n), "alert "+name+" is firing on this node (instance="+instance+")")
	})
	if _, err := sim.WaitForReboots(context.Background(), 1, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if r := sim.Reboots(); r[0].Node != a {
		t.Fatalf("first reboot is %s, want %s (the node the alert no longer concerns): %+v", r[0].Node, a, r)
	}
	for _, iv := range sim.DownIntervals() {
		if iv.Node == a && iv.From.Before(movedAt) {
			t.Errorf("%s went down at %s, before the address moved to %s (%s)", a, iv.From.Format(time.RFC3339Nano), x, movedAt.Format(time.RFC3339Nano))
		}
	}
	watchX.holds()
}
