package faults

import (
	"context"
	"testing"
	"time"
)

// TestDeadNodeKeepsSlotAndHaltsPool (finding 1, I2): a host that stays down far longer
// than --reboot-timeout + --ready-timeout and the lock TTL keeps its slot: the other
// node of the concurrency-1 pool is neither cordoned nor asked to reboot while it is
// down, and a NodeNotBack Event says so on the dead node and on the slot's Lease. Once
// the host comes back, both finish, one after the other.
func TestDeadNodeKeepsSlotAndHaltsPool(t *testing.T) {
	t.Parallel()
	const rebootTimeout, readyTimeout = 5 * time.Second, 5 * time.Second
	f := newFleet(t, 2, 1, "")
	dead, waiter := f.nodes[0], f.nodes[1]
	sim := f.simulate(time.Second, f.agentCommand("--reboot-timeout", rebootTimeout.String(), "--ready-timeout", readyTimeout.String()))
	sim.HoldDown(dead, true)
	f.setRequired(sim, dead)
	if err := sim.WaitForRebootStarted(context.Background(), dead, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	wentDown := time.Now()
	f.setRequired(sim, waiter)
	f.waitAllowed(waiter)

	// Today's slot outlives the reboot by rebootTimeout + readyTimeout only: past that,
	// plus the TTL and the clock-skew allowance, the waiter would take it. Watch well
	// beyond that point.
	expiredBy := wentDown.Add(rebootTimeout + readyTimeout + lockTTL + skew)
	f.holdsFor(time.Until(expiredBy)+20*time.Second, "the pool halted while "+dead+" is down", f.neitherCordonedNorRebooted(sim, waiter))
	if !sim.State(dead).Rebooting {
		t.Fatalf("%s is not down any more: the test's premise failed", dead)
	}
	f.waitEvent(30*time.Second, "Node", dead, "NodeNotBack", "has not come back after")
	f.waitEvent(30*time.Second, "Lease", f.slotName(0), "NodeNotBack", "has not come back after")

	sim.HoldDown(dead, false)
	f.waitFinished(sim, 3*time.Minute)
	f.checkMostDown(sim, 1)
}
