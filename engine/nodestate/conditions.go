package nodestate

import corev1 "k8s.io/api/core/v1"

// The node lifecycle condition types of KEP-5683 (Node Lifecycle Conditions, alpha in
// Kubernetes v1.37), which maintenance controllers write on the Node's status. The
// agent sets them from its reboot's [Phase] (package pipeline derives them).
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

// rebootgate's own Node conditions, which the agent sets on its Node.
const (
	// ConditionRebootRequired is True while the node needs a reboot (the sentinel),
	// set the way node-problem-detector sets its conditions. Its reason is the
	// detector's (package detect's Reason* constants), or RebootRequired when it
	// gives none.
	ConditionRebootRequired = corev1.NodeConditionType("RebootRequired")
	// ConditionPolicyLoaded is the agent's Node condition for the config and policies
	// it decides with: True (reason PolicyLoaded) while the latest config file and
	// policy ConfigMaps are in force, False (reason ConfigError or PolicyError, the
	// load error in the message; package source's Reason* constants) while they do
	// not load and no new reboot starts. It is on the agent's own Node because that is
	// the only object an agent may write: `rebootgate status` and `rebootgate eval`
	// read it there.
	ConditionPolicyLoaded = corev1.NodeConditionType("RebootPolicyLoaded")
)
