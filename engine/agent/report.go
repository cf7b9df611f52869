package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"net/http"

	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/detect"
	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// Reasons of the Events the agent records on its Node.
const (
	ReasonRebootAllowed = "RebootAllowed"
	ReasonRebootBlocked = "RebootBlocked"
	ReasonSentinelError = "SentinelError"
)

func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// report publishes a decision. The metric and a debug log line come with every
// decision; the Event, the annotation and an info log line only when the decision's
// content (allowed, pool, slot key, reasons) changes, so a blocked node re-deciding every minute
// makes no event storm and no API writes.
func (a *Agent) report(ctx context.Context, d decision.Decision) {
	allowed := 0.0
	result := "blocked"
	if d.Allowed {
		allowed, result = 1, "allowed"
	}
	a.metrics.GateDecision.WithLabelValues(a.cfg.NodeName, d.Pool).Set(allowed)
	a.metrics.GateDecisions.WithLabelValues(a.cfg.NodeName, d.Pool, result).Inc()
	a.reportBlocked(d)
	messages := make([]string, len(d.Reasons))
	for i, r := range d.Reasons {
		messages[i] = r.Source + ": " + r.Message
	}
	key := fmt.Sprintf("%v|%s|%s|%s", d.Allowed, d.Pool, d.SlotKey, strings.Join(messages, "\n"))
	if key == a.lastReport {
		a.log.Debug("decision unchanged", "allowed", d.Allowed, "pool", d.Pool)
		return
	}
	a.lastReport = key
	if d.Allowed {
		a.log.Info("reboot allowed", "pool", d.Pool, "dryRun", a.cfg.DryRun)
		a.recorder.Eventf(a.nodeRef, corev1.EventTypeNormal, ReasonRebootAllowed, "reboot allowed by pool %s%s", d.Pool, dryRunSuffix(a.cfg.DryRun))
	} else {
		a.log.Info("reboot blocked", "pool", d.Pool, "reasons", messages, "dryRun", a.cfg.DryRun)
		a.recorder.Eventf(a.nodeRef, corev1.EventTypeNormal, ReasonRebootBlocked, "reboot blocked%s: %s", dryRunSuffix(a.cfg.DryRun), strings.Join(messages, "; "))
	}
	data, err := json.Marshal(nodestate.Decision{Allowed: d.Allowed, Pool: d.Pool, SlotKey: d.SlotKey, Reasons: d.Reasons, At: d.At, NextAllowed: d.NextAllowed, DryRun: a.cfg.DryRun})
	if err != nil {
		a.log.Error("encoding the decision", "err", err)
		return
	}
	if err := a.patchAnnotations(ctx, map[string]*string{nodestate.AnnotationDecision: ptr(string(data))}); err != nil {
		a.log.Warn("writing the decision annotation failed", "err", err)
		a.lastReport = "" // try again next time
	}
}

// reportBlocked keeps one rebootgate_blocked series per source of the decision's
// reasons, removing those of the previous decision that no longer apply.
func (a *Agent) reportBlocked(d decision.Decision) {
	now := map[[2]string]bool{}
	if !d.Allowed {
		for _, r := range d.Reasons {
			now[[2]string{d.Pool, r.Source}] = true
		}
	}
	for k := range a.blockedBy {
		if !now[k] {
			a.metrics.Blocked.DeleteLabelValues(a.cfg.NodeName, k[0], k[1])
		}
	}
	for k := range now {
		a.metrics.Blocked.WithLabelValues(a.cfg.NodeName, k[0], k[1]).Set(1)
	}
	a.blockedBy = now
}

// reportedOn is the decision last reported on n (its annotation): for a node in the
// middle of a reboot, the one that allowed it, even after an agent restart. nil when
// there is none to read.
func reportedOn(n *corev1.Node) *decision.Decision {
	if n == nil {
		return nil
	}
	r, found, err := nodestate.DecisionOf(n)
	if !found || err != nil {
		return nil
	}
	return &decision.Decision{Node: n.Name, Pool: r.Pool, Allowed: r.Allowed, At: r.At, Reasons: r.Reasons, NextAllowed: r.NextAllowed}
}

func dryRunSuffix(dry bool) string {
	if dry {
		return " (dry-run: nothing will be done)"
	}
	return ""
}

// setNeeded records a change of the detector's state: metric, annotation and the
// RebootRequired condition, each written only when it changes.
func (a *Agent) setNeeded(ctx context.Context, st detect.State) {
	a.needed = st
	v := 0.0
	if st.Needed {
		v = 1
	}
	a.metrics.RebootRequired.WithLabelValues(a.cfg.NodeName).Set(v)
	a.metrics.KuredRebootRequired.WithLabelValues(a.cfg.NodeName).Set(v)
	if st.Err != nil {
		a.metrics.SentinelErrors.WithLabelValues(a.cfg.NodeName).Inc()
		a.recorder.Eventf(a.nodeRef, corev1.EventTypeWarning, ReasonSentinelError, "reboot detection failed (not counted as reboot required): %v", st.Err)
		a.log.Warn("reboot detection failed", "err", st.Err)
	}
	if a.lastRequired != nil && *a.lastRequired == st.Needed {
		return
	}
	a.log.Info("reboot required changed", "required", st.Needed, "reason", st.Reason)
	var value *string
	if st.Needed {
		value = ptr(a.clock.Now().UTC().Format(time.RFC3339))
	}
	if err := a.patchAnnotations(ctx, map[string]*string{nodestate.AnnotationRebootRequired: value}); err != nil {
		a.log.Warn("writing the reboot-required annotation failed", "err", err)
		return
	}
	if err := a.patchCondition(ctx, st); err != nil {
		a.log.Warn("writing the RebootRequired condition failed", "err", err)
		return
	}
	a.lastRequired = ptr(st.Needed)
	if !st.Needed {
		a.lastReport = ""
		if a.blocked != nil {
			a.blocked.Observe(a.clock.Now(), false, decision.Decision{})
		}
	}
}

func (a *Agent) patchAnnotations(ctx context.Context, values map[string]*string) error {
	patch, err := (&nodestate.Patch{Metadata: nodestate.PatchMeta{Annotations: values}}).Bytes()
	if err != nil {
		return err
	}
	_, err = a.client.CoreV1().Nodes().Patch(ctx, a.cfg.NodeName, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "rebootgate-agent"})
	return err
}

// patchCondition sets the RebootRequired condition the way node-problem-detector sets
// its conditions: a strategic merge patch of status.conditions, keyed by type.
func (a *Agent) patchCondition(ctx context.Context, st detect.State) error {
	status, msg := corev1.ConditionFalse, "no reboot is required"
	if st.Needed {
		status, msg = corev1.ConditionTrue, "a reboot is required"
	}
	if st.Err != nil {
		msg = "reboot detection failed: " + st.Err.Error()
	}
	if d := a.degradedStatus(); d != "" {
		msg += "; " + d
	}
	now := metav1.NewTime(a.clock.Now())
	cond := corev1.NodeCondition{
		Type: nodestate.ConditionRebootRequired, Status: status, Reason: orDefault(st.Reason, "RebootRequired"), Message: msg,
		LastHeartbeatTime: now, LastTransitionTime: now,
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{cond}}})
	if err != nil {
		return err
	}
	_, err = a.client.CoreV1().Nodes().PatchStatus(ctx, a.cfg.NodeName, patch)
	return err
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func ptr[T any](v T) *T { return &v }
