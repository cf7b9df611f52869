package schedule

import (
	"fmt"
	"time"
)

// timeLayouts are the layouts kured tries, in kured's order.
var timeLayouts = []string{"15:04", "15:04:05", "03:04pm", "15", "03pm", "3pm"}

// TimeOfDay is a wall-clock time within a day, as given to kured's
// --start-time and --end-time.
type TimeOfDay struct {
	Hour, Minute, Second int

	// nsec keeps a fractional second that time.Parse accepts after a
	// "15:04:05" value ("17:00:00.5"). kured ignores it when building the
	// window's bounds but not when deciding whether the window crosses
	// midnight, so it is kept for that comparison only.
	nsec int
}

// ParseTimeOfDay parses a time of day the way kured does: the first of the Go
// layouts 15:04, 15:04:05, 03:04pm, 15, 03pm and 3pm that accepts s wins.
// Hence "5pm", "17:00", "17", "9am", "12am" (midnight) and "11:30pm" are
// valid while "5:00pm" (03 needs two digits), "5PM" (pm must be lower case)
// and "24:00" are not. Like time.Parse, a fractional second after a 15:04:05
// value is accepted ("17:00:00.5").
func ParseTimeOfDay(s string) (TimeOfDay, error) {
	for _, layout := range timeLayouts {
		t, err := time.Parse(layout, s)
		if err == nil {
			return TimeOfDay{Hour: t.Hour(), Minute: t.Minute(), Second: t.Second(), nsec: t.Nanosecond()}, nil
		}
	}
	return TimeOfDay{}, fmt.Errorf("%q is not a time (use 17:00, 5pm, 05:00pm)", s)
}

// Seconds returns the number of seconds since midnight, ignoring any
// fractional second.
func (t TimeOfDay) Seconds() int {
	return t.Hour*3600 + t.Minute*60 + t.Second
}

// String formats t as "15:04:05". A fractional second is not shown.
func (t TimeOfDay) String() string {
	return fmt.Sprintf("%02d:%02d:%02d", t.Hour, t.Minute, t.Second)
}

// after reports whether t is later in the day than u, comparing the
// fractional second too, as kured compares its parsed times.
func (t TimeOfDay) after(u TimeOfDay) bool {
	if a, b := t.Seconds(), u.Seconds(); a != b {
		return a > b
	}
	return t.nsec > u.nsec
}

// LoadLocation resolves a time-zone name as kured's --time-zone does: ""
// means UTC, "Local" the host's zone, anything else an IANA name such as
// "Europe/Berlin" (resolved from the embedded database).
func LoadLocation(name string) (*time.Location, error) {
	switch name {
	case "", "UTC":
		return time.UTC, nil
	case "Local":
		return time.Local, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q (use an IANA name such as Europe/Berlin, UTC or Local): %w", name, err)
	}
	return loc, nil
}
