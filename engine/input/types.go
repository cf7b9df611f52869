package input

import (
	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/facts"
)

// Document is the whole input of one decision. The JSON names are the contract with the
// Rego policies (see policies/INPUT.md and policies/input.schema.json).
type Document struct {
	Node     Node     `json:"node"`
	Pool     Pool     `json:"pool"`
	Pods     []Pod    `json:"pods"`
	Alerts   []Alert  `json:"alerts"`
	Errors   Errors   `json:"errors"`
	Time     Time     `json:"time"`
	Schedule Schedule `json:"schedule"`
	Params   *Params  `json:"params"`
	Cluster  Cluster  `json:"cluster"`
}

// Alert is an alert with the nodes it blocks, as this decision's node sees it.
type Alert struct {
	facts.Alert
	Scope facts.AlertScope `json:"scope"`
}

// AlertsOf pairs alerts with their scopes (aligned; scopes may be longer).
func AlertsOf(alerts []facts.Alert, scopes []facts.AlertScope) []Alert {
	out := make([]Alert, len(alerts))
	for i := range alerts {
		out[i] = Alert{Alert: alerts[i], Scope: scopes[i]}
	}
	return out
}

// Cluster is what is known about the whole cluster.
type Cluster struct {
	Nodes NodeCounts `json:"nodes"`
}

// NodeCounts is the node summary of a pool or of the cluster, as the summarizer last
// published it. Known is false when there is no fresh, complete summary; the counts
// are then 0, so rules using them must check Known.
type NodeCounts struct {
	Known bool `json:"known"`
	disruption.Counts
}

// Node is the part of a Node that policies use.
type Node struct {
	Name          string            `json:"name"`
	Labels        map[string]string `json:"labels"`
	Annotations   map[string]string `json:"annotations"`
	Taints        []Taint           `json:"taints"`
	Unschedulable bool              `json:"unschedulable"`
	Ready         bool              `json:"ready"`
	NodeInfo      NodeInfo          `json:"nodeInfo"`
	Conditions    []Condition       `json:"conditions"`
	// Addresses are status.addresses: what an alert's instance label may name.
	Addresses []Address `json:"addresses"`
	Image     Image     `json:"image"`
}

// Address is one of the node's status.addresses.
type Address struct {
	Type    string `json:"type"`
	Address string `json:"address"`
}

// Taint is a node taint.
type Taint struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Effect string `json:"effect"`
}

// NodeInfo mirrors status.nodeInfo.
type NodeInfo struct {
	KernelVersion           string `json:"kernelVersion"`
	OSImage                 string `json:"osImage"`
	BootID                  string `json:"bootID"`
	KubeletVersion          string `json:"kubeletVersion"`
	ContainerRuntimeVersion string `json:"containerRuntimeVersion"`
	Architecture            string `json:"architecture"`
	OperatingSystem         string `json:"operatingSystem"`
	MachineID               string `json:"machineID"`
	SystemUUID              string `json:"systemUUID"`
}

// Condition is a node condition.
type Condition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// Image is the parsed node-image version label.
type Image struct {
	Label      string `json:"label"`
	Value      string `json:"value"`
	Parsed     bool   `json:"parsed"`
	Error      string `json:"error"`
	Family     string `json:"family"`
	SKU        string `json:"sku"`
	OS         string `json:"os"`
	Generation string `json:"generation"`
	Arch       string `json:"arch"`
	Runtime    string `json:"runtime"`
	Build      string `json:"build"`
	Date       string `json:"date"`
	Patch      int    `json:"patch"`
}

// Pool is the pool that owns the node and the results of its CEL conditions.
type Pool struct {
	Name        string            `json:"name"`
	Concurrency string            `json:"concurrency"`
	Conditions  []ConditionResult `json:"conditions"`
	Nodes       NodeCounts        `json:"nodes"`
}

// ConditionResult is the outcome of one CEL condition.
type ConditionResult struct {
	Name       string `json:"name"`
	Expression string `json:"expression"`
	Result     bool   `json:"result"`
	Message    string `json:"message"`
	Error      string `json:"error"`
}

// Pod is the part of a pod that policies use.
type Pod struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels"`
	Phase     string            `json:"phase"`
	OwnerKind string            `json:"ownerKind"`
	OwnerName string            `json:"ownerName"`
}

// Errors are gatherer errors; a non-empty one makes the default gate deny.
type Errors struct {
	Alerts string `json:"alerts"`
	// NodeSummary says why the node summary is unknown (input.pool.nodes.known false).
	// The default gate does not deny on it; pools with a budget or breaker fail closed
	// in Go.
	NodeSummary string `json:"nodeSummary"`
}

// Time is the evaluation time.
type Time struct {
	RFC3339 string `json:"rfc3339"`
	Ns      int64  `json:"ns"`
}

// Schedule is what Go computes about the windows at the evaluation time.
type Schedule struct {
	Windows     []WindowState `json:"windows"`
	NextAllowed string        `json:"nextAllowed"`
}

// WindowState is the computed state of params.windows[Index].
type WindowState struct {
	Index       int    `json:"index"`
	Kind        string `json:"kind"`
	Active      bool   `json:"active"`
	OpenedAt    string `json:"openedAt"`
	ClosesAt    string `json:"closesAt"`
	NextOpening string `json:"nextOpening"`
	// StartNs and EndNs (daily windows) are the window's start and end on the local
	// date of the checked instant, in ns since the epoch (see schedule.Daily.Bounds).
	StartNs int64 `json:"startNs,omitempty"`
	EndNs   int64 `json:"endNs,omitempty"`
}

// Params are the pool's gate parameters from the config, validated and normalised.
type Params struct {
	Windows        []WindowParams `json:"windows"`
	Blackouts      []Blackout     `json:"blackouts"`
	PodSelectors   []PodSelector  `json:"podSelectors"`
	Alerts         AlertParams    `json:"alerts"`
	NodeImage      NodeImage      `json:"nodeImage"`
	HoldAnnotation string         `json:"holdAnnotation"`
	Custom         map[string]any `json:"custom"`
}

// Window kinds.
const (
	KindDaily = "daily"
	KindCron  = "cron"
)

// WindowParams is one window; which fields are set depends on Kind.
type WindowParams struct {
	Kind            string   `json:"kind"`
	Days            []string `json:"days"`
	StartTime       string   `json:"startTime"`
	EndTime         string   `json:"endTime"`
	StartSeconds    int      `json:"startSeconds"`
	EndSeconds      int      `json:"endSeconds"`
	CrossesMidnight bool     `json:"crossesMidnight"`
	Schedule        string   `json:"schedule"`
	Duration        string   `json:"duration"`
	DurationSeconds int64    `json:"durationSeconds"`
	TimeZone        string   `json:"timeZone"`
}

// Blackout is a period without reboots, [start, end).
type Blackout struct {
	Name    string `json:"name"`
	Start   string `json:"start"`
	End     string `json:"end"`
	StartNs int64  `json:"startNs"`
	EndNs   int64  `json:"endNs"`
}

// PodSelector is a label selector parsed into requirements.
type PodSelector struct {
	Selector     string        `json:"selector"`
	Requirements []Requirement `json:"requirements"`
}

// Requirement is one label-selector requirement. Operator is In, NotIn, Exists,
// DoesNotExist, Gt or Lt.
type Requirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values"`
}

// AlertParams are kured's alert filters plus silence handling.
type AlertParams struct {
	FilterRegexp    string `json:"filterRegexp"`
	FilterMatchOnly bool   `json:"filterMatchOnly"`
	FiringOnly      bool   `json:"firingOnly"`
	BlockSilenced   bool   `json:"blockSilenced"`
	// NodeLabels are the alert labels that name a node; [] makes every alert
	// cluster-wide.
	NodeLabels []string `json:"nodeLabels"`
}

// NodeImage constrains the node-image version label.
type NodeImage struct {
	Families []string `json:"families"`
	MinDate  string   `json:"minDate"`
}
