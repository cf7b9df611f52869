package input

import (
	"encoding/json"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/facts"
)

func testDocument() *Document {
	return &Document{
		Node: Node{
			Name: "n1", Labels: map[string]string{"a": "b"}, Annotations: map[string]string{},
			Taints: []Taint{{Key: "k", Value: "v", Effect: "NoSchedule"}}, Ready: true,
			NodeInfo:   NodeInfo{BootID: "b1", KernelVersion: "6.8"},
			Conditions: []Condition{{Type: "Ready", Status: "True"}},
			Addresses:  []Address{{Type: "InternalIP", Address: "10.0.0.1"}},
			Image:      ImageFrom("img", "AKSUbuntu-2204gen2containerd-202509.23.0"),
		},
		Pool: Pool{Name: "p", Concurrency: "10%", Conditions: []ConditionResult{{Name: "c", Expression: "true", Result: true}}},
		Pods: []Pod{{Namespace: "ns", Name: "p1", Labels: map[string]string{"app": "x"}, Phase: "Running", OwnerKind: "Job", OwnerName: "j"}},
		Alerts: []Alert{{Alert: facts.Alert{Name: "A", State: "firing", Labels: map[string]string{"alertname": "A"}, Silenced: true, Source: "alertmanager"},
			Scope: facts.AlertScope{Kind: facts.ScopeOtherNodes, Label: "instance", Value: "10.0.0.2:9100", Nodes: []string{"n2"}}}},
		Errors:   Errors{Alerts: "boom"},
		Time:     Time{RFC3339: "2026-11-24T03:00:00Z", Ns: 1795489200000000000},
		Schedule: Schedule{Windows: []WindowState{{Index: 0, Kind: "cron", Active: true, OpenedAt: "x", ClosesAt: "y", NextOpening: "z"}}, NextAllowed: "z"},
	}
}

// TestValueMatchesJSONTags checks that the hand-written conversion uses the same field
// names and values as the JSON tags, which is what CEL expressions see.
func TestValueMatchesJSONTags(t *testing.T) {
	d := testDocument()
	params := ast.ObjectTerm()
	got := d.Value(Parts{Params: params})
	d.Params = nil
	data, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(data, &generic); err != nil {
		t.Fatal(err)
	}
	generic["params"] = map[string]any{}
	want, err := ast.InterfaceToValue(generic)
	if err != nil {
		t.Fatal(err)
	}
	if got.Compare(want) != 0 {
		t.Errorf("conversion differs from the JSON tags:\n got %s\nwant %s", got, want)
	}
}

func TestImageFrom(t *testing.T) {
	if img := ImageFrom("l", ""); img.Parsed || img.Error == "" {
		t.Errorf("absent label: %+v", img)
	}
	if img := ImageFrom("l", "Ubuntu"); img.Parsed || img.Error == "" || img.Value != "Ubuntu" {
		t.Errorf("bad label: %+v", img)
	}
	img := ImageFrom("l", "AKSUbuntu-2204gen2containerd-202509.23.0")
	if !img.Parsed || img.Family != "AKSUbuntu" || img.Date != "2025-09-23" || img.Generation != "gen2" {
		t.Errorf("parsed: %+v", img)
	}
}

func TestConverterReusesOnlyUnchangedObjects(t *testing.T) {
	var c Converter
	pods := []corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{UID: "u1", ResourceVersion: "1", Name: "a", Labels: map[string]string{"v": "1"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "from-a-file"}},
	}
	first := c.PodsTerm(pods, PodsFrom(pods)).Value.(*ast.Array)
	again := c.PodsTerm(pods, PodsFrom(pods)).Value.(*ast.Array)
	if first.Elem(0) != again.Elem(0) {
		t.Error("an unchanged pod was converted again")
	}
	if first.Elem(1) == again.Elem(1) {
		t.Error("a pod without a version was reused")
	}
	pods[0].ResourceVersion, pods[0].Labels["v"] = "2", "2"
	changed := c.PodsTerm(pods, PodsFrom(pods)).Value.(*ast.Array)
	if changed.Elem(0) == first.Elem(0) || changed.Elem(0).Value.Compare(first.Elem(0).Value) == 0 {
		t.Error("a changed pod kept its old value")
	}

	alerts := []Alert{{Alert: facts.Alert{Name: "A", State: "pending", Labels: map[string]string{"x": "1"}},
		Scope: facts.AlertScope{Kind: facts.ScopeOtherNodes, Nodes: []string{"n2"}}}}
	a1 := c.AlertsTerm(alerts).Value.(*ast.Array).Elem(0)
	a2 := c.AlertsTerm(alerts).Value.(*ast.Array).Elem(0)
	alerts[0].State = "firing"
	a3 := c.AlertsTerm(alerts).Value.(*ast.Array).Elem(0)
	if a1 != a2 || a3 == a2 || a3.Value.Compare(a2.Value) == 0 {
		t.Error("alerts: unchanged not reused, or changed reused")
	}
	// The same alert resolved differently (a new node index) is a different value.
	alerts[0].Scope.Nodes = []string{"n3"}
	a4 := c.AlertsTerm(alerts).Value.(*ast.Array).Elem(0)
	alerts[0].Scope = facts.AlertScope{Kind: facts.ScopeUnresolved, Nodes: []string{}, Reason: "no index"}
	a5 := c.AlertsTerm(alerts).Value.(*ast.Array).Elem(0)
	if a4 == a3 || a4.Value.Compare(a3.Value) == 0 || a5 == a4 || a5.Value.Compare(a4.Value) == 0 {
		t.Error("alerts: a changed scope reused the old value")
	}

	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", UID: "nu", ResourceVersion: "5"}}
	nd := NodeFrom(n, "l")
	t1, t2 := c.NodeTerm(n, &nd), c.NodeTerm(n, &nd)
	n.ResourceVersion = "6"
	nd.Unschedulable = true
	t3 := c.NodeTerm(n, &nd)
	if t1 != t2 || t3 == t2 {
		t.Error("node: unchanged not reused, or changed reused")
	}
}
