package kureddropin

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/lock"
	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// leasesCreate is the delta's permission the tests wait for: in force with the delta,
// absent without it.
var leasesCreate = authorizationv1.ResourceAttributes{Namespace: agentNamespace, Verb: "create", Group: "coordination.k8s.io", Resource: "leases"}

// removeSlots deletes the slot Leases the agents made in their namespace, at cleanup
// (after the agents have stopped), so the next run starts without them.
func (d *dropin) removeSlots() {
	d.t.Cleanup(func() {
		err := d.bed.Client.CoordinationV1().Leases(agentNamespace).DeleteCollection(context.Background(), metav1.DeleteOptions{},
			metav1.ListOptions{LabelSelector: lock.LabelPool})
		if err != nil {
			d.t.Errorf("delete the slot Leases in %s: %v", agentNamespace, err)
		}
	})
}

// TestRollingRebootAsKured: three nodes need a reboot at once; the agents, run as the
// manifest runs them with exactly its RBAC, reboot them one at a time (kured's
// --concurrency=1), each exactly once, and leave them uncordoned with no slot held.
func TestRollingRebootAsKured(t *testing.T) {
	d := load(t)
	ctx := context.Background()
	d.applyRBAC(true)
	kubeconfig := d.tokenKubeconfig()
	d.waitAccess(kubeconfig, leasesCreate, true)
	nodes := d.nodes(3)
	d.removeSlots()
	sim := d.simulate(kubeconfig, nodes)
	start := time.Now()
	for _, n := range nodes {
		if err := sim.SetRebootRequired(n, true); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sim.WaitForReboots(ctx, len(nodes), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if _, err := d.bed.WaitNode(ctx, n, 2*time.Minute, "uncordoned and idle", func(n *corev1.Node) bool {
			return !n.Spec.Unschedulable && nodestate.StateOf(n).Phase == nodestate.PhaseIdle
		}); err != nil {
			t.Fatal(err)
		}
	}
	err := testbed.Poll(ctx, time.Minute, "no slot Lease held in "+agentNamespace, func(ctx context.Context) (bool, error) {
		held, err := lock.Holders(ctx, d.bed.Client, agentNamespace, config.DefaultPoolName)
		return err == nil && len(held) == 0, err
	})
	if err != nil {
		t.Error(err)
	}
	wall := time.Since(start)

	// Each boot ID changed exactly once, and the Node shows the new one.
	per := map[string]int{}
	for _, r := range sim.Reboots() {
		per[r.Node]++
		if r.OldBootID == r.NewBootID {
			t.Errorf("%s: boot ID did not change", r.Node)
		}
	}
	for _, n := range nodes {
		if per[n] != 1 {
			t.Errorf("%s rebooted %d times, want 1", n, per[n])
		}
		node, err := d.bed.Client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if node.Status.NodeInfo.BootID != sim.State(n).BootID {
			t.Errorf("%s: boot ID %s, the simulator's is %s", n, node.Status.NodeInfo.BootID, sim.State(n).BootID)
		}
		// --annotate-nodes from the manifest: kured's annotation, and no reboot in progress.
		if node.Annotations[nodestate.AnnotationKuredMostRecentRebootNeeded] == "" || node.Annotations[nodestate.AnnotationKuredRebootInProgress] != "" {
			t.Errorf("%s: kured's annotations %s=%q, %s=%q", n, nodestate.AnnotationKuredMostRecentRebootNeeded,
				node.Annotations[nodestate.AnnotationKuredMostRecentRebootNeeded], nodestate.AnnotationKuredRebootInProgress,
				node.Annotations[nodestate.AnnotationKuredRebootInProgress])
		}
	}
	// Never more than one host down at once, by the simulator's own record.
	downs := sim.DownIntervals()
	most, at := testbed.MostDown(downs)
	if most > 1 {
		t.Errorf("%d nodes down at once (%v), want at most 1 (--concurrency=1)", most, at)
	}
	for _, dw := range downs {
		if dw.To.IsZero() {
			t.Errorf("%s is still down", dw.Node)
		}
	}
	if len(downs) != len(nodes) {
		t.Errorf("%d down intervals, want %d", len(downs), len(nodes))
	}
	// The manifest's RBAC was enough: no request was refused.
	for _, n := range nodes {
		for _, line := range strings.Split(string(d.agentLog(sim, n)), "\n") {
			if strings.Contains(strings.ToLower(line), "forbidden") {
				t.Errorf("%s: the agent met a missing permission: %s", n, line)
			}
		}
	}
	if err := sim.Err(); err != nil {
		t.Error(err)
	}
	t.Logf("rolling reboot of %d nodes as kured: %s; most down at once %d", len(nodes), wall.Round(time.Second), most)
}

// rbacError is the agent's start-up error line.
var rbacError = regexp.MustCompile(`(?m)^rebootgate: RBAC: (\d+) permission\(s\) missing: .*$`)

// TestKuredRBACAloneFailsAtStartup: with kured's RBAC only, the agent exits at start-up
// naming the permissions of rebootgate's delta, and touches nothing.
func TestKuredRBACAloneFailsAtStartup(t *testing.T) {
	d := load(t)
	ctx := context.Background()
	d.applyRBAC(false)
	kubeconfig := d.tokenKubeconfig()
	d.waitAccess(kubeconfig, authorizationv1.ResourceAttributes{Verb: "patch", Resource: "nodes"}, true)
	d.waitAccess(kubeconfig, leasesCreate, false)
	node := d.nodes(1)[0]
	d.removeSlots()
	sim := d.simulate(kubeconfig, []string{node})
	if err := sim.SetRebootRequired(node, true); err != nil {
		t.Fatal(err)
	}
	err := testbed.Poll(ctx, time.Minute, "the agent on "+node+" exits", func(context.Context) (bool, error) {
		st := sim.State(node)
		return st.Exits >= 1 && !st.Running, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	log := d.agentLog(sim, node)
	line := string(rbacError.Find(log))
	if line == "" {
		t.Fatalf("no RBAC error line in the agent's output:\n%s", tail(string(log), 4096))
	}
	for _, want := range []string{
		"create leases (coordination.k8s.io) in namespace rebootgate",
		"watch leases (coordination.k8s.io) in namespace rebootgate",
		"list nodes (core) cluster-wide",
		"watch pods (core) cluster-wide",
		"patch nodes/status (core) named " + node,
		"create events (core) in namespace default",
		"list configmaps (core) in namespace rebootgate",
		"get configmaps (core) named rebootgate-node-summary in namespace rebootgate",
		"examples/kured-dropin/rbac.yaml",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("the error does not name %q: %s", want, line)
		}
	}
	// The check asks for nothing in kube-system (no --kured-lock here) and no ConfigMap
	// write anywhere: it accepts the narrow delta and never demands the broad one.
	for _, broad := range []string{"in namespace kube-system", "patch configmaps"} {
		if strings.Contains(line, broad) {
			t.Errorf("the error asks for %q: %s", broad, line)
		}
	}
	// kured's own permissions are there: none of them is named.
	for _, granted := range []string{"get nodes", "patch nodes (core)", "list pods", "create pods/eviction", "get daemonsets"} {
		if strings.Contains(line, granted) {
			t.Errorf("the error names %q, which kured's RBAC grants: %s", granted, line)
		}
	}
	if bytes.Contains(log, []byte("agent started")) {
		t.Error("the agent started despite the missing permissions")
	}
	n, err := d.bed.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Spec.Unschedulable || nodestate.StateOf(n).Phase != nodestate.PhaseIdle || len(sim.Reboots()) != 0 {
		t.Errorf("%s was touched: unschedulable=%v phase=%q reboots=%d", node, n.Spec.Unschedulable, nodestate.StateOf(n).Phase, len(sim.Reboots()))
	}
	t.Logf("the agent with kured's RBAC alone: %s", line)
}
