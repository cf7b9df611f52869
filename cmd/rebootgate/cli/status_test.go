package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

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
			Spec:   corev1.NodeSpec{Unschedulable: true},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: "RebootRequired", Status: corev1.ConditionTrue}}},
		},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n3"}},
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
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header and 3 rows:\n%s", out.String())
	}
	// Compare words, not column widths.
	var got []string
	for _, l := range lines[1:] {
		got = append(got, strings.Join(strings.Fields(l), " "))
	}
	want := []string{
		"n3 - no - - yes -",
		"n1 user no - - yes blocked: outside every reboot window",
		"n2 user yes Draining rebootgate-user-0 no allowed",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
