package pipeline

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// TestLifecycleConditionsByPhase: each phase gives the table of LifecycleConditions'
// doc comment, with the KEP's reasons where it has them.
func TestLifecycleConditionsByPhase(t *testing.T) {
	T, F := corev1.ConditionTrue, corev1.ConditionFalse
	cases := []struct {
		name   string
		facts  LifecycleFacts
		status [4]corev1.ConditionStatus
		reason [4]string
	}{
		{"idle, nothing needed", LifecycleFacts{}, [4]corev1.ConditionStatus{F, F, F, F},
			[4]string{nodestate.CondReasonNoRebootRequired, nodestate.CondReasonMaintenanceEnded, nodestate.CondReasonMaintenanceEnded, nodestate.CondReasonMaintenanceEnded}},
		{"idle, needed and allowed", LifecycleFacts{Needed: true, Allowed: true, Pool: "user"}, [4]corev1.ConditionStatus{T, F, F, F},
			[4]string{nodestate.CondReasonMaintenanceWindow, nodestate.CondReasonMaintenanceEnded, nodestate.CondReasonMaintenanceEnded, nodestate.CondReasonMaintenanceEnded}},
		{"idle, needed and blocked", LifecycleFacts{Needed: true, Why: "outside the window"}, [4]corev1.ConditionStatus{F, F, F, F},
			[4]string{nodestate.CondReasonRebootBlocked, nodestate.CondReasonMaintenanceEnded, nodestate.CondReasonMaintenanceEnded, nodestate.CondReasonMaintenanceEnded}},
		{"idle after a reboot", LifecycleFacts{Ended: ActFinish}, [4]corev1.ConditionStatus{F, F, F, F},
			[4]string{nodestate.CondReasonNoRebootRequired, nodestate.CondReasonMaintenanceCompleted, nodestate.CondReasonMaintenanceCompleted, nodestate.CondReasonMaintenanceCompleted}},
		{"idle after an undo", LifecycleFacts{Needed: true, Why: "gate closed", Ended: ActUndo}, [4]corev1.ConditionStatus{F, F, F, F},
			[4]string{nodestate.CondReasonRebootBlocked, nodestate.CondReasonMaintenanceAbandoned, nodestate.CondReasonMaintenanceAbandoned, nodestate.CondReasonMaintenanceAbandoned}},
		{"draining", LifecycleFacts{Phase: nodestate.PhaseDraining, Pool: "user"}, [4]corev1.ConditionStatus{F, T, T, F},
			[4]string{nodestate.CondReasonMaintenanceStarted, nodestate.CondReasonMaintenanceWindow, nodestate.CondReasonMaintenanceWindow, nodestate.CondReasonMaintenanceStarted}},
		{"cordoning (older agent)", LifecycleFacts{Phase: nodestate.PhaseCordoning}, [4]corev1.ConditionStatus{F, T, T, F},
			[4]string{nodestate.CondReasonMaintenanceStarted, nodestate.CondReasonMaintenanceWindow, nodestate.CondReasonMaintenanceWindow, nodestate.CondReasonMaintenanceStarted}},
		{"rebooting", LifecycleFacts{Phase: nodestate.PhaseRebooting}, [4]corev1.ConditionStatus{F, T, F, T},
			[4]string{nodestate.CondReasonMaintenanceStarted, nodestate.CondReasonMaintenanceWindow, nodestate.CondReasonDrainCompleted, nodestate.CondReasonDrainCompleted}},
		{"rebooting after a failed drain (force reboot)", LifecycleFacts{Phase: nodestate.PhaseRebooting, DrainFailed: true}, [4]corev1.ConditionStatus{F, T, F, F},
			[4]string{nodestate.CondReasonMaintenanceStarted, nodestate.CondReasonMaintenanceWindow, nodestate.CondReasonDrainFailed, nodestate.CondReasonDrainFailed}},
		{"verifying", LifecycleFacts{Phase: nodestate.PhaseVerifying}, [4]corev1.ConditionStatus{F, T, F, T},
			[4]string{nodestate.CondReasonMaintenanceStarted, nodestate.CondReasonMaintenanceWindow, nodestate.CondReasonDrainCompleted, nodestate.CondReasonDrainCompleted}},
	}
	for _, tc := range cases {
		got := LifecycleConditions(tc.facts)
		if len(got) != len(nodestate.LifecycleConditionTypes) {
			t.Fatalf("%s: %d conditions, want %d", tc.name, len(got), len(nodestate.LifecycleConditionTypes))
		}
		for i, c := range got {
			if c.Type != nodestate.LifecycleConditionTypes[i] || c.Status != tc.status[i] || c.Reason != tc.reason[i] {
				t.Errorf("%s: condition %d = %s=%s (%s), want %s=%s (%s)", tc.name, i, c.Type, c.Status, c.Reason,
					nodestate.LifecycleConditionTypes[i], tc.status[i], tc.reason[i])
			}
			if !strings.HasPrefix(c.Message, nodestate.ConditionWriter) {
				t.Errorf("%s: %s's message %q does not name rebootgate", tc.name, c.Type, c.Message)
			}
		}
	}
	if m := LifecycleConditions(LifecycleFacts{Needed: true, Why: "a blackout"})[0].Message; !strings.Contains(m, "a blackout") {
		t.Errorf("a blocked MaintenancePlanned's message %q does not say why", m)
	}
}

// TestLifecycleUpdates: only changes are written; False only over rebootgate's own
// True; another writer's conditions stay; the transition time moves with the status.
func TestLifecycleUpdates(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	earlier := metav1.NewTime(now.Add(-time.Hour))
	idle := LifecycleConditions(LifecycleFacts{})
	draining := LifecycleConditions(LifecycleFacts{Phase: nodestate.PhaseDraining, Pool: "user"})
	rebooting := LifecycleConditions(LifecycleFacts{Phase: nodestate.PhaseRebooting, Pool: "user"})
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue}
	asNode := func(want []LifecycleCondition) []corev1.NodeCondition {
		out := []corev1.NodeCondition{ready}
		for _, w := range want {
			out = append(out, corev1.NodeCondition{Type: w.Type, Status: w.Status, Reason: w.Reason, Message: w.Message, LastTransitionTime: earlier})
		}
		return out
	}
	types := func(cs []corev1.NodeCondition) string {
		var s []string
		for _, c := range cs {
			s = append(s, string(c.Type)+"="+string(c.Status))
		}
		return strings.Join(s, ",")
	}

	if got := LifecycleUpdates([]corev1.NodeCondition{ready}, idle, now); len(got) != 0 {
		t.Errorf("an untouched idle node gets %s, want no write", types(got))
	}
	got := LifecycleUpdates([]corev1.NodeCondition{ready}, draining, now)
	if types(got) != "MaintenanceInProgress=True,DrainInProgress=True" {
		t.Errorf("the cordon writes %s, want MaintenanceInProgress=True,DrainInProgress=True (False ones only over True)", types(got))
	}
	for _, c := range got {
		if !c.LastTransitionTime.Time.Equal(now) {
			t.Errorf("new %s: transition time %v, want now", c.Type, c.LastTransitionTime)
		}
	}
	if got := LifecycleUpdates(asNode(draining), draining, now); len(got) != 0 {
		t.Errorf("a second pass in the same phase writes %s, want nothing", types(got))
	}
	got = LifecycleUpdates(asNode(draining), rebooting, now)
	if types(got) != "DrainInProgress=False,Drained=True" {
		t.Errorf("the drain's end writes %s, want DrainInProgress=False,Drained=True", types(got))
	}
	got = LifecycleUpdates(asNode(rebooting), idle, now)
	if types(got) != "MaintenanceInProgress=False,Drained=False" {
		t.Errorf("the end writes %s, want MaintenanceInProgress=False,Drained=False", types(got))
	}
	// A reason changed, the status did not: the transition time stays.
	planned := LifecycleConditions(LifecycleFacts{Needed: true, Allowed: true, Pool: "a"})
	moved := LifecycleConditions(LifecycleFacts{Needed: true, Allowed: true, Pool: "b"})
	got = LifecycleUpdates(asNode(planned), moved, now)
	if len(got) != 1 || got[0].Type != nodestate.ConditionMaintenancePlanned || !got[0].LastTransitionTime.Equal(&earlier) {
		t.Errorf("a new message on a True condition writes %+v, want MaintenancePlanned with its old transition time", got)
	}

	// Another writer's True conditions are theirs: neither cleared nor taken over.
	admin := []corev1.NodeCondition{ready,
		{Type: nodestate.ConditionMaintenanceInProgress, Status: corev1.ConditionTrue, Reason: "AdminRequested", Message: "firmware update"},
		{Type: nodestate.ConditionDrained, Status: corev1.ConditionTrue, Reason: "AdminRequested"},
	}
	if got := LifecycleUpdates(admin, idle, now); len(got) != 0 {
		t.Errorf("an admin's conditions get %s, want them left alone", types(got))
	}
	if got := LifecycleUpdates(admin, draining, now); types(got) != "DrainInProgress=True" {
		t.Errorf("draining under an admin's MaintenanceInProgress writes %s, want only DrainInProgress=True", types(got))
	}
}
