package slotkeys

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/lock"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// onePerZone is the pool of the Lease-deletion tests: two slots, so that only the
// key holds a zone's second node back.
const onePerZone = "  concurrency: 2\n  slotsPerKey: 1\n"

// TestKeyLeaseDeletedWhileDown: zone z's first node reboots; while it is down (held
// powered off) and the second waits for the zone's key, the first's key Lease is
// deleted. The second sees the key Lease
// free and a slot free, but the first's Node records it mid-reboot under z: it is
// refused, and goes only after the first is back. Never two z hosts down at once, by
// the simulator's record.
func TestKeyLeaseDeletedWhileDown(t *testing.T) {
	t.Parallel()
	r := start(t, []string{"z"}, 2, false, onePerZone, holdAll((*testbed.Simulator).HoldDown), secondLater)
	a, b := r.downWithAgentStopped()
	r.waiting(b)
	deleteLease(t, r, lock.KeyLeaseName("zones", "z", 0))
	deleted := time.Now()

	// b's agent logs each refusal; on today's code it claims instead and goes down.
	refused := "still mid-reboot under its value"
	err := testbed.Poll(context.Background(), time.Minute, b+" refused the free key Lease or down", func(context.Context) (bool, error) {
		return r.logHas(b, refused) || r.isDown(b), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s refused the deleted key Lease (or went down) %.1fs after the deletion", b, time.Since(deleted).Seconds())
	if r.isDown(b) {
		t.Errorf("%s went down while %s, down under the same zone, had its key Lease deleted", b, a)
	}
	releaseAll(r, (*testbed.Simulator).HoldDown)
	r.finish()
	if perZone, _ := r.checkDowns(); perZone["z"] != 1 {
		t.Errorf("zone z: %d hosts down at once, want 1 (slotsPerKey 1; the key Lease was deleted while one was down)", perZone["z"])
	}
}

// TestSlotLeaseDeletedWhileDown: zone z's first node reboots on slot 1 (slot 0 is
// held by a node that has left the cluster, so slot 0 becomes free, and is the
// second's choice, a little later); while it is down and the second waits for the
// zone's key, its slot Lease, and only that, is deleted. It boots and its agent starts before the Node is
// Ready: the agent finds no slot but keeps its key Lease while the node is
// mid-reboot, so the second stays back until the first is Ready and done. Never two
// z hosts down at once, by the simulator's record.
func TestSlotLeaseDeletedWhileDown(t *testing.T) {
	t.Parallel()
	r := start(t, []string{"z"}, 2, false, onePerZone,
		holdAll((*testbed.Simulator).HoldDown), holdAll((*testbed.Simulator).HoldNotReady), leftNodeHoldsSlot0, secondLater)
	a, b := r.downWithAgentStopped()
	r.waiting(b)
	// b, held back by the key, has found slot 0's holder gone: slot 0 is free for it.
	if err := testbed.Poll(context.Background(), time.Minute, b+" finding slot 0's holder gone", func(context.Context) (bool, error) {
		return r.logHas(b, "slot holder's node is gone"), nil
	}); err != nil {
		t.Fatal(err)
	}
	slot := lock.SlotLeaseName("zones", 1)
	if l, err := r.bed.Client.CoordinationV1().Leases(r.ns).Get(context.Background(), slot, metav1.GetOptions{}); err != nil || holder(l) != a {
		t.Fatalf("%s is down without holding %s (%v, holder %q)", a, slot, err, holder(l))
	}
	deleteLease(t, r, slot)
	r.sim.HoldDown(a, false) // it boots; its agent starts; the Node stays NotReady

	if err := testbed.Poll(context.Background(), time.Minute, a+"'s agent back, finding no slot", func(context.Context) (bool, error) {
		return r.logHas(a, "no slot to resume"), nil
	}); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	key := lock.KeyLeaseName("zones", "z", 0)
	if l, err := r.bed.Client.CoordinationV1().Leases(r.ns).Get(context.Background(), key, metav1.GetOptions{}); err != nil || holder(l) != a {
		t.Errorf("%s's agent came back mid-reboot without its slot: key Lease %s held by %q (%v), want %s", a, key, holder(l), err, a)
	}
	// On today's code b takes the key and goes down within seconds of a's agent
	// giving it up (the first of a's reboot steps back).
	err := testbed.Poll(context.Background(), 30*time.Second, b+" down", func(context.Context) (bool, error) { return r.isDown(b), nil })
	switch {
	case err == nil:
		t.Errorf("%s went down %.1fs after %s's agent came back mid-reboot without its slot Lease", b, time.Since(resumed).Seconds(), a)
	case !errors.Is(err, testbed.ErrTimeout):
		t.Fatal(err)
	}
	releaseAll(r, (*testbed.Simulator).HoldNotReady)
	releaseAll(r, (*testbed.Simulator).HoldDown)
	r.finish()
	if perZone, _ := r.checkDowns(); perZone["z"] != 1 {
		t.Errorf("zone z: %d hosts down at once, want 1 (slotsPerKey 1; a slot Lease was deleted while one was down)", perZone["z"])
	}
}

// holdAll applies a simulator hold to every node of the rollout.
func holdAll(hold func(*testbed.Simulator, string, bool)) func(*rollout) {
	return func(r *rollout) {
		for _, n := range r.zoned {
			hold(r.sim, n, true)
		}
	}
}

func releaseAll(r *rollout, hold func(*testbed.Simulator, string, bool)) {
	for _, n := range r.zoned {
		hold(r.sim, n, false)
	}
}

// leftNodeHoldsSlot0 creates slot 0's Lease, held by a node that is not in the
// cluster (it left mid-holding): live at first sight, reclaimable once it has not
// been renewed for half its 2 s and its holder is found gone.
func leftNodeHoldsSlot0(r *rollout) {
	now := metav1.NewMicroTime(time.Now())
	gone, seconds := "gone-"+r.id, int32(2)
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: lock.SlotLeaseName("zones", 0), Namespace: r.ns, Labels: map[string]string{lock.LabelPool: "zones"}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &gone, LeaseDurationSeconds: &seconds, AcquireTime: &now, RenewTime: &now},
	}
	if _, err := r.bed.Client.CoordinationV1().Leases(r.ns).Create(context.Background(), l, metav1.CreateOptions{}); err != nil {
		r.t.Fatal(err)
	}
}

// secondLater leaves the second zoned node's reboot to the test: it starts waiting
// once the first holds the key, as a node that needs a reboot later does (two that
// start together race for the key, and the loser's lost race is not the fault here).
func secondLater(r *rollout) { r.later[r.zoned[1]] = true }

// downWithAgentStopped waits for the first zoned host to go down and its agent to
// stop, and returns it and the other zoned node (the tests have two).
func (r *rollout) downWithAgentStopped() (down, other string) {
	r.t.Helper()
	down, other = r.zoned[0], r.zoned[1]
	err := testbed.Poll(context.Background(), 90*time.Second, down+" down with its agent stopped", func(context.Context) (bool, error) {
		st := r.sim.State(down)
		return r.isDown(down) && st.Rebooting && !st.Running, nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return down, other
}

// waiting makes node need a reboot and waits until it queues for a slot (its ticket
// Lease exists), held back by the key.
func (r *rollout) waiting(node string) {
	r.t.Helper()
	if err := r.sim.SetRebootRequired(node, true); err != nil {
		r.t.Fatal(err)
	}
	err := testbed.Poll(context.Background(), time.Minute, node+" queued", func(ctx context.Context) (bool, error) {
		list, err := r.bed.Client.CoordinationV1().Leases(r.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, l := range list.Items {
			if l.Annotations[lock.AnnotationWaiter] == node {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
}

// isDown says whether node has gone down (its down interval began) at all.
func (r *rollout) isDown(node string) bool {
	for _, d := range r.sim.DownIntervals() {
		if d.Node == node {
			return true
		}
	}
	return false
}

// logHas says whether node's agent log contains s.
func (r *rollout) logHas(node, s string) bool {
	data, err := os.ReadFile(r.sim.LogPath(node))
	return err == nil && strings.Contains(string(data), s)
}

func deleteLease(t *testing.T, r *rollout, name string) {
	t.Helper()
	if err := r.bed.Client.CoordinationV1().Leases(r.ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting Lease %s: %v", name, err)
	}
	t.Logf("deleted Lease %s", name)
}

func holder(l *coordinationv1.Lease) string {
	if l == nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}
