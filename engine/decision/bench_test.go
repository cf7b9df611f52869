package decision

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

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

// benchFacts is a node with nPods pods and nAlerts alerts, none of which blocks. Like
// objects from an informer, the node and pods carry a UID and a resourceVersion.
func benchFacts(nPods, nAlerts int) *facts.Facts {
	n := testNode("aks-user-1", map[string]string{
		"agentpool": "user",
		"kubernetes.azure.com/node-image-version": "AKSUbuntu-2204gen2containerd-202509.23.0",
		"topology.kubernetes.io/zone":             "westeurope-1",
		"kubernetes.io/os":                        "linux",
	})
	n.UID, n.ResourceVersion = "node-uid-1", "1000"
	f := &facts.Facts{Node: n}
	for i := range nPods {
		f.Pods = append(f.Pods, corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				UID: types.UID(fmt.Sprintf("pod-uid-%d", i)), ResourceVersion: "2000",
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

// unversioned strips UIDs and resourceVersions, as for objects read from files: every
// decision then converts every object (the cold path).
func unversioned(f *facts.Facts) *facts.Facts {
	f.Node.UID, f.Node.ResourceVersion = "", ""
	for i := range f.Pods {
		f.Pods[i].UID, f.Pods[i].ResourceVersion = "", ""
	}
	return f
}

// BenchmarkDecide is one full decision, CEL and Rego, for a node with 50 pods and
// 20 alerts, as the agent re-decides: objects that did not change since the previous
// decision are not converted again. Target: median <= 250µs, p99 <= 1ms (see the
// README).
func BenchmarkDecide(b *testing.B) { benchDecide(b, benchFacts(50, 20)) }

// BenchmarkDecideCold is the same decision with every object converted, as for a
// first decision or a one-shot eval.
func BenchmarkDecideCold(b *testing.B) { benchDecide(b, unversioned(benchFacts(50, 20))) }

func benchDecide(b *testing.B, f *facts.Facts) {
	e := newEngine(b, benchConfig)
	ctx := context.Background()
	if d := e.Decide(ctx, f, at); !d.Allowed {
		b.Fatalf("benchmark decision should be allowed (all rules evaluated): %v", sources(d))
	}
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		e.Decide(ctx, f, at)
	}
	// CPU time is reported beside wall time because these machines are shared: wall
	// time includes waiting for a core, CPU time does not.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkDecideLatency times each decision separately and reports the median and
// 99th percentile of the wall time.
func BenchmarkDecideLatency(b *testing.B) { benchLatency(b, benchFacts(50, 20)) }

// BenchmarkDecideColdLatency is BenchmarkDecideLatency on the cold path.
func BenchmarkDecideColdLatency(b *testing.B) { benchLatency(b, unversioned(benchFacts(50, 20))) }

func benchLatency(b *testing.B, f *facts.Facts) {
	e := newEngine(b, benchConfig)
	ctx := context.Background()
	var wall []time.Duration
	for b.Loop() {
		w0 := time.Now()
		e.Decide(ctx, f, at)
		wall = append(wall, time.Since(w0))
	}
	slices.Sort(wall)
	b.ReportMetric(float64(wall[len(wall)/2]), "p50-ns")
	b.ReportMetric(float64(wall[len(wall)*99/100]), "p99-ns")
}

// processCPU is the CPU time of the whole process, GC workers included.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
