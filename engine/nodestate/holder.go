package nodestate

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// HolderStatus is what a waiter for a slot (package lock) learns about the node
// holding a Lease that has stopped being renewed.
type HolderStatus struct {
	// Exists is false when the Node object is gone: its slot is reclaimed.
	Exists bool
	// Busy is true when the holder is mid-reboot (its phase annotation is
	// set): its slot stays taken however long its Lease has been expired,
	// because the node may be down, and letting the next one reboot would
	// put two nodes of the pool down at once.
	Busy bool
	// Since is when the holder entered its current phase; zero if unknown.
	Since time.Time
}

// HolderStatusOf reads a holder's status from its Node object.
func HolderStatusOf(n *corev1.Node) HolderStatus {
	st := HolderStatus{Exists: true, Busy: n.Annotations[AnnotationPhase] != ""}
	if st.Busy {
		// A malformed timestamp only loses the "since" of the report.
		st.Since, _ = time.Parse(time.RFC3339, n.Annotations[AnnotationPhaseSince])
	}
	return st
}
