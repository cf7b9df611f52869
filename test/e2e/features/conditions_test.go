package features

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/testbed"
)

var lifecycleTypes = func() []string {
	out := make([]string, len(nodestate.LifecycleConditionTypes))
	for i, t := range nodestate.LifecycleConditionTypes {
		out[i] = string(t)
	}
	return out
}()

// TestMaintenanceConditions: with --node-maintenance-conditions, a node's reboot shows
// on a watch of the Node as MaintenancePlanned, then MaintenanceInProgress with
// DrainInProgress (the cordon starts the drain), then Drained, and every one False
// once the node is uncordoned; a node whose agent runs without the flag reboots with
// none of them ever written.
func TestMaintenanceConditions(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("", "")
	with, without := e.node(nil), e.node(nil)
	recWith := e.bed.RecordNodeConditions(t, with, lifecycleTypes...)
	recWithout := e.bed.RecordNodeConditions(t, without, lifecycleTypes...)
	simWith := e.simulate([]string{with}, e.args(cfg, "--node-maintenance-conditions"))
	simWithout := e.simulate([]string{without}, e.args(cfg))
	e.required(simWith, with)
	e.required(simWithout, without)
	e.rebootedOnce(simWith, with, time.Time{}, 2*time.Minute)
	e.rebootedOnce(simWithout, without, time.Time{}, 2*time.Minute)

	allFalse := func(tr testbed.NodeTransition) bool {
		for _, typ := range lifecycleTypes {
			if tr.Conditions[typ] == string(corev1.ConditionTrue) {
				return false
			}
		}
		return true
	}
	if _, err := e.bed.WaitNode(context.Background(), with, 30*time.Second, "every lifecycle condition False", func(n *corev1.Node) bool {
		for _, c := range n.Status.Conditions {
			for _, typ := range nodestate.LifecycleConditionTypes {
				if c.Type == typ && c.Status != corev1.ConditionFalse {
					return false
				}
			}
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	recWith.Stop()
	recWithout.Stop()

	// The first time each became True, in the order of the reboot.
	first := map[string]time.Time{}
	for _, typ := range lifecycleTypes {
		tr, ok := recWith.FirstSince(time.Time{}, func(tr testbed.NodeTransition) bool { return tr.Conditions[typ] == string(corev1.ConditionTrue) })
		if !ok {
			t.Fatalf("%s never became True; transitions:%s", typ, recWith)
		}
		first[typ] = tr.At
	}
	planned, inProgress := first[string(nodestate.ConditionMaintenancePlanned)], first[string(nodestate.ConditionMaintenanceInProgress)]
	draining, drained := first[string(nodestate.ConditionDrainInProgress)], first[string(nodestate.ConditionDrained)]
	if !planned.Before(inProgress) || draining.Before(inProgress) || !draining.Before(drained) {
		t.Errorf("order: MaintenancePlanned +0s, MaintenanceInProgress %+.2fs, DrainInProgress %+.2fs, Drained %+.2fs; want them in this order (DrainInProgress may come with MaintenanceInProgress); transitions:%s",
			inProgress.Sub(planned).Seconds(), draining.Sub(planned).Seconds(), drained.Sub(planned).Seconds(), recWith)
	}
	cordoned, uncordoned := recWith.Cordons()
	if len(cordoned) != 1 || len(uncordoned) != 1 {
		t.Fatalf("%s cordoned %d and uncordoned %d times, want once each; transitions:%s", with, len(cordoned), len(uncordoned), recWith)
	}
	if planned.After(cordoned[0]) || inProgress.Before(cordoned[0]) {
		t.Errorf("MaintenancePlanned must come before the cordon and MaintenanceInProgress with or after it; transitions:%s", recWith)
	}
	// No condition stays True past the uncordon: the last transition is all False, and
	// it came with or after the uncordon.
	trs := recWith.Transitions()
	last := trs[len(trs)-1]
	end, _ := recWith.FirstSince(drained, allFalse)
	if !allFalse(last) || end.At.Before(uncordoned[0]) {
		t.Errorf("want every lifecycle condition False after the uncordon (at %s); transitions:%s", uncordoned[0].Format(time.RFC3339Nano), recWith)
	}
	t.Logf("%s: MaintenancePlanned, then +%.2fs MaintenanceInProgress and DrainInProgress, +%.2fs Drained, +%.2fs all False; transitions:%s",
		with, inProgress.Sub(planned).Seconds(), drained.Sub(planned).Seconds(), end.At.Sub(planned).Seconds(), recWith)

	for _, tr := range recWithout.Transitions() {
		for _, typ := range lifecycleTypes {
			if tr.Conditions[typ] != "" {
				t.Errorf("without the flag, %s got %s=%s; transitions:%s", without, typ, tr.Conditions[typ], recWithout)
			}
		}
	}
}

// TestMaintenanceConditionsRepaired: an agent that died after the uncordon and before
// clearing its conditions left MaintenanceInProgress and Drained True; the agent that
// starts next turns them False (MaintenanceEnded: it did not see the end), with no
// reboot to do, and leaves an admin's DrainInProgress alone.
func TestMaintenanceConditionsRepaired(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	node := e.node(nil)
	stale := func(typ corev1.NodeConditionType, reason, msg string) corev1.NodeCondition {
		now := metav1.Now()
		return corev1.NodeCondition{Type: typ, Status: corev1.ConditionTrue, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{
		stale(nodestate.ConditionMaintenanceInProgress, nodestate.CondReasonMaintenanceWindow, nodestate.ConditionWriter+"rebooting the node"),
		stale(nodestate.ConditionDrained, nodestate.CondReasonDrainCompleted, nodestate.ConditionWriter+"drained"),
		stale(nodestate.ConditionDrainInProgress, "AdminRequested", "kubectl drain by an admin"),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.bed.Client.CoreV1().Nodes().PatchStatus(ctx, node, patch); err != nil {
		t.Fatal(err)
	}
	sim := e.simulate([]string{node}, e.args(e.config("", ""), "--node-maintenance-conditions"))
	n, err := e.bed.WaitNode(ctx, node, time.Minute, "the stale conditions False", func(n *corev1.Node) bool {
		return conditionStatus(n, nodestate.ConditionMaintenanceInProgress) == corev1.ConditionFalse &&
			conditionStatus(n, nodestate.ConditionDrained) == corev1.ConditionFalse
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range n.Status.Conditions {
		switch c.Type {
		case nodestate.ConditionMaintenanceInProgress, nodestate.ConditionDrained:
			if c.Reason != nodestate.CondReasonMaintenanceEnded {
				t.Errorf("%s turned False with reason %s, want %s", c.Type, c.Reason, nodestate.CondReasonMaintenanceEnded)
			}
		case nodestate.ConditionDrainInProgress:
			if c.Status != corev1.ConditionTrue || c.Reason != "AdminRequested" {
				t.Errorf("the admin's DrainInProgress became %s (%s)", c.Status, c.Reason)
			}
		case nodestate.ConditionMaintenancePlanned:
			t.Errorf("MaintenancePlanned written on a node with no reboot to do: %+v", c)
		}
	}
	e.neverDown(sim, node, "no reboot was needed")
}

func conditionStatus(n *corev1.Node, typ corev1.NodeConditionType) corev1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}
