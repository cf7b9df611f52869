package faults

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/test/testbed"
)

// lostSlotRebootDelay is the holder's --reboot-delay in which the slot is lost.
const lostSlotRebootDelay = 10 * time.Second

// startLostSlot sets up finding 2's scene on a concurrency-1 pool of two nodes: the
// holder has taken the slot, cordoned and drained (its pod is gone) and is in its
// --reboot-delay, and the other node waits for the slot. downFor is how long a host
// stays down.
func startLostSlot(t *testing.T, downFor time.Duration) (f *fleet, sim *testbed.Simulator, holder, waiter string) {
	f = newFleet(t, 2, 1, "")
	holder, waiter = f.nodes[0], f.nodes[1]
	work := f.workload(holder)
	sim = f.simulate(downFor, f.agentCommand("--reboot-delay", lostSlotRebootDelay.String()))
	f.setRequired(sim, holder)
	f.waitSlotHolder(time.Minute, "held by "+holder, func(h string) bool { return h == holder })
	f.setRequired(sim, waiter)
	f.waitAllowed(waiter)
	drained := f.waitDrained(holder, work, time.Minute)
	if rebootRequested(sim, holder) || time.Since(drained) > lostSlotRebootDelay/2 {
		t.Fatalf("%s is past its --reboot-delay already: the test's premise failed", holder)
	}
	return f, sim, holder, waiter
}

// TestLostSlotDeletedLeaseNeverTwoDown (finding 2, I1, I3): the held Lease is deleted
// while its holder is in --reboot-delay. At no instant are two hosts down, every node
// still reboots exactly once, and the holder does not end cordoned.
func TestLostSlotDeletedLeaseNeverTwoDown(t *testing.T) {
	t.Parallel()
	f, sim, holder, _ := startLostSlot(t, 5*time.Second)
	if err := f.bed.Client.CoordinationV1().Leases(f.ns).Delete(context.Background(), f.slotName(0), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitFinished(sim, 3*time.Minute)
	f.checkMostDown(sim, 1)
	if cordoned(f.node(holder)) {
		t.Errorf("%s, whose slot was deleted, ended cordoned", holder)
	}
}

// TestLostSlotAPIServerPausedNeverTwoDown (finding 2, I1, I3): kube-apiserver is
// stopped (SIGSTOP) for longer than the lock TTL while the slot's holder is in
// --reboot-delay, so the holder cannot renew and the waiter sees the slot expire. At
// no instant are two hosts down, and both nodes end rebooted once and uncordoned.
func TestLostSlotAPIServerPausedNeverTwoDown(t *testing.T) {
	// Not parallel: it stops the apiserver that every other test uses. Go runs it
	// before the parallel tests start.
	// A host down for longer than the waiter's path from taking the slot to its own
	// reboot request (cordon, drain, --reboot-delay) makes two-down observable.
	f, sim, _, _ := startLostSlot(t, lostSlotRebootDelay+5*time.Second)
	const pause = lockTTL + skew + 5*time.Second
	resume, err := f.bed.APIServer().Pause(pause + 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// kube-controller-manager and kube-scheduler exit when they cannot renew their
	// leader Lease: start them again, for the tests that share the bed.
	t.Cleanup(func() { _ = resume(); _ = f.bed.StartComponents(context.Background()) })
	time.Sleep(pause) // the fault: how long the apiserver is gone
	if err := resume(); err != nil {
		t.Fatal(err)
	}
	if err := f.bed.StartComponents(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.waitFinished(sim, 4*time.Minute)
	f.checkMostDown(sim, 1)
}
