package schedule

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

const (
	// MaxCronDuration is the longest window a cron hit may open.
	MaxCronDuration = 31 * 24 * time.Hour

	// cronSearch is how far ahead Cron.NextOpening looks.
	cronSearch = 400 * 24 * time.Hour

	// maxSteps bounds every search loop; exceeding it fails closed.
	maxSteps = 100000

	// validationYears is how long ParseCron searches for a first window.
	validationYears = 30
)

// Supported instants: outside this range Cron fails closed instead of
// asking the cron library to search near the limits of time.Time.
var (
	minCronTime = time.Date(1, time.January, 1, 0, 0, 0, 0, time.UTC)
	maxCronTime = time.Date(9999, time.January, 1, 0, 0, 0, 0, time.UTC)

	// validationStart anchors ParseCron's check that a spec ever fires.
	validationStart = time.Date(2024, time.January, 1, 0, 0, 0, 0, time.UTC)
)

// Cron is a recurring window in the style of Karpenter disruption budgets:
// each hit of a standard cron spec opens a window of length Duration,
// [hit, hit+Duration). Hits are computed in Location.
//
// Days, when not empty, restricts which hits open a window: a hit counts
// only if its weekday (in Location) is in Days. Standard cron ORs its
// day-of-month and day-of-week fields, so this is how an AND is expressed;
// "Patch Tuesday" (the second Tuesday of the month, 02:00–06:00) is spec
// "0 2 8-14 * *" with Days = Tuesday and Duration = 4h.
//
// Build a Cron with ParseCron; the zero value is never active. Spec and
// Location are informational: the parsed schedule and its zone are fixed by
// ParseCron. Duration and Days may be changed afterwards.
type Cron struct {
	Spec     string
	Duration time.Duration
	Days     Weekdays
	Location *time.Location

	sched *cron.SpecSchedule
}

// ParseCron parses a standard five-field cron spec (minute hour
// day-of-month month day-of-week) or one of the descriptors @yearly,
// @annually, @monthly, @weekly, @daily, @midnight and @hourly. @every is
// rejected because it has no fixed start, and so is a TZ= or CRON_TZ=
// prefix: the zone is loc (nil means UTC). d must be positive and at most
// 31 days. days, when not 0, limits which hits open a window (see Cron).
// A spec that never opens a window within 30 years is rejected.
func ParseCron(spec string, d time.Duration, days Weekdays, loc *time.Location) (Cron, error) {
	if loc == nil {
		loc = time.UTC
	}
	trimmed := strings.TrimSpace(spec)
	switch {
	case trimmed == "":
		return Cron{}, fmt.Errorf("cron schedule is empty")
	case strings.HasPrefix(trimmed, "TZ=") || strings.HasPrefix(trimmed, "CRON_TZ="):
		return Cron{}, fmt.Errorf("cron schedule %q sets its own time zone; remove the prefix and use timeZone instead", spec)
	case strings.HasPrefix(trimmed, "@every"):
		return Cron{}, fmt.Errorf("cron schedule %q has no fixed start; use a five-field spec or @hourly, @daily, @weekly, @monthly, @yearly", spec)
	}
	if d <= 0 || d > MaxCronDuration {
		return Cron{}, fmt.Errorf("cron window duration %s must be more than 0 and at most %s", d, MaxCronDuration)
	}
	parsed, err := parseStandard(trimmed)
	if err != nil {
		return Cron{}, fmt.Errorf("cron schedule %q: %w", spec, err)
	}
	ss, ok := parsed.(*cron.SpecSchedule)
	if !ok {
		return Cron{}, fmt.Errorf("cron schedule %q has no fixed start; use a five-field spec or a descriptor such as @daily", spec)
	}
	ss.Location = loc
	c := Cron{Spec: spec, Duration: d, Days: days & AllDays, Location: loc, sched: ss}
	if _, ok := c.firstHit(validationStart, validationStart.AddDate(validationYears, 0, 0)); !ok {
		if days&AllDays != 0 && days&AllDays != AllDays {
			return Cron{}, fmt.Errorf("cron schedule %q never fires on %s: days only filters the schedule's hits (for a second Tuesday put the days of month in the schedule, 0 2 8-14 * *, and the weekday in days)", spec, days)
		}
		return Cron{}, fmt.Errorf("cron schedule %q never fires", spec)
	}
	return c, nil
}

// parseStandard wraps cron.ParseStandard so that a panic in the library
// becomes an error.
func parseStandard(spec string) (s cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("cannot parse: %v", r)
		}
	}()
	return cron.ParseStandard(spec)
}

func inCronRange(t time.Time) bool {
	return !t.Before(minCronTime) && t.Before(maxCronTime)
}

// counts reports whether a hit at h opens a window.
func (c Cron) counts(h time.Time) bool {
	return c.Days&AllDays == 0 || c.Days.Contains(h.In(c.sched.Location).Weekday())
}

// next returns the first hit strictly after t, or false if none exists in
// the library's five-year horizon.
//
// The library rounds to minutes in absolute time (Truncate), which is wrong
// while the zone's offset is not a whole number of minutes (local mean time,
// which some zones used until 1972); such instants fail closed.
func (c Cron) next(t time.Time) (time.Time, bool) {
	// Converting first makes a time.Local schedule use Local rather than
	// t's zone (the library treats Location == time.Local as "t's zone").
	lt := t.In(c.sched.Location)
	if !wholeMinuteOffset(lt) {
		return time.Time{}, false
	}
	h := c.sched.Next(lt)
	if h.IsZero() || !h.After(t) || !wholeMinuteOffset(h) {
		return time.Time{}, false
	}
	return h, true
}

func wholeMinuteOffset(t time.Time) bool {
	_, off := t.Zone()
	return off%60 == 0
}

// skipDay returns the last instant before the local day (or zone period)
// that follows h, so that next() continues on the next weekday.
func (c Cron) skipDay(h time.Time) time.Time {
	loc := c.sched.Location
	lh := h.In(loc)
	y, m, d := lh.Date()
	midnight := time.Date(y, m, d+1, 0, 0, 0, 0, loc)
	if _, zoneEnd := lh.ZoneBounds(); !zoneEnd.IsZero() && zoneEnd.After(h) && zoneEnd.Before(midnight) {
		midnight = zoneEnd
	}
	if !midnight.After(h) {
		return h
	}
	return midnight.Add(-time.Nanosecond)
}

// firstHit returns the first counting hit h with after < h <= until.
func (c Cron) firstHit(after, until time.Time) (time.Time, bool) {
	if c.sched == nil || c.sched.Location == nil {
		return time.Time{}, false
	}
	cur := after
	for i := 0; i < maxSteps; i++ {
		if !inCronRange(cur) {
			return time.Time{}, false
		}
		h, ok := c.next(cur)
		if !ok || h.After(until) {
			return time.Time{}, false
		}
		if c.counts(h) {
			return h, true
		}
		cur = c.skipDay(h)
	}
	return time.Time{}, false // too many steps: fail closed
}

// Active reports whether t is inside a window, and if so the hit that
// opened it (the earliest one when windows overlap). Like Karpenter, it
// looks for a counting hit after t-Duration that is not after t. It fails
// closed (false) for a Cron not built by ParseCron, for t outside the years
// 1–9998 and while the zone's offset is not a whole number of minutes.
func (c Cron) Active(t time.Time) (openedAt time.Time, ok bool) {
	if c.Duration <= 0 || !inCronRange(t) {
		return time.Time{}, false
	}
	h, ok := c.firstHit(t.Add(-c.Duration), t)
	if !ok {
		return time.Time{}, false
	}
	return h.In(t.Location()), true
}

// Contains reports whether t is inside a window.
func (c Cron) Contains(t time.Time) bool {
	_, ok := c.Active(t)
	return ok
}

// NextOpening returns the earliest instant at or after t inside a window:
// t itself when already inside, else the next counting hit within 400 days.
func (c Cron) NextOpening(t time.Time) (time.Time, bool) {
	if c.Contains(t) {
		return t, true
	}
	if c.Duration <= 0 || !inCronRange(t) {
		return time.Time{}, false
	}
	h, ok := c.firstHit(t, t.Add(cronSearch))
	if !ok {
		return time.Time{}, false
	}
	return h.In(t.Location()), true
}

// String describes the window, e.g. `"0 2 8-14 * *" for 4h0m0s on Tuesday in UTC`.
func (c Cron) String() string {
	days := ""
	if c.Days&AllDays != 0 {
		days = " on " + c.Days.String()
	}
	loc := c.Location
	if loc == nil {
		loc = time.UTC
	}
	return fmt.Sprintf("%q for %s%s in %s", c.Spec, c.Duration, days, loc)
}
