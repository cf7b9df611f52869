package pipeline

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// LifecycleFacts is what the lifecycle conditions derive from: the phase recorded on
// the Node and, while idle, the decision the agent reports.
type LifecycleFacts struct {
	Phase nodestate.Phase
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
		return LifecycleCondition{Type: t, Status: corev1.ConditionTrue, Reason: reason, Message: nodestate.ConditionWriter + fmt.Sprintf(format, args...)}
	}
	unset := func(t corev1.NodeConditionType, reason, format string, args ...any) LifecycleCondition {
		return LifecycleCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason, Message: nodestate.ConditionWriter + fmt.Sprintf(format, args...)}
	}
	started := unset(nodestate.ConditionMaintenancePlanned, nodestate.CondReasonMaintenanceStarted, "the reboot%s has started", pool)
	inProgress := set(nodestate.ConditionMaintenanceInProgress, nodestate.CondReasonMaintenanceWindow, "rebooting the node in the window%s", pool)
	switch f.Phase {
	case nodestate.PhaseCordoning, nodestate.PhaseDraining:
		return []LifecycleCondition{
			started, inProgress,
			set(nodestate.ConditionDrainInProgress, nodestate.CondReasonMaintenanceWindow, "cordoned and draining for the reboot%s", pool),
			unset(nodestate.ConditionDrained, nodestate.CondReasonMaintenanceStarted, "a new drain has started"),
		}
	case nodestate.PhaseRebooting, nodestate.PhaseVerifying:
		if f.DrainFailed {
			msg := "the drain failed; rebooting anyway (force reboot)"
			return []LifecycleCondition{
				started, inProgress,
				unset(nodestate.ConditionDrainInProgress, nodestate.CondReasonDrainFailed, "%s", msg),
				unset(nodestate.ConditionDrained, nodestate.CondReasonDrainFailed, "%s", msg),
			}
		}
		return []LifecycleCondition{
			started, inProgress,
			unset(nodestate.ConditionDrainInProgress, nodestate.CondReasonDrainCompleted, "the drain is over"),
			set(nodestate.ConditionDrained, nodestate.CondReasonDrainCompleted, "drained; the node stays cordoned until its reboot is verified"),
		}
	}
	var planned LifecycleCondition
	switch {
	case !f.Needed:
		planned = unset(nodestate.ConditionMaintenancePlanned, nodestate.CondReasonNoRebootRequired, "no reboot is required")
	case !f.Allowed:
		planned = unset(nodestate.ConditionMaintenancePlanned, nodestate.CondReasonRebootBlocked, "a reboot is required but blocked: %s", f.Why)
	default:
		planned = set(nodestate.ConditionMaintenancePlanned, nodestate.CondReasonMaintenanceWindow, "a reboot is required and allowed in the window%s; waiting for a slot", pool)
	}
	reason, msg := nodestate.CondReasonMaintenanceEnded, "no reboot is in progress"
	switch f.Ended {
	case ActFinish:
		reason, msg = nodestate.CondReasonMaintenanceCompleted, "the reboot ended and the node was uncordoned"
	case ActUndo:
		reason, msg = nodestate.CondReasonMaintenanceAbandoned, "the reboot was stopped before it happened and the node was uncordoned"
	}
	return []LifecycleCondition{
		planned,
		unset(nodestate.ConditionMaintenanceInProgress, reason, "%s", msg),
		unset(nodestate.ConditionDrainInProgress, reason, "%s", msg),
		unset(nodestate.ConditionDrained, reason, "%s", msg),
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
		ours := cur != nil && strings.HasPrefix(cur.Message, nodestate.ConditionWriter)
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
