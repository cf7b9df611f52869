package nodestate

import (
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Decision is the JSON the agent writes in AnnotationDecision: its last decision for
// the node. The field names are the contract: Nodes written by older agents must keep
// decoding.
type Decision struct {
	Allowed bool   `json:"allowed"`
	Pool    string `json:"pool"`
	// SlotKey is the node's value of the pool's slot key (e.g. its zone).
	SlotKey string `json:"slotKey,omitempty"`
	// Reasons says why not; empty when allowed.
	Reasons []Reason `json:"reasons"`
	// At is when the decision was made (RFC 3339).
	At string `json:"at"`
	// NextAllowed is the earliest time the pool's windows and blackouts allow (RFC
	// 3339); empty when none is known.
	NextAllowed string `json:"nextAllowed,omitempty"`
	// DryRun: the agent runs with --dry-run, and will do nothing.
	DryRun bool `json:"dryRun,omitempty"`
}

// Reason is one thing that stops a reboot: its source (pool, policy, condition/<name>,
// ...) and a message. Package decision's Reason is this type.
type Reason struct {
	Source  string `json:"source"`
	Message string `json:"message"`
}

// DecisionOf reads the decision recorded on n. found is false when there is none; err
// says why a recorded one does not decode.
func DecisionOf(n *corev1.Node) (d Decision, found bool, err error) {
	raw, ok := n.Annotations[AnnotationDecision]
	if !ok || raw == "" {
		return Decision{}, false, nil
	}
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		return Decision{}, true, fmt.Errorf("annotation %s=%q: %w", AnnotationDecision, raw, err)
	}
	return d, true, nil
}

// RebootRequiredSince reports whether the node says it needs a reboot (the agent's
// AnnotationRebootRequired, or its ConditionRebootRequired True), and since when (the
// annotation's time, else the condition's transition; zero when unknown).
func RebootRequiredSince(n *corev1.Node) (time.Time, bool) {
	if ts, ok := n.Annotations[AnnotationRebootRequired]; ok {
		t, _ := time.Parse(time.RFC3339, ts)
		return t, true
	}
	for _, c := range n.Status.Conditions {
		if c.Type == ConditionRebootRequired && c.Status == corev1.ConditionTrue {
			return c.LastTransitionTime.Time, true
		}
	}
	return time.Time{}, false
}
