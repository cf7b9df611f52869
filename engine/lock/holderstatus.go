package lock

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
)

// Node annotations through which a holder tells waiters that it is in the
// middle of its reboot lifecycle. The agent's pipeline writes them; they are
// spelled out here so that the lock does not depend on the pipeline.
const (
	// AnnotationPhase is the holder's reboot phase (Cordoning, Draining,
	// Rebooting, Verifying); absent or empty when no reboot is in progress.
	AnnotationPhase = "rebootgate.io/phase"
	// AnnotationPhaseSince is when the holder entered that phase (RFC 3339).
	AnnotationPhaseSince = "rebootgate.io/phase-since"
	// LabelHoldsSlot identifies, on a Node mid-reboot, the slot Lease it holds
	// (its value is [HoldsSlotValue]). It is the second record of a holding,
	// besides the Lease: it survives the Lease's deletion (see
	// Config.SlotUsers).
	LabelHoldsSlot = "rebootgate.io/holds-slot"
	// LabelHoldsKey identifies, on a Node mid-reboot whose pool has a slot key,
	// the key value it holds one of the key Leases of (its value is
	// [HoldsKeyValue]): the second record of the per-key limit, which
	// survives the deletion of the key Lease (see Config.KeyUsers).
	LabelHoldsKey = "rebootgate.io/holds-key"
)

// HolderStatus is what a waiter learns about the node holding a Lease that
// has stopped being renewed.
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

// HoldsSlotValue is the value of LabelHoldsSlot for the Lease name in
// namespace: a hash, as "namespace/name" may exceed a label value's 63
// characters, and two installations may use the same pool name in different
// namespaces.
func HoldsSlotValue(namespace, lease string) string {
	sum := sha256.Sum256([]byte(namespace + "/" + lease))
	return hex.EncodeToString(sum[:])[:40]
}

// HoldsKeyValue is the value of LabelHoldsKey for the slot-key value of pool
// in namespace. It names the value, not one of its key Leases, so that a
// waiter counts every node mid-reboot under that value whatever key Lease
// each took: it is HoldsSlotValue of key Lease 0's name, which is unique per
// pool and value.
func HoldsKeyValue(namespace, pool, value string) string {
	return HoldsSlotValue(namespace, KeyLeaseName(pool, value, 0))
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

// LeaseRef is a reference to the Lease name in namespace, as the involved
// object of an Event (for example, one reporting a stuck holder).
func LeaseRef(namespace, name string) *corev1.ObjectReference {
	return &corev1.ObjectReference{
		APIVersion: coordinationv1.SchemeGroupVersion.String(),
		Kind:       "Lease",
		Namespace:  namespace,
		Name:       name,
	}
}
