package lock

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// TestConfirm: Confirm writes a renewal at once and succeeds only while the
// slot is ours; a slot taken over or deleted is lost, and stays lost.
func TestConfirm(t *testing.T) {
	ctx := context.Background()
	t.Run("held", func(t *testing.T) {
		cs := newClient(t)
		clk := testingclock.NewFakeClock(t0)
		h := mustTry(t, newSem(t, cs, clk, "a", func(c *Config) { c.SlotValue = "zone-a" }), 1)
		clk.SetTime(t0.Add(10 * time.Second)) // before the first background renewal
		if err := h.Confirm(ctx); err != nil {
			t.Fatalf("Confirm: %v", err)
		}
		for _, name := range []string{h.Name(), KeyLeaseName(testPool, "zone-a", 0)} {
			if l := getLease(t, cs, name); !l.Spec.RenewTime.Time.Equal(clk.Now()) || holderOf(l) != "a" {
				t.Errorf("%s after Confirm: holder %q renewed %v, want a renewed %v", name, holderOf(l), l.Spec.RenewTime, clk.Now())
			}
		}
		if isClosed(h.Lost()) {
			t.Fatalf("lost: %v", h.Err())
		}
		mustRelease(t, h)
		if err := h.Confirm(ctx); !errors.Is(err, ErrLost) {
			t.Errorf("Confirm after Release = %v, want ErrLost", err)
		}
	})
	t.Run("taken over", func(t *testing.T) {
		cs := newClient(t)
		h := mustTry(t, newSem(t, cs, testingclock.NewFakeClock(t0), "a"), 1)
		l := getLease(t, cs, h.Name())
		l.Spec.HolderIdentity = ptrTo("intruder")
		if _, err := cs.CoordinationV1().Leases(testNS).Update(ctx, l, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		assertConfirmLost(t, h)
		if got := holderOf(getLease(t, cs, h.Name())); got != "intruder" {
			t.Errorf("Confirm overwrote the new holder: holder %q", got)
		}
	})
	t.Run("deleted", func(t *testing.T) {
		cs := newClient(t)
		h := mustTry(t, newSem(t, cs, testingclock.NewFakeClock(t0), "a"), 1)
		if err := cs.CoordinationV1().Leases(testNS).Delete(ctx, h.Name(), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		assertConfirmLost(t, h)
		if _, err := cs.CoordinationV1().Leases(testNS).Get(ctx, h.Name(), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Confirm re-created the deleted lease: %v", err)
		}
	})
	t.Run("transient error, then past the deadline", func(t *testing.T) {
		cs := newClient(t)
		clk := testingclock.NewFakeClock(t0)
		h := mustTry(t, newSem(t, cs, clk, "a"), 1)
		var failing atomic.Bool
		failing.Store(true)
		cs.PrependReactor("update", "leases", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
			if failing.Load() {
				return true, nil, apierrors.NewServiceUnavailable("etcd is sad")
			}
			return false, nil, nil
		})
		err := h.Confirm(ctx)
		if err == nil || errors.Is(err, ErrLost) {
			t.Fatalf("Confirm during an outage = %v, want an error that is not ErrLost", err)
		}
		if isClosed(h.Lost()) {
			t.Fatalf("lost after one failed write: %v", h.Err())
		}
		failing.Store(false)
		if err := h.Confirm(ctx); err != nil {
			t.Fatalf("Confirm after the outage: %v", err)
		}
		failing.Store(true)
		clk.Step(testTTL - DefaultSkew) // the renewal deadline
		if err := h.Confirm(ctx); !errors.Is(err, ErrLost) {
			t.Errorf("Confirm past the renewal deadline = %v, want ErrLost", err)
		}
		if !isClosed(h.Lost()) {
			t.Errorf("Lost not closed past the renewal deadline")
		}
	})
}

// assertConfirmLost checks that Confirm reports the slot lost, closes Lost,
// sets Err, and keeps failing.
func assertConfirmLost(t *testing.T, h *Held) {
	t.Helper()
	if err := h.Confirm(context.Background()); !errors.Is(err, ErrLost) {
		t.Fatalf("Confirm = %v, want ErrLost", err)
	}
	if !isClosed(h.Lost()) || !errors.Is(h.Err(), ErrLost) {
		t.Fatalf("after a failed Confirm: Lost closed %v, Err %v", isClosed(h.Lost()), h.Err())
	}
	if err := h.Confirm(context.Background()); !errors.Is(err, ErrLost) {
		t.Errorf("second Confirm = %v, want ErrLost", err)
	}
	mustRelease(t, h)
}

// TestDeletedLeaseOfANodeMidRebootIsNotTaken: the Lease of a holder that is down was
// deleted; the slot looks free, but the holder's Node still says it is mid-reboot on
// it, so nobody takes it until that node has finished.
func TestDeletedLeaseOfANodeMidRebootIsNotTaken(t *testing.T) {
	ctx := context.Background()
	down := rebootingNode("a", t0)
	down.Labels = map[string]string{nodestate.LabelHoldsSlot: HoldsSlotValue(testNS, SlotLeaseName(testPool, 0))}
	// A node of another installation (namespace) on a slot of the same name.
	elsewhere := rebootingNode("c", t0)
	elsewhere.Labels = map[string]string{nodestate.LabelHoldsSlot: HoldsSlotValue("other-namespace", SlotLeaseName(testPool, 0))}
	cs := newClient(t, down, elsewhere, node("b"))
	clk := testingclock.NewFakeClock(t0)
	s := newSem(t, cs, clk, "b")
	if h, ok, err := s.TryAcquire(ctx, 1); err != nil || ok {
		t.Fatalf("TryAcquire while a is mid-reboot on the slot = %v, %v, %v; want no slot", h, ok, err)
	}
	down.Annotations = nil // a finished its reboot
	if _, err := cs.CoreV1().Nodes().Update(ctx, down, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.TryAcquire(ctx, 1); err != nil || !ok {
		t.Fatalf("TryAcquire once a has finished = %v, %v; want the slot (c reboots in another namespace)", ok, err)
	}
}
