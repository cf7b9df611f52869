package summary

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/alerts"
	"github.com/rebootgate/rebootgate/engine/disruption"
)

// fleet is n nodes named as EKS names them (ip-10-x-y-z.<region>.compute.internal),
// each with its InternalIP and its name as Hostname, one in five with an ExternalIP,
// spread over three pools.
func fleet(n int) []*corev1.Node {
	nodes := make([]*corev1.Node, n)
	for i := range nodes {
		ip := fmt.Sprintf("10.%d.%d.%d", 16+i/65536, i/256%256, i%256)
		name := fmt.Sprintf("ip-10-%d-%d-%d.eu-west-1.compute.internal", 16+i/65536, i/256%256, i%256)
		addrs := []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name},
			{Type: corev1.NodeInternalDNS, Address: name}}
		if i%5 == 0 {
			addrs = append(addrs, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: fmt.Sprintf("34.%d.%d.%d", 240+i/65536, i/256%256, i%256)})
		}
		nodes[i] = &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pool": fmt.Sprint("p", i%3)}},
			Status: corev1.NodeStatus{Addresses: addrs,
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
		}
	}
	return nodes
}

func fleetSummary(n int) *disruption.Summary {
	return disruption.Summarize(fleet(n), nil, func(n *corev1.Node) (string, []string, bool) {
		return n.Labels["pool"], disruption.BuiltinTaints, true
	}, time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC), "summarizer-0")
}

// At 5,000 nodes the summary, which every agent reading it GETs and the summarizer
// rewrites at every heartbeat, stays small: it names the index's shards by hash, and
// the index (about 120 bytes a node with EKS-style names) is in shards of its own, each
// well inside a ConfigMap's 1 MiB, which agents read only when the hash of one they need
// changes. (With the index inside it, the summary of 5,000 nodes was 309 KiB.)
func TestIndexSizeAt5000Nodes(t *testing.T) {
	nodes := fleet(5000)
	_, data, ref, err := disruption.BuildIndex(nodes, 0)
	if err != nil {
		t.Fatal(err)
	}
	sum := fleetSummary(5000)
	sum.NodeIndex = ref
	enc, err := json.Marshal(sum)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for i, d := range data {
		total += len(d)
		t.Logf("shard %d: %d bytes", i, len(d))
		if len(d) > disruption.IndexShardLimit/2 {
			t.Errorf("shard %d is %d bytes, more than half of %d", i, len(d), disruption.IndexShardLimit)
		}
	}
	t.Logf("5,000 nodes: summary %d bytes; index %d bytes in %d shards", len(enc), total, ref.Shards)
	if len(enc) > 4<<10 {
		t.Errorf("the summary of 5,000 nodes is %d bytes, more than 4 KiB", len(enc))
	}
}

// BenchmarkReadIndexShard is an agent's cost when the hash of a shard it needs changes:
// decoding one shard of the index of 500 or 5,000 nodes and looking a key up.
func BenchmarkReadIndexShard(b *testing.B) {
	for _, n := range []int{500, 5000} {
		_, data, ref, err := disruption.BuildIndex(fleet(n), 0)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprint(n, "-nodes"), func(b *testing.B) {
			for b.Loop() {
				s, err := disruption.DecodeIndexShard(data[0])
				if err != nil {
					b.Fatal(err)
				}
				alerts.NewIndex(ref, []*disruption.IndexShard{s}, nil)
			}
			b.ReportMetric(float64(len(data[0])), "shard-bytes")
			b.ReportMetric(float64(ref.Shards), "shards")
		})
	}
}
