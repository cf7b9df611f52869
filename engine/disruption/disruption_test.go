package disruption

import (
	"fmt"
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

// The index names every node with its InternalIP, ExternalIP and Hostname addresses
// (not its DNS names, not repeats of its name), addresses in IndexKey form; a change of
// address changes the hash the summary names.
func TestBuildIndexIndexesEveryNode(t *testing.T) {
	addrs := func(as ...corev1.NodeAddress) func(*corev1.Node) {
		return func(n *corev1.Node) { n.Status.Addresses = as }
	}
	nodes := []*corev1.Node{
		node("u1", true, addrs(
			corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.0.0.1"},
			corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "FD00:0::1"},
			corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "20.0.0.1"},
			corev1.NodeAddress{Type: corev1.NodeHostName, Address: "u1"},
			corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: "u1.internal"},
			corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.0.0.1"},
		)),
		node("u2", false, addrs(corev1.NodeAddress{Type: corev1.NodeHostName, Address: "U2-Host"})),
		node("x1", true), // no addresses
	}
	shards, data, ref, err := BuildIndex(nodes, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Shards != 1 || len(shards) != 1 || !reflect.DeepEqual(ref.Hashes, []string{shards[0].Hash}) {
		t.Fatalf("ref %+v, %d shards", ref, len(shards))
	}
	if got := string(data[0]); got != `{"shard":0,"shards":1,"names":["u1","u2","x1"],"addresses":{"10.0.0.1":["u1"],"20.0.0.1":["u1"],"fd00::1":["u1"],"u2-host":["u2"]}}` {
		t.Errorf("published as %s", got)
	}
	back, err := DecodeIndexShard(data[0])
	if err != nil || back.Hash != ref.Hashes[0] || !reflect.DeepEqual(back, shards[0]) {
		t.Errorf("decoded %+v (%v), want %+v", back, err, shards[0])
	}
	if nodes, isName := back.Lookup("u2-host"); !reflect.DeepEqual(nodes, []string{"u2"}) || isName {
		t.Errorf("Lookup(u2-host) = %v %v", nodes, isName)
	}
	if nodes, isName := back.Lookup("x1"); !reflect.DeepEqual(nodes, []string{"x1"}) || !isName {
		t.Errorf("Lookup(x1) = %v %v", nodes, isName)
	}
	nodes[1].Status.Addresses[0].Address = "u2-renamed"
	if _, _, again, _ := BuildIndex(nodes, 0); reflect.DeepEqual(again, ref) {
		t.Error("a changed address does not change the index's hash")
	}
}

// Keys go to the same shard in every process and version (FNV-1a): a reader finds a key
// where the summarizer put it.
func TestShardOfIsStable(t *testing.T) {
	// FNV-1a 32 mod 16, computed independently.
	for key, want := range map[string]int{"10.0.0.1": 13, "1.2.3.4": 5, "aks-user-1": 12, "fd00::1": 10} {
		if got := ShardOf(key, 16); got != want {
			t.Errorf("ShardOf(%s, 16) = %d, want %d", key, got, want)
		}
	}
	if ShardOf("anything", 1) != 0 || ShardOf("anything", 0) != 0 {
		t.Error("one shard is not shard 0")
	}
}

// The shard count follows the index's size (never below the count asked for), every
// key sits in the shard ShardOf names, and an index too large for MaxIndexShards is
// an error, not a truncated index.
func TestBuildIndexShardsBySize(t *testing.T) {
	many := func(n int) []*corev1.Node {
		out := make([]*corev1.Node, n)
		for i := range out {
			out[i] = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ip-10-0-%d-%d.eu-west-1.compute.internal", i/256, i%256)},
				Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.%d.%d.%d", i/65536, i/256%256, i%256)}}}}
		}
		return out
	}
	shards, data, ref, err := BuildIndex(many(3000), 0)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for i, s := range shards {
		total += len(data[i])
		for _, name := range s.Names {
			if ShardOf(name, ref.Shards) != i {
				t.Fatalf("name %s in shard %d, not %d", name, i, ShardOf(name, ref.Shards))
			}
		}
		for a := range s.Addresses {
			if ShardOf(a, ref.Shards) != i {
				t.Fatalf("address %s in shard %d", a, i)
			}
		}
	}
	if want := (total + IndexShardTarget - 1) / IndexShardTarget; ref.Shards < want || ref.Shards > want+1 || ref.Shards < 2 {
		t.Errorf("%d bytes in %d shards, want about %d", total, ref.Shards, want)
	}
	if _, _, small, _ := BuildIndex(many(3), 5); small.Shards != 5 {
		t.Errorf("a small index asked for 5 shards has %d", small.Shards)
	}
	if _, _, _, err := BuildIndex(many(3), MaxIndexShards+1); err == nil || !strings.Contains(err.Error(), "more than 16 shards") {
		t.Errorf("too many shards: %v", err)
	}
}
