package disruption

import (
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/nodestate"
)

func node(name string, ready bool, mutate ...func(*corev1.Node)) *corev1.Node {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pool": "user"}},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}},
	}
	for _, m := range mutate {
		m(n)
	}
	return n
}

func cordoned(n *corev1.Node) { n.Spec.Unschedulable = true }

func tainted(key string) func(*corev1.Node) {
	return func(n *corev1.Node) {
		n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: key, Effect: corev1.TaintEffectNoSchedule})
	}
}

func rebooting(n *corev1.Node) {
	n.Spec.Unschedulable = true
	n.Annotations = map[string]string{nodestate.AnnotationPhase: "Draining"}
}

func TestClassifyNamesEveryReason(t *testing.T) {
	taints := Taints([]string{"example.com/draining"})
	for name, tc := range map[string]struct {
		n           *corev1.Node
		maintenance bool
		want        string
		other       bool
	}{
		"available":           {n: node("a", true), want: ""},
		"not ready":           {n: node("a", false), want: "NotReady", other: true},
		"no ready condition":  {n: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, want: "NotReady", other: true},
		"cordoned":            {n: node("a", true, cordoned), want: "cordoned", other: true},
		"karpenter":           {n: node("a", true, tainted("karpenter.sh/disrupted")), want: "taint karpenter.sh/disrupted", other: true},
		"autoscaler":          {n: node("a", true, tainted("ToBeDeletedByClusterAutoscaler")), want: "taint ToBeDeletedByClusterAutoscaler", other: true},
		"aks auto-repair":     {n: node("a", true, tainted("remediator.kubernetes.azure.com/unschedulable")), want: "taint remediator.kubernetes.azure.com/unschedulable", other: true},
		"configured taint":    {n: node("a", true, tainted("example.com/draining")), want: "taint example.com/draining", other: true},
		"unrelated taint":     {n: node("a", true, tainted("example.com/gpu")), want: ""},
		"medik8s":             {n: node("a", true), maintenance: true, want: "medik8s maintenance lease", other: true},
		"several":             {n: node("a", false, cordoned, tainted("karpenter.sh/disrupted")), want: "NotReady,cordoned,taint karpenter.sh/disrupted", other: true},
		"rebootgate's reboot": {n: node("a", true, rebooting), want: "cordoned", other: false},
	} {
		t.Run(name, func(t *testing.T) {
			st := Classify(tc.n, taints, tc.maintenance, InReboot(tc.n))
			if got := strings.Join(st.Reasons, ","); got != tc.want {
				t.Errorf("reasons = %q, want %q", got, tc.want)
			}
			if st.Unavailable() != (tc.want != "") || st.Other() != tc.other {
				t.Errorf("unavailable=%v other=%v, want %v %v", st.Unavailable(), st.Other(), tc.want != "", tc.other)
			}
		})
	}
}

func TestSummarizeCountsPerPoolAndCluster(t *testing.T) {
	nodes := []*corev1.Node{
		node("u1", true),
		node("u2", true, cordoned),
		node("u3", true, tainted("karpenter.sh/disrupted")),
		node("u4", false),
		node("u5", true, rebooting),
		node("u6", true), // held by medik8s
		node("s1", true, tainted("example.com/draining")), // not a disruption taint in pool system
		node("x1", false), // in no pool
	}
	nodes[6].Labels["pool"] = "system"
	nodes[7].Labels["pool"] = ""
	member := func(n *corev1.Node) (string, []string, bool) {
		switch p := n.Labels["pool"]; p {
		case "user":
			return p, Taints(nil), true
		case "system":
			return p, Taints(nil), true
		}
		return "", nil, false
	}
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	s := Summarize(nodes, map[string]bool{"u6": true}, member, now, "summarizer-0")
	user := s.Pool("user")
	want := Counts{Nodes: 6, Ready: 5, NotReady: 1, Cordoned: 2, Disrupted: 1, Maintenance: 1, Unavailable: 5, Rebooting: 1, UnavailableOthers: 4}
	user.Examples = nil
	if !reflect.DeepEqual(user, want) {
		t.Errorf("user = %+v\nwant %+v", user, want)
	}
	if sys := s.Pool("system"); sys.Nodes != 1 || sys.Unavailable != 0 {
		t.Errorf("system = %+v, want 1 node, all available", sys)
	}
	if s.NoPool.Nodes != 1 || s.NoPool.NotReady != 1 || s.Cluster.Nodes != 8 || s.Cluster.Unavailable != 6 || s.Cluster.UnavailableOthers != 5 {
		t.Errorf("noPool = %+v cluster = %+v", s.NoPool, s.Cluster)
	}
	if got := s.Pools["user"].Describe("u2", true); got != "u3 (taint karpenter.sh/disrupted), u4 (NotReady), u6 (medik8s maintenance lease)" {
		t.Errorf("describe without u2 and rebootgate's own = %q", got)
	}
	if !SameCounts(s, Summarize(nodes, map[string]bool{"u6": true}, member, now.Add(time.Minute), "other")) {
		t.Error("the same nodes counted later are not the same counts")
	}
	if SameCounts(s, Summarize(nodes, nil, member, now, "summarizer-0")) {
		t.Error("a released maintenance Lease does not change the counts")
	}
}

func TestExamplesAreBounded(t *testing.T) {
	var nodes []*corev1.Node
	for i := range 3 * MaxExamples {
		nodes = append(nodes, node(string(rune('a'+i%26))+strings.Repeat("x", i/26), false))
	}
	s := Summarize(nodes, nil, func(*corev1.Node) (string, []string, bool) { return "p", BuiltinTaints, true }, time.Now(), "w")
	if c := s.Pool("p"); c.Unavailable != 3*MaxExamples || len(c.Examples) != MaxExamples {
		t.Errorf("unavailable=%d examples=%d, want %d and %d", c.Unavailable, len(c.Examples), 3*MaxExamples, MaxExamples)
	}
}
