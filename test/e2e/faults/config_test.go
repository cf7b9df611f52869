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

// TestBrokenConfigStopsNewRebootsInFlightFinishes (issue 18, item 5): while one node of
// a concurrency-2 pool is down, the config is replaced by one that does not load (it
// could have been a restriction). The node in flight still finishes, and no other node
// goes down while the config stays broken, although the pool's old, looser config would
// let both waiters go (one at once, the other once the first is back); each waiter says
// why in a ConfigError Event on its Node. Fixed, all finish. Judged on the simulator's
// record of when each host was down.
func TestBrokenConfigStopsNewRebootsInFlightFinishes(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3, 2, "")
	sim := f.simulate(time.Second, f.agentCommand())
	first, waiters := f.nodes[0], f.nodes[1:]
	sim.HoldDown(first, true)
	f.setRequired(sim, first)
	if err := sim.WaitForRebootStarted(context.Background(), first, 2*time.Minute); err != nil {
		t.Fatal(err)
	}

	// The waiters' agents read the broken config (the first's is down with its host).
	const notLoaded = "config not loaded"
	before := map[string]int{}
	for _, n := range waiters {
		before[n] = logCount(sim, n, notLoaded)
	}
	f.writeBroken()
	brokenAt := time.Now()
	for _, n := range waiters {
		f.waitLog(sim, n, notLoaded, before[n]+1)
	}
	f.setRequired(sim, waiters...)
	for _, n := range waiters {
		f.waitNode(n, time.Minute, "a decision since its reboot became required", func(n *corev1.Node) bool {
			return n.Annotations[annDecision] != ""
		})
	}
	// Under the old config one waiter would now take the free slot.
	f.holdsFor(3*recheckInterval, "the broken config", f.neitherCordonedNorRebooted(sim, waiters...))
	for _, n := range waiters {
		f.waitEvent(time.Minute, "Node", n, "ConfigError", "no new reboot starts until a valid config and policy set loads")
	}

	// The node in flight finishes under the broken config.
	sim.HoldDown(first, false)
	if _, err := sim.WaitForReboots(context.Background(), 1, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	f.waitNode(first, time.Minute, "uncordoned after its reboot, the config still broken", func(n *corev1.Node) bool { return !cordoned(n) })
	// Both slots are free now: under the old config both waiters would go.
	f.holdsFor(3*recheckInterval, "the broken config, every slot free", f.neitherCordonedNorRebooted(sim, waiters...))

	fixedAt := time.Now()
	f.writeConfig(2, "")
	f.waitFinished(sim, 3*time.Minute)
	f.checkMostDown(sim, 2)
	for _, d := range sim.DownIntervals() {
		switch {
		case d.Node == first && (d.To.IsZero() || d.To.After(fixedAt)):
			t.Errorf("%s, in flight when the config broke at %s, was back only at %s: it did not finish under the broken config; %s",
				first, brokenAt.Format("15:04:05.000"), d.To.Format("15:04:05.000"), describe(sim))
		case d.Node != first && d.From.Before(fixedAt):
			t.Errorf("%s went down at %s while the config was broken (%s to %s); %s",
				d.Node, d.From.Format("15:04:05.000"), brokenAt.Format("15:04:05.000"), fixedAt.Format("15:04:05.000"), describe(sim))
		}
	}
}
