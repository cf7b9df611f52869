package summary

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// fastElection is an Election whose timings make a lost lead show within a second.
func fastElection(client *fake.Clientset) Election {
	return Election{
		Client: client, Namespace: "rg", Identity: "replica-a",
		LeaseDuration: 600 * time.Millisecond, RenewDeadline: 400 * time.Millisecond, RetryPeriod: 100 * time.Millisecond,
	}
}

// TestRunElectedLeadsThenReturnsWorkError: the replica takes the Lease under its
// identity, is told it leads before the work starts, and the work's error is returned.
func TestRunElectedLeadsThenReturnsWorkError(t *testing.T) {
	client := fake.NewClientset()
	e := fastElection(client)
	var leading atomic.Bool
	e.OnLeading = func() { leading.Store(true) }
	boom := errors.New("boom")
	err := RunElected(t.Context(), e, func(ctx context.Context) error {
		if !leading.Load() {
			t.Error("work started before OnLeading")
		}
		l, err := client.CoordinationV1().Leases("rg").Get(ctx, LeaseName, metav1.GetOptions{})
		if err != nil {
			t.Errorf("the Lease: %v", err)
		} else if h := l.Spec.HolderIdentity; h == nil || *h != "replica-a" {
			t.Errorf("Lease holder = %v, want replica-a", h)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("RunElected = %v, want the work's error", err)
	}
}

// TestRunElectedLostLeadIsAnError: a leader that can no longer renew stops its work and
// returns an error naming the Lease (the process ends, so two writers never overlap
// for long); ending ctx instead returns nil.
func TestRunElectedLostLeadIsAnError(t *testing.T) {
	client := fake.NewClientset()
	var refuse atomic.Bool
	client.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if refuse.Load() {
			return true, nil, errors.New("apiserver unreachable")
		}
		return false, nil, nil
	})
	workEnded := make(chan struct{})
	err := RunElected(t.Context(), fastElection(client), func(ctx context.Context) error {
		refuse.Store(true)
		<-ctx.Done()
		close(workEnded)
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "lost the lead of Lease rg/"+LeaseName) {
		t.Errorf("RunElected = %v, want a lost lead", err)
	}
	select {
	case <-workEnded:
	default:
		t.Error("the work was not stopped when the lead was lost")
	}

	ctx, cancel := context.WithCancel(t.Context())
	err = RunElected(ctx, fastElection(fake.NewClientset()), func(ctx context.Context) error {
		cancel()
		<-ctx.Done()
		return nil
	})
	if err != nil {
		t.Errorf("RunElected after ctx ended = %v, want nil", err)
	}
}
