package decision

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/facts"
	"github.com/rebootgate/rebootgate/engine/policy"
)

const budgetConfig = `
pools:
- name: user
  concurrency: 2
  budget:
    countOthers: true
  breaker:
    maxUnavailable: "30%"
`

// poolOf10 is a summary of pool user with 10 nodes, unavailable ones as given.
func poolOf10(observed time.Time, unavailable ...disruption.Status) *disruption.Summary {
	var c disruption.Counts
	for i := range 10 {
		st := disruption.Status{}
		if i < len(unavailable) {
			st = unavailable[i]
		}
		c.Add("n"+string(rune('0'+i)), st)
	}
	c.Finish()
	return &disruption.Summary{ObservedAt: observed, Writer: "summarizer-0", Pools: map[string]disruption.Counts{"user": c}, Cluster: c}
}

var (
	cordonedByAdmin = disruption.Status{Reasons: []string{"cordoned"}, Cordoned: true}
	karpenter       = disruption.Status{Reasons: []string{"taint karpenter.sh/disrupted"}, Disrupted: true}
	ours            = disruption.Status{Reasons: []string{"cordoned"}, Cordoned: true, Rebootgate: true}
	notReady        = disruption.Status{Reasons: []string{"NotReady"}, NotReady: true}
)

func TestBudgetUsedUpByOthersBlocks(t *testing.T) {
	e := newEngine(t, budgetConfig)
	n := testNode("w1", nil)
	d := e.Decide(context.Background(), &facts.Facts{Node: n, SummarySeenAt: at, Summary: poolOf10(at, karpenter, cordonedByAdmin)}, at)
	if d.Allowed {
		t.Fatal("allowed with 2 of 2 slots taken by others' disruptions")
	}
	msg := strings.Join(sources(d), "\n")
	for _, want := range []string{"budget: the disruption budget of pool user is used up: it allows 2 unavailable node(s) and 2 are unavailable for other reasons", "n0 (taint karpenter.sh/disrupted)", "n1 (cordoned)"} {
		if !strings.Contains(msg, want) {
			t.Errorf("reasons %q lack %q", msg, want)
		}
	}
	// One of them back: one slot left for rebootgate (the lock enforces the rest).
	if d := e.Decide(context.Background(), &facts.Facts{Node: n, SummarySeenAt: at, Summary: poolOf10(at, karpenter)}, at); !d.Allowed {
		t.Errorf("blocked with one other disruption and concurrency 2: %v", sources(d))
	}
	// rebootgate's own reboots are the lock's business, not the budget's.
	if d := e.Decide(context.Background(), &facts.Facts{Node: n, SummarySeenAt: at, Summary: poolOf10(at, ours, karpenter)}, at); !d.Allowed {
		t.Errorf("rebootgate's own reboot counted as someone else's: %v", sources(d))
	}
}

func TestBudgetDoesNotCountTheNodeItself(t *testing.T) {
	e := newEngine(t, budgetConfig)
	n := testNode("n1", nil)
	n.Spec.Unschedulable = true // an admin cordoned this node, which now needs a reboot
	d := e.Decide(context.Background(), &facts.Facts{Node: n, SummarySeenAt: at, Summary: poolOf10(at, karpenter, cordonedByAdmin)}, at)
	if !d.Allowed {
		t.Errorf("the node's own cordon used up the budget it would take a slot of: %v", sources(d))
	}
}

func TestBreakerTripsAndResets(t *testing.T) {
	e := newEngine(t, `
pools:
- name: user
  concurrency: 5
  breaker:
    maxUnavailable: "30%"
`)
	n := testNode("w1", nil)
	// 10 nodes, 30% = 3: with 2 unavailable, this reboot makes 3: allowed.
	if d := e.Decide(context.Background(), &facts.Facts{Node: n, SummarySeenAt: at, Summary: poolOf10(at, ours, karpenter)}, at); !d.Allowed {
		t.Fatalf("breaker open at 2 of 10 unavailable with maxUnavailable 30%%: %v", sources(d))
	}
	d := e.Decide(context.Background(), &facts.Facts{Node: n, SummarySeenAt: at, Summary: poolOf10(at, ours, karpenter, cordonedByAdmin)}, at)
	if d.Allowed {
		t.Fatal("breaker closed at 3 of 10 unavailable: a fourth would exceed 30%")
	}
	want := "breaker: the circuit breaker of pool user is open: 3 of its 10 node(s) are unavailable and rebooting this node would make 4, above maxUnavailable 30% (= 3): n0 (cordoned, rebooted by rebootgate), n1 (taint karpenter.sh/disrupted), n2 (cordoned)"
	if got := strings.Join(sources(d), "\n"); got != want {
		t.Errorf("reasons:\n%s\nwant\n%s", got, want)
	}
	// An unavailable node rebooting adds no unavailable node.
	self := testNode("n2", nil)
	self.Spec.Unschedulable = true
	if d := e.Decide(context.Background(), &facts.Facts{Node: self, SummarySeenAt: at, Summary: poolOf10(at, ours, karpenter, cordonedByAdmin)}, at); !d.Allowed {
		t.Errorf("an already-unavailable node counted twice by the breaker: %v", sources(d))
	}
}

func TestClusterBreaker(t *testing.T) {
	e := newEngine(t, "breaker:\n  maxUnavailable: 1\n")
	d := e.Decide(context.Background(), &facts.Facts{Node: testNode("w1", nil), SummarySeenAt: at, Summary: poolOf10(at, karpenter)}, at)
	if d.Allowed || !strings.Contains(strings.Join(sources(d), "\n"), "breaker: the circuit breaker of the cluster is open: 1 of its 10 node(s)") {
		t.Errorf("cluster breaker with 1 unavailable and maxUnavailable 1: allowed=%v %v", d.Allowed, sources(d))
	}
}

func TestBudgetAndBreakerFailClosedWithoutSummary(t *testing.T) {
	e := newEngine(t, budgetConfig)
	n := testNode("w1", nil)
	for name, tc := range map[string]struct {
		f    *facts.Facts
		want string
	}{
		"not read":   {&facts.Facts{Node: n}, "no node summary was read"},
		"read error": {&facts.Facts{Node: n, SummaryErr: errors.New("configmaps is forbidden")}, "configmaps is forbidden"},
		// The summary's age is judged on the reader's clock, from when it saw it appear.
		"unchanged for longer than MaxSummaryAge": {&facts.Facts{Node: n, SummarySeenAt: at.Add(-61 * time.Second), Summary: poolOf10(at.Add(-61 * time.Second))},
			"the node summary is stale: unchanged since this reader saw it appear at 2026-11-24T09:58:59Z, more than 1m0s ago (written by summarizer-0, stamped 2026-11-24T09:58:59Z; is the summarizer running?)"},
		"stamped in the future, unchanged": {&facts.Facts{Node: n, SummarySeenAt: at.Add(-61 * time.Second), Summary: poolOf10(at.Add(time.Hour))},
			"the node summary is stale: unchanged since this reader saw it appear at 2026-11-24T09:58:59Z, more than 1m0s ago (written by summarizer-0, stamped 2026-11-24T11:00:00Z, in the future of this reader's clock; is the summarizer running?)"},
		"never seen to change": {&facts.Facts{Node: n, Summary: poolOf10(at)},
			"the node summary is stale: this reader has not seen it change, more than 1m0s ago"},
		"incomplete": {&facts.Facts{Node: n, SummarySeenAt: at, Summary: func() *disruption.Summary {
			s := poolOf10(at)
			s.Errors = []string{"Nodes cannot be listed or watched: nodes is forbidden"}
			return s
		}()}, "the node summary is incomplete: [Nodes cannot be listed or watched: nodes is forbidden]"},
	} {
		t.Run(name, func(t *testing.T) {
			d := e.Decide(context.Background(), tc.f, at)
			got := strings.Join(sources(d), "\n")
			if d.Allowed || !strings.Contains(got, "budget: the disruption budget of pool user cannot be checked") ||
				!strings.Contains(got, "breaker: the circuit breaker cannot be checked") || !strings.Contains(got, tc.want) {
				t.Errorf("allowed=%v reasons:\n%s\nwant both to fail closed naming %q", d.Allowed, got, tc.want)
			}
		})
	}
	// A pool without budget or breaker does not need the summary.
	plain := newEngine(t, "")
	if d := plain.Decide(context.Background(), &facts.Facts{Node: n}, at); !d.Allowed {
		t.Errorf("a pool without budget or breaker blocked without a summary: %v", sources(d))
	}
	if plain.NeedsSummary(n, at) || !e.NeedsSummary(n, at) {
		t.Errorf("NeedsSummary: plain %v, budget %v", plain.NeedsSummary(n, at), e.NeedsSummary(n, at))
	}
}

// The writer's stamp does not decide freshness: a summary this reader saw appear
// within MaxSummaryAge is fresh though its writer's clock is ten minutes behind, and
// one it has seen unchanged for longer is stale though stamped an hour ahead.
func TestSummaryFreshnessIsJudgedOnTheReadersClock(t *testing.T) {
	behind := poolOf10(at.Add(-10 * time.Minute))
	ahead := poolOf10(at.Add(time.Hour))
	for _, tc := range []struct {
		name   string
		s      *disruption.Summary
		seenAt time.Time
		fresh  bool
	}{
		{"writer behind, just seen", behind, at, true},
		{"writer behind, seen MaxSummaryAge ago", behind, at.Add(-MaxSummaryAge), true},
		{"writer behind, seen longer ago", behind, at.Add(-MaxSummaryAge - time.Nanosecond), false},
		{"stamped ahead, seen MaxSummaryAge ago", ahead, at.Add(-MaxSummaryAge), true},
		{"stamped ahead, seen longer ago", ahead, at.Add(-MaxSummaryAge - time.Nanosecond), false},
		{"stamped ahead, never seen to change", ahead, time.Time{}, false},
	} {
		err := SummaryUsable(tc.s, tc.seenAt, at)
		if (err == nil) != tc.fresh {
			t.Errorf("%s: SummaryUsable = %v, want fresh=%v", tc.name, err, tc.fresh)
		}
		if err != nil && !strings.Contains(err.Error(), "the node summary is stale") {
			t.Errorf("%s: %v does not say it is stale", tc.name, err)
		}
	}
}

func TestSummaryInCELAndRego(t *testing.T) {
	e := newEngine(t, `
pools:
- name: user
  conditions:
  - name: enough-ready
    expression: poolSummary.ready == poolSummary.nodes
    messageExpression: '"only " + string(poolSummary.ready) + " of " + string(poolSummary.nodes) + " ready"'
`, policy.Module{Name: "cluster.rego", Source: `package rebootgate

deny contains msg if {
	input.cluster.nodes.known
	input.cluster.nodes.disrupted > 0
	msg := sprintf("%d node(s) of the cluster are being disrupted", [input.cluster.nodes.disrupted])
}

deny contains "no node summary" if not input.pool.nodes.known
`})
	n := testNode("w1", nil)
	if !e.NeedsSummary(n, at) {
		t.Fatal("conditions and a policy read the summary, but NeedsSummary is false")
	}
	if d := e.Decide(context.Background(), &facts.Facts{Node: n, SummarySeenAt: at, Summary: poolOf10(at)}, at); !d.Allowed {
		t.Errorf("all ready, none disrupted: %v", sources(d))
	}
	d := e.Decide(context.Background(), &facts.Facts{Node: n, SummarySeenAt: at, Summary: poolOf10(at, karpenter, notReady)}, at)
	want := "condition/enough-ready: only 9 of 10 ready\npolicy: 1 node(s) of the cluster are being disrupted"
	if got := strings.Join(sources(d), "\n"); d.Allowed || got != want {
		t.Errorf("reasons:\n%s\nwant\n%s", got, want)
	}
	// Unknown summary: the CEL condition fails (closed), and input.pool.nodes.known is false.
	d = e.Decide(context.Background(), &facts.Facts{Node: n}, at)
	got := strings.Join(sources(d), "\n")
	if d.Allowed || !strings.Contains(got, `condition "enough-ready" could not be evaluated`) || !strings.Contains(got, "policy: no node summary") {
		t.Errorf("unknown summary: allowed=%v\n%s", d.Allowed, got)
	}
}

func TestBudgetSlots(t *testing.T) {
	e := newEngine(t, `
pools:
- name: budget
  concurrency: 3
  budget:
    countOthers: true
- name: breaker
  concurrency: 3
  breaker:
    maxUnavailable: 2
- name: both
  concurrency: 3
  budget:
    countOthers: true
  breaker:
    maxUnavailable: 3
`)
	pool := func(name string) *config.ResolvedPool {
		for i := range e.Config().Pools {
			if p := &e.Config().Pools[i]; p.Name == name {
				return p
			}
		}
		t.Fatalf("no pool %s", name)
		return nil
	}
	asking := testNode("w1", nil)
	cordonedSelf := testNode("n1", nil)
	cordonedSelf.Spec.Unschedulable = true
	for _, tc := range []struct {
		pool  string
		self  *corev1.Node
		pc    *disruption.Summary
		want  int
		about string
	}{
		{"budget", asking, poolOf10(at), 3, "nothing else unavailable: the concurrency"},
		{"budget", asking, poolOf10(at, karpenter, cordonedByAdmin), 1, "two others use two of three"},
		{"budget", asking, poolOf10(at, ours, ours, karpenter), 2, "rebootgate's own are the lock's holders, not others"},
		{"budget", cordonedSelf, poolOf10(at, karpenter, cordonedByAdmin), 2, "the asking node's own cordon is not someone else's"},
		{"budget", asking, poolOf10(at, karpenter, cordonedByAdmin, notReady, notReady), 0, "never negative"},
		{"breaker", asking, poolOf10(at), 2, "the breaker caps the concurrency"},
		{"breaker", asking, poolOf10(at, cordonedByAdmin), 1, "one other unavailable: one more allowed"},
		{"breaker", asking, poolOf10(at, cordonedByAdmin, karpenter), 0, "tripped"},
		{"both", asking, poolOf10(at, cordonedByAdmin), 2, "budget and breaker: the smaller"},
	} {
		if got := BudgetSlots(pool(tc.pool), pool(tc.pool).Slots(10), tc.pc.Pool("user"), tc.self); got != tc.want {
			t.Errorf("%s (%s): %d slots, want %d", tc.pool, tc.about, got, tc.want)
		}
	}
}
