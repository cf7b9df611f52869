package config

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// APIVersion and Kind identify a RebootGateConfig document.
const (
	APIVersion = "rebootgate.io/v1alpha1"
	Kind       = "RebootGateConfig"
)

// Defaults.
const (
	DefaultNodeImageLabel = "kubernetes.azure.com/node-image-version"
	DefaultHoldAnnotation = nodestate.AnnotationHold
	DefaultPoolName       = "default"
)

// Config is the file as written by the operator.
type Config struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Pools are tried in order; the first whose selector is true owns the node.
	Pools    []Pool   `json:"pools"`
	Blockers Blockers `json:"blockers"`
	// NodeImageLabel is the node label parsed as an AKS node-image version.
	NodeImageLabel string `json:"nodeImageLabel,omitempty"`
	// HoldAnnotation on a node stops its reboots, whatever else allows them.
	HoldAnnotation string `json:"holdAnnotation,omitempty"`
	// Custom is free-form data for operators' own policies (input.params.custom).
	Custom map[string]any `json:"custom,omitempty"`
	// Breaker is the cluster-wide circuit breaker: no new reboot in any pool while too
	// many of the cluster's nodes are unavailable, for whatever reason.
	Breaker *Breaker `json:"breaker,omitempty"`
}

// Budget makes a pool's concurrency count every unavailable node of the pool, not only
// rebootgate's own reboots.
type Budget struct {
	// CountOthers counts the pool's nodes that are unavailable for any other reason
	// (NotReady, cordoned, a disruption taint, a medik8s maintenance Lease) against the
	// pool's concurrency.
	CountOthers bool `json:"countOthers,omitempty"`
	// DisruptionTaints are taint keys that mark a node as being disrupted, added to the
	// built-in list (Karpenter, cluster-autoscaler, AKS auto-repair).
	DisruptionTaints []string `json:"disruptionTaints,omitempty"`
}

// Breaker stops every new reboot while too many nodes are unavailable.
type Breaker struct {
	// MaxUnavailable is a count or a percentage ("30%", rounded up) of the nodes: a new
	// reboot starts only if, counting it, at most this many are unavailable.
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`
}

// Pool is a group of nodes sharing a schedule, conditions and a concurrency limit.
type Pool struct {
	Name     string `json:"name"`
	Selector string `json:"selector,omitempty"`
	// Concurrency is a count or a percentage ("10%") of the pool's nodes, rounded up.
	Concurrency *intstr.IntOrString `json:"concurrency,omitempty"`
	// SlotKey is a CEL string expression over node, now and pool, e.g.
	// node.labels["topology.kubernetes.io/zone"]: at most SlotsPerKey nodes per value
	// of it hold a slot at a time. A plain label key (topology.kubernetes.io/zone) is
	// shorthand for node.labels["<key>"] (see SlotKeyExpression).
	SlotKey string `json:"slotKey,omitempty"`
	// SlotsPerKey is how many nodes per slot-key value may hold a slot at once (still
	// within Concurrency); default 1.
	SlotsPerKey *int        `json:"slotsPerKey,omitempty"`
	Windows     []Window    `json:"windows,omitempty"`
	Blackouts   []Blackout  `json:"blackouts,omitempty"`
	Conditions  []Condition `json:"conditions,omitempty"`
	// HealthGate checks (CEL, also seeing poolNodes) must all be true after a reboot
	// before the node is uncordoned and the slot released.
	HealthGate []Condition    `json:"healthGate,omitempty"`
	NodeImage  *NodeImage     `json:"nodeImage,omitempty"`
	Custom     map[string]any `json:"custom,omitempty"`
	Budget     *Budget        `json:"budget,omitempty"`
	Breaker    *Breaker       `json:"breaker,omitempty"`
}

// Window is a daily window in kured's syntax (days, startTime, endTime) or a cron window
// (schedule, duration, optionally days). Both take a timeZone.
type Window struct {
	Days      Days   `json:"days,omitempty"`
	StartTime string `json:"startTime,omitempty"`
	EndTime   string `json:"endTime,omitempty"`
	Schedule  string `json:"schedule,omitempty"`
	Duration  string `json:"duration,omitempty"`
	TimeZone  string `json:"timeZone,omitempty"`
}

// Blackout is a period without reboots: [start, end), RFC 3339.
type Blackout struct {
	Name  string `json:"name,omitempty"`
	Start string `json:"start"`
	End   string `json:"end"`
}

// Condition is a CEL expression that must be true for the pool's nodes to reboot.
type Condition struct {
	Name       string `json:"name"`
	Expression string `json:"expression"`
	// Message explains a false result; MessageExpression (CEL, string) computes it.
	Message           string `json:"message,omitempty"`
	MessageExpression string `json:"messageExpression,omitempty"`
}

// NodeImage constrains the node-image version label.
type NodeImage struct {
	// Families allowed, e.g. [AKSUbuntu]; empty allows all.
	Families []string `json:"families,omitempty"`
	// MinDate is the oldest image build date allowed, YYYY-MM-DD.
	MinDate string `json:"minDate,omitempty"`
}

// Blockers stop reboots while something is running or alerting.
type Blockers struct {
	Pods   PodBlockers   `json:"pods"`
	Alerts AlertBlockers `json:"alerts"`
}

// PodBlockers are label selectors; a running pod on the node matching any blocks.
type PodBlockers struct {
	Selectors []string `json:"selectors,omitempty"`
}

// AlertBlockers filter alerts with kured's semantics.
type AlertBlockers struct {
	FilterRegexp    string `json:"filterRegexp,omitempty"`
	FilterMatchOnly bool   `json:"filterMatchOnly,omitempty"`
	FiringOnly      bool   `json:"firingOnly,omitempty"`
	// BlockSilenced makes silenced alerts block too.
	BlockSilenced bool `json:"blockSilenced,omitempty"`
	// NodeLabels are the alert labels that name a node: an alert with a non-empty value
	// in one of them blocks only the node it names. A pointer, because unset (nil: the
	// default list) and an explicit [] (every alert is cluster-wide, as in kured) differ.
	NodeLabels *[]string `json:"nodeLabels,omitempty"`
}

// DefaultAlertNodeLabels are the alert labels that name a node when
// blockers.alerts.nodeLabels is not set: the node name as kube-state-metrics and
// relabelled node exporters write it, and Prometheus' scrape target.
var DefaultAlertNodeLabels = []string{"node", "instance", "kubernetes_node"}

// Days is kured's day list: a comma-separated string or a YAML list.
type Days []string

// UnmarshalJSON accepts "mon,tue" or ["mon", "tue"].
func (d *Days) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		*d = Days{s}
		return nil
	}
	var list []string
	if err := json.Unmarshal(data, &list); err != nil {
		return fmt.Errorf("days: %s is neither a string nor a list of strings", string(data))
	}
	*d = list
	return nil
}
