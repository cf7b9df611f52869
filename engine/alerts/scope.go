package alerts

import (
	"fmt"
	"net"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/facts"
)

// Node labels: `node` and `kubernetes_node` carry a node's name (kube-state-metrics,
// Prometheus' Kubernetes relabelling); every other node label (`instance`, or one an
// operator lists) is read as a scrape target: host, host:port or [ipv6]:port.
func isNameLabel(label string) bool { return label == "node" || label == "kubernetes_node" }

// Index is the node index as one decision has it: the reference the usable node
// summary names and the shards the gatherer read. A key resolves only through a shard
// whose content hash is the one the summary names: a shard not read, or read at another
// version (the index changed between the two reads), resolves nothing, and the alert
// fails closed. It is read-only.
type Index struct {
	ref     *disruption.IndexRef
	shards  map[int]*disruption.IndexShard
	stale   map[int]error // shards read at another version than the summary names
	readErr error         // why shards could not be read, if some could not
}

// NewIndex is the index named by ref (from a usable summary), from the shards read
// (any number, any version); readErr says why some could not be read. A nil ref gives
// nil.
func NewIndex(ref *disruption.IndexRef, shards []*disruption.IndexShard, readErr error) *Index {
	if ref == nil {
		return nil
	}
	idx := &Index{ref: ref, shards: map[int]*disruption.IndexShard{}, stale: map[int]error{}, readErr: readErr}
	for _, s := range shards {
		switch {
		case s == nil || s.Shard < 0 || s.Shard >= len(ref.Hashes):
		case s.Shards == ref.Shards && s.Hash == ref.Hashes[s.Shard]:
			idx.shards[s.Shard] = s
		default:
			idx.stale[s.Shard] = fmt.Errorf("node index shard %d of %d read has hash %s, the node summary names %s of %d (it changed between the reads)",
				s.Shard, s.Shards, s.Hash, ref.Hashes[s.Shard], ref.Shards)
		}
	}
	return idx
}

// lookup returns the nodes whose name or address is key (an IndexKey) and whether one
// has it as its name, or why the index cannot tell.
func (x *Index) lookup(key string) ([]string, bool, error) {
	i := disruption.ShardOf(key, x.ref.Shards)
	s := x.shards[i]
	if s == nil {
		if err := x.stale[i]; err != nil {
			return nil, false, err
		}
		if x.readErr != nil {
			return nil, false, fmt.Errorf("node index shard %d of %d: %w", i, x.ref.Shards, x.readErr)
		}
		return nil, false, fmt.Errorf("node index shard %d of %d was not read", i, x.ref.Shards)
	}
	nodes, isName := s.Lookup(key)
	return nodes, isName, nil
}

// Resolver decides which nodes alerts block, for the decision about one node. It is
// pure: the node, the pool's node labels and the node index (or why there is none) in,
// scopes out.
type Resolver struct {
	labels  []string
	node    string
	self    map[string]bool // IndexKey of the node's name and addresses
	index   *Index          // nil: no usable index
	noIndex error           // why index is nil
}

// NewResolver resolves for node n with the pool's nodeLabels. index is the cluster's
// node index; when it is nil, noIndex says why (a missing, stale or incomplete node
// summary), and values that are not n's own cannot be resolved.
func NewResolver(nodeLabels []string, n *corev1.Node, index *Index, noIndex error) *Resolver {
	r := &Resolver{labels: nodeLabels, node: n.Name, self: map[string]bool{disruption.IndexKey(n.Name): true}, index: index, noIndex: noIndex}
	// All of the node's own addresses (InternalDNS too): naming this node can only
	// make the alert block it, never let it through.
	for _, a := range n.Status.Addresses {
		if a.Address != "" {
			r.self[disruption.IndexKey(a.Address)] = true
		}
	}
	if index == nil && noIndex == nil {
		r.noIndex = fmt.Errorf("no node index")
	}
	return r
}

// namesSelf reports whether a label value names this node: the value itself, or its
// host read as a scrape target, is the node's name or one of its addresses.
func (r *Resolver) namesSelf(v string) bool {
	return r.self[disruption.IndexKey(v)] || r.self[disruption.IndexKey(TargetHost(v))]
}

// key is the index key a label's value is looked up by: a name label's value itself,
// another label's host.
func key(label, v string) string {
	if isNameLabel(label) {
		return disruption.IndexKey(v)
	}
	return disruption.IndexKey(TargetHost(v))
}

// IndexKeys are the index keys scoping alerts looks up, sorted and without repeats:
// those of node label values that are not this node's own. None: the index is not
// needed.
func (r *Resolver) IndexKeys(alerts []facts.Alert) []string {
	var keys []string
	for i := range alerts {
		for _, l := range r.labels {
			if v := alerts[i].Labels[l]; v != "" && !r.namesSelf(v) {
				keys = append(keys, key(l, v))
			}
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// Scopes returns the scope of each alert, aligned with alerts.
func (r *Resolver) Scopes(alerts []facts.Alert) []facts.AlertScope {
	out := make([]facts.AlertScope, len(alerts))
	for i := range alerts {
		out[i] = r.Scope(&alerts[i])
	}
	return out
}

// Scope says which nodes an alert blocks:
//   - no node label has a value: every node (ScopeCluster);
//   - a value names this node: this node (ScopeNode);
//   - otherwise, values that resolve to other nodes: those nodes only (ScopeOtherNodes);
//   - otherwise (values, none resolving to a node): every node (ScopeUnresolved).
//
// A name label (node, kubernetes_node) resolves by name: with the index, to the node of
// that name; without it, a valid node name is taken as that node's. Any other label
// resolves its host (port and IPv6 brackets stripped) through the index, to the node
// with that name or address; without the index only this node's own resolve, so the
// alert fails closed.
func (r *Resolver) Scope(a *facts.Alert) facts.AlertScope {
	var others []string
	var first, unresolved facts.AlertScope
	for _, l := range r.labels {
		v := a.Labels[l]
		if v == "" {
			continue
		}
		if r.namesSelf(v) {
			return facts.AlertScope{Kind: facts.ScopeNode, Label: l, Value: v, Nodes: []string{r.node}}
		}
		nodes, why := r.resolve(l, v)
		if len(nodes) == 0 {
			if unresolved.Kind == "" {
				unresolved = facts.AlertScope{Kind: facts.ScopeUnresolved, Label: l, Value: v, Nodes: []string{},
					Reason: why + ", so it blocks every node"}
			}
			continue
		}
		if first.Kind == "" {
			first = facts.AlertScope{Kind: facts.ScopeOtherNodes, Label: l, Value: v}
		}
		others = append(others, nodes...)
	}
	switch {
	case first.Kind != "":
		slices.Sort(others)
		first.Nodes = slices.Compact(others)
		return first
	case unresolved.Kind != "":
		return unresolved
	default:
		return facts.AlertScope{Kind: facts.ScopeCluster, Nodes: []string{}}
	}
}

// resolve returns the nodes a value names other than this one, or why it names none.
func (r *Resolver) resolve(label, v string) ([]string, string) {
	noIndex := r.noIndex
	if r.index != nil {
		nodes, isName, err := r.index.lookup(key(label, v))
		switch {
		case err != nil:
			noIndex = err
		case isNameLabel(label) && isName:
			return []string{disruption.IndexKey(v)}, ""
		case isNameLabel(label):
			return nil, fmt.Sprintf("%s=%s names no node of the cluster", label, v)
		case len(nodes) > 0:
			return nodes, ""
		default:
			return nil, fmt.Sprintf("%s=%s names no node of the cluster (no node has that name or address)", label, v)
		}
	}
	if isNameLabel(label) {
		// A name label carries node names by construction: without the index, trust
		// a valid one (as before the index existed), but never a non-name.
		if errs := validation.IsDNS1123Subdomain(v); len(errs) > 0 {
			return nil, fmt.Sprintf("%s=%s is not a node name", label, v)
		}
		return []string{v}, ""
	}
	return nil, fmt.Sprintf("%s=%s is not this node's name or address, and which node it names is unknown without the node index (%v)", label, v, noIndex)
}

// TargetHost is the host of a scrape target as Prometheus writes it in instance:
// "10.0.0.5:9100" and "host:9100" give the host, "[fd00::5]:9100" and "[fd00::5]"
// give fd00::5, and anything else (a bare name or IP, a bare IPv6 address) is kept
// whole.
func TargetHost(v string) string {
	if h, _, err := net.SplitHostPort(v); err == nil {
		return h
	}
	if len(v) > 2 && strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]") {
		return v[1 : len(v)-1]
	}
	return v
}
