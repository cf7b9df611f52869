package plan

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/facts"
	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/engine/schedule"
)

// Defaults of Options.
const (
	DefaultHorizon = 30 * 24 * time.Hour
	// DefaultDuration is the estimate of one node's reboot (cordon to uncordon) when
	// none is given and no node has recorded one: drains of real workloads dominate
	// it, and ten minutes is a common drain timeout.
	DefaultDuration = 10 * time.Minute
)

// Where a node's duration estimate came from.
const (
	DurationGiven    = "given"    // Options.Duration
	DurationRecorded = "recorded" // the node's own last reboot
	DurationMedian   = "median"   // the median of the other nodes' last reboots
	DurationDefault  = "default"  // DefaultDuration
)

// Statuses of a forecast node.
const (
	StatusInProgress = "in-progress" // rebooting at the forecast's start
	StatusScheduled  = "scheduled"   // starts within the horizon
	StatusBeyond     = "beyond-horizon"
)

// Options are a forecast's parameters.
type Options struct {
	// At is the forecast's start. Required.
	At time.Time
	// Horizon is how far to look ahead; 0 means DefaultHorizon.
	Horizon time.Duration
	// Duration, when positive, is every node's estimate; otherwise each node's
	// recorded last reboot, else the median of all recorded ones, else
	// DefaultDuration.
	Duration time.Duration
	// Maintenance names the nodes a medik8s maintenance Lease holds (unavailable for
	// disruption budgets and breakers).
	Maintenance map[string]bool
}

// Candidate is a node that needs a reboot.
type Candidate struct {
	// Facts are the node, its pods and the alerts, as for a decision.
	Facts *facts.Facts
	// NeededSince is when it started needing the reboot (zero: unknown). The queue
	// is forecast in this order, then by name, unknown last.
	NeededSince time.Time
}

// Result is a forecast. Its times are in UTC.
type Result struct {
	At         time.Time `json:"at"`
	Horizon    string    `json:"horizon"`
	HorizonEnd time.Time `json:"horizonEnd"`
	// Completion is when the last scheduled reboot ends; nil when a node is beyond
	// the horizon or nothing needs a reboot.
	Completion *time.Time      `json:"completion"`
	Duration   DurationSummary `json:"duration"`
	Pools      []PoolForecast  `json:"pools"`
	// Nodes are the nodes that will reboot, by predicted start, then those that
	// will not start within the horizon.
	Nodes []NodeForecast `json:"nodes"`
	// Never are the nodes that will never reboot under this config, by name.
	Never []NeverNode `json:"never"`
}

// DurationSummary says which estimate was used.
type DurationSummary struct {
	// Source is DurationGiven, DurationRecorded (every node its own),
	// DurationMedian, DurationDefault, or "mixed".
	Source string `json:"source"`
	// GivenSeconds is Options.Duration (0 when not given).
	GivenSeconds float64 `json:"givenSeconds"`
	// MedianSeconds is the median of the nodes' recorded last reboots (0 when none);
	// Recorded counts them.
	MedianSeconds float64 `json:"medianSeconds"`
	Recorded      int     `json:"recorded"`
}

// PoolForecast is one pool's part of the forecast.
type PoolForecast struct {
	Name string `json:"name"`
	// Size is the pool's node count, Concurrency its concurrency resolved against it.
	// Slots is what the forecast uses: Concurrency less, with a disruption budget
	// counting others, the nodes unavailable for other reasons (UnavailableOthers),
	// and at most what the breakers leave (see Forecast).
	Size              int    `json:"size"`
	Concurrency       int    `json:"concurrency"`
	UnavailableOthers int    `json:"unavailableOthers"`
	Slots             int    `json:"slots"`
	SlotKey           string `json:"slotKey,omitempty"`
	SlotsPerKey       int    `json:"slotsPerKey,omitempty"`
	// Reboots counts its nodes to reboot (in progress, scheduled or beyond the
	// horizon), Never those that never will.
	Reboots int `json:"reboots"`
	Never   int `json:"never"`
	// FirstAllowed is the first instant its windows and blackouts allow; nil when
	// none within the horizon.
	FirstAllowed *time.Time `json:"firstAllowed"`
	// Completion is when its last reboot ends; nil when one is beyond the horizon
	// or it has none.
	Completion *time.Time `json:"completion"`
}

// NodeForecast is one node's predicted reboot.
type NodeForecast struct {
	Node        string     `json:"node"`
	Pool        string     `json:"pool"`
	SlotKey     string     `json:"slotKey,omitempty"`
	Status      string     `json:"status"`
	Start       *time.Time `json:"start"`
	End         *time.Time `json:"end"`
	NeededSince *time.Time `json:"neededSince"`
	// Duration is the estimate used, DurationSource where it came from.
	DurationSeconds float64 `json:"durationSeconds"`
	DurationSource  string  `json:"durationSource"`
}

// NeverNode is a node that will never reboot under this config, and why.
type NeverNode struct {
	Node    string            `json:"node"`
	Pool    string            `json:"pool"`
	Reasons []decision.Reason `json:"reasons"`
}

// Forecast predicts the rollout of the candidates' reboots. all is every node of the
// cluster (for the pools' sizes, the recorded durations, the disruption budgets and
// the reboots in progress, which are added to the candidates); the candidates are
// among them. It does no I/O: the time is o.At.
//
// A candidate that is mid-reboot (a pipeline phase on the Node) holds its slot from
// its recorded start. Any other is classified by its pool's first instant the windows
// and blackouts allow within the horizon: the decision engine is evaluated there, so
// every reason left is not about time (a hold, the node image, blocking pods or
// alerts, a false CEL condition, no pool); such a node never reboots under this
// config. The back-offs recorded on the node (decision.Backoff: reboot loop, failures)
// end by themselves: the node starts no earlier than their end. A pool whose schedule allows nothing within the horizon leaves its nodes
// beyond the horizon; a paused pool (concurrency 0) and a node whose slot key cannot
// be computed never reboot. Conditions that read `now` are judged at that one
// instant only.
func Forecast(ctx context.Context, eng *decision.Engine, all []*corev1.Node, cands []Candidate, o Options) *Result {
	if o.Horizon <= 0 {
		o.Horizon = DefaultHorizon
	}
	limit := o.At.Add(o.Horizon)
	res := &Result{At: o.At.UTC(), Horizon: o.Horizon.String(), HorizonEnd: limit.UTC(), Pools: []PoolForecast{}, Nodes: []NodeForecast{}, Never: []NeverNode{}}

	// Pools: sizes, slots and first allowed instants.
	cfg := eng.Config()
	poolIdx := map[string]int{}
	specs := make([]PoolSpec, len(cfg.Pools))
	first := make([]time.Time, len(cfg.Pools))
	for i := range cfg.Pools {
		poolIdx[cfg.Pools[i].Name] = i
	}
	// Each node's pool, once: pool selectors are CEL, and there may be thousands.
	owners := make([]owner, len(all))
	parallel(len(all), func(i int) {
		owners[i].pool, owners[i].err = eng.PoolOf(all[i], o.At)
	})
	ownerOf := make(map[*corev1.Node]*owner, len(all))
	sizes := make([]int, len(cfg.Pools))
	recorded := []time.Duration{}
	for i, n := range all {
		ownerOf[n] = &owners[i]
		if owners[i].err == nil {
			sizes[poolIdx[owners[i].pool.Name]]++
		}
		if d := nodestate.StateOf(n).LastDuration; d > 0 {
			recorded = append(recorded, d)
		}
	}
	poolOf := func(n *corev1.Node) (*config.ResolvedPool, error) {
		if ow := ownerOf[n]; ow != nil {
			return ow.pool, ow.err
		}
		return eng.PoolOf(n, o.At)
	}
	sum := othersOnly(disruption.Summarize(all, o.Maintenance, func(n *corev1.Node) (string, []string, bool) {
		p, err := poolOf(n)
		if err != nil {
			return "", nil, false
		}
		return p.Name, p.DisruptionTaints, true
	}, o.At, "rebootgate plan"))
	// The node index of these nodes, which scopes alerts by their node labels as the
	// summarizer's would; without it (too large to shard) alerts needing it block.
	index, _, ref, err := disruption.BuildIndex(all, 0)
	if err != nil {
		sum.NodeIndexError = err.Error()
	} else {
		sum.NodeIndex = ref
	}
	sums := make([]*disruption.Summary, len(cfg.Pools))
	for i := range cfg.Pools {
		rp := &cfg.Pools[i]
		pc := sum.Pool(rp.Name)
		specs[i] = PoolSpec{Name: rp.Name, Windows: rp.Windows, Blackouts: rp.Blackouts, Slots: budgetSlots(cfg, rp, sizes[i], pc, sum.Cluster), SlotsPerKey: slotsPerKey(rp)}
		pf := PoolForecast{Name: rp.Name, Size: sizes[i], Concurrency: rp.Slots(sizes[i]), UnavailableOthers: pc.UnavailableOthers,
			Slots: specs[i].Slots, SlotKey: rp.SlotKey, SlotsPerKey: specs[i].SlotsPerKey}
		if t, ok := schedule.NextAllowed(o.At, rp.Windows, rp.Blackouts, o.Horizon); ok {
			first[i] = t
			pf.FirstAllowed = ptr(t)
			// Judged at the first allowed instant, the summary must be as fresh then. Every
			// pool gets it: besides budgets and breakers, its node index scopes alerts.
			sums[i] = ptrTo(*sum)
			sums[i].ObservedAt = t
		}
		res.Pools = append(res.Pools, pf)
	}
	median := medianOf(recorded)
	res.Duration = DurationSummary{GivenSeconds: max(o.Duration, 0).Seconds(), MedianSeconds: median.Seconds(), Recorded: len(recorded)}

	// Reboots in progress hold their slots, whether or not they were asked about.
	asked := make(map[string]bool, len(cands))
	for _, c := range cands {
		asked[c.Facts.Node.Name] = true
	}
	for _, n := range all {
		if !asked[n.Name] && nodestate.StateOf(n).Phase != nodestate.PhaseIdle {
			cands = append(cands, Candidate{Facts: &facts.Facts{Node: n}})
		}
	}

	// Classify.
	type entry struct {
		cand  *Candidate
		pool  int
		key   string
		st    nodestate.State
		never []decision.Reason
		// notBefore is the end of the node's back-offs (decision.Backoff).
		notBefore time.Time
		dur       time.Duration
		source    string
	}
	entries := make([]entry, len(cands))
	parallel(len(cands), func(i int) {
		e := &entries[i]
		e.cand = &cands[i]
		e.pool = -1
		n := e.cand.Facts.Node
		e.st = nodestate.StateOf(n)
		p, err := poolOf(n)
		if err != nil {
			e.never = []decision.Reason{{Source: decision.SourcePool, Message: err.Error()}}
			return
		}
		e.pool = poolIdx[p.Name]
		if e.st.Phase != nodestate.PhaseIdle {
			return // mid-reboot: it holds its slot whatever the gate says now
		}
		if res.Pools[e.pool].Concurrency == 0 {
			e.never = []decision.Reason{{Source: decision.SourcePool, Message: fmt.Sprintf("pool %s is paused (concurrency %s)", p.Name, p.Concurrency.String())}}
			return
		}
		// A back-off ends by itself: the simulation waits for it (NotBefore), and its
		// reasons are no reason never to reboot.
		e.notBefore, _ = decision.Backoff(n, o.At)
		if first[e.pool].IsZero() {
			// Beyond the horizon: nothing to judge it at but its slot key.
			var err error
			if e.key, err = eng.SlotKeyOf(n, o.At); err != nil {
				e.never = []decision.Reason{{Source: decision.SourceSlotKey, Message: err.Error()}}
			}
			return
		}
		f := *e.cand.Facts
		f.Summary, f.SummarySeenAt, f.SummaryErr = sums[e.pool], first[e.pool], nil
		f.NodeIndex, f.NodeIndexErr = index, nil
		// The decision computes the slot key too, and denies when it cannot.
		d := eng.Decide(ctx, &f, first[e.pool])
		e.key = d.SlotKey
		if reasons := slices.DeleteFunc(slices.Clone(d.Reasons), decision.IsBackoff); len(reasons) > 0 {
			e.never = reasons
		} else if specs[e.pool].Slots == 0 {
			e.never = []decision.Reason{{Source: decision.SourceBudget, Message: fmt.Sprintf(
				"pool %s has no slot left: %d of its nodes are unavailable for other reasons", p.Name, res.Pools[e.pool].UnavailableOthers)}}
		}
	})

	sources := map[string]bool{}
	for i := range entries {
		e := &entries[i]
		switch {
		case o.Duration > 0:
			e.dur, e.source = o.Duration, DurationGiven
		case e.st.LastDuration > 0:
			e.dur, e.source = e.st.LastDuration, DurationRecorded
		case median > 0:
			e.dur, e.source = median, DurationMedian
		default:
			e.dur, e.source = DefaultDuration, DurationDefault
		}
		if e.never == nil {
			sources[e.source] = true
		}
	}
	res.Duration.Source = DurationDefault
	switch {
	case o.Duration > 0:
		res.Duration.Source = DurationGiven
	case len(sources) == 1:
		for src := range sources {
			res.Duration.Source = src
		}
	case len(sources) > 1:
		res.Duration.Source = "mixed"
	}

	// The queue: in order of need, then name.
	order := make([]int, 0, len(entries))
	for i := range entries {
		e := &entries[i]
		if e.never != nil {
			pool := ""
			if e.pool >= 0 {
				pool = specs[e.pool].Name
				res.Pools[e.pool].Never++
			}
			res.Never = append(res.Never, NeverNode{Node: e.cand.Facts.Node.Name, Pool: pool, Reasons: e.never})
			continue
		}
		res.Pools[e.pool].Reboots++
		order = append(order, i)
	}
	slices.SortFunc(res.Never, func(a, b NeverNode) int { return cmp.Compare(a.Node, b.Node) })
	slices.SortFunc(order, func(a, b int) int {
		ca, cb := entries[a].cand, entries[b].cand
		if za, zb := ca.NeededSince.IsZero(), cb.NeededSince.IsZero(); za != zb {
			if za {
				return 1
			}
			return -1
		}
		if c := ca.NeededSince.Compare(cb.NeededSince); c != 0 {
			return c
		}
		return cmp.Compare(ca.Facts.Node.Name, cb.Facts.Node.Name)
	})
	jobs := make([]Job, len(order))
	for j, i := range order {
		e := &entries[i]
		jobs[j] = Job{Node: e.cand.Facts.Node.Name, Pool: e.pool, Key: e.key, Duration: e.dur, NotBefore: e.notBefore}
		if e.st.Phase != nodestate.PhaseIdle {
			jobs[j].Running = true
			jobs[j].Started = cmp.Or(e.st.StartedAt, e.st.Since, o.At)
		}
	}
	outs := Simulate(specs, jobs, o.At, o.Horizon)

	complete := len(jobs) > 0
	var end time.Time
	beyond := make([]bool, len(specs))
	for j := range jobs {
		e := &entries[order[j]]
		nf := NodeForecast{Node: jobs[j].Node, Pool: specs[e.pool].Name, SlotKey: e.key, Status: StatusBeyond,
			DurationSeconds: e.dur.Seconds(), DurationSource: e.source}
		if !e.cand.NeededSince.IsZero() {
			nf.NeededSince = ptr(e.cand.NeededSince)
		}
		if out := outs[j]; out.Scheduled {
			nf.Status = StatusScheduled
			if jobs[j].Running {
				nf.Status = StatusInProgress
			}
			nf.Start, nf.End = ptr(out.Start), ptr(out.End)
			if pc := res.Pools[e.pool].Completion; pc == nil || out.End.After(*pc) {
				res.Pools[e.pool].Completion = ptr(out.End)
			}
			if out.End.After(end) {
				end = out.End
			}
		} else {
			beyond[e.pool] = true
			complete = false
		}
		res.Nodes = append(res.Nodes, nf)
	}
	for i := range res.Pools {
		if beyond[i] {
			res.Pools[i].Completion = nil
		}
	}
	if complete {
		res.Completion = ptr(end)
	}
	slices.SortStableFunc(res.Nodes, func(a, b NodeForecast) int {
		if (a.Start == nil) != (b.Start == nil) {
			if a.Start == nil {
				return 1
			}
			return -1
		}
		if a.Start == nil {
			return 0
		}
		return a.Start.Compare(*b.Start)
	})
	return res
}

// owner is a node's pool, or why no pool owns it.
type owner struct {
	pool *config.ResolvedPool
	err  error
}

// parallel runs f(0) … f(n-1) on every core: deciding for thousands of nodes is the
// forecast's largest cost, and the engine is safe for concurrent use.
func parallel(n int, f func(int)) {
	work := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				f(i)
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
}

// othersOnly removes rebootgate's own reboots from a summary's unavailable counts: the
// forecast accounts for them as reboots in progress, which end; what others made
// unavailable is assumed to stay so for the whole forecast.
func othersOnly(s *disruption.Summary) *disruption.Summary {
	fix := func(c disruption.Counts) disruption.Counts {
		c.Unavailable -= c.Rebooting
		c.Rebooting = 0
		c.Examples = slices.DeleteFunc(c.Examples, func(e disruption.Example) bool { return e.Rebootgate })
		return c
	}
	for name, c := range s.Pools {
		s.Pools[name] = fix(c)
	}
	s.NoPool, s.Cluster = fix(s.NoPool), fix(s.Cluster)
	return s
}

// budgetSlots is how many of the pool's nodes rebootgate may reboot at once: its
// concurrency, less the nodes unavailable for other reasons when its budget counts
// them, and no more than its breaker and the cluster's leave before they open (each
// reboot makes one more node unavailable). The cluster's breaker is applied to each
// pool alone, which overestimates how many reboot at once when pools' windows overlap.
func budgetSlots(cfg *config.Resolved, p *config.ResolvedPool, size int, pc, cluster disruption.Counts) int {
	// Rebootgate's own reboots are taken out of the counts (see above), so every
	// unavailable node is someone else's.
	slots := decision.SlotsWithin(p, p.Slots(size), pc.Nodes, pc.UnavailableOthers)
	if cfg.Breaker != nil {
		slots = min(slots, config.MaxUnavailable(cfg.Breaker, cluster.Nodes)-cluster.Unavailable)
	}
	return max(slots, 0)
}

// slotsPerKey is how many nodes of one slot-key value may reboot at once (0: no
// limit): the pool's slotsPerKey, with a slot key.
func slotsPerKey(p *config.ResolvedPool) int {
	if p.SlotKey == "" {
		return 0
	}
	return p.SlotsPerKey
}

func medianOf(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ptrTo[T any](v T) *T { return &v }

// ptr is t in UTC, by pointer: the result's times are all in UTC.
func ptr(t time.Time) *time.Time {
	t = t.UTC()
	return &t
}
