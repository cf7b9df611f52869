package lock

import coordinationv1 "k8s.io/api/coordination/v1"

// LeaseKind is what one of a pool's Leases is.
type LeaseKind string

// The kinds of a pool's Leases.
const (
	// KindSlot is slot i of the pool (SlotLeaseName): its holder may reboot.
	KindSlot LeaseKind = "slot"
	// KindKey is one of a slot-key value's Leases (KeyLeaseName).
	KindKey LeaseKind = "key"
	// KindTicket is a waiter's place in the pool's queue; it has no holder.
	KindTicket LeaseKind = "ticket"
)

// KindOf says what l is, for readers outside the lock such as `rebootgate status`:
// a slot (with its index), a key Lease or a ticket of the pool its LabelPool label
// names. ok is false for any other Lease, a stray label included. The name is parsed
// for the labelled pool, so a pool named "key" has slots, not key Leases, whatever
// substring its names contain.
func KindOf(l *coordinationv1.Lease) (kind LeaseKind, slot int, ok bool) {
	pool := l.Labels[LabelPool]
	if pool == "" {
		return "", 0, false
	}
	if i, isSlot := slotIndex(pool, l.Name); isSlot {
		return KindSlot, i, true
	}
	switch {
	case isKeyLease(pool, l.Name):
		return KindKey, 0, true
	case isTicketLease(pool, l.Name):
		return KindTicket, 0, true
	}
	return "", 0, false
}
