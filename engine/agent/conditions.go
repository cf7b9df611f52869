package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/engine/pipeline"
)

// condsSent is the agent's last write of the lifecycle conditions, until the
// informer's copy shows it.
type condsSent struct {
	key string
	at  time.Time
}

// syncConditions brings the node's lifecycle conditions (KEP-5683, with
// --node-maintenance-conditions) to the level the recorded phase and, while idle, the
// decision call for. It compares with the informer's copy of the node, so it costs no
// read, and writes only a change: one status patch per transition of a reboot. It is
// level-triggered: an agent that crashed between a phase's write and this one repairs
// the conditions on its next pass, and without the flag it turns False those it set
// True before (a node it never marked gets no write). A failed write does not stop the
// reboot (the conditions only report it); the next pass tries again.
func (a *Agent) syncConditions(ctx context.Context, n *corev1.Node, st nodestate.State, d decision.Decision) {
	f := pipeline.LifecycleFacts{}
	if a.cfg.MaintenanceConditions {
		f = pipeline.LifecycleFacts{Phase: st.Phase, Pool: st.Pool, DrainFailed: st.DrainForced}
		if st.Phase == nodestate.PhaseIdle {
			f.Needed, f.Allowed, f.Pool, f.Why, f.Ended = a.needed.Needed, d.Allowed, d.Pool, firstReason(d), a.ended
		}
	}
	if st.Phase != nodestate.PhaseIdle {
		a.ended = ""
	}
	now := a.clock.Now()
	updates := pipeline.LifecycleUpdates(n.Status.Conditions, pipeline.LifecycleConditions(f), now)
	if len(updates) == 0 {
		a.condsSent = nil
		return
	}
	parts := make([]string, len(updates))
	for i, c := range updates {
		parts[i] = fmt.Sprintf("%s=%s/%s/%s", c.Type, c.Status, c.Reason, c.Message)
	}
	key := strings.Join(parts, "|")
	if s := a.condsSent; s != nil && s.key == key && now.Sub(s.at) < 5*time.Second {
		return // written already; the informer has not shown it yet
	}
	if err := a.patchConditions(ctx, updates); err != nil {
		a.metrics.Errors.WithLabelValues(a.cfg.NodeName, "conditions").Inc()
		a.log.Warn("writing the lifecycle conditions failed; retrying on the next pass", "err", err)
		return
	}
	a.condsSent = &condsSent{key: key, at: now}
	a.log.Debug("lifecycle conditions written", "conditions", parts)
}

// patchConditions writes conditions the way patchCondition writes RebootRequired: a
// strategic merge patch of status.conditions, keyed by type, so the others stay.
func (a *Agent) patchConditions(ctx context.Context, conds []corev1.NodeCondition) error {
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": conds}})
	if err != nil {
		return fmt.Errorf("encoding the conditions: %w", err)
	}
	if _, err := a.client.CoreV1().Nodes().PatchStatus(ctx, a.cfg.NodeName, patch); err != nil {
		return fmt.Errorf("patching the status of node %s: %w", a.cfg.NodeName, err)
	}
	return nil
}
