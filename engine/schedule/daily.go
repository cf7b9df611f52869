package schedule

import (
	"fmt"
	"sort"
	"time"
)

// dailySearch is how far ahead Daily.NextOpening looks. Every allowed
// weekday recurs within a week, so eight days always reach an opening when
// there is one.
const dailySearch = 8 * 24 * time.Hour

// Daily is kured's maintenance window: on the given weekdays, between Start
// and End in Location. A nil Location means UTC.
//
// A window whose Start is after its End crosses midnight. Contains follows
// kured's algorithm exactly, including its quirks: the weekday tested is the
// weekday of the instant being judged (so "mon 21:00–05:00" is open Monday
// 00:00–05:00 and Monday 21:00–24:00, but not Tuesday morning), and the
// previous or next day's bound is found by moving 24 hours rather than one
// calendar day, which matters on days with a daylight-saving change; a
// start or end time that falls in a daylight-saving gap or repeated hour is
// resolved by time.Date; and a midnight-crossing window excludes the very
// last nanosecond of its end second (at that instant kured's "before the
// end" test is false, so it compares against tomorrow's end instead).
type Daily struct {
	Days       Weekdays
	Start, End TimeOfDay
	Location   *time.Location
}

// ParseDaily builds a Daily from kured's flag values: --reboot-days,
// --start-time, --end-time and --time-zone.
func ParseDaily(days []string, start, end, zone string) (Daily, error) {
	var (
		d   Daily
		err error
	)
	if d.Days, err = ParseDays(days); err != nil {
		return Daily{}, fmt.Errorf("reboot days: %w", err)
	}
	if d.Location, err = LoadLocation(zone); err != nil {
		return Daily{}, err
	}
	if d.Start, err = ParseTimeOfDay(start); err != nil {
		return Daily{}, fmt.Errorf("start time: %w", err)
	}
	if d.End, err = ParseTimeOfDay(end); err != nil {
		return Daily{}, fmt.Errorf("end time: %w", err)
	}
	return d, nil
}

func (w Daily) location() *time.Location {
	if w.Location == nil {
		return time.UTC
	}
	return w.Location
}

// bounds returns the raw start and end instants kured computes for the local
// calendar day of lt (end extended to the last nanosecond of its second).
func (w Daily) bounds(lt time.Time) (start, end time.Time) {
	loc := w.location()
	y, m, d := lt.Date()
	start = time.Date(y, m, d, w.Start.Hour, w.Start.Minute, w.Start.Second, 0, loc)
	end = time.Date(y, m, d, w.End.Hour, w.End.Minute, w.End.Second, int(time.Second-1), loc)
	return start, end
}

// Contains reports whether t falls inside the window.
func (w Daily) Contains(t time.Time) bool {
	lt := t.In(w.location())
	if !w.Days.Contains(lt.Weekday()) {
		return false
	}
	start, end := w.bounds(lt)
	if w.CrossesMidnight() {
		if lt.Before(end) {
			start = start.Add(-24 * time.Hour)
		} else {
			end = end.Add(24 * time.Hour)
		}
	}
	return !lt.Before(start) && !lt.After(end)
}

// Bounds returns the start and end of the window on the local calendar date of
// t, as kured computes them before it looks at midnight: Start and End on that
// date in Location, resolved by time.Date, End extended to the last nanosecond
// of its second.
func (w Daily) Bounds(t time.Time) (start, end time.Time) {
	return w.bounds(t.In(w.location()))
}

// CrossesMidnight reports whether Start is after End, comparing fractions of a
// second too, as kured compares its parsed times: such a window runs from Start
// to End of the next day.
func (w Daily) CrossesMidnight() bool { return w.Start.after(w.End) }

// NextOpening returns the earliest instant at or after t at which the window
// contains the time: t itself when t is inside. It looks eight days ahead
// and reports false when the window does not open in that span (for
// example when Days is empty).
//
// Contains only changes value at a few instants: local midnights, zone
// offset changes and each day's computed start, end and their ±24 h shifts.
// NextOpening checks exactly those instants, so the answer is exact.
func (w Daily) NextOpening(t time.Time) (time.Time, bool) {
	if w.Days&AllDays == 0 {
		return time.Time{}, false
	}
	if w.Contains(t) {
		return t, true
	}
	loc := w.location()
	limit := t.Add(dailySearch)
	lt := t.In(loc)
	y, m, d := lt.Date()

	cands := make([]time.Time, 0, 64)
	add := func(c time.Time) {
		if c.After(t) && !c.After(limit) {
			cands = append(cands, c)
		}
	}
	for i := -2; i <= 10; i++ {
		day := time.Date(y, m, d+i, 12, 0, 0, 0, loc) // noon: safely inside the day
		add(time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, loc))
		start, end := w.bounds(day)
		add(start)
		add(start.Add(-24 * time.Hour))
		add(end)
		add(end.Add(time.Nanosecond))
		add(end.Add(24*time.Hour + time.Nanosecond))
	}
	// Zone offset changes move the local date without a midnight.
	cur := t
	for i := 0; i < 64; i++ {
		_, next := cur.In(loc).ZoneBounds()
		if next.IsZero() || !next.After(cur) || next.After(limit) {
			break
		}
		add(next)
		cur = next
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].Before(cands[j]) })
	for _, c := range cands {
		if w.Contains(c) {
			return c.In(t.Location()), true
		}
	}
	return time.Time{}, false
}

// String describes the window, e.g.
// "Monday,Tuesday 21:00:00-05:00:00 America/Los_Angeles".
func (w Daily) String() string {
	return fmt.Sprintf("%s %s-%s %s", w.Days, w.Start, w.End, w.location())
}
