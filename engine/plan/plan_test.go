package plan

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/facts"
	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/engine/policy"
	"github.com/rebootgate/rebootgate/engine/schedule"
)

// t0 is a Monday.
var t0 = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func daily(t *testing.T, days, start, end string) schedule.Window {
	t.Helper()
	w, err := schedule.ParseDaily(strings.Split(days, ","), start, end, "UTC")
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func jobs(n int, d time.Duration) []Job {
	out := make([]Job, n)
	for i := range out {
		out[i] = Job{Node: fmt.Sprintf("n%d", i), Duration: d}
	}
	return out
}

// starts renders the outcomes as "node start-end" in UTC, "-" for unscheduled.
func starts(js []Job, outs []Outcome) string {
	var b strings.Builder
	for i, o := range outs {
		if !o.Scheduled {
			fmt.Fprintf(&b, "%s -\n", js[i].Node)
			continue
		}
		fmt.Fprintf(&b, "%s %s-%s\n", js[i].Node, o.Start.UTC().Format("Mon 15:04"), o.End.UTC().Format("Mon 15:04"))
	}
	return b.String()
}

func check(t *testing.T, got, want string) {
	t.Helper()
	if strings.TrimSpace(got) != strings.TrimSpace(want) {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestSimulateSequentialWithoutWindows(t *testing.T) {
	js := jobs(3, 10*time.Minute)
	outs := Simulate([]PoolSpec{{Name: "p", Slots: 1}}, js, t0, DefaultHorizon)
	check(t, starts(js, outs), `
n0 Mon 00:00-Mon 00:10
n1 Mon 00:10-Mon 00:20
n2 Mon 00:20-Mon 00:30`)
}

// A reboot starts only inside the window, and one started before its end runs past it.
func TestSimulateWindowStartsInsideAndOverruns(t *testing.T) {
	js := jobs(5, 50*time.Minute)
	p := PoolSpec{Name: "p", Slots: 1, Windows: []schedule.Window{daily(t, "mon,tue,wed", "1am", "3am")}}
	outs := Simulate([]PoolSpec{p}, js, t0, DefaultHorizon)
	check(t, starts(js, outs), `
n0 Mon 01:00-Mon 01:50
n1 Mon 01:50-Mon 02:40
n2 Mon 02:40-Mon 03:30
n3 Tue 01:00-Tue 01:50
n4 Tue 01:50-Tue 02:40`)
}

func TestSimulateBlackoutSkipsADay(t *testing.T) {
	js := jobs(4, 50*time.Minute)
	p := PoolSpec{Name: "p", Slots: 1, Windows: []schedule.Window{daily(t, "mon,tue,wed", "1am", "3am")},
		Blackouts: []schedule.Blackout{{Name: "freeze", Start: at("2026-11-24T00:00:00Z"), End: at("2026-11-25T02:00:00Z")}}}
	outs := Simulate([]PoolSpec{p}, js, t0, DefaultHorizon)
	check(t, starts(js, outs), `
n0 Mon 01:00-Mon 01:50
n1 Mon 01:50-Mon 02:40
n2 Mon 02:40-Mon 03:30
n3 Wed 02:00-Wed 02:50`)
}

// With a slot key, one node per value at a time however many slots; nodes without a
// value are not limited by it.
func TestSimulateSlotKeys(t *testing.T) {
	js := jobs(8, time.Hour)
	for i := range 6 {
		js[i].Key = fmt.Sprintf("zone-%d", i%3)
	}
	p := PoolSpec{Name: "p", Slots: 10, SlotsPerKey: 1}
	outs := Simulate([]PoolSpec{p}, js, t0, DefaultHorizon)
	check(t, starts(js, outs), `
n0 Mon 00:00-Mon 01:00
n1 Mon 00:00-Mon 01:00
n2 Mon 00:00-Mon 01:00
n3 Mon 01:00-Mon 02:00
n4 Mon 01:00-Mon 02:00
n5 Mon 01:00-Mon 02:00
n6 Mon 00:00-Mon 01:00
n7 Mon 00:00-Mon 01:00`)

	// Two per value, three slots: the queue's order decides who goes first.
	p = PoolSpec{Name: "p", Slots: 3, SlotsPerKey: 2}
	js = jobs(5, time.Hour)
	for i, k := range []string{"a", "a", "a", "b", "b"} {
		js[i].Key = k
	}
	outs = Simulate([]PoolSpec{p}, js, t0, DefaultHorizon)
	check(t, starts(js, outs), `
n0 Mon 00:00-Mon 01:00
n1 Mon 00:00-Mon 01:00
n2 Mon 01:00-Mon 02:00
n3 Mon 00:00-Mon 01:00
n4 Mon 01:00-Mon 02:00`)
}

// A reboot in progress holds its slot; a backing-off node waits for its back-off and
// then takes its place in the queue.
func TestSimulateRunningAndBackoff(t *testing.T) {
	js := jobs(3, 30*time.Minute)
	js[0].Running, js[0].Started = true, t0.Add(-20*time.Minute)
	js[1].NotBefore = t0.Add(time.Hour)
	outs := Simulate([]PoolSpec{{Name: "p", Slots: 1}}, js, t0, DefaultHorizon)
	check(t, starts(js, outs), `
n0 Sun 23:40-Mon 00:10
n1 Mon 01:00-Mon 01:30
n2 Mon 00:10-Mon 00:40`)
}

func TestSimulatePausedAndHorizon(t *testing.T) {
	js := jobs(2, time.Hour)
	outs := Simulate([]PoolSpec{{Name: "p", Slots: 0}}, js, t0, DefaultHorizon)
	check(t, starts(js, outs), "n0 -\nn1 -")

	// Only Mondays from 1 to 2 am: the second node's turn is after a 3-day horizon.
	p := PoolSpec{Name: "p", Slots: 1, Windows: []schedule.Window{daily(t, "mon", "1am", "2am")}}
	js = jobs(3, 40*time.Minute)
	outs = Simulate([]PoolSpec{p}, js, t0, 3*24*time.Hour)
	check(t, starts(js, outs), `
n0 Mon 01:00-Mon 01:40
n1 Mon 01:40-Mon 02:20
n2 -`)
}

func TestSimulatePoolsAreIndependent(t *testing.T) {
	js := jobs(4, time.Hour)
	js[2].Pool, js[3].Pool = 1, 1
	pools := []PoolSpec{{Name: "a", Slots: 1}, {Name: "b", Slots: 1, Windows: []schedule.Window{daily(t, "mon", "10am", "11am")}}}
	outs := Simulate(pools, js, t0, DefaultHorizon)
	check(t, starts(js, outs), `
n0 Mon 00:00-Mon 01:00
n1 Mon 01:00-Mon 02:00
n2 Mon 10:00-Mon 11:00
n3 Mon 11:00-Mon 12:00`)
}

const cfgHeader = "apiVersion: rebootgate.io/v1alpha1\nkind: RebootGateConfig\n"

func engine(t testing.TB, body string) *decision.Engine {
	t.Helper()
	cfg, err := config.Parse([]byte(cfgHeader + body))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := decision.New(context.Background(), cfg, policy.DefaultModules())
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

func node(name string, labels, annotations map[string]string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
	}
}

const forecastConfig = `
pools:
- name: system
  selector: 'node.labels[?"agentpool"] == optional.of("system")'
  concurrency: 0
- name: user
  selector: 'node.labels[?"agentpool"] == optional.of("user")'
  concurrency: "50%"
  slotKey: topology.kubernetes.io/zone
  windows:
  - days: mon,tue,wed,thu,fri
    startTime: "22:00"
    endTime: "23:00"
    timeZone: UTC
  conditions:
  - name: not-gpu
    expression: '!("gpu" in node.labels)'
    message: GPU nodes are rebooted by hand
  nodeImage: {minDate: "2025-06-01"}
`

// fleet is four user nodes in two zones, one of them GPU, one with an old image, one
// held, a system node (paused pool) and a node no pool selects.
func fleet() (all []*corev1.Node, cands []Candidate) {
	user := func(name, zone string, extra map[string]string) *corev1.Node {
		l := map[string]string{"agentpool": "user", "topology.kubernetes.io/zone": zone,
			"kubernetes.azure.com/node-image-version": "AKSUbuntu-2204gen2containerd-202509.23.0"}
		for k, v := range extra {
			l[k] = v
		}
		return node(name, l, map[string]string{})
	}
	all = []*corev1.Node{
		user("u1", "z1", nil), user("u2", "z1", nil), user("u3", "z2", nil), user("u4", "z2", nil),
		user("gpu", "z1", map[string]string{"gpu": "a100"}),
		user("old", "z2", map[string]string{"kubernetes.azure.com/node-image-version": "AKSUbuntu-2204gen2containerd-202403.25.0"}),
		user("held", "z1", nil),
		node("sys", map[string]string{"agentpool": "system"}, map[string]string{}),
		node("stray", map[string]string{}, map[string]string{}),
	}
	all[6].Annotations[config.DefaultHoldAnnotation] = "waiting for the vendor"
	all[1].Annotations[nodestate.AnnotationLastDuration] = "20m"
	for i, n := range all {
		cands = append(cands, Candidate{Facts: &facts.Facts{Node: n}, NeededSince: t0.Add(-time.Duration(len(all)-i) * time.Minute)})
	}
	return all, cands
}

func TestForecast(t *testing.T) {
	eng := engine(t, forecastConfig)
	all, cands := fleet()
	res := Forecast(context.Background(), eng, all, cands, Options{At: t0})

	var b strings.Builder
	for _, n := range res.Nodes {
		fmt.Fprintf(&b, "%s %s %s %s-%s %s\n", n.Node, n.Pool, n.Status, n.Start.Format("Mon 15:04"), n.End.Format("Mon 15:04"), n.DurationSource)
	}
	// 7 user nodes: 50 % is 4 slots, one per zone; u2 recorded 20m, the others take
	// that median. The window opens Monday 22:00 and reboots start until 23:00.
	check(t, b.String(), `
u1 user scheduled Mon 22:00-Mon 22:20 median
u3 user scheduled Mon 22:00-Mon 22:20 median
u2 user scheduled Mon 22:20-Mon 22:40 recorded
u4 user scheduled Mon 22:20-Mon 22:40 median`)

	b.Reset()
	for _, n := range res.Never {
		fmt.Fprintf(&b, "%s %s", n.Node, n.Pool)
		for _, r := range n.Reasons {
			fmt.Fprintf(&b, " | %s: %s", r.Source, r.Message)
		}
		b.WriteString("\n")
	}
	check(t, b.String(), `
gpu user | condition/not-gpu: GPU nodes are rebooted by hand
held user | policy: node is on hold: annotation rebootgate.io/hold="waiting for the vendor"
old user | policy: node image AKSUbuntu-2204gen2containerd-202403.25.0 is dated 2024-03-25, before the minimum 2025-06-01
stray  | pool: no pool selects node stray
sys system | pool: pool system is paused (concurrency 0)`)

	user := res.Pools[1]
	if user.Size != 7 || user.Slots != 4 || user.Reboots != 4 || user.Never != 3 || user.Completion == nil || !user.Completion.Equal(at("2026-11-23T22:40:00Z")) {
		t.Fatalf("user pool = %+v", user)
	}
	if res.Completion == nil || !res.Completion.Equal(*user.Completion) || res.Duration.Source != "mixed" || res.Duration.Recorded != 1 {
		t.Fatalf("result: completion %v duration %+v", res.Completion, res.Duration)
	}
}

// Outside the window the engine says no for the window only: that is not a reason to
// never reboot. A node mid-reboot keeps its slot, and a given duration wins.
func TestForecastInProgressAndGivenDuration(t *testing.T) {
	eng := engine(t, `
pools:
- name: p
  windows:
  - {days: mon, startTime: "1am", endTime: "2am"}
`)
	a := node("a", nil, map[string]string{nodestate.AnnotationPhase: string(nodestate.PhaseRebooting), nodestate.AnnotationStartedAt: "2026-11-23T01:50:00Z"})
	b := node("b", nil, map[string]string{nodestate.AnnotationLastDuration: "1h"})
	c := node("c", nil, nil)
	all := []*corev1.Node{a, b, c}
	cands := []Candidate{{Facts: &facts.Facts{Node: a}}, {Facts: &facts.Facts{Node: c}, NeededSince: t0}, {Facts: &facts.Facts{Node: b}}}
	res := Forecast(context.Background(), eng, all, cands, Options{At: at("2026-11-23T01:55:00Z"), Duration: 15 * time.Minute})
	var sb strings.Builder
	for _, n := range res.Nodes {
		fmt.Fprintf(&sb, "%s %s %s-%s\n", n.Node, n.Status, n.Start.Format("Jan 2 15:04"), n.End.Format("Jan 2 15:04"))
	}
	// a ends at 02:05, after the window: c (known need first) goes next Monday.
	check(t, sb.String(), `
a in-progress Nov 23 01:50-Nov 23 02:05
c scheduled Nov 30 01:00-Nov 30 01:15
b scheduled Nov 30 01:15-Nov 30 01:30`)
	if len(res.Never) != 0 || res.Duration.Source != DurationGiven {
		t.Fatalf("never %v, duration %+v", res.Never, res.Duration)
	}

	// A 3-day horizon sees none of next Monday.
	res = Forecast(context.Background(), eng, all, cands, Options{At: at("2026-11-23T01:55:00Z"), Horizon: 72 * time.Hour})
	if res.Completion != nil || res.Pools[0].Completion != nil || res.Nodes[1].Status != StatusBeyond || res.Nodes[1].Start != nil || res.Nodes[2].DurationSource != DurationRecorded {
		t.Fatalf("horizon: %+v %+v", res.Pools[0], res.Nodes)
	}
}

// A budget counting others leaves the pool the slots others have not taken; a breaker
// caps reboots at what keeps it closed, and one already open blocks every reboot.
func TestForecastBudgetsAndBreakers(t *testing.T) {
	eng := engine(t, `
pools:
- name: counted
  selector: 'node.labels[?"agentpool"] == optional.of("counted")'
  concurrency: 3
  budget: {countOthers: true}
- name: guarded
  selector: 'node.labels[?"agentpool"] == optional.of("guarded")'
  concurrency: 5
  breaker: {maxUnavailable: "40%"}
- name: tripped
  selector: 'node.labels[?"agentpool"] == optional.of("tripped")'
  concurrency: 2
  breaker: {maxUnavailable: 1}
`)
	var all []*corev1.Node
	var cands []Candidate
	add := func(name, pool string, need bool, mutate func(*corev1.Node)) {
		n := node(name, map[string]string{"agentpool": pool}, map[string]string{})
		if mutate != nil {
			mutate(n)
		}
		all = append(all, n)
		if need {
			cands = append(cands, Candidate{Facts: &facts.Facts{Node: n}})
		}
	}
	karpenter := func(n *corev1.Node) {
		n.Spec.Taints = []corev1.Taint{{Key: "karpenter.sh/disrupted", Effect: corev1.TaintEffectNoSchedule}}
	}
	cordon := func(n *corev1.Node) { n.Spec.Unschedulable = true }
	// counted: 3 slots, 2 taken by Karpenter and an admin's cordon: one at a time.
	for i := range 3 {
		add(fmt.Sprintf("c%d", i), "counted", true, nil)
	}
	add("c-karpenter", "counted", false, karpenter)
	add("c-cordoned", "counted", false, cordon)
	// guarded: 6 nodes, 40 % is 3 unavailable, one is NotReady: two at a time, one of
	// them held by a reboot in progress until 01:00.
	for i := range 4 {
		add(fmt.Sprintf("g%d", i), "guarded", true, nil)
	}
	add("g-notready", "guarded", false, func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionFalse })
	// tripped: 1 may be unavailable and one is: nothing reboots.
	add("t0", "tripped", true, nil)
	add("t-maintenance", "tripped", false, nil)
	// A reboot of rebootgate's own holds a slot, and is not someone else's unavailability.
	add("g-rebooting", "guarded", false, func(n *corev1.Node) { n.Annotations[nodestate.AnnotationPhase] = string(nodestate.PhaseRebooting) })

	res := Forecast(context.Background(), eng, all, cands, Options{At: t0, Duration: time.Hour, Maintenance: map[string]bool{"t-maintenance": true}})
	var b strings.Builder
	for _, p := range res.Pools {
		fmt.Fprintf(&b, "%s concurrency=%d others=%d slots=%d\n", p.Name, p.Concurrency, p.UnavailableOthers, p.Slots)
	}
	for _, n := range res.Nodes {
		fmt.Fprintf(&b, "%s %s\n", n.Node, n.Start.Format("15:04"))
	}
	for _, n := range res.Never {
		fmt.Fprintf(&b, "never %s %s\n", n.Node, n.Reasons[0].Source)
	}
	check(t, b.String(), `
counted concurrency=3 others=2 slots=1
guarded concurrency=5 others=1 slots=2
tripped concurrency=2 others=1 slots=0
c0 00:00
g-rebooting 00:00
g0 00:00
c1 01:00
g1 01:00
g2 01:00
c2 02:00
g3 02:00
never t0 breaker`)
	if !strings.Contains(res.Never[0].Reasons[0].Message, "t-maintenance (medik8s maintenance lease)") {
		t.Fatalf("breaker reason: %s", res.Never[0].Reasons[0].Message)
	}
}

// A slot key is a CEL expression; slotsPerKey nodes of one value reboot at once; a
// node whose key cannot be computed never reboots (the lock would not let it).
func TestForecastSlotKeyExpression(t *testing.T) {
	eng := engine(t, `
pools:
- name: p
  concurrency: 10
  slotKey: 'node.labels["rack"] + "/" + node.labels["topology.kubernetes.io/zone"]'
  slotsPerKey: 2
`)
	var all []*corev1.Node
	var cands []Candidate
	for i, rack := range []string{"r1", "r1", "r1", "r2", ""} {
		l := map[string]string{"topology.kubernetes.io/zone": "z1"}
		if rack != "" {
			l["rack"] = rack
		}
		n := node(fmt.Sprintf("n%d", i), l, nil)
		all = append(all, n)
		cands = append(cands, Candidate{Facts: &facts.Facts{Node: n}})
	}
	res := Forecast(context.Background(), eng, all, cands, Options{At: t0, Duration: time.Hour})
	var b strings.Builder
	for _, n := range res.Nodes {
		fmt.Fprintf(&b, "%s %s %s\n", n.Node, n.SlotKey, n.Start.Format("15:04"))
	}
	check(t, b.String(), `
n0 r1/z1 00:00
n1 r1/z1 00:00
n3 r2/z1 00:00
n2 r1/z1 01:00`)
	if len(res.Never) != 1 || res.Never[0].Node != "n4" || res.Never[0].Reasons[0].Source != decision.SourceSlotKey ||
		!strings.Contains(res.Never[0].Reasons[0].Message, "cannot be computed") {
		t.Fatalf("never = %+v", res.Never)
	}
	if p := res.Pools[0]; p.SlotsPerKey != 2 || p.Slots != 10 {
		t.Fatalf("pool = %+v", p)
	}
}
