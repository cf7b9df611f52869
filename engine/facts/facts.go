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
