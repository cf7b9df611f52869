package facts

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/rebootgate/rebootgate/engine/disruption"
)

// Facts is everything a decision about one node depends on, apart from the time.
type Facts struct {
	// Node is the node the decision is about. Required.
	Node *corev1.Node
	// Pods are the pods bound to the node.
	Pods []corev1.Pod
	// Alerts are the alerts of the cluster, from Prometheus and/or Alertmanager.
	Alerts []Alert
	// AlertsErr is set when alerts could not be read; the default gate then denies,
	// because an unknown alert state must not allow a reboot (kured does the same).
	AlertsErr error
	// Summary is the node summary of the pools and the cluster (see engine/disruption);
	// SummaryErr says why it could not be read. Both nil: not gathered (not needed).
	Summary    *disruption.Summary
	SummaryErr error
	// SummarySeenAt is when the gatherer saw Summary appear, on its own clock (see
	// summary.Observer): the summary's age is judged from it, never from the writer's
	// stamp alone. Zero with a Summary: its age is unknown, and it is stale.
	SummarySeenAt time.Time
	// NodeIndex are the node index shards the gatherer read (see
	// disruption.IndexShard), for the keys the decision looks up (Engine.NodeIndexKeys);
	// NodeIndexErr says why some could not be read. A shard is used only when the usable
	// Summary names its hash.
	NodeIndex    []*disruption.IndexShard
	NodeIndexErr error
}

// Alert is one alert as the gate sees it, whichever API it came from.
type Alert struct {
	Name     string            `json:"name"`
	State    string            `json:"state"`
	Labels   map[string]string `json:"labels"`
	Silenced bool              `json:"silenced"`
	Source   string            `json:"source"`
}

// Alert sources.
const (
	SourcePrometheus   = "prometheus"
	SourceAlertmanager = "alertmanager"
)

// AlertScope says which nodes an alert blocks, as the decision about one node sees it
// (computed by alerts.Resolver from the pool's nodeLabels, the node and the node index).
type AlertScope struct {
	// Kind is one of the Scope* constants.
	Kind string `json:"kind"`
	// Label and Value are the node label that decided: for ScopeNode the one naming
	// this node, for ScopeOtherNodes the first naming another node, for
	// ScopeUnresolved the first that resolves to no node. Empty for ScopeCluster.
	Label string `json:"label"`
	Value string `json:"value"`
	// Nodes are the nodes the labels name (ScopeNode and ScopeOtherNodes), sorted.
	Nodes []string `json:"nodes"`
	// Reason says why a ScopeUnresolved alert blocks every node.
	Reason string `json:"reason"`
}

// Alert scopes.
const (
	// ScopeCluster: no node label has a value (or nodeLabels is []): the alert blocks
	// every node, as in kured.
	ScopeCluster = "cluster"
	// ScopeNode: a node label names this node: the alert blocks it.
	ScopeNode = "node"
	// ScopeOtherNodes: the node labels name other nodes only: the alert blocks them,
	// not this one.
	ScopeOtherNodes = "otherNodes"
	// ScopeUnresolved: node labels have values but none resolves to a node (a pod's
	// instance), or it cannot be told without the node index: the alert blocks every
	// node (fail closed).
	ScopeUnresolved = "unresolved"
)
