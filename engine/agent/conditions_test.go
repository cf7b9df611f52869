package agent

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// statusPatches records the lifecycle conditions of every nodes/status patch, in order.
type statusPatches struct {
	mu      sync.Mutex
	patches [][]corev1.NodeCondition
}

func recordStatusPatches(client *fake.Clientset) *statusPatches {
	r := &statusPatches{}
	client.PrependReactor("patch", "nodes", func(action k8stesting.Action) (bool, runtime.Object, error) {
		p, ok := action.(k8stesting.PatchAction)
		if !ok || p.GetSubresource() != "status" {
			return false, nil, nil
		}
		var body struct {
			Status struct {
				Conditions []corev1.NodeCondition `json:"conditions"`
			} `json:"status"`
		}
		if err := json.Unmarshal(p.GetPatch(), &body); err != nil {
			return false, nil, nil
		}
		var lifecycle []corev1.NodeCondition
		for _, c := range body.Status.Conditions {
			if slices.Contains(nodestate.LifecycleConditionTypes, c.Type) {
				lifecycle = append(lifecycle, c)
			}
		}
		if len(lifecycle) > 0 {
			r.mu.Lock()
			r.patches = append(r.patches, lifecycle)
			r.mu.Unlock()
		}
		return false, nil, nil
	})
	return r
}

func (r *statusPatches) all() [][]corev1.NodeCondition {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.patches)
}

func (r *statusPatches) String() string {
	var sb strings.Builder
	for i, p := range r.all() {
		sb.WriteString("\n  patch " + string(rune('1'+i)) + ":")
		for _, c := range p {
			sb.WriteString(" " + string(c.Type) + "=" + string(c.Status) + "(" + c.Reason + ")")
		}
	}
	return sb.String()
}

func conditionOf(n *corev1.Node, t corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == t {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// lifecycleSettled: every lifecycle condition the node has is False.
func lifecycleSettled(n *corev1.Node) bool {
	for _, t := range nodestate.LifecycleConditionTypes {
		if c := conditionOf(n, t); c != nil && c.Status != corev1.ConditionFalse {
			return false
		}
	}
	return conditionOf(n, nodestate.ConditionMaintenanceInProgress) != nil
}

// TestMaintenanceConditionsFollowTheReboot: with MaintenanceConditions, one reboot on
// the fake API writes MaintenancePlanned, then MaintenanceInProgress and
// DrainInProgress (one patch: the cordon starts the drain), then Drained with
// DrainInProgress False, then all False after the uncordon; one patch per step, with
// the KEP's reasons, and RebootRequired kept.
func TestMaintenanceConditionsFollowTheReboot(t *testing.T) {
	client := fake.NewClientset(fakeNode("n1", "boot-1"))
	rec := recordStatusPatches(client)
	ctx := fakeReboot(t, client, Config{NodeName: "n1", MaintenanceConditions: true}, lifecycleSettled)

	type cs = map[corev1.NodeConditionType]string
	want := []cs{
		{nodestate.ConditionMaintenancePlanned: "True/MaintenanceWindow"},
		{nodestate.ConditionMaintenancePlanned: "False/MaintenanceStarted", nodestate.ConditionMaintenanceInProgress: "True/MaintenanceWindow", nodestate.ConditionDrainInProgress: "True/MaintenanceWindow"},
		{nodestate.ConditionDrainInProgress: "False/DrainCompleted", nodestate.ConditionDrained: "True/DrainCompleted"},
		{nodestate.ConditionMaintenanceInProgress: "False/MaintenanceCompleted", nodestate.ConditionDrained: "False/MaintenanceCompleted"},
	}
	var got []cs
	for _, p := range rec.all() {
		m := cs{}
		for _, c := range p {
			m[c.Type] = string(c.Status) + "/" + c.Reason
			if !strings.HasPrefix(c.Message, nodestate.ConditionWriter) {
				t.Errorf("%s's message %q does not name rebootgate", c.Type, c.Message)
			}
		}
		// The same write repeated (the informer had not shown it yet) is one step.
		if len(got) > 0 && equalMaps(got[len(got)-1], m) {
			continue
		}
		got = append(got, m)
	}
	if len(got) != len(want) {
		t.Fatalf("%d condition writes, want %d:%s", len(got), len(want), rec)
	}
	for i := range want {
		if !equalMaps(got[i], want[i]) {
			t.Errorf("write %d = %v, want %v", i+1, got[i], want[i])
		}
	}
	n, err := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := conditionOf(n, nodestate.ConditionRebootRequired); c == nil || c.Status != corev1.ConditionFalse {
		t.Errorf("RebootRequired = %+v, want kept and False after the reboot", c)
	}
	if c := conditionOf(n, corev1.NodeReady); c == nil || c.Status != corev1.ConditionTrue {
		t.Errorf("Ready = %+v, want untouched", c)
	}
}

func equalMaps[K, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestMaintenanceConditionsOff: without the flag, a reboot writes no lifecycle
// condition.
func TestMaintenanceConditionsOff(t *testing.T) {
	client := fake.NewClientset(fakeNode("n1", "boot-1"))
	rec := recordStatusPatches(client)
	ctx := fakeReboot(t, client, Config{NodeName: "n1"}, nil)
	if p := rec.all(); len(p) != 0 {
		t.Errorf("lifecycle conditions written without the flag:%s", rec)
	}
	n, _ := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	for _, typ := range nodestate.LifecycleConditionTypes {
		if c := conditionOf(n, typ); c != nil {
			t.Errorf("%s present without the flag: %+v", typ, c)
		}
	}
}

// TestMaintenanceConditionsRepaired: an agent that died after the uncordon but before
// clearing the conditions leaves MaintenanceInProgress and Drained True; the next
// agent turns them False (reason MaintenanceEnded: it did not see the end) without any
// reboot to do, and leaves an admin's DrainInProgress alone. The same holds after the
// flag is turned off: what rebootgate set, it clears.
func TestMaintenanceConditionsRepaired(t *testing.T) {
	for _, flag := range []bool{true, false} {
		stale := fakeNode("n1", "boot-1")
		earlier := metav1.NewTime(time.Now().Add(-time.Hour))
		stale.Status.Conditions = append(stale.Status.Conditions,
			corev1.NodeCondition{Type: nodestate.ConditionMaintenanceInProgress, Status: corev1.ConditionTrue, Reason: nodestate.CondReasonMaintenanceWindow, Message: nodestate.ConditionWriter + "rebooting", LastTransitionTime: earlier},
			corev1.NodeCondition{Type: nodestate.ConditionDrained, Status: corev1.ConditionTrue, Reason: nodestate.CondReasonDrainCompleted, Message: nodestate.ConditionWriter + "drained", LastTransitionTime: earlier},
			corev1.NodeCondition{Type: nodestate.ConditionDrainInProgress, Status: corev1.ConditionTrue, Reason: "AdminRequested", Message: "kubectl drain", LastTransitionTime: earlier},
		)
		client := fake.NewClientset(stale)
		a, err := New(Config{NodeName: "n1", Namespace: "rebootgate", SentinelPath: t.TempDir() + "/absent", MaintenanceConditions: flag}, client, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		var n *corev1.Node
		waitFor(t, ctx, "the stale conditions turned False", func() bool {
			n, _ = client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
			c, d := conditionOf(n, nodestate.ConditionMaintenanceInProgress), conditionOf(n, nodestate.ConditionDrained)
			return c.Status == corev1.ConditionFalse && d.Status == corev1.ConditionFalse
		})
		cancel()
		<-done
		for _, typ := range []corev1.NodeConditionType{nodestate.ConditionMaintenanceInProgress, nodestate.ConditionDrained} {
			if c := conditionOf(n, typ); c.Reason != nodestate.CondReasonMaintenanceEnded || c.LastTransitionTime.Equal(&earlier) {
				t.Errorf("flag %v: %s = %s (%s), transition %v; want False (MaintenanceEnded) with a new transition time", flag, typ, c.Status, c.Reason, c.LastTransitionTime)
			}
		}
		if c := conditionOf(n, nodestate.ConditionDrainInProgress); c.Status != corev1.ConditionTrue || c.Reason != "AdminRequested" {
			t.Errorf("flag %v: the admin's DrainInProgress became %s (%s)", flag, c.Status, c.Reason)
		}
		if c := conditionOf(n, nodestate.ConditionMaintenancePlanned); c != nil {
			t.Errorf("flag %v: MaintenancePlanned written on a node with no reboot to do: %+v", flag, c)
		}
	}
}

// TestMaintenanceConditionsForcedDrain: a drain that fails under ForceReboot is
// recorded with the phase (rebootgate.io/drain-forced), so the reboot that follows
// ends DrainInProgress with reason DrainFailed and never sets Drained.
func TestMaintenanceConditionsForcedDrain(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}, Spec: corev1.PodSpec{NodeName: "n1"}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	client := fake.NewClientset(fakeNode("n1", "boot-1"), pod)
	// The drain evicts, or deletes where the API has no eviction (the fake's discovery).
	refuse := func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("refused by the test")
	}
	client.PrependReactor("create", "pods", refuse)
	client.PrependReactor("delete", "pods", refuse)
	rec := recordStatusPatches(client)
	cfg := Config{NodeName: "n1", MaintenanceConditions: true, ForceReboot: true}
	cfg.Drain.Attempts, cfg.Drain.Timeout = 1, 5*time.Second
	fakeReboot(t, client, cfg, lifecycleSettled)
	var failed bool
	for _, p := range rec.all() {
		for _, c := range p {
			if c.Type == nodestate.ConditionDrained && c.Status == corev1.ConditionTrue {
				t.Errorf("Drained=True (%s) after a failed drain:%s", c.Reason, rec)
			}
			failed = failed || (c.Type == nodestate.ConditionDrainInProgress && c.Status == corev1.ConditionFalse && c.Reason == nodestate.CondReasonDrainFailed)
		}
	}
	if !failed {
		t.Errorf("no DrainInProgress=False (DrainFailed) written:%s", rec)
	}
}
