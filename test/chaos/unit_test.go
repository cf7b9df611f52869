package chaos

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// These run without the test bed: the schedule is a function of the seed, and the
// oracle flags what it exists to flag.

func TestScheduleIsSeeded(t *testing.T) {
	a := newSchedule(7, 90*time.Second, allKinds)
	b := newSchedule(7, 90*time.Second, allKinds)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different schedules:\n%v\n%v", a, b)
	}
	if c := newSchedule(8, 90*time.Second, allKinds); reflect.DeepEqual(a, c) {
		t.Fatalf("seeds 7 and 8 gave the same schedule %v", a)
	}
	for _, k := range allKinds {
		if !slices.ContainsFunc(a, func(f fault) bool { return f.Kind == k }) {
			t.Errorf("schedule lacks %s: %v", k, a)
		}
	}
	for i, f := range a {
		if f.At < 3*time.Second || f.At > 90*time.Second || (i > 0 && f.At < a[i-1].At) {
			t.Errorf("fault %d (%v) out of the window or out of order", i, f)
		}
		if f.Kind == pauseAPIServer && (f.For < 10*time.Second || f.For > 90*time.Second) {
			t.Errorf("apiserver pause %v not within 10-90s", f.For)
		}
	}
	for _, seed := range []uint64{1, 2, 3, 7, 42} {
		if !slices.ContainsFunc(newSchedule(seed, 10*time.Minute, allKinds), func(f fault) bool { return f.Kind == pauseAPIServer && f.For > lockTTL }) {
			t.Errorf("seed %d: no apiserver pause outlasts the lock TTL %s", seed, lockTTL)
		}
	}
	if !slices.ContainsFunc(a, func(f fault) bool { return f.Kind == pauseAPIServer && f.For > lockTTL }) {
		t.Errorf("no apiserver pause outlasts the lock TTL %s: %v", lockTTL, a)
	}
	if long := newSchedule(7, 10*time.Minute, allKinds); len(long) <= len(a) {
		t.Errorf("a 10m window has %d faults, a 90s one %d: longer soaks must get more", len(long), len(a))
	}
	if s := newSchedule(7, 90*time.Second, nil); len(s) != 0 {
		t.Errorf("no kinds, yet faults %v", s)
	}
}

func TestParseKinds(t *testing.T) {
	if k, err := parseKinds("none"); err != nil || len(k) != 0 {
		t.Errorf("none: %v %v", k, err)
	}
	if k, err := parseKinds(""); err != nil || !reflect.DeepEqual(k, allKinds) {
		t.Errorf("empty: %v %v", k, err)
	}
	if k, err := parseKinds("kill-agent, delete-lease"); err != nil || !reflect.DeepEqual(k, []faultKind{killAgent, deleteLease}) {
		t.Errorf("list: %v %v", k, err)
	}
	if _, err := parseKinds("kill-everything"); err == nil {
		t.Error("an unknown kind was accepted")
	}
}

func TestCheckI1(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	end := at(100)
	valid := func(s float64, system, user int) configWrite {
		return configWrite{At: at(s), Valid: true, Concurrency: map[string]int{"system": system, "user": user, zoned: 3}}
	}
	base := []configWrite{valid(0, 1, 2)}
	cases := []struct {
		name    string
		downs   []downInterval
		writes  []configWrite
		max     map[string]int
		flagged []string // substrings, one per expected violation
	}{
		{
			name: "sequential and within limits",
			downs: []downInterval{
				{"s0", "system", at(1), at(5), ""}, {"s1", "system", at(5), at(9), ""},
				{"u0", "user", at(1), at(8), ""}, {"u1", "user", at(2), at(6), ""}, {"u2", "user", at(7), at(9), ""},
			},
			writes: base,
			max:    map[string]int{"system": 1, "user": 2, zoned: 0},
		},
		{
			name:    "two system hosts overlap by a moment",
			downs:   []downInterval{{"s0", "system", at(1), at(5), ""}, {"s1", "system", at(4.9), at(9), ""}},
			writes:  base,
			max:     map[string]int{"system": 2, "user": 0, zoned: 0},
			flagged: []string{"2 hosts of pool system down at once (limit 1): s1 went down while s0"},
		},
		{
			name:    "a host still down at the end overlaps a later one",
			downs:   []downInterval{{"u0", "user", at(1), time.Time{}, ""}, {"u1", "user", at(2), at(3), ""}, {"u2", "user", at(50), at(60), ""}},
			writes:  base,
			max:     map[string]int{"system": 0, "user": 2, zoned: 0},
			flagged: nil,
		},
		{
			name:    "three user hosts",
			downs:   []downInterval{{"u0", "user", at(1), time.Time{}, ""}, {"u1", "user", at(2), at(3), ""}, {"u2", "user", at(2.5), at(60), ""}},
			writes:  base,
			max:     map[string]int{"system": 0, "user": 3, zoned: 0},
			flagged: []string{"3 hosts of pool user down at once (limit 2)"},
		},
		{
			name:    "a reboot starts while the pool is paused",
			downs:   []downInterval{{"s0", "system", at(20), at(25), ""}, {"u0", "user", at(20), at(25), ""}},
			writes:  append(slices.Clone(base), valid(10, 0, 2), valid(30, 1, 2)),
			max:     map[string]int{"system": 1, "user": 1, zoned: 0},
			flagged: []string{"s0 of pool system went down while the pool was paused (concurrency 0 written at +10.0s)"},
		},
		{
			name:   "a pause the agents could not have seen yet, and a host already down",
			downs:  []downInterval{{"s0", "system", at(10.5), at(25), ""}, {"u0", "user", at(5), at(25), ""}},
			writes: append(slices.Clone(base), valid(10, 0, 0), valid(30, 1, 2)),
			max:    map[string]int{"system": 1, "user": 1, zoned: 0},
		},
		{
			name:    "a broken config does not lift a pause",
			downs:   []downInterval{{"s0", "system", at(20), at(25), ""}},
			writes:  append(slices.Clone(base), valid(10, 0, 2), configWrite{At: at(15)}, valid(18, 0, 2), valid(30, 1, 2)),
			max:     map[string]int{"system": 1, "user": 0, zoned: 0},
			flagged: []string{"s0 of pool system went down while the pool was paused"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := checkI1(c.downs, c.writes, end, t0, 2*time.Second)
			if !reflect.DeepEqual(got.MaxDown, c.max) {
				t.Errorf("max down %v, want %v", got.MaxDown, c.max)
			}
			if len(got.Violations) != len(c.flagged) {
				t.Fatalf("violations %q, want %d matching %q", got.Violations, len(c.flagged), c.flagged)
			}
			for i, want := range c.flagged {
				if !strings.Contains(got.Violations[i], want) {
					t.Errorf("violation %q does not say %q", got.Violations[i], want)
				}
			}
		})
	}
}

func TestCheckPerKey(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	ok := []downInterval{
		{"z0", zoned, at(1), at(5), "a"}, {"z1", zoned, at(2), at(6), "b"}, {"z2", zoned, at(5), at(9), "a"},
		{"u0", "user", at(1), at(9), ""}, {"u1", "user", at(1), at(9), ""}, // no slot key: not judged here
	}
	if got := checkPerKey(ok, at(100), t0); got.MaxDown != 1 || len(got.Violations) != 0 {
		t.Errorf("one per zone at a time: %+v", got)
	}
	bad := append(slices.Clone(ok[:2]), downInterval{"z2", zoned, at(4.9), time.Time{}, "a"})
	got := checkPerKey(bad, at(100), t0)
	if got.MaxDown != 2 || len(got.Violations) != 1 || !strings.Contains(got.Violations[0], "2 hosts of key a in pool zoned down at once (slotsPerKey 1): z2 went down while z0") {
		t.Errorf("two of zone a overlapping: %+v", got)
	}
}

func TestCheckBudget(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	taint := func(node string, from, to float64) otherSpan {
		s := otherSpan{Node: node, Pool: zoned, Why: "taint", From: at(from)}
		if to > 0 {
			s.To = at(to)
		}
		return s
	}
	two := []downInterval{{"z0", zoned, at(10), at(20), "a"}, {"z1", zoned, at(15), at(25), "b"}}
	cases := []struct {
		name          string
		downs         []downInterval
		others        []otherSpan
		after         map[string]float64
		stale         [][2]time.Time
		most, checked int
		skipped       int
		flagged       string
	}{
		{name: "two of rebootgate's within the budget", downs: two, after: map[string]float64{"z0": 9.5, "z1": 14}, most: 2, checked: 2},
		{name: "a taint in force since before the claim uses the budget up", downs: two, others: []otherSpan{taint("z5", 0, 100)},
			after: map[string]float64{"z0": 9.5, "z1": 14}, most: 3, checked: 2,
			flagged: "z1 of pool zoned went down, claimed after +14.0s, with 3 nodes unavailable (budget 2): z0 (down), z1 (going down), z5 (taint)"},
		{name: "a taint set after the claim (within the summary's lag) is not counted", downs: two, others: []otherSpan{taint("z5", 5, 100)},
			after: map[string]float64{"z0": 9.5, "z1": 14}, most: 2, checked: 2},
		{name: "a taint removed before the host went down is not counted", downs: two, others: []otherSpan{taint("z5", 0, 14.9)},
			after: map[string]float64{"z0": 9.5, "z1": 14}, most: 2, checked: 2},
		{name: "claims while the summary may have been stale are not judged", downs: two, others: []otherSpan{taint("z5", 0, 100)},
			after: map[string]float64{"z0": 9.5, "z1": 14}, stale: [][2]time.Time{{at(-5), at(4.5)}}, skipped: 2},
		{name: "a host that may have claimed after this one is not counted", downs: two, others: []otherSpan{taint("z5", -20, 100)},
			after: map[string]float64{"z0": 9.5, "z1": 9}, most: 2, checked: 2},
		{name: "a node cordoned by an admin that reboots counts once",
			downs: append(slices.Clone(two[:1]), downInterval{"z1", zoned, at(12), at(22), "b"}), others: []otherSpan{{Node: "z0", Pool: zoned, Why: "cordoned", From: at(-20)}},
			after: map[string]float64{"z0": 9, "z1": 11}, most: 2, checked: 2},
		{name: "pools without a budget are not judged", downs: []downInterval{{"u0", "user", at(10), at(20), ""}, {"u1", "user", at(11), at(20), ""}, {"u2", "user", at(12), at(20), ""}},
			after: map[string]float64{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			after := map[string]time.Time{}
			for n, s := range c.after {
				after[n] = at(s)
			}
			got := checkBudget(budgetInput{Downs: c.downs, Others: c.others, ClaimAfter: after, Start: at(-30), Stale: c.stale, Lag: 10 * time.Second, End: at(100), T0: t0})
			if got.Most != c.most || got.Checked != c.checked || got.Skipped != c.skipped {
				t.Errorf("most %d, checked %d, skipped %d; want %d, %d, %d", got.Most, got.Checked, got.Skipped, c.most, c.checked, c.skipped)
			}
			switch {
			case c.flagged == "" && len(got.Violations) > 0:
				t.Errorf("violations %q, want none", got.Violations)
			case c.flagged != "" && (len(got.Violations) != 1 || !strings.Contains(got.Violations[0], c.flagged)):
				t.Errorf("violations %q, want one saying %q", got.Violations, c.flagged)
			}
		})
	}
}

func TestCheckQuiet(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	downs := []downInterval{{"s0", "system", at(12), at(14), ""}, {"u0", "user", at(16), at(18), ""}, {"z0", zoned, at(31), at(35), "a"}}
	got := checkQuiet(downs, [][2]time.Time{{at(10), at(30)}}, 5*time.Second, t0)
	if len(got) != 1 || !strings.Contains(got[0], "u0 of pool user went down while an alert with a pod instance fired") {
		t.Errorf("violations %q, want u0's only (s0 within the lag, z0 after the clearing)", got)
	}
}

func TestStaleWindows(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	read := func(sent float64, rv string) summaryRead {
		return summaryRead{sent: at(sent), recv: at(sent + 0.1), rv: rv}
	}
	reads := []summaryRead{read(1, "5"), read(12, "5"), read(16, "6"), read(16.5, "6"), read(20, "6"), read(21, "7"), read(40, "8")}
	got := staleWindows([][2]time.Time{{at(2), at(10)}, {at(30), at(38)}, {at(45), at(50)}}, reads, 5*time.Second, at(100))
	want := [][2]time.Time{
		{at(2), at(21.1)}, // the read at 16 (after 10+5) sees 6; the write of 7 is the first surely after
		{at(30), at(100)}, // no read after 43 sees a second version
		{at(45), at(100)}, // no read at all after 55
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stale windows %v, want %v", got, want)
	}
}
