package plan

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/rebootgate/rebootgate/engine/facts"
	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// benchConfig is three pools of a large cluster: a weekly cron window, nightly
// weekday windows with a blackout, percentage concurrency and a slot key.
const benchConfig = `
pools:
- name: system
  selector: 'node.labels[?"agentpool"] == optional.of("system")'
  windows:
  - schedule: "0 2 * * sat"
    duration: 4h
    timeZone: Europe/Berlin
- name: gpu
  selector: 'node.labels[?"agentpool"] == optional.of("gpu")'
  concurrency: "10%"
  slotKey: rack
  windows:
  - days: sat,sun
    startTime: "00:00"
    endTime: "23:59"
    timeZone: Europe/Berlin
- name: user
  selector: 'node.labels[?"agentpool"] == optional.of("user")'
  concurrency: "2%"
  windows:
  - days: mon,tue,wed,thu,fri
    startTime: 10pm
    endTime: 4am
    timeZone: Europe/Berlin
  blackouts:
  - name: freeze
    start: "2026-12-01T00:00:00+01:00"
    end: "2026-12-04T00:00:00+01:00"
  conditions:
  - name: ready
    expression: node.ready
  nodeImage: {families: [AKSUbuntu], minDate: "2025-01-01"}
`

// benchFleet is n nodes: 4 % system, 16 % GPU in 40 racks, the rest user nodes in
// three zones, each with a recorded reboot of 10 to 30 minutes, all needing a reboot.
func benchFleet(n int) ([]*corev1.Node, []Candidate) {
	all := make([]*corev1.Node, n)
	cands := make([]Candidate, n)
	for i := range n {
		pool := "user"
		switch {
		case i%25 == 0:
			pool = "system"
		case i%25 < 5:
			pool = "gpu"
		}
		all[i] = node(fmt.Sprintf("aks-%s-%05d", pool, i), map[string]string{
			"agentpool": pool, "rack": fmt.Sprintf("r%02d", i%40), "topology.kubernetes.io/zone": fmt.Sprintf("z%d", i%3),
			"kubernetes.azure.com/node-image-version": "AKSUbuntu-2204gen2containerd-202509.23.0",
		}, map[string]string{nodestate.AnnotationLastDuration: (time.Duration(10+i%21) * time.Minute).String()})
		cands[i] = Candidate{Facts: &facts.Facts{Node: all[i]}, NeededSince: t0.Add(-time.Duration(i) * time.Second)}
	}
	return all, cands
}

// BenchmarkForecast5000 is `rebootgate plan`'s work for 5,000 nodes over 30 days:
// every node's pool and decision, then the simulation. Target: ≤ 1 s (see README).
func BenchmarkForecast5000(b *testing.B) {
	eng := engine(b, benchConfig)
	all, cands := benchFleet(5000)
	var res *Result
	cpu0 := processCPU()
	for b.Loop() {
		res = Forecast(context.Background(), eng, all, cands, Options{At: t0})
	}
	// CPU time beside wall time: these machines are shared, and wall time includes
	// waiting for a core.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	reportForecast(b, res)
}

// BenchmarkSimulate5000 is the simulation alone, on the jobs of the same fleet.
func BenchmarkSimulate5000(b *testing.B) {
	eng := engine(b, benchConfig)
	all, cands := benchFleet(5000)
	cfg := eng.Config()
	specs := make([]PoolSpec, len(cfg.Pools))
	size := map[string]int{}
	js := make([]Job, len(cands))
	for i, c := range cands {
		p, err := eng.PoolOf(c.Facts.Node, t0)
		if err != nil {
			b.Fatal(err)
		}
		size[p.Name]++
		for j := range cfg.Pools {
			if cfg.Pools[j].Name == p.Name {
				js[i] = Job{Node: all[i].Name, Pool: j, Duration: nodestate.StateOf(all[i]).LastDuration}
				js[i].Key, _ = eng.SlotKeyOf(all[i], t0)
			}
		}
	}
	for j := range cfg.Pools {
		rp := &cfg.Pools[j]
		specs[j] = PoolSpec{Name: rp.Name, Windows: rp.Windows, Blackouts: rp.Blackouts, Slots: rp.Slots(size[rp.Name]), SlotsPerKey: slotsPerKey(rp)}
	}
	var outs []Outcome
	for b.Loop() {
		outs = Simulate(specs, js, t0, DefaultHorizon)
	}
	scheduled := 0
	for _, o := range outs {
		if o.Scheduled {
			scheduled++
		}
	}
	b.ReportMetric(float64(scheduled), "scheduled")
}

// processCPU is the CPU time of the whole process, GC workers included.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportForecast(b *testing.B, res *Result) {
	scheduled := 0
	for _, n := range res.Nodes {
		if n.Start != nil {
			scheduled++
		}
	}
	if len(res.Never) != 0 || scheduled == 0 {
		b.Fatalf("%d never, %d scheduled: the fleet should all be schedulable", len(res.Never), scheduled)
	}
	b.ReportMetric(float64(scheduled), "scheduled")
}
