package cli

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/lock"
)

func TestStatusTable(t *testing.T) {
	holder := "n2"
	client := fake.NewClientset(
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Annotations: map[string]string{
			"rebootgate.io/decision": `{"allowed":false,"pool":"user","reasons":[{"source":"policy","message":"outside every reboot window"}]}`,
		}}},
		&corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "n2", Annotations: map[string]string{
				"rebootgate.io/decision": `{"allowed":true,"pool":"user","reasons":[]}`,
				"rebootgate.io/phase":    "Draining",
			}},
			Spec: corev1.NodeSpec{Unschedulable: true},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
				{Type: "RebootRequired", Status: corev1.ConditionTrue},
				{Type: "RebootPolicyLoaded", Status: corev1.ConditionTrue, Reason: "PolicyLoaded"},
			}},
		},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n3"}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: "RebootPolicyLoaded", Status: corev1.ConditionFalse, Reason: "ConfigError", Message: "config /etc/rebootgate/config.yaml: pools[0].colour: unknown field"},
		}}},
		&coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: "rebootgate-user-0", Namespace: "rg", Labels: map[string]string{lock.LabelPool: "user"}},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder},
		},
	)
	rows, err := collectStatus(context.Background(), client, "rg", "")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := printStatus(&out, rows); err != nil {
		t.Fatal(err)
	}
	table, errs, _ := strings.Cut(strings.TrimSpace(out.String()), "\n\n")
	lines := strings.Split(table, "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header and 3 rows:\n%s", out.String())
	}
	// The load error, in full, below the table with the nodes that report it.
	if want := "ConfigError: config /etc/rebootgate/config.yaml: pools[0].colour: unknown field (1 node(s): n3)"; errs != want {
		t.Errorf("below the table: %q, want %q", errs, want)
	}
	// Compare words, not column widths.
	var got []string
	for _, l := range lines[1:] {
		got = append(got, strings.Join(strings.Fields(l), " "))
	}
	want := []string{
		"n3 - no - - yes ConfigError -",
		"n1 user no - - yes - blocked: outside every reboot window",
		"n2 user yes Draining rebootgate-user-0 no ok allowed",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestAgentLoadErrorDeniesLiveEval: `eval --node-name` gives the agent's answer when the
// node's agent reports that its config or policies do not load (it starts no reboot),
// whatever the eval's own copy of the config says.
func TestAgentLoadErrorDeniesLiveEval(t *testing.T) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
		{Type: "RebootPolicyLoaded", Status: corev1.ConditionFalse, Reason: "PolicyError", Message: "policy ConfigMaps: rg/freeze/freeze.rego:4: rego_parse_error"},
	}}}
	d := decision.Decision{Allowed: true, Pool: "user"}
	agentLoadError(&d, n)
	want := decision.Reason{Source: "config", Message: "the agent on n1 reports PolicyError: policy ConfigMaps: rg/freeze/freeze.rego:4: rego_parse_error"}
	if d.Allowed || len(d.Reasons) != 1 || d.Reasons[0] != want {
		t.Errorf("decision = %+v, want denied with %+v", d, want)
	}
	n.Status.Conditions[0].Status = corev1.ConditionTrue
	d = decision.Decision{Allowed: true}
	if agentLoadError(&d, n); !d.Allowed || len(d.Reasons) != 0 {
		t.Errorf("with the condition True: %+v, want unchanged", d)
	}
}

// TestStatusSlotByLeaseKind: the SLOT column shows the slot a node holds, read by the
// lock's KindOf, not by a substring of the Lease's name: before, every slot of a pool
// named "key" (rebootgate-key-0 contains "-key-") was hidden, and a node holding a key
// Lease but no slot must show none.
func TestStatusSlotByLeaseKind(t *testing.T) {
	slotHolder, keyHolder := "n1", "n2"
	lease := func(pool, name string, holder *string) *coordinationv1.Lease {
		return &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "rg", Labels: map[string]string{lock.LabelPool: pool}},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: holder},
		}
	}
	client := fake.NewClientset(
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}},
		lease("key", lock.SlotLeaseName("key", 0), &slotHolder),
		lease("zoned", lock.KeyLeaseName("zoned", "zone-a", 0), &keyHolder),
	)
	rows, err := collectStatus(context.Background(), client, "rg", "")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range rows {
		got[r.Node] = r.Slot
	}
	if want := map[string]string{"n1": "rebootgate-key-0", "n2": ""}; !reflect.DeepEqual(got, want) {
		t.Errorf("slots = %v, want %v", got, want)
	}
}
