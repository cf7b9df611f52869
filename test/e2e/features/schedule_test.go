package features

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// TestCronWindowOpensAhead: a Patch-Tuesday-style cron window (a day-of-month week
// range restricted to one weekday, as "0 2 8-14 * *" with days: tue is the second
// Tuesday), built from the clock so that it opens at the next whole minute at least
// 15 s ahead: before it opens the agent reports the reboot blocked with the opening as
// its next allowed time, and the host goes down only after it.
func TestCronWindowOpensAhead(t *testing.T) {
	e := newEnv(t)
	open := time.Now().UTC().Add(15 * time.Second).Truncate(time.Minute).Add(time.Minute)
	week := (open.Day()-1)/7*7 + 1 // first day of open's week of the month (1, 8, 15, 22, 29)
	cfg := e.config(fmt.Sprintf(`  windows:
  - schedule: "%d %d %d-%d * *"
    days: %s
    duration: 10m
    timeZone: UTC
`, open.Minute(), open.Hour(), week, min(week+6, 31), strings.ToLower(open.Weekday().String()[:3])), "")
	node := e.node(nil)
	sim := e.simulate([]string{node}, e.args(cfg))
	e.required(sim, node)
	d := e.waitDecision(node, time.Minute, "blocked until the cron window opens", func(d nodestate.Decision) bool { return !d.Allowed })
	next, err := time.Parse(time.RFC3339, d.NextAllowed)
	if err != nil || !next.Equal(open) {
		t.Fatalf("blocked decision %q, next allowed %q; want the window's opening %s", reasons(d.Reasons), d.NextAllowed, open.Format(time.RFC3339))
	}
	if time.Now().After(open) {
		t.Fatalf("the blocked decision came after the opening %s: the test's lead is too short", open.Format(time.RFC3339))
	}
	down := e.rebootedOnce(sim, node, open, open.Sub(time.Now())+time.Minute)
	t.Logf("blocked (%s); window opened %s, host down %.2fs later", reasons(d.Reasons), open.Format(time.RFC3339), down.From.Sub(open).Seconds())
}

// TestBlackoutCoversNow: a named blackout from a minute ago to 20 s ahead blocks the
// needed reboot, the decision says which blackout, and the host goes down only once
// it has ended.
func TestBlackoutCoversNow(t *testing.T) {
	e := newEnv(t)
	pool, end := freezeFor(20 * time.Second)
	cfg := e.config(pool, "")
	node := e.node(nil)
	sim := e.simulate([]string{node}, e.args(cfg))
	e.required(sim, node)
	d := e.waitDecision(node, time.Minute, "blocked by the blackout", func(d nodestate.Decision) bool { return !d.Allowed })
	if want := `blackout "freeze" until ` + end.Format(time.RFC3339); !strings.Contains(reasons(d.Reasons), want) || d.NextAllowed != end.Format(time.RFC3339) {
		t.Fatalf("blocked decision %q, next allowed %q; want %q and the blackout's end", reasons(d.Reasons), d.NextAllowed, want)
	}
	down := e.rebootedOnce(sim, node, end, time.Until(end)+time.Minute)
	t.Logf("blocked (%s); blackout ended %s, host down %.2fs later", reasons(d.Reasons), end.Format(time.RFC3339), down.From.Sub(end).Seconds())
}
