package alerts

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/facts"
)

var defaultLabels = []string{"node", "instance", "kubernetes_node"}

// self is aks-user-0 with IPv4 and IPv6 InternalIPs, its Hostname and an InternalDNS
// name (which the index does not carry, but which names the node itself).
func self() *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "aks-user-0"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "10.224.0.4"},
			{Type: corev1.NodeInternalIP, Address: "fd00:10:224::4"},
			{Type: corev1.NodeHostName, Address: "aks-user-0"},
			{Type: corev1.NodeInternalDNS, Address: "aks-user-0.internal"},
		}},
	}
}

func withAddrs(name string, addrs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for i, a := range addrs {
		typ := corev1.NodeInternalIP
		if i == 2 {
			typ = corev1.NodeExternalIP
		}
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: typ, Address: a})
	}
	return n
}

// clusterIndex is the cluster's index in three shards, each read: aks-user-1 has an
// ExternalIP, and aks-user-3 and aks-user-4 share an address (as kwok nodes or NATed
// nodes may).
func clusterIndex(t *testing.T) (*disruption.IndexRef, []*disruption.IndexShard) {
	t.Helper()
	shards, _, ref, err := disruption.BuildIndex([]*corev1.Node{
		self(),
		withAddrs("aks-user-1", "10.224.0.5", "fd00:10:224::5", "20.1.2.3"),
		withAddrs("aks-user-2", "10.224.0.6"),
		withAddrs("aks-user-3", "10.224.0.9"),
		withAddrs("aks-user-4", "10.224.0.9"),
	}, 3)
	if err != nil || ref.Shards != 3 {
		t.Fatalf("BuildIndex: %v, %+v", err, ref)
	}
	return ref, shards
}

func index(t *testing.T) *Index {
	ref, shards := clusterIndex(t)
	return NewIndex(ref, shards, nil)
}

func alert(labels ...string) facts.Alert {
	a := facts.Alert{Name: "A", State: "firing", Labels: map[string]string{"alertname": "A"}}
	for i := 0; i+1 < len(labels); i += 2 {
		a.Labels[labels[i]] = labels[i+1]
	}
	return a
}

func cluster() facts.AlertScope { return facts.AlertScope{Kind: facts.ScopeCluster, Nodes: []string{}} }

func here(label, value string) facts.AlertScope {
	return facts.AlertScope{Kind: facts.ScopeNode, Label: label, Value: value, Nodes: []string{"aks-user-0"}}
}

func others(label, value string, nodes ...string) facts.AlertScope {
	return facts.AlertScope{Kind: facts.ScopeOtherNodes, Label: label, Value: value, Nodes: nodes}
}

// unresolved is an unresolved scope; its reason is checked by substring (why).
func unresolved(label, value, why string) facts.AlertScope {
	return facts.AlertScope{Kind: facts.ScopeUnresolved, Label: label, Value: value, Nodes: []string{}, Reason: why}
}

func TestScopeWithIndex(t *testing.T) {
	noNode := "names no node of the cluster"
	for name, tc := range map[string]struct {
		labels []string // nil: defaultLabels
		alert  facts.Alert
		want   facts.AlertScope
	}{
		"no node label":               {alert: alert("severity", "page"), want: cluster()},
		"an empty value is no value":  {alert: alert("node", ""), want: cluster()},
		"node names this node":        {alert: alert("node", "aks-user-0"), want: here("node", "aks-user-0")},
		"kubernetes_node, this node":  {alert: alert("kubernetes_node", "aks-user-0"), want: here("kubernetes_node", "aks-user-0")},
		"node names another node":     {alert: alert("node", "aks-user-1"), want: others("node", "aks-user-1", "aks-user-1")},
		"node names no node":          {alert: alert("node", "ghost"), want: unresolved("node", "ghost", "node=ghost "+noNode)},
		"node holding an address":     {alert: alert("node", "10.224.0.5"), want: unresolved("node", "10.224.0.5", noNode)},
		"instance: another's IP":      {alert: alert("instance", "10.224.0.5:9100"), want: others("instance", "10.224.0.5:9100", "aks-user-1")},
		"instance: another's IPv6":    {alert: alert("instance", "[fd00:10:224::5]:9100"), want: others("instance", "[fd00:10:224::5]:9100", "aks-user-1")},
		"instance: another's ExtIP":   {alert: alert("instance", "20.1.2.3:443"), want: others("instance", "20.1.2.3:443", "aks-user-1")},
		"instance: another's name":    {alert: alert("instance", "aks-user-1:9100"), want: others("instance", "aks-user-1:9100", "aks-user-1")},
		"instance: a shared address":  {alert: alert("instance", "10.224.0.9:9100"), want: others("instance", "10.224.0.9:9100", "aks-user-3", "aks-user-4")},
		"instance: a pod (kured)":     {alert: alert("instance", "1.2.3.4:8080"), want: unresolved("instance", "1.2.3.4:8080", "instance=1.2.3.4:8080 "+noNode+" (no node has that name or address), so it blocks every node")},
		"instance: a URL (blackbox)":  {alert: alert("instance", "https://example.com/health"), want: unresolved("instance", "https://example.com/health", noNode)},
		"instance: an address prefix": {alert: alert("instance", "10.224.0.40:9100"), want: unresolved("instance", "10.224.0.40:9100", noNode)},
		"instance: bare IPv6 + port":  {alert: alert("instance", "fd00:10:224::4:9100"), want: unresolved("instance", "fd00:10:224::4:9100", noNode)},
		"instance: a longer name":     {alert: alert("instance", "aks-user-00:9100"), want: unresolved("instance", "aks-user-00:9100", noNode)},
		// kube-state-metrics: node names the pod's node, instance is the exporter pod.
		"node and a pod's instance": {alert: alert("node", "aks-user-1", "instance", "10.244.3.7:8080"), want: others("node", "aks-user-1", "aks-user-1")},
		"another node and this one": {alert: alert("node", "aks-user-1", "instance", "10.224.0.4:9100"), want: here("instance", "10.224.0.4:9100")},
		"two other nodes":           {alert: alert("node", "aks-user-1", "instance", "10.224.0.6:9100"), want: others("node", "aks-user-1", "aks-user-1", "aks-user-2")},
		"ghost node and a pod":      {alert: alert("node", "ghost", "instance", "1.2.3.4:8080"), want: unresolved("node", "ghost", "node=ghost "+noNode)},
		"custom label, this node":   {labels: []string{"host"}, alert: alert("host", "aks-user-0"), want: here("host", "aks-user-0")},
		"custom label, another":     {labels: []string{"host"}, alert: alert("host", "aks-user-1"), want: others("host", "aks-user-1", "aks-user-1")},
		"unlisted label ignored":    {labels: []string{"host"}, alert: alert("node", "aks-user-1"), want: cluster()},
		"nodeLabels [] is kured":    {labels: []string{}, alert: alert("node", "aks-user-0"), want: cluster()},
	} {
		t.Run(name, func(t *testing.T) {
			labels := tc.labels
			if labels == nil {
				labels = defaultLabels
			}
			checkScope(t, NewResolver(labels, self(), index(t), nil).Scope(&tc.alert), tc.want)
		})
	}
}

// Every way Prometheus writes this node as a scrape target names it, with or without
// the index, and needs no index.
func TestInstanceFormsNameThisNode(t *testing.T) {
	for _, v := range []string{
		"aks-user-0:9100", "aks-user-0", "AKS-User-0:9100", "aks-user-0.:9100",
		"10.224.0.4:9100", "10.224.0.4",
		"[fd00:10:224::4]:9100", "[fd00:10:224::4]", "fd00:10:224::4", "[FD00:10:224:0::4]:9100", "[::ffff:10.224.0.4]:9100",
		"aks-user-0.internal:9100",
	} {
		a := alert("instance", v)
		for _, r := range []*Resolver{
			NewResolver(defaultLabels, self(), index(t), nil),
			NewResolver(defaultLabels, self(), nil, errors.New("no node summary was read")),
		} {
			checkScope(t, r.Scope(&a), here("instance", v))
			if len(r.IndexKeys([]facts.Alert{a})) > 0 {
				t.Errorf("instance=%s: needs the index to name this node", v)
			}
		}
	}
}

// Without a usable index, only this node's own values resolve by address; a name label
// is taken as the node it names (a node name by construction) unless it cannot be one.
func TestScopeWithoutIndexFailsClosed(t *testing.T) {
	stale := errors.New("the node summary is stale: observed at 2026-12-07T10:00:00Z by s, more than 1m0s ago (is the summarizer running?)")
	unknown := "is not this node's name or address, and which node it names is unknown without the node index (" + stale.Error() + "), so it blocks every node"
	for name, tc := range map[string]struct {
		alert facts.Alert
		want  facts.AlertScope
	}{
		"no node label":           {alert: alert("severity", "page"), want: cluster()},
		"this node by IP":         {alert: alert("instance", "10.224.0.4:9100"), want: here("instance", "10.224.0.4:9100")},
		"this node by name":       {alert: alert("node", "aks-user-0"), want: here("node", "aks-user-0")},
		"another node's IP":       {alert: alert("instance", "10.224.0.5:9100"), want: unresolved("instance", "10.224.0.5:9100", "instance=10.224.0.5:9100 "+unknown)},
		"another node's name":     {alert: alert("instance", "aks-user-1:9100"), want: unresolved("instance", "aks-user-1:9100", unknown)},
		"a pod":                   {alert: alert("instance", "1.2.3.4:8080"), want: unresolved("instance", "1.2.3.4:8080", unknown)},
		"node label, another":     {alert: alert("node", "aks-user-1"), want: others("node", "aks-user-1", "aks-user-1")},
		"node label, not a name":  {alert: alert("node", "10.224.0.5:9100"), want: unresolved("node", "10.224.0.5:9100", "node=10.224.0.5:9100 is not a node name, so it blocks every node")},
		"node and a pod instance": {alert: alert("node", "aks-user-1", "instance", "10.244.3.7:8080"), want: others("node", "aks-user-1", "aks-user-1")},
	} {
		t.Run(name, func(t *testing.T) {
			checkScope(t, NewResolver(defaultLabels, self(), nil, stale).Scope(&tc.alert), tc.want)
		})
	}
}

func checkScope(t *testing.T, got, want facts.AlertScope) {
	t.Helper()
	reason, why := got.Reason, want.Reason
	got.Reason, want.Reason = "", ""
	if !reflect.DeepEqual(got, want) {
		t.Errorf("scope = %+v, want %+v", got, want)
	}
	if !strings.Contains(reason, why) || (want.Kind == facts.ScopeUnresolved) != (reason != "") {
		t.Errorf("reason = %q, want one containing %q (and only for an unresolved scope)", reason, why)
	}
}

func TestIndexKeys(t *testing.T) {
	for name, tc := range map[string]struct {
		labels []string
		alerts []facts.Alert
		want   bool
	}{
		"no alerts":                  {defaultLabels, nil, false},
		"cluster-wide alerts":        {defaultLabels, []facts.Alert{alert("severity", "page")}, false},
		"alerts naming this node":    {defaultLabels, []facts.Alert{alert("node", "aks-user-0"), alert("instance", "10.224.0.4:9100")}, false},
		"an alert naming a pod":      {defaultLabels, []facts.Alert{alert("node", "aks-user-0"), alert("instance", "1.2.3.4:8080")}, true},
		"an alert naming a node":     {defaultLabels, []facts.Alert{alert("node", "aks-user-1")}, true},
		"nodeLabels [] (kured)":      {[]string{}, []facts.Alert{alert("instance", "1.2.3.4:8080")}, false},
		"a label not in nodeLabels":  {[]string{"node"}, []facts.Alert{alert("instance", "1.2.3.4:8080")}, false},
		"this node and another node": {defaultLabels, []facts.Alert{alert("node", "aks-user-0", "instance", "10.224.0.5:9100")}, true},
	} {
		t.Run(name, func(t *testing.T) {
			if got := NewResolver(tc.labels, self(), nil, nil).IndexKeys(tc.alerts); (len(got) > 0) != tc.want {
				t.Errorf("IndexKeys = %v, want some: %v", got, tc.want)
			}
		})
	}
}

func TestTargetHost(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.5:9100":   "10.0.0.5",
		"10.0.0.5":        "10.0.0.5",
		"host:9100":       "host",
		"host":            "host",
		"[fd00::5]:9100":  "fd00::5",
		"[fd00::5]":       "fd00::5",
		"fd00::5":         "fd00::5",
		"fd00::5:9100":    "fd00::5:9100", // a bare IPv6 address, kept whole
		"[]":              "[]",
		"":                "",
		"10.0.0.5:":       "10.0.0.5",
		"node.example.:1": "node.example.",
	} {
		if got := TargetHost(in); got != want {
			t.Errorf("TargetHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// The keys looked up are the name labels' values and the other labels' hosts, in
// IndexKey form, once each.
func TestIndexKeysAreLookupKeys(t *testing.T) {
	got := NewResolver(defaultLabels, self(), nil, nil).IndexKeys([]facts.Alert{
		alert("instance", "[FD00::5]:9100", "node", "AKS-User-1"), alert("instance", "1.2.3.4:8080"), alert("instance", "1.2.3.4:1234"),
	})
	if want := []string{"1.2.3.4", "aks-user-1", "fd00::5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("IndexKeys = %v, want %v", got, want)
	}
}

// An index resolves a key only through a shard whose hash is the one the summary
// names: a shard not read, one read at another version (the index changed between the
// summary's read and the shard's), or one that could not be read, resolves nothing, so
// that an instance naming another node or a pod blocks every node, saying why.
func TestIndexUsesOnlyShardsTheSummaryNames(t *testing.T) {
	ref, shards := clusterIndex(t)
	keyShard := disruption.ShardOf("10.224.0.5", ref.Shards)
	podShard := disruption.ShardOf("1.2.3.4", ref.Shards)
	without := func(i int) []*disruption.IndexShard {
		var out []*disruption.IndexShard
		for _, s := range shards {
			if s.Shard != i {
				out = append(out, s)
			}
		}
		return out
	}
	changed := *shards[keyShard]
	changed.Hash = "0123456789abcdef"
	otherCount := *ref
	otherCount.Shards, otherCount.Hashes = 2, ref.Hashes[:2]
	nodeAlert, podAlert := alert("instance", "10.224.0.5:9100"), alert("instance", "1.2.3.4:8080")
	for name, tc := range map[string]struct {
		index *Index
		alert facts.Alert
		want  facts.AlertScope
	}{
		"every shard current":      {NewIndex(ref, shards, nil), nodeAlert, others("instance", "10.224.0.5:9100", "aks-user-1")},
		"pod, every shard current": {NewIndex(ref, shards, nil), podAlert, unresolved("instance", "1.2.3.4:8080", "names no node of the cluster")},
		"its shard not read": {NewIndex(ref, without(keyShard), nil), nodeAlert,
			unresolved("instance", "10.224.0.5:9100", fmt.Sprintf("without the node index (node index shard %d of 3 was not read), so it blocks every node", keyShard))},
		"pod, its shard not read": {NewIndex(ref, without(podShard), nil), podAlert,
			unresolved("instance", "1.2.3.4:8080", fmt.Sprintf("without the node index (node index shard %d of 3 was not read)", podShard))},
		"its shard unreadable": {NewIndex(ref, without(keyShard), errors.New(`configmaps "rebootgate-node-index-1" is forbidden`)), nodeAlert,
			unresolved("instance", "10.224.0.5:9100", `is forbidden), so it blocks every node`)},
		"its shard at another hash": {NewIndex(ref, append(without(keyShard), &changed), nil), nodeAlert,
			unresolved("instance", "10.224.0.5:9100", fmt.Sprintf("node index shard %d of 3 read has hash 0123456789abcdef, the node summary names %s of 3 (it changed between the reads)", keyShard, ref.Hashes[keyShard]))},
		"shards of another count": {NewIndex(&otherCount, shards, nil), nodeAlert,
			unresolved("instance", "10.224.0.5:9100", "without the node index (node index shard")},
	} {
		t.Run(name, func(t *testing.T) {
			checkScope(t, NewResolver(defaultLabels, self(), tc.index, nil).Scope(&tc.alert), tc.want)
		})
	}
	if NewIndex(nil, shards, nil) != nil {
		t.Error("an index without the summary's reference")
	}
}
