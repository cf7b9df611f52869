package agent

import (
	"context"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/engine/notify"
	"github.com/rebootgate/rebootgate/engine/source"
)

// maxConditionMessage bounds the condition's message: a policy set with many compile
// errors is in the Events and the logs in full.
const maxConditionMessage = 1024

// syncPolicyStatus brings the node's RebootPolicyLoaded condition to the source's
// status, comparing with the informer's copy so that it writes only a change, and
// notifies once per load error while the node needs a reboot or is in one (the nodes
// the error holds back). A failed write is retried on the next pass.
func (a *Agent) syncPolicyStatus(ctx context.Context, n *corev1.Node, st nodestate.State) {
	status := a.source.Status()
	if status.Reason == source.ReasonNotRead {
		return
	}
	want := policyCondition(status)
	if !status.Loaded && status.Message != a.loadErrorSent && (a.needed.Needed || st.Phase != nodestate.PhaseIdle) {
		a.loadErrorSent = status.Message
		_ = a.notifier.Notify(ctx, notify.Event{Kind: notify.KindLoadError, Node: a.cfg.NodeName, Pool: st.Pool, Detail: status.Message})
	}
	if status.Loaded {
		a.loadErrorSent = ""
	}
	for _, c := range n.Status.Conditions {
		if c.Type == want.Type && c.Status == want.Status && c.Reason == want.Reason && c.Message == want.Message {
			return
		}
	}
	now := metav1.NewTime(a.clock.Now())
	want.LastHeartbeatTime, want.LastTransitionTime = now, now
	for _, c := range n.Status.Conditions {
		if c.Type == want.Type && c.Status == want.Status {
			want.LastTransitionTime = c.LastTransitionTime // a new message, not a transition
		}
	}
	if s := a.policyCondSent; s != nil && s.key == want.Message && now.Sub(s.at) < 5*time.Second {
		return // written already; the informer has not shown it yet
	}
	if err := a.patchConditions(ctx, []corev1.NodeCondition{want}); err != nil {
		a.metrics.Errors.WithLabelValues(a.cfg.NodeName, "conditions").Inc()
		a.log.Warn("writing the RebootPolicyLoaded condition failed; retrying on the next pass", "err", err)
		return
	}
	a.policyCondSent = &condsSent{key: want.Message, at: now.Time}
}

// policyCondition is the condition for a load status (times unset).
func policyCondition(s source.Status) corev1.NodeCondition {
	c := corev1.NodeCondition{Type: nodestate.ConditionPolicyLoaded, Status: corev1.ConditionTrue, Reason: s.Reason, Message: s.Message}
	if !s.Loaded {
		c.Status = corev1.ConditionFalse
	}
	if len(c.Message) > maxConditionMessage {
		c.Message = strings.ToValidUTF8(c.Message[:maxConditionMessage-len("…")], "") + "…"
	}
	return c
}
