package faults

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/rebootgate/rebootgate/test/testbed"
)

// TestConcurrencyZeroReachesWaitingAgents (finding 3, I5): three nodes of a
// concurrency-1 pool need a reboot; while the first is down and the other two wait for
// its slot, the pool is set to concurrency 0. When the first is back and has released
// its slot, neither waiter is cordoned or asked to reboot. Set back to 1, all finish,
// one at a time.
func TestConcurrencyZeroReachesWaitingAgents(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3, 1, "")
	sim := f.simulate(time.Second, f.agentCommand())
	// Every host stays down until released, so the config changes while the first
	// holder is down, whichever node that is.
	for _, n := range f.nodes {
		sim.HoldDown(n, true)
	}
	f.setRequired(sim, f.nodes...)
	var first string
	err := testbed.Poll(context.Background(), 2*time.Minute, "a first node asked to reboot", func(context.Context) (bool, error) {
		downs := sim.DownIntervals()
		if len(downs) == 0 {
			return false, nil
		}
		first = downs[0].Node
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var waiters []string
	for _, n := range f.nodes {
		if n != first {
			waiters = append(waiters, n)
			f.waitAllowed(n)
		}
	}

	const loaded = "config loaded"
	before := map[string]int{}
	for _, n := range waiters {
		before[n] = logCount(sim, n, loaded)
	}
	f.writeConfig(0, "")
	for _, n := range waiters {
		f.waitLog(sim, n, loaded, before[n]+1)
	}
	sim.HoldDown(first, false)
	if _, err := sim.WaitForReboots(context.Background(), 1, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	f.waitNode(first, time.Minute, "uncordoned after its reboot", func(n *corev1.Node) bool { return !cordoned(n) })
	f.waitSlotHolder(time.Minute, "released by "+first, func(h string) bool { return h != first })
	// The slot is free and both waiters have the new config: with concurrency 1 one of
	// them would now be cordoning. Give each a few re-decisions.
	f.holdsFor(3*recheckInterval, "the paused pool", f.neitherCordonedNorRebooted(sim, waiters...))

	f.writeConfig(1, "")
	for _, n := range waiters {
		sim.HoldDown(n, false)
	}
	f.waitFinished(sim, 3*time.Minute)
	f.checkMostDown(sim, 1)
}
