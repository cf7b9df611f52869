// Package pipeline is a node's reboot lifecycle: cordon, drain, reboot, verify the new
// boot ID, wait for health, uncordon and release the slot.
//
// It is level-triggered. [Next] is a pure transition table from an [Observation]
// (the node's recorded state, its Node object, the sentinel, the gate, the slot) to
// the one [Step] to take; the agent's reconcile loop observes, calls Next and runs
// the step with engine/agent/nodeops' Executor, on every wake-up. Each step records the
// new state on the Node in the same patch as the change it describes, so an error, a
// crash or the reboot itself leaves a state the next pass continues from: resuming is
// not special. A node cordoned by an admin is never uncordoned, and the slot is
// released only after the uncordon. [LifecycleConditions] and [LifecycleUpdates]
// compute the Node's lifecycle conditions.
//
// The package is pure: no I/O, and it imports neither client-go's clientset nor
// kubectl (TestNoIOImports checks it); the steps' I/O lives in engine/agent/nodeops.
package pipeline
