package schedule

import "time"

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
	t := now
	for i := 0; i < maxAllowedSteps; i++ {
		if t.After(limit) {
			return time.Time{}, false
		}
		if end, blocked := blackedOutUntil(t, blackouts); blocked {
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

// blackedOutUntil reports whether t is in a blackout and, if so, the latest
// End among the blackouts that contain it.
func blackedOutUntil(t time.Time, blackouts []Blackout) (time.Time, bool) {
	var (
		end     time.Time
		blocked bool
	)
	for _, b := range blackouts {
		if b.Contains(t) && (!blocked || b.End.After(end)) {
			end, blocked = b.End, true
		}
	}
	return end, blocked
}
