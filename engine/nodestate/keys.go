package nodestate

// Annotations the agent's reboot lifecycle (decided by package pipeline, written by
// package engine/agent/nodeops) records on its Node: the [State] codec reads and writes
// them, and an agent that restarts mid-reboot resumes from them. Each is absent when
// its value is zero.
const (
	// AnnotationPhase is the reboot's phase ([Phase]: Cordoning, Draining, Rebooting,
	// Verifying); absent when no reboot is in progress. Waiters for a slot (package
	// lock) and the disruption counts read it: a node with a phase is in rebootgate's
	// own reboot.
	AnnotationPhase = "rebootgate.io/phase"
	// AnnotationPhaseSince is when the node entered its phase (RFC 3339).
	AnnotationPhaseSince = "rebootgate.io/phase-since"
	// AnnotationBootIDBefore is the node's boot ID before the reboot, to verify that
	// the reboot happened.
	AnnotationBootIDBefore = "rebootgate.io/boot-id-before"
	// AnnotationCordonedByUs is "true" when rebootgate made the node unschedulable; a
	// node an admin cordoned stays cordoned.
	AnnotationCordonedByUs = "rebootgate.io/cordoned-by-rebootgate"
	// AnnotationSlot is the name of the slot Lease the reboot holds.
	AnnotationSlot = "rebootgate.io/slot"
	// AnnotationAttempts counts the reboot requests of this reboot.
	AnnotationAttempts = "rebootgate.io/reboot-attempts"
	// AnnotationLastReboot is when the last reboot completed (RFC 3339): the start
	// of the reboot-loop protection.
	AnnotationLastReboot = "rebootgate.io/last-reboot"
	// AnnotationLoopBackoffUntil is when the reboot-loop protection that followed the
	// last reboot ends (the last reboot plus the agent's --loop-backoff): recorded,
	// so that eval and plan read the agent's own setting from the Node.
	AnnotationLoopBackoffUntil = "rebootgate.io/loop-backoff-until"
	// AnnotationLastDuration is how long the last completed reboot took, from the
	// cordon to the uncordon (a Go duration, whole seconds): `rebootgate plan`
	// forecasts the node's next reboot with it.
	AnnotationLastDuration = "rebootgate.io/last-reboot-duration"
	// AnnotationPool and AnnotationSlotValue name the semaphore the slot belongs to,
	// so an interrupted reboot can resume and finish without any config.
	AnnotationPool      = "rebootgate.io/slot-pool"
	AnnotationSlotValue = "rebootgate.io/slot-value"
	// AnnotationStartedAt is when the reboot began (the cordon), for its total
	// duration, which a restarted agent can still measure.
	AnnotationStartedAt = "rebootgate.io/reboot-started-at"
	// AnnotationRequestedAt is when the last reboot request was made.
	AnnotationRequestedAt = "rebootgate.io/reboot-requested-at"
	// AnnotationFailures counts consecutive failed attempts (drain, reboot that did
	// not happen, sentinel that survived a reboot); AnnotationRetryAfter is the end of
	// the back-off that follows the last one. Both outlive the reboot.
	AnnotationFailures   = "rebootgate.io/failures"
	AnnotationRetryAfter = "rebootgate.io/retry-after"
	// AnnotationDrainForced marks a reboot that went ahead after a failed drain
	// (--force-reboot): the node was never Drained (lifecycle conditions).
	AnnotationDrainForced = "rebootgate.io/drain-forced"
)

// Annotations the agent writes on its Node outside the lifecycle's State.
const (
	// AnnotationDecision is the agent's last decision ([Decision], JSON), written when
	// its content changes: `rebootgate status` shows it, and an agent that restarts
	// mid-reboot reads the decision that allowed the reboot from it.
	AnnotationDecision = "rebootgate.io/decision"
	// AnnotationRebootRequired is when the agent saw that the node needs a reboot
	// (RFC 3339); absent when it needs none. See [RebootRequiredSince].
	AnnotationRebootRequired = "rebootgate.io/reboot-required"
	// AnnotationHold on a Node stops its reboots, whatever else allows them (the
	// default of the config's holdAnnotation). An admin sets it; the agent sets it
	// too, with the reason, after --max-failures consecutive failures.
	AnnotationHold = "rebootgate.io/hold"
)

// Labels the agent sets on its Node while it reboots, besides the Leases: the second
// record of a holding, which survives a Lease's deletion (package lock counts them).
const (
	// LabelHoldsSlot identifies, on a Node mid-reboot, the slot Lease it holds (its
	// value is lock.HoldsSlotValue, a hash of the Lease's namespace and name).
	LabelHoldsSlot = "rebootgate.io/holds-slot"
	// LabelHoldsKey identifies, on a Node mid-reboot whose pool has a slot key, the
	// key value it holds one of the key Leases of (its value is lock.HoldsKeyValue).
	LabelHoldsKey = "rebootgate.io/holds-key"
)

// kured's node annotations (--annotate-nodes), which the agent writes for tools that
// read them: both hold an RFC 3339 time.
const (
	// AnnotationKuredRebootInProgress is set while a reboot is under way.
	AnnotationKuredRebootInProgress = "weave.works/kured-reboot-in-progress"
	// AnnotationKuredMostRecentRebootNeeded is when the last reboot was started.
	AnnotationKuredMostRecentRebootNeeded = "weave.works/kured-most-recent-reboot-needed"
)
