package chaos

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// pool is one node pool of the chaos rollout and its concurrency.
type pool struct {
	name  string
	limit int
}

// pools are the rollout's pools, in the order the summary line lists them.
var pools = []pool{{"system", 1}, {"user", 2}}

// downInterval is when a host was down, from the simulator (never from
// rebootgate's annotations): from its reboot request (the hook's call) until
// its agent ran again on a Ready node. To is zero while it is still down.
type downInterval struct {
	Node, Pool string
	From, To   time.Time
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
