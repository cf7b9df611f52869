package decision

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/facts"
)

// benchConfig is a realistic pool: two windows, a blackout, two CEL conditions,
// node-image rules, two pod selectors and alert filters.
const benchConfig = `
pools:
- name: system
  selector: 'node.labels[?"agentpool"] == optional.of("system")'
  windows:
  - schedule: "0 2 * * sat"
    duration: 4h
    timeZone: Europe/Berlin
- name: user
  selector: "true"
  concurrency: "20%"
  windows:
  - days: mon,tue,wed,thu,fri
    startTime: 9am
    endTime: 5pm
    timeZone: Europe/Berlin
  - schedule: "0 2 8-14 * *"
    days: tue
    duration: 4h
    timeZone: Europe/Berlin
  blackouts:
  - name: freeze
    start: "2026-12-23T00:00:00+01:00"
    end: "2027-01-02T00:00:00+01:00"
  conditions:
  - name: ready
    expression: node.ready
  - name: ubuntu
    expression: 'node.labels["kubernetes.azure.com/node-image-version"].startsWith("AKSUbuntu")'
  nodeImage: {families: [AKSUbuntu], minDate: "2025-01-01"}
blockers:
  pods:
    selectors: ["app=blocker", "backup in (true), tier notin (web)"]
  alerts:
    filterRegexp: "^(Watchdog|InfoInhibitor)$"
    firingOnly: true
`

// benchFacts is a node with nPods pods and nAlerts alerts, none of which blocks.
func benchFacts(nPods, nAlerts int) *facts.Facts {
	n := testNode("aks-user-1", map[string]string{
		"agentpool": "user",
		"kubernetes.azure.com/node-image-version": "AKSUbuntu-2204gen2containerd-202509.23.0",
		"topology.kubernetes.io/zone":             "westeurope-1",
		"kubernetes.io/os":                        "linux",
	})
	f := &facts.Facts{Node: n}
	for i := range nPods {
		f.Pods = append(f.Pods, corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: "shop", Name: fmt.Sprintf("web-%d", i),
				Labels:          map[string]string{"app": "web", "tier": "web", "pod-template-hash": "5d9c"},
				OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-5d9c"}},
			},
			Status: corev1.PodStatus{Phase: corev1.PodRunning},
		})
	}
	for i := range nAlerts {
		f.Alerts = append(f.Alerts, facts.Alert{
			Name: fmt.Sprintf("Alert%d", i), State: "pending",
			Labels: map[string]string{"alertname": fmt.Sprintf("Alert%d", i), "severity": "warning"},
			Source: facts.SourcePrometheus,
		})
	}
	return f
}

// BenchmarkDecide is one full decision, CEL and Rego, for a node with 50 pods and
// 20 alerts. Target: median <= 250µs, p99 <= 1ms (see the README).
func BenchmarkDecide(b *testing.B) {
	e := newEngine(b, benchConfig)
	f := benchFacts(50, 20)
	ctx := context.Background()
	if d := e.Decide(ctx, f, at); !d.Allowed {
		b.Fatalf("benchmark decision should be allowed (all rules evaluated): %v", sources(d))
	}
	b.ReportAllocs()
	for b.Loop() {
		e.Decide(ctx, f, at)
	}
}
