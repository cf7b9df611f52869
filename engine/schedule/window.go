package schedule

import (
	"sort"
	"time"
)

// maxAllowedSteps bounds NextAllowed's search; exceeding it fails closed.
const maxAllowedSteps = 10000

// Window is a recurring period in which reboots are permitted.
type Window interface {
	// Contains reports whether t is inside the window.
	Contains(t time.Time) bool
	// NextOpening returns the earliest instant at or after t inside the
	// window (t itself when already inside), or false when the window does
	// not open within the implementation's search span.
	NextOpening(t time.Time) (time.Time, bool)
}

var (
	_ Window = Daily{}
	_ Window = Cron{}
)

// Blackout is a period in which no reboot may start, such as a holiday or a
// release freeze. It is half-open: [Start, End). A blackout whose End is not
// after its Start is empty.
type Blackout struct {
	Name       string
	Start, End time.Time
}

// Contains reports whether t is inside the blackout.
func (b Blackout) Contains(t time.Time) bool {
	return !t.Before(b.Start) && t.Before(b.End)
}

// NextAllowed returns the earliest instant at or after now that is inside at
// least one window (any instant when windows is empty) and outside every
// blackout, provided it is no later than now+horizon. It reports false when
// there is none, when horizon is negative, or when the search takes too many
// steps (it fails closed). Nil windows are ignored; a windows slice holding
// only nils therefore never allows a reboot.
func NextAllowed(now time.Time, windows []Window, blackouts []Blackout, horizon time.Duration) (time.Time, bool) {
	if horizon < 0 {
		return time.Time{}, false
	}
	limit := now.Add(horizon)
	if limit.Before(now) { // overflow
		return time.Time{}, false
	}
	blocked := mergeBlackouts(blackouts)
	t := now
	for i := 0; i < maxAllowedSteps; i++ {
		if t.After(limit) {
			return time.Time{}, false
		}
		if end, ok := blockedUntil(t, blocked); ok {
			t = end
			continue
		}
		if len(windows) == 0 {
			return t, true
		}
		next, found := time.Time{}, false
		for _, w := range windows {
			if w == nil {
				continue
			}
			o, ok := w.NextOpening(t)
			if !ok || o.Before(t) {
				continue
			}
			if !found || o.Before(next) {
				next, found = o, true
			}
		}
		if !found {
			return time.Time{}, false
		}
		if next.Equal(t) {
			return t, true
		}
		t = next
	}
	return time.Time{}, false
}

// span is a non-empty half-open interval [start, end).
type span struct{ start, end time.Time }

// mergeBlackouts returns the union of the non-empty blackouts as disjoint
// spans sorted by start; touching spans are joined.
func mergeBlackouts(bs []Blackout) []span {
	spans := make([]span, 0, len(bs))
	for _, b := range bs {
		if b.End.After(b.Start) {
			spans = append(spans, span{b.Start, b.End})
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start.Before(spans[j].start) })
	merged := spans[:0]
	for _, s := range spans {
		if n := len(merged); n > 0 && !s.start.After(merged[n-1].end) {
			if s.end.After(merged[n-1].end) {
				merged[n-1].end = s.end
			}
			continue
		}
		merged = append(merged, s)
	}
	return merged
}

// blockedUntil reports whether t is in one of the disjoint sorted spans and,
// if so, that span's end.
func blockedUntil(t time.Time, spans []span) (time.Time, bool) {
	// First span starting after t; the candidate is the one before it.
	i := sort.Search(len(spans), func(i int) bool { return spans[i].start.After(t) })
	if i > 0 && t.Before(spans[i-1].end) {
		return spans[i-1].end, true
	}
	return time.Time{}, false
}
