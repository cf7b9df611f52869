package lock

import (
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestKindOf: every name the lock writes is read back as its kind, for pool names that
// contain the other kinds' markers ("key", "q", digits) too.
func TestKindOf(t *testing.T) {
	lease := func(pool, name string) *coordinationv1.Lease {
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if pool != "" {
			l.Labels = map[string]string{LabelPool: pool}
		}
		return l
	}
	type want struct {
		kind LeaseKind
		slot int
		ok   bool
	}
	cases := []struct {
		name  string
		lease *coordinationv1.Lease
		want  want
	}{
		{"slot", lease("user", SlotLeaseName("user", 3)), want{KindSlot, 3, true}},
		{"slot of pool key", lease("key", SlotLeaseName("key", 0)), want{KindSlot, 0, true}},
		{"slot of pool a-key-b", lease("a-key-b", SlotLeaseName("a-key-b", 12)), want{KindSlot, 12, true}},
		{"key Lease", lease("user", KeyLeaseName("user", "zone-a", 0)), want{KindKey, 0, true}},
		{"second key Lease", lease("user", KeyLeaseName("user", "zone-a", 1)), want{KindKey, 0, true}},
		{"key Lease of pool key", lease("key", KeyLeaseName("key", "zone-a", 0)), want{KindKey, 0, true}},
		{"ticket", lease("user", ticketLeaseName("user", "n1")), want{KindTicket, 0, true}},
		{"ticket of pool q", lease("q", ticketLeaseName("q", "n1")), want{KindTicket, 0, true}},
		{"another pool's slot", lease("other", SlotLeaseName("user", 0)), want{}},
		{"no pool label", lease("", SlotLeaseName("user", 0)), want{}},
		{"stray labelled Lease", lease("user", "kube-scheduler"), want{}},
		{"leading zero", lease("user", "rebootgate-user-01"), want{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			kind, slot, ok := KindOf(c.lease)
			if got := (want{kind, slot, ok}); got != c.want {
				t.Errorf("KindOf(%s labelled %q) = %+v, want %+v", c.lease.Name, c.lease.Labels[LabelPool], got, c.want)
			}
		})
	}
}
