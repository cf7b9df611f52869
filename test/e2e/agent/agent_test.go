package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/testbed"
)

const twoPools = `- name: system
  selector: 'node.labels[?"agentpool"] == optional.of("system")'
  concurrency: 1
- name: user
  selector: 'node.labels[?"agentpool"] == optional.of("user")'
  concurrency: 2
`

// TestRollingReboot reboots 6 nodes in two pools with concurrency 1 and 2: the limits
// hold at every sample, every node reboots exactly once, and all end uncordoned.
func TestRollingReboot(t *testing.T) {
	c := newCluster(t, map[string]int{"system": 2, "user": 4})
	cfg := c.writeConfig(twoPools, "")
	sim := c.simulate(testbed.SimConfig{Command: c.agentCommand(cfg), FlipReady: true})
	s := c.sample()
	start := time.Now()
	for _, n := range c.allNodes() {
		if err := sim.SetRebootRequired(n, true); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sim.WaitForReboots(context.Background(), 6, 4*time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.allNodes() {
		c.waitNode(n, time.Minute, "uncordoned and idle", func(n *corev1.Node) bool {
			return !n.Spec.Unschedulable && nodestate.StateOf(n).Phase == nodestate.PhaseIdle
		})
	}
	busy := s.maxBusy()
	t.Logf("rolling reboot of 6 nodes took %s; most nodes rebooting at once: %v", time.Since(start).Round(time.Second), busy)
	if busy["system"] > 1 || busy["user"] > 2 {
		t.Errorf("concurrency exceeded: %v (limits system=1 user=2)", busy)
	}
	// Four user nodes want a reboot at once and each pipeline lasts seconds: a pool
	// with two slots must use both.
	if busy["system"] != 1 || busy["user"] != 2 {
		t.Errorf("most nodes rebooting at once: %v, want system=1 user=2 (the pools' limits, reached)", busy)
	}
	per := map[string]int{}
	for _, r := range sim.Reboots() {
		per[r.Node]++
		if r.OldBootID == r.NewBootID {
			t.Errorf("%s: boot ID did not change", r.Node)
		}
	}
	for _, n := range c.allNodes() {
		if per[n] != 1 {
			t.Errorf("%s rebooted %d times, want 1", n, per[n])
		}
		node := c.node(n)
		if node.Status.NodeInfo.BootID == "" || node.Annotations[nodestate.AnnotationLastReboot] == "" {
			t.Errorf("%s: last reboot not recorded: %v", n, node.Annotations)
		}
	}
}

// TestDryRunTouchesNothing: decisions are reported, nothing is cordoned or rebooted.
func TestDryRunTouchesNothing(t *testing.T) {
	c := newCluster(t, map[string]int{"user": 2})
	cfg := c.writeConfig(twoPools, "")
	sim := c.simulate(testbed.SimConfig{Command: c.agentCommand(cfg, "--dry-run")})
	watched := map[string]*blocked{}
	for _, n := range c.allNodes() {
		watched[n] = c.watchBlocked(sim, n)
		if err := sim.SetRebootRequired(n, true); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.allNodes() {
		node := c.waitNode(n, time.Minute, "a dry-run decision", func(n *corev1.Node) bool {
			return strings.Contains(decisionOf(n), `"dryRun":true`)
		})
		if d, found, err := nodestate.DecisionOf(node); !found || err != nil || !d.Allowed || d.Pool != "user" {
			t.Errorf("%s: decision %s", n, decisionOf(node))
		}
		if !hasCondition(node, nodestate.ConditionRebootRequired, corev1.ConditionTrue) {
			t.Errorf("%s: no RebootRequired=True condition", n)
		}
	}
	// Each agent passes the point where it would take a slot and reboot twice; only
	// then is "nothing happened" evidence.
	for _, n := range c.allNodes() {
		c.waitLog(sim, n, "dry-run: would take a slot and reboot", 2)
	}
	for _, n := range c.allNodes() {
		watched[n].untouched("in dry-run")
	}
	events, err := c.bed.Client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + c.allNodes()[0] + ",reason=RebootAllowed"})
	if err != nil || len(events.Items) != 1 {
		t.Errorf("want exactly one RebootAllowed event (deduplicated), got %d (%v)", len(events.Items), err)
	}
}

func hasCondition(n *corev1.Node, typ corev1.NodeConditionType, status corev1.ConditionStatus) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == typ {
			return c.Status == status
		}
	}
	return false
}

// TestAdminCordonStays: a node an admin cordoned reboots but stays cordoned.
func TestAdminCordonStays(t *testing.T) {
	c := newCluster(t, map[string]int{"user": 1})
	n := c.allNodes()[0]
	node := c.node(n)
	node.Spec.Unschedulable = true
	if _, err := c.bed.Client.CoreV1().Nodes().Update(context.Background(), node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	sim := c.simulate(testbed.SimConfig{Command: c.agentCommand(c.writeConfig(twoPools, ""))})
	if err := sim.SetRebootRequired(n, true); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.WaitForReboots(context.Background(), 1, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	after := c.waitNode(n, time.Minute, "idle after the reboot", func(n *corev1.Node) bool {
		return nodestate.StateOf(n).Phase == nodestate.PhaseIdle && n.Annotations[nodestate.AnnotationLastReboot] != ""
	})
	if !after.Spec.Unschedulable {
		t.Error("the admin's cordon was undone")
	}
}

// TestBlockingPod: a running pod matching a blocking selector holds the reboot until
// it is gone.
func TestBlockingPod(t *testing.T) {
	c := newCluster(t, map[string]int{"user": 1})
	n := c.allNodes()[0]
	ctx := context.Background()
	pod := testbed.NewPod(c.ns, "backup", n, map[string]string{"app": "backup"})
	if _, err := c.bed.Client.CoreV1().Pods(c.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.bed.WaitPodsRunning(ctx, c.ns, "app=backup", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	cfg := c.writeConfig(twoPools, "blockers:\n  pods:\n    selectors: [\"app in (backup,restore)\"]\n")
	sim := c.simulate(testbed.SimConfig{Command: c.agentCommand(cfg)})
	b := c.watchBlocked(sim, n)
	if err := sim.SetRebootRequired(n, true); err != nil {
		t.Fatal(err)
	}
	c.waitNode(n, time.Minute, "blocked by the pod", func(n *corev1.Node) bool {
		return strings.Contains(decisionOf(n), "matches blocking selector")
	})
	b.holds()
	if err := c.bed.Client.CoreV1().Pods(c.ns).Delete(ctx, "backup", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.WaitForReboots(ctx, 1, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
}

// TestPDBProtectedDrain: a Deployment guarded by a PDB is drained without the PDB
// being violated: an eviction the PDB forbids is refused (429), and the drain waits
// until the replacement runs elsewhere. Both replicas start on one node, so its drain
// must meet a refusal: the PDB allows one eviction, the drain evicts both pods at once.
func TestPDBProtectedDrain(t *testing.T) {
	c := newCluster(t, map[string]int{"user": 2})
	nodes := c.allNodes()
	ctx := context.Background()
	// Both replicas on nodes[0]: nodes[1] is cordoned while they are scheduled.
	setUnschedulable := func(name string, v bool) {
		t.Helper()
		patch := fmt.Sprintf(`{"spec":{"unschedulable":%v}}`, v)
		if _, err := c.bed.Client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setUnschedulable(nodes[1], true)
	labels := map[string]string{"app": "web-" + c.id}
	if _, err := c.bed.Client.AppsV1().Deployments(c.ns).Create(ctx, testbed.NewDeployment(c.ns, "web", 2, labels, nodes...), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.bed.WaitDeploymentAvailable(ctx, c.ns, "web", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	pods, err := c.bed.WaitPodsRunning(ctx, c.ns, "app=web-"+c.id, 2, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		if p.Spec.NodeName != nodes[0] {
			t.Fatalf("pod %s on %s, want both on %s", p.Name, p.Spec.NodeName, nodes[0])
		}
	}
	// nodes[1] stays cordoned while nodes[0] drains: the evicted replica's replacement
	// cannot run, so the PDB must refuse the second eviction (kwok starts pods so fast
	// that with room elsewhere the refusal would be a race the drain may not lose).
	if _, err := c.bed.Client.PolicyV1().PodDisruptionBudgets(c.ns).Create(ctx, testbed.NewPDB(c.ns, "web", labels, intstr.FromInt32(1)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.bed.WaitPDB(ctx, c.ns, "web", 2, time.Minute); err != nil {
		t.Fatal(err)
	}
	// Watch the running web pods while both nodes reboot one after the other.
	violated := make(chan string, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			pods, err := c.bed.Client.CoreV1().Pods(c.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web-" + c.id})
			if err != nil {
				continue
			}
			running := 0
			for i := range pods.Items {
				if testbed.PodRunning(&pods.Items[i]) && pods.Items[i].DeletionTimestamp == nil {
					running++
				}
			}
			if running < 1 {
				select {
				case violated <- "no web pod running":
				default:
				}
			}
		}
	}()
	// One node at a time, so that a replacement always has somewhere to run.
	pools := `- name: user
  selector: 'node.labels[?"e2e-run"] == optional.of("` + c.id + `")'
  concurrency: 1
`
	sim := c.simulate(testbed.SimConfig{Command: c.agentCommand(c.writeConfig(pools, ""))})
	if err := sim.SetRebootRequired(nodes[0], true); err != nil {
		t.Fatal(err)
	}
	// The drain of nodes[0] evicts its two pods at once; the PDB lets one go and must
	// refuse the other while its replacement cannot run. The drain reports the
	// apiserver's 429 answer while it retries.
	if err := testbed.Poll(ctx, 2*time.Minute, "a PDB refusal in the drain of "+nodes[0], func(context.Context) (bool, error) {
		return logCount(sim, nodes[0], "violate the pod's disruption budget") > 0, nil
	}); err != nil {
		t.Fatalf("the drain of %s never met a PDB refusal: %v", nodes[0], err)
	}
	if len(sim.Reboots()) != 0 || sim.State(nodes[0]).Rebooting {
		t.Fatalf("%s rebooted while the PDB refused an eviction", nodes[0])
	}
	// Room for the replacement: the refused eviction goes through and the drain ends.
	setUnschedulable(nodes[1], false)
	if _, err := sim.WaitForReboots(ctx, 1, 4*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := sim.SetRebootRequired(nodes[1], true); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.WaitForReboots(ctx, 2, 4*time.Minute); err != nil {
		t.Fatal(err)
	}
	select {
	case why := <-violated:
		t.Errorf("PDB violated: %s", why)
	default:
	}
}

// TestBrokenPolicyFailsClosed: a policy ConfigMap that does not compile blocks every
// new reboot, even though the last good set (a freeze) did too: the decision names the
// load error (source "config", file:line) and the agent reports it on its own Node as
// the RebootPolicyLoaded condition, False. Once the ConfigMap is gone, the reboot goes
// ahead and the condition is True again.
func TestBrokenPolicyFailsClosed(t *testing.T) {
	c := newCluster(t, map[string]int{"user": 1})
	n := c.allNodes()[0]
	ctx := context.Background()
	cms := c.bed.Client.CoreV1().ConfigMaps(c.ns)
	good := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "freeze", Labels: map[string]string{"rebootgate.io/policy": "rego"}},
		Data:       map[string]string{"freeze.rego": "package rebootgate\n\ndeny contains \"change freeze\" if true\n"},
	}
	if _, err := cms.Create(ctx, good, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sim := c.simulate(testbed.SimConfig{Command: c.agentCommand(c.writeConfig(twoPools, ""))})
	b := c.watchBlocked(sim, n)
	if err := sim.SetRebootRequired(n, true); err != nil {
		t.Fatal(err)
	}
	c.waitNode(n, time.Minute, "blocked by the freeze policy", func(n *corev1.Node) bool {
		return strings.Contains(decisionOf(n), "change freeze")
	})
	c.waitNode(n, time.Minute, "RebootPolicyLoaded True", func(n *corev1.Node) bool {
		cond := policyLoaded(n)
		return cond != nil && cond.Status == corev1.ConditionTrue && cond.Reason == "PolicyLoaded"
	})
	broken := good.DeepCopy()
	broken.Data["freeze.rego"] = "package rebootgate\n\ndeny contains msg if {\n\tmsg := nope(1)\n}\n"
	cur, err := cms.Get(ctx, "freeze", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	broken.ResourceVersion = cur.ResourceVersion
	if _, err := cms.Update(ctx, broken, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitNode(n, time.Minute, "RebootPolicyLoaded False naming freeze.rego:4", func(n *corev1.Node) bool {
		cond := policyLoaded(n)
		return cond != nil && cond.Status == corev1.ConditionFalse && cond.Reason == "PolicyError" &&
			strings.Contains(cond.Message, c.ns+"/freeze/freeze.rego:4")
	})
	c.waitNode(n, time.Minute, "denied by the load error", func(n *corev1.Node) bool {
		d := decisionOf(n)
		return strings.Contains(d, `"source":"config"`) && strings.Contains(d, "freeze.rego:4")
	})
	b.untouched("after the broken policy was rejected")
	if err := cms.Delete(ctx, "freeze", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.WaitForReboots(ctx, 1, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	c.waitNode(n, time.Minute, "RebootPolicyLoaded True again", func(n *corev1.Node) bool {
		cond := policyLoaded(n)
		return cond != nil && cond.Status == corev1.ConditionTrue
	})
}

// policyLoaded is the node's RebootPolicyLoaded condition, nil when absent.
func policyLoaded(n *corev1.Node) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == nodestate.ConditionPolicyLoaded {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// TestAgentKilledDuringRebootResumes: the agent is SIGKILLed right after asking for
// the reboot (the simulator kills it as the host goes down, with no grace), and the
// next agent finishes the job.
func TestAgentKilledDuringRebootResumes(t *testing.T) {
	c := newCluster(t, map[string]int{"user": 1})
	n := c.allNodes()[0]
	sim := c.simulate(testbed.SimConfig{Command: c.agentCommand(c.writeConfig(twoPools, "")), ShutdownGrace: time.Millisecond, FlipReady: true})
	if err := sim.SetRebootRequired(n, true); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.WaitForReboots(context.Background(), 1, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	after := c.waitNode(n, time.Minute, "uncordoned and idle", func(n *corev1.Node) bool {
		return !n.Spec.Unschedulable && nodestate.StateOf(n).Phase == nodestate.PhaseIdle
	})
	if after.Annotations[nodestate.AnnotationLastReboot] == "" {
		t.Error("the resumed agent did not record the reboot")
	}
}
