package decision

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// Reason sources of the back-off rules, read from the node's recorded state: the agent,
// eval and plan all see them, so the three give one answer.
const (
	// SourceLoopBackoff: the node rebooted less than the agent's --loop-backoff ago.
	SourceLoopBackoff = "loopBackoff"
	// SourceFailureBackoff: the node backs off after a failed attempt.
	SourceFailureBackoff = "failureBackoff"
)

// DefaultLoopBackoff judges a node whose last reboot was recorded without the end of
// its loop back-off (by an agent older than nodestate.AnnotationLoopBackoffUntil): the
// agent's --loop-backoff default.
const DefaultLoopBackoff = time.Hour

// Backoff is the back-off rules of the decision chain: the reboot-loop protection
// (no reboot until the recorded end of the loop back-off that followed the last
// reboot) and the failure back-off (rebootgate.io/retry-after). until is when both
// have ended (zero: neither applies); reasons says why n may not reboot at now.
func Backoff(n *corev1.Node, now time.Time) (until time.Time, reasons []Reason) {
	st := nodestate.StateOf(n)
	loop := st.LoopBackoffUntil
	if loop.IsZero() && !st.LastReboot.IsZero() {
		loop = st.LastReboot.Add(DefaultLoopBackoff)
	}
	if now.Before(loop) {
		reasons = append(reasons, Reason{Source: SourceLoopBackoff, Message: fmt.Sprintf(
			"rebooted at %s: no reboot again before %s (reboot loop protection, --loop-backoff)",
			st.LastReboot.UTC().Format(time.RFC3339), loop.UTC().Format(time.RFC3339))})
		until = loop
	}
	if now.Before(st.RetryAfter) {
		reasons = append(reasons, Reason{Source: SourceFailureBackoff, Message: fmt.Sprintf(
			"backing off after %d failed attempt(s): next try at %s", st.Failures, st.RetryAfter.UTC().Format(time.RFC3339))})
		until = later(until, st.RetryAfter)
	}
	return until, reasons
}

// IsBackoff reports whether r is a back-off rule's reason: one that ends by itself at
// Backoff's until.
func IsBackoff(r Reason) bool {
	return r.Source == SourceLoopBackoff || r.Source == SourceFailureBackoff
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
