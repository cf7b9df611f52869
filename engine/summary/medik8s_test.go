package summary

import (
	"reflect"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestListMaintenance: `plan` reads medik8s' maintenance as the summarizer does: a
// node-<name> Lease held at now marks its node; an expired one, one without a holder
// and any other Lease do not.
func TestListMaintenance(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	holder, ten := "medik8s", int32(10)
	lease := func(name string, holder *string, renewed time.Time) *coordinationv1.Lease {
		rt := metav1.NewMicroTime(renewed)
		return &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: "medik8s-leases", Name: name},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: holder, LeaseDurationSeconds: &ten, RenewTime: &rt},
		}
	}
	client := fake.NewClientset(
		lease("node-n1", &holder, now.Add(-5*time.Second)),
		lease("node-n2", &holder, now.Add(-11*time.Second)), // expired
		lease("node-n3", nil, now),                          // released
		lease("other", &holder, now),                        // not a node's
	)
	got, err := ListMaintenance(t.Context(), client, "medik8s-leases", now)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]bool{"n1": true}; !reflect.DeepEqual(got, want) {
		t.Errorf("held = %v, want %v", got, want)
	}
}
