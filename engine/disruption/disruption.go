package disruption

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// BuiltinTaints are the taints that always mark a node as being disrupted by another
// system: Karpenter's disruption, cluster-autoscaler's scale-down and AKS auto-repair.
var BuiltinTaints = []string{
	"karpenter.sh/disrupted",
	"ToBeDeletedByClusterAutoscaler",
	"remediator.kubernetes.azure.com/unschedulable",
}

// Medik8sNamespace and Medik8sLeasePrefix locate medik8s' node-maintenance Leases
// (medik8s-leases/node-<name>).
const (
	Medik8sNamespace   = "medik8s-leases"
	Medik8sLeasePrefix = "node-"
)

// Why a node is unavailable.
const (
	ReasonNotReady    = "NotReady"
	ReasonCordoned    = "cordoned"
	ReasonTaint       = "taint "
	ReasonMaintenance = "medik8s maintenance lease"
)

// Status is one node's availability.
type Status struct {
	// Reasons it is unavailable; empty when available.
	Reasons []string
	// NotReady, Cordoned, Disrupted (a disruption taint) and Maintenance (a medik8s
	// Lease) are the reasons one by one.
	NotReady, Cordoned, Disrupted, Maintenance bool
	// Rebootgate is set when the node is in rebootgate's own reboot (it has a phase):
	// its unavailability is counted by rebootgate's slots, not as someone else's.
	Rebootgate bool
}

// Unavailable reports whether the node is unavailable for any reason.
func (s Status) Unavailable() bool { return len(s.Reasons) > 0 }

// Other reports whether the node is unavailable for a reason other than rebootgate.
func (s Status) Other() bool { return s.Unavailable() && !s.Rebootgate }

// Classify says whether n is unavailable and why. taints are the disruption taint keys
// (BuiltinTaints plus the pool's own); maintenance is whether a medik8s Lease holds n;
// rebootgate is whether n is in rebootgate's own reboot.
func Classify(n *corev1.Node, taints []string, maintenance, rebootgate bool) Status {
	st := Status{Rebootgate: rebootgate}
	if !Ready(n) {
		st.NotReady = true
		st.Reasons = append(st.Reasons, ReasonNotReady)
	}
	if n.Spec.Unschedulable {
		st.Cordoned = true
		st.Reasons = append(st.Reasons, ReasonCordoned)
	}
	for _, t := range n.Spec.Taints {
		if slices.Contains(taints, t.Key) {
			st.Disrupted = true
			st.Reasons = append(st.Reasons, ReasonTaint+t.Key)
		}
	}
	if maintenance {
		st.Maintenance = true
		st.Reasons = append(st.Reasons, ReasonMaintenance)
	}
	return st
}

// InReboot reports whether n is in rebootgate's own reboot: its agent has recorded a
// phase (cordoning through uncordoning) on it.
func InReboot(n *corev1.Node) bool { return n.Annotations[nodestate.AnnotationPhase] != "" }

// Ready reports whether the node's Ready condition is True.
func Ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Taints is BuiltinTaints plus extra, without duplicates, in a stable order.
func Taints(extra []string) []string {
	out := slices.Clone(BuiltinTaints)
	for _, t := range extra {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// MaxExamples bounds the unavailable nodes a Counts names, so that the summary stays
// small in a cluster of thousands of nodes.
const MaxExamples = 10

// Counts sums up a set of nodes (a pool, or the cluster).
type Counts struct {
	Nodes       int `json:"nodes"`
	Ready       int `json:"ready"`
	NotReady    int `json:"notReady"`
	Cordoned    int `json:"cordoned"`
	Disrupted   int `json:"disrupted"`
	Maintenance int `json:"maintenance"`
	// Unavailable counts nodes unavailable for any reason, rebootgate's reboots included.
	Unavailable int `json:"unavailable"`
	// Rebooting counts the nodes in rebootgate's own reboot.
	Rebooting int `json:"rebooting"`
	// UnavailableOthers counts the nodes unavailable for reasons other than rebootgate.
	UnavailableOthers int `json:"unavailableOthers"`
	// Examples name up to MaxExamples unavailable nodes, for messages, by name.
	Examples []Example `json:"examples,omitempty"`
}

// Example is one unavailable node and why.
type Example struct {
	Node       string   `json:"node"`
	Reasons    []string `json:"reasons"`
	Rebootgate bool     `json:"rebootgate,omitempty"`
}

// Add counts one node.
func (c *Counts) Add(name string, st Status) {
	c.Nodes++
	if !st.NotReady {
		c.Ready++
	} else {
		c.NotReady++
	}
	if st.Cordoned {
		c.Cordoned++
	}
	if st.Disrupted {
		c.Disrupted++
	}
	if st.Maintenance {
		c.Maintenance++
	}
	if !st.Unavailable() {
		return
	}
	c.Unavailable++
	if st.Rebootgate {
		c.Rebooting++
	} else {
		c.UnavailableOthers++
	}
	c.Examples = append(c.Examples, Example{Node: name, Reasons: st.Reasons, Rebootgate: st.Rebootgate})
}

// Finish sorts the examples by name and keeps the first MaxExamples.
func (c *Counts) Finish() {
	sort.Slice(c.Examples, func(i, j int) bool { return c.Examples[i].Node < c.Examples[j].Node })
	if len(c.Examples) > MaxExamples {
		c.Examples = c.Examples[:MaxExamples]
	}
}

// Map is the counts as CEL and Rego see them (input.pool.nodes, poolSummary).
func (c Counts) Map() map[string]int64 {
	return map[string]int64{
		"nodes": int64(c.Nodes), "ready": int64(c.Ready), "notReady": int64(c.NotReady),
		"cordoned": int64(c.Cordoned), "disrupted": int64(c.Disrupted), "maintenance": int64(c.Maintenance),
		"unavailable": int64(c.Unavailable), "rebooting": int64(c.Rebooting), "unavailableOthers": int64(c.UnavailableOthers),
	}
}

// Describe names the unavailable nodes (up to the examples kept), skipping skip and,
// when othersOnly, rebootgate's own: "a (cordoned), b (taint karpenter.sh/disrupted)".
func (c Counts) Describe(skip string, othersOnly bool) string {
	var parts []string
	for _, e := range c.Examples {
		if e.Node == skip || (othersOnly && e.Rebootgate) {
			continue
		}
		why := strings.Join(e.Reasons, ", ")
		if e.Rebootgate {
			why += ", rebooted by rebootgate"
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", e.Node, why))
	}
	return strings.Join(parts, ", ")
}

// Summary is what the summarizer publishes: the counts of every pool and of the
// cluster, as observed at ObservedAt.
type Summary struct {
	ObservedAt time.Time         `json:"observedAt"`
	Writer     string            `json:"writer"`
	Pools      map[string]Counts `json:"pools"`
	// NoPool counts the nodes no pool selects.
	NoPool  Counts `json:"noPool"`
	Cluster Counts `json:"cluster"`
	// Errors are what the summarizer could not observe (e.g. medik8s Leases); a
	// summary with errors is incomplete, and budgets and breakers fail closed on it.
	Errors []string `json:"errors,omitempty"`
	// NodeIndex names the node index the summarizer last published beside this summary
	// (its shards, in ConfigMaps of their own, and their content hashes), so that an
	// agent can tell whether an alert's instance names some node. nil when there is
	// none: alerts that need it then block every node (NodeIndexError says why).
	NodeIndex      *IndexRef `json:"nodeIndex,omitempty"`
	NodeIndexError string    `json:"nodeIndexError,omitempty"`
}

// IndexedAddressTypes are the address types an alert's instance is resolved against:
// what Prometheus' Kubernetes service discovery puts in a node target's address.
var IndexedAddressTypes = []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP, corev1.NodeHostName}

// IdentityAddresses are n's InternalIP, ExternalIP and Hostname addresses, in the
// node's order, without duplicates, empty ones or ones equal to its name (the index
// keeps the name once, among the names). Never nil.
func IdentityAddresses(n *corev1.Node) []string {
	out := []string{}
	for _, a := range n.Status.Addresses {
		if a.Address == "" || !slices.Contains(IndexedAddressTypes, a.Type) ||
			strings.EqualFold(a.Address, n.Name) || slices.Contains(out, a.Address) {
			continue
		}
		out = append(out, a.Address)
	}
	return out
}

// Pool returns the counts of the named pool (zero when the pool has no node).
func (s *Summary) Pool(name string) Counts { return s.Pools[name] }

// Membership says which pool owns a node and that pool's disruption taints; ok is
// false when no pool owns it (its taints are then the built-in ones).
type Membership func(n *corev1.Node) (pool string, taints []string, ok bool)

// Summarize counts nodes per pool and for the cluster at now. maintenance holds the
// names of the nodes a medik8s Lease holds.
func Summarize(nodes []*corev1.Node, maintenance map[string]bool, member Membership, now time.Time, writer string) *Summary {
	s := &Summary{ObservedAt: now, Writer: writer, Pools: map[string]Counts{}}
	for _, n := range nodes {
		pool, taints, ok := member(n)
		if !ok {
			taints = BuiltinTaints
		}
		st := Classify(n, taints, maintenance[n.Name], InReboot(n))
		s.Cluster.Add(n.Name, st)
		if !ok {
			s.NoPool.Add(n.Name, st)
			continue
		}
		c := s.Pools[pool]
		c.Add(n.Name, st)
		s.Pools[pool] = c
	}
	for name, c := range s.Pools {
		c.Finish()
		s.Pools[name] = c
	}
	s.NoPool.Finish()
	s.Cluster.Finish()
	return s
}

// SameCounts reports whether two summaries count the same and name the same node index
// (ObservedAt and Writer aside): a summarizer rewrites an unchanged summary only as a
// heartbeat.
func SameCounts(a, b *Summary) bool {
	if a == nil || b == nil {
		return a == b
	}
	return reflect.DeepEqual(a.Pools, b.Pools) && reflect.DeepEqual(a.NoPool, b.NoPool) &&
		reflect.DeepEqual(a.Cluster, b.Cluster) && slices.Equal(a.Errors, b.Errors) &&
		reflect.DeepEqual(a.NodeIndex, b.NodeIndex) && a.NodeIndexError == b.NodeIndexError
}
