package pipeline

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The node lifecycle condition types of KEP-5683 (Node Lifecycle Conditions, alpha in
// Kubernetes v1.37), which maintenance controllers write on the Node's status.
const (
	ConditionMaintenancePlanned    corev1.NodeConditionType = "MaintenancePlanned"
	ConditionMaintenanceInProgress corev1.NodeConditionType = "MaintenanceInProgress"
	ConditionDrainInProgress       corev1.NodeConditionType = "DrainInProgress"
	ConditionDrained               corev1.NodeConditionType = "Drained"
)

// LifecycleConditionTypes lists them in the order a reboot sets them.
var LifecycleConditionTypes = []corev1.NodeConditionType{
	ConditionMaintenancePlanned, ConditionMaintenanceInProgress, ConditionDrainInProgress, ConditionDrained,
}

// Reasons of the lifecycle conditions. MaintenanceWindow and DrainCompleted are the
// KEP's; the KEP names no reason for a condition turned False, so the others are
// rebootgate's, CamelCase cause categories as the KEP asks of writers.
const (
	// CondReasonMaintenanceWindow: set True because the node reboots in its pool's
	// window (the gate allows it now).
	CondReasonMaintenanceWindow = "MaintenanceWindow"
	// CondReasonDrainCompleted: the drain's criteria were met (Drained True,
	// DrainInProgress False).
	CondReasonDrainCompleted = "DrainCompleted"
	// CondReasonMaintenanceStarted: MaintenancePlanned is False because the
	// maintenance began (the node is cordoned); Drained is False because a new drain
	// began.
	CondReasonMaintenanceStarted = "MaintenanceStarted"
	// CondReasonMaintenanceCompleted: the reboot was verified and the node uncordoned.
	CondReasonMaintenanceCompleted = "MaintenanceCompleted"
	// CondReasonMaintenanceAbandoned: the reboot stopped before it happened (gate
	// closed, slot lost, drain failed) and the node was uncordoned.
	CondReasonMaintenanceAbandoned = "MaintenanceAbandoned"
	// CondReasonMaintenanceEnded: no reboot is in progress, and how the last one ended
	// is not known (an agent restarted between the end and the condition's update).
	CondReasonMaintenanceEnded = "MaintenanceEnded"
	// CondReasonDrainFailed: the drain failed and --force-reboot rebooted anyway, so
	// the node is not Drained.
	CondReasonDrainFailed = "DrainFailed"
	// CondReasonNoRebootRequired: MaintenancePlanned is False, the sentinel is gone.
	CondReasonNoRebootRequired = "NoRebootRequired"
	// CondReasonRebootBlocked: MaintenancePlanned is False, the gate blocks the
	// reboot now (outside the window, a blocker, back-off, hold).
	CondReasonRebootBlocked = "RebootBlocked"
)

// ConditionWriter starts the message of every lifecycle condition rebootgate writes:
// the KEP leaves ownership open, so the message names the writer, and rebootgate
// turns False only the conditions it set True itself.
const ConditionWriter = "rebootgate: "

// LifecycleFacts is what the lifecycle conditions derive from: the phase recorded on
// the Node and, while idle, the decision the agent reports.
type LifecycleFacts struct {
	Phase Phase
	Pool  string
	// Needed and Allowed: a reboot is required, and the gate allows it now (idle only).
	Needed, Allowed bool
	// Why is the gate's first reason when it blocks (idle only).
	Why string
	// Ended is how the last reboot ended, when this process saw it end (idle only):
	// ActFinish or ActUndo; "" when unknown.
	Ended Action
	// DrainFailed: the drain failed and the reboot went ahead (force reboot): the
	// recorded State.DrainForced (Rebooting, Verifying).
	DrainFailed bool
}

// LifecycleCondition is one lifecycle condition as it should be now.
type LifecycleCondition struct {
	Type    corev1.NodeConditionType
	Status  corev1.ConditionStatus
	Reason  string
	Message string
}

// LifecycleConditions is the level the four lifecycle conditions should have for the
// facts, one per type in LifecycleConditionTypes' order. It is pure.
//
//	phase (facts)           | Planned | InProgress | DrainInProgress | Drained
//	Idle, needed, allowed   | True    | False      | False           | False
//	Idle, otherwise         | False   | False      | False           | False
//	Cordoning, Draining     | False   | True       | True            | False
//	Rebooting, Verifying    | False   | True       | False           | True
//	(the drain failed, forced)                      | False           | False
func LifecycleConditions(f LifecycleFacts) []LifecycleCondition {
	pool := ""
	if f.Pool != "" {
		pool = " of pool " + f.Pool
	}
	set := func(t corev1.NodeConditionType, reason, format string, args ...any) LifecycleCondition {
		return LifecycleCondition{Type: t, Status: corev1.ConditionTrue, Reason: reason, Message: ConditionWriter + fmt.Sprintf(format, args...)}
	}
	unset := func(t corev1.NodeConditionType, reason, format string, args ...any) LifecycleCondition {
		return LifecycleCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason, Message: ConditionWriter + fmt.Sprintf(format, args...)}
	}
	started := unset(ConditionMaintenancePlanned, CondReasonMaintenanceStarted, "the reboot%s has started", pool)
	inProgress := set(ConditionMaintenanceInProgress, CondReasonMaintenanceWindow, "rebooting the node in the window%s", pool)
	switch f.Phase {
	case PhaseCordoning, PhaseDraining:
		return []LifecycleCondition{
			started, inProgress,
			set(ConditionDrainInProgress, CondReasonMaintenanceWindow, "cordoned and draining for the reboot%s", pool),
			unset(ConditionDrained, CondReasonMaintenanceStarted, "a new drain has started"),
		}
	case PhaseRebooting, PhaseVerifying:
		if f.DrainFailed {
			msg := "the drain failed; rebooting anyway (force reboot)"
			return []LifecycleCondition{
				started, inProgress,
				unset(ConditionDrainInProgress, CondReasonDrainFailed, "%s", msg),
				unset(ConditionDrained, CondReasonDrainFailed, "%s", msg),
			}
		}
		return []LifecycleCondition{
			started, inProgress,
			unset(ConditionDrainInProgress, CondReasonDrainCompleted, "the drain is over"),
			set(ConditionDrained, CondReasonDrainCompleted, "drained; the node stays cordoned until its reboot is verified"),
		}
	}
	var planned LifecycleCondition
	switch {
	case !f.Needed:
		planned = unset(ConditionMaintenancePlanned, CondReasonNoRebootRequired, "no reboot is required")
	case !f.Allowed:
		planned = unset(ConditionMaintenancePlanned, CondReasonRebootBlocked, "a reboot is required but blocked: %s", f.Why)
	default:
		planned = set(ConditionMaintenancePlanned, CondReasonMaintenanceWindow, "a reboot is required and allowed in the window%s; waiting for a slot", pool)
	}
	reason, msg := CondReasonMaintenanceEnded, "no reboot is in progress"
	switch f.Ended {
	case ActFinish:
		reason, msg = CondReasonMaintenanceCompleted, "the reboot ended and the node was uncordoned"
	case ActUndo:
		reason, msg = CondReasonMaintenanceAbandoned, "the reboot was stopped before it happened and the node was uncordoned"
	}
	return []LifecycleCondition{
		planned,
		unset(ConditionMaintenanceInProgress, reason, "%s", msg),
		unset(ConditionDrainInProgress, reason, "%s", msg),
		unset(ConditionDrained, reason, "%s", msg),
	}
}

// LifecycleUpdates compares the wanted conditions with the Node's and returns those to
// write (none: nothing to do), as whole NodeConditions for a strategic merge patch of
// status.conditions keyed by type. A True condition is written when the node lacks it
// or shows it otherwise; a False one only over a True one rebootgate wrote, so a node
// never touched gets no conditions and another writer's are left alone. The transition
// time moves only when the status does.
func LifecycleUpdates(have []corev1.NodeCondition, want []LifecycleCondition, now time.Time) []corev1.NodeCondition {
	var out []corev1.NodeCondition
	for _, w := range want {
		cur := findCondition(have, w.Type)
		ours := cur != nil && strings.HasPrefix(cur.Message, ConditionWriter)
		switch {
		case w.Status == corev1.ConditionTrue && cur != nil && cur.Status == corev1.ConditionTrue &&
			(!ours || (cur.Reason == w.Reason && cur.Message == w.Message)):
			continue // already True, or True by another writer: theirs to clear
		case w.Status != corev1.ConditionTrue && (cur == nil || cur.Status != corev1.ConditionTrue || !ours):
			continue
		}
		c := corev1.NodeCondition{
			Type: w.Type, Status: w.Status, Reason: w.Reason, Message: w.Message,
			LastHeartbeatTime: metav1.NewTime(now), LastTransitionTime: metav1.NewTime(now),
		}
		if cur != nil && cur.Status == w.Status {
			c.LastTransitionTime = cur.LastTransitionTime
		}
		out = append(out, c)
	}
	return out
}

func findCondition(cs []corev1.NodeCondition, t corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}
