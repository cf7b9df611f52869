package faults

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestLaggingHolderClockKeepsSlot (finding 4): the test itself holds the pool's only
// slot for an existing, idle node, renewing the Lease every TTL/3 — but with a clock
// ten minutes behind, so every renewTime it writes is long past. A waiting agent must
// judge the Lease by when it saw it change, not by the holder's clock: it does not
// take the slot (nor cordon, nor reboot) while the renewals go on, and takes it within
// about a TTL once they stop.
func TestLaggingHolderClockKeepsSlot(t *testing.T) {
	t.Parallel()
	const lag = 10 * time.Minute
	f := newFleet(t, 2, 1, "")
	holder, waiter := f.nodes[0], f.nodes[1]
	ctx := context.Background()
	leases := f.bed.Client.CoordinationV1().Leases(f.ns)
	cur, err := leases.Create(ctx, f.leaseAt(nil, holder, lag), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sim := f.simulate(time.Second, f.agentCommand(), waiter)
	f.setRequired(sim, waiter)
	f.waitAllowed(waiter)

	// The waiter now waits for the slot. Keep renewing for two TTLs: a Lease judged on
	// the holder's clock is expired at every instant of it.
	nextRenew := time.Now()
	check := f.neitherCordonedNorRebooted(sim, waiter)
	f.holdsFor(2*lockTTL, "the slot kept by its lagging holder", func(ctx context.Context) string {
		if why := check(ctx); why != "" {
			return why
		}
		if h, err := f.slotHolder(ctx); err == nil && h != holder {
			return "the slot was taken by " + h + " while " + holder + " kept renewing it"
		}
		if time.Now().Before(nextRenew) {
			return ""
		}
		l, err := leases.Update(ctx, f.leaseAt(cur, holder, lag), metav1.UpdateOptions{})
		if err != nil {
			if fresh, gerr := leases.Get(ctx, f.slotName(0), metav1.GetOptions{}); gerr == nil {
				cur = fresh // retried at the next poll; a taken slot shows above
			}
			return ""
		}
		cur, nextRenew = l, time.Now().Add(lockTTL/3)
		return ""
	})

	stopped := time.Now()
	f.waitSlotHolder(lockTTL+skew+20*time.Second, "taken by "+waiter+" once the renewals stopped", func(h string) bool { return h == waiter })
	t.Logf("%s took the slot %s after the renewals stopped", waiter, time.Since(stopped).Round(100*time.Millisecond))
	if _, err := sim.WaitForReboots(ctx, 1, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	f.waitNode(waiter, time.Minute, "uncordoned", func(n *corev1.Node) bool { return !cordoned(n) })
}
