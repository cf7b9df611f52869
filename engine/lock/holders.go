package lock

import (
	"context"
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// Holder describes one held slot, for `rebootgate status` and metrics.
type Holder struct {
	Lease     string // the slot's Lease name
	Slot      int    // slot index
	Node      string // holder identity
	SlotValue string // the holder's slot-key value, if any (e.g. its zone)
	Since     time.Time
	Renewed   time.Time
	// Expires is renewTime + leaseDurationSeconds by the holder's clock.
	// Waiters judge expiry by their own clocks from when they saw the Lease
	// change, and never take the slot of a holder that is mid-reboot.
	Expires     time.Time
	Transitions int32 // how many times this slot has changed hands
}

// Holders lists the held slots of pool in namespace, by slot index. Slots
// whose holder is past expiry are still listed (check Expires): whether they
// are reclaimable depends on when waiters saw them change and on the
// holder's node.
func Holders(ctx context.Context, client kubernetes.Interface, namespace, pool string) ([]Holder, error) {
	list, err := client.CoordinationV1().Leases(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{LabelPool: pool}).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("list slot holders of pool %q: %w", pool, err)
	}
	var out []Holder
	for i := range list.Items {
		l := &list.Items[i]
		idx, ok := slotIndex(pool, l.Name)
		if !ok || l.Labels[LabelPool] != pool || holderOf(l) == "" {
			continue
		}
		h := Holder{
			Lease:       l.Name,
			Slot:        idx,
			Node:        holderOf(l),
			SlotValue:   l.Annotations[AnnotationSlotValue],
			Renewed:     renewedAt(l),
			Expires:     expiresAt(l),
			Transitions: ptrValue(l.Spec.LeaseTransitions),
		}
		if l.Spec.AcquireTime != nil {
			h.Since = l.Spec.AcquireTime.Time
		}
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b Holder) int { return a.Slot - b.Slot })
	return out, nil
}
