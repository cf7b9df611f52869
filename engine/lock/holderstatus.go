package lock

import (
	"crypto/sha256"
	"encoding/hex"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
)

// HoldsSlotValue is the value of [nodestate.LabelHoldsSlot] for the Lease name in
// namespace: a hash, as "namespace/name" may exceed a label value's 63
// characters, and two installations may use the same pool name in different
// namespaces.
func HoldsSlotValue(namespace, lease string) string {
	sum := sha256.Sum256([]byte(namespace + "/" + lease))
	return hex.EncodeToString(sum[:])[:40]
}

// HoldsKeyValue is the value of [nodestate.LabelHoldsKey] for the slot-key value of pool
// in namespace. It names the value, not one of its key Leases, so that a
// waiter counts every node mid-reboot under that value whatever key Lease
// each took: it is HoldsSlotValue of key Lease 0's name, which is unique per
// pool and value.
func HoldsKeyValue(namespace, pool, value string) string {
	return HoldsSlotValue(namespace, KeyLeaseName(pool, value, 0))
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
