package chaos

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// pool is one node pool of the chaos rollout and its concurrency. A keyed pool
// has the newer features: slotKey (the node's zone) with slotsPerKey, a budget
// that counts others' disruptions (budget.countOthers) and a breaker
// (breaker.maxUnavailable), so that it needs the summarizer's node summary.
type pool struct {
	name        string
	limit       int
	slotsPerKey int // 0: no slot key
	breaker     int // breaker.maxUnavailable; 0: no breaker
}

// budget is how many of the pool's nodes may be unavailable at a claim, rebootgate's
// and others' together: the concurrency (countOthers), and no more than the breaker.
func (p pool) budget() int {
	if p.breaker > 0 {
		return min(p.limit, p.breaker)
	}
	return p.limit
}

// zoned is the pool with a slot key, a budget and a breaker.
const zoned = "zoned"

// pools are the rollout's pools, in the order the summary line lists them.
var pools = []pool{{name: "system", limit: 1}, {name: "user", limit: 2}, {name: zoned, limit: 3, slotsPerKey: 1, breaker: 2}}

func poolNamed(name string) pool {
	for _, p := range pools {
		if p.name == name {
			return p
		}
	}
	return pool{name: name}
}

// downInterval is when a host was down, from the simulator (never from
// rebootgate's annotations): from its reboot request (the hook's call) until
// its agent ran again on a Ready node. To is zero while it is still down. Key is
// the node's slot-key value (its zone) in a keyed pool.
type downInterval struct {
	Node, Pool string
	From, To   time.Time
	Key        string
}

// configWrite is one write of the agents' config file: Valid is false for the
// broken YAML, Concurrency is per pool otherwise.
type configWrite struct {
	At          time.Time
	Valid       bool
	Concurrency map[string]int
}

// i1Result is what the I1 check found.
type i1Result struct {
	MaxDown    map[string]int // most hosts of a pool down at one instant
	Violations []string
}

// checkI1 checks I1 over the whole run, at every instant rather than at
// samples: at no instant are more hosts of a pool down than its limit, and no
// host of a pool goes down while that pool is paused (concurrency 0 in the
// last valid config written, for longer than grace: the agents need a moment
// to see a file change). end closes intervals still open; t0 is the origin of
// the times in the messages.
func checkI1(downs []downInterval, writes []configWrite, end, t0 time.Time, grace time.Duration) i1Result {
	res := i1Result{MaxDown: map[string]int{}}
	rel := func(t time.Time) string { return fmt.Sprintf("+%.1fs", t.Sub(t0).Seconds()) }
	for _, p := range pools {
		type event struct {
			at    time.Time
			start bool
			node  string
		}
		var evs []event
		for _, d := range downs {
			if d.Pool != p.name {
				continue
			}
			to := d.To
			if to.IsZero() {
				to = end
			}
			evs = append(evs, event{d.From, true, d.Node}, event{to, false, d.Node})
		}
		// Ends before starts at the same instant: touching intervals do not overlap.
		slices.SortStableFunc(evs, func(a, b event) int {
			if c := a.at.Compare(b.at); c != 0 {
				return c
			}
			if a.start == b.start {
				return 0
			}
			if a.start {
				return 1
			}
			return -1
		})
		paused := pauses(writes, p.name)
		down := map[string]bool{}
		res.MaxDown[p.name] = 0
		for _, e := range evs {
			if !e.start {
				delete(down, e.node)
				continue
			}
			down[e.node] = true
			res.MaxDown[p.name] = max(res.MaxDown[p.name], len(down))
			if len(down) > p.limit {
				names := make([]string, 0, len(down))
				for n := range down {
					names = append(names, n)
				}
				slices.Sort(names)
				res.Violations = append(res.Violations, fmt.Sprintf("I1 at %s: %d hosts of pool %s down at once (limit %d): %s went down while %s",
					rel(e.at), len(down), p.name, p.limit, e.node, strings.Join(slices.DeleteFunc(names, func(n string) bool { return n == e.node }), ", ")))
			}
			for _, pz := range paused {
				if !pz[0].After(e.at.Add(-grace)) && e.at.Before(pz[1]) {
					res.Violations = append(res.Violations, fmt.Sprintf("I1 at %s: %s of pool %s went down while the pool was paused (concurrency 0 written at %s)",
						rel(e.at), e.node, p.name, rel(pz[0])))
				}
			}
		}
	}
	return res
}

// pauses returns the intervals [from, to) during which the last valid config
// written gave the pool concurrency 0 (to is far in the future if it still does).
func pauses(writes []configWrite, pool string) [][2]time.Time {
	var out [][2]time.Time
	var open *[2]time.Time
	for _, w := range writes {
		if !w.Valid {
			continue
		}
		zero := w.Concurrency[pool] == 0
		switch {
		case zero && open == nil:
			open = &[2]time.Time{w.At}
		case !zero && open != nil:
			open[1] = w.At
			out = append(out, *open)
			open = nil
		}
	}
	if open != nil {
		open[1] = time.Unix(1<<40, 0)
		out = append(out, *open)
	}
	return out
}

// keyResult is what the per-key check found.
type keyResult struct {
	MaxDown    int // most hosts of one key value of a keyed pool down at one instant
	Violations []string
}

// checkPerKey checks, at every instant of the simulator's record, that no more than
// slotsPerKey hosts of one key value (zone) of a keyed pool are down. The key is the
// zone the run gave the node, not what rebootgate computed.
func checkPerKey(downs []downInterval, end, t0 time.Time) keyResult {
	var res keyResult
	byKey := map[[2]string][]downInterval{}
	for _, d := range downs {
		if p := poolNamed(d.Pool); p.slotsPerKey > 0 {
			byKey[[2]string{d.Pool, d.Key}] = append(byKey[[2]string{d.Pool, d.Key}], d)
		}
	}
	keys := make([][2]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int { return strings.Compare(a[0]+"/"+a[1], b[0]+"/"+b[1]) })
	for _, k := range keys {
		limit := poolNamed(k[0]).slotsPerKey
		for _, o := range overlaps(byKey[k], end) {
			res.MaxDown = max(res.MaxDown, len(o.down))
			if len(o.down) > limit {
				res.Violations = append(res.Violations, fmt.Sprintf("slot key at +%.1fs: %d hosts of key %s in pool %s down at once (slotsPerKey %d): %s went down while %s",
					o.at.Sub(t0).Seconds(), len(o.down), k[1], k[0], limit, o.node, strings.Join(without(o.down, o.node), ", ")))
			}
		}
	}
	return res
}

// overlap is the moment a host went down and the hosts down with it (itself included).
type overlap struct {
	at   time.Time
	node string
	down []string
}

// overlaps sweeps intervals: for each start, the hosts down at that instant (an
// interval still open ends at end; touching intervals do not overlap).
func overlaps(ds []downInterval, end time.Time) []overlap {
	var out []overlap
	for _, d := range ds {
		o := overlap{at: d.From, node: d.Node}
		for _, e := range ds {
			to := e.To
			if to.IsZero() {
				to = end
			}
			if !e.From.After(d.From) && to.After(d.From) {
				o.down = append(o.down, e.Node)
			}
		}
		slices.Sort(o.down)
		out = append(out, o)
	}
	slices.SortStableFunc(out, func(a, b overlap) int { return a.at.Compare(b.at) })
	return out
}

func without(names []string, name string) []string {
	return slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == name })
}

// otherSpan is when a node was unavailable for a reason other than rebootgate, from
// the run's own record of what it did to the cluster (a taint it set and removed, a
// cordon as an admin): From is when the write had surely landed, To (zero: never
// undone) when its undo was sent at the earliest.
type otherSpan struct {
	Node, Pool, Why string
	From, To        time.Time
}

// budgetInput is what the budget check reads: the simulator's down intervals, the
// others' disruptions, for each node a time before which it surely had not claimed a
// slot (from the Leases as listed; a node absent claimed after start), and the
// windows in which the node summary may have been stale (the summarizer stopped or
// killed, the apiserver paused or restarted, each with its recovery).
type budgetInput struct {
	Downs      []downInterval
	Others     []otherSpan
	ClaimAfter map[string]time.Time
	Start      time.Time
	Stale      [][2]time.Time
	Lag        time.Duration // how old the others' state in a fresh summary can be at a claim
	End, T0    time.Time
}

// budgetResult is what the budget check found.
type budgetResult struct {
	Most             int // most nodes counted against a budget at one claim
	Checked, Skipped int // claims judged, and claims left out because the summary may have been stale
	Violations       []string
}

// checkBudget checks the keyed pools' budget: when a host goes down, the claim that
// let it (made at some instant c between the node's ClaimAfter and its going down)
// saw the hosts that had surely claimed before c and were still down, and the others'
// disruptions that lasted from Lag before c to c; together, with the host itself,
// they must not exceed the pool's budget (concurrency, and the breaker's
// maxUnavailable). Every bound errs toward counting fewer, so that a violation is
// certain; a claim whose window touches a stale summary is not judged.
func checkBudget(in budgetInput) budgetResult {
	var res budgetResult
	for _, p := range pools {
		if p.breaker == 0 && p.slotsPerKey == 0 {
			continue
		}
		var downs []downInterval
		for _, d := range in.Downs {
			if d.Pool == p.name {
				downs = append(downs, d)
			}
		}
		slices.SortStableFunc(downs, func(a, b downInterval) int { return a.From.Compare(b.From) })
		for _, z := range downs {
			after, ok := in.ClaimAfter[z.Node]
			if !ok || after.Before(in.Start) {
				after = in.Start
			}
			if after.After(z.From) {
				after = z.From
			}
			from := after.Add(-in.Lag)
			if stale := touches(in.Stale, from, z.From); stale {
				res.Skipped++
				continue
			}
			res.Checked++
			counted := map[string]string{z.Node: "going down"}
			for _, y := range downs {
				if y.Node != z.Node && y.From.Before(after) && (y.To.IsZero() || y.To.After(z.From)) {
					counted[y.Node] = "down"
				}
			}
			for _, o := range in.Others {
				if o.Pool == p.name && !o.From.After(from) && (o.To.IsZero() || !o.To.Before(z.From)) {
					if _, seen := counted[o.Node]; !seen {
						counted[o.Node] = o.Why
					}
				}
			}
			res.Most = max(res.Most, len(counted))
			if len(counted) > p.budget() {
				names := make([]string, 0, len(counted))
				for n, why := range counted {
					names = append(names, n+" ("+why+")")
				}
				slices.Sort(names)
				res.Violations = append(res.Violations, fmt.Sprintf("budget at +%.1fs: %s of pool %s went down, claimed after +%.1fs, with %d nodes unavailable (budget %d): %s",
					z.From.Sub(in.T0).Seconds(), z.Node, p.name, after.Sub(in.T0).Seconds(), len(counted), p.budget(), strings.Join(names, ", ")))
			}
		}
	}
	return res
}

// touches says whether [from, to] meets any of the windows.
func touches(windows [][2]time.Time, from, to time.Time) bool {
	for _, w := range windows {
		if !w[0].After(to) && !w[1].Before(from) {
			return true
		}
	}
	return false
}

// checkQuiet checks that no host of any pool went down while an alert that must block
// every node was firing: from Lag after Prometheus first reported it firing (the
// agents' final check reads the alerts right before the reboot request) until it was
// cleared.
func checkQuiet(downs []downInterval, firing [][2]time.Time, lag time.Duration, t0 time.Time) []string {
	var out []string
	for _, w := range firing {
		for _, d := range downs {
			if d.From.After(w[0].Add(lag)) && d.From.Before(w[1]) {
				out = append(out, fmt.Sprintf("alert at +%.1fs: %s of pool %s went down while an alert with a pod instance fired (firing from +%.1fs to +%.1fs); it must block every node",
					d.From.Sub(t0).Seconds(), d.Node, d.Pool, w[0].Sub(t0).Seconds(), w[1].Sub(t0).Seconds()))
			}
		}
	}
	return out
}
