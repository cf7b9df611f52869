package schedule

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Weekdays is a set of days of the week. Bit i is set when time.Weekday(i)
// is a member, so bit 0 is Sunday and bit 6 is Saturday. The zero value is
// the empty set.
type Weekdays uint8

// AllDays contains every day of the week. It is kured's default for
// --reboot-days.
const AllDays Weekdays = 1<<7 - 1

// dayNames maps every accepted lower-case spelling to its weekday.
var dayNames = map[string]time.Weekday{
	"su": time.Sunday, "sun": time.Sunday, "sunday": time.Sunday,
	"mo": time.Monday, "mon": time.Monday, "monday": time.Monday,
	"tu": time.Tuesday, "tue": time.Tuesday, "tuesday": time.Tuesday,
	"we": time.Wednesday, "wed": time.Wednesday, "wednesday": time.Wednesday,
	"th": time.Thursday, "thu": time.Thursday, "thursday": time.Thursday,
	"fr": time.Friday, "fri": time.Friday, "friday": time.Friday,
	"sa": time.Saturday, "sat": time.Saturday, "saturday": time.Saturday,
}

// ParseDays parses kured's --reboot-days values into a set.
//
// Each item may itself be a comma-separated list ("mon,tue"). Every element
// is a day name matched case-insensitively (su/sun/sunday … sa/sat/saturday)
// or a number from 0 to 6, 0 being Sunday; numbers are read like
// strconv.Atoi, as kured does, so "01" and "+1" also mean Monday. Empty
// elements are skipped and whitespace is not trimmed (kured rejects " tue"
// too). No items at all yields the empty set, which a [Daily] treats as "never".
func ParseDays(items []string) (Weekdays, error) {
	var set Weekdays
	for _, item := range items {
		for _, s := range strings.Split(item, ",") {
			if s == "" {
				continue
			}
			d, err := parseDay(s)
			if err != nil {
				return 0, err
			}
			set |= 1 << uint(d)
		}
	}
	return set, nil
}

func parseDay(s string) (time.Weekday, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n >= 0 && n <= 6 {
			return time.Weekday(n), nil
		}
	} else if d, ok := dayNames[strings.ToLower(s)]; ok {
		return d, nil
	}
	return 0, fmt.Errorf("%q is not a day (use su|sun|sunday … sa|sat|saturday or 0-6)", s)
}

// Contains reports whether d is in the set. Values outside Sunday…Saturday
// are never members.
func (w Weekdays) Contains(d time.Weekday) bool {
	if d < time.Sunday || d > time.Saturday {
		return false
	}
	return w&(1<<uint(d)) != 0
}

// Names returns the full English names of the members, Sunday first, as
// spelled by time.Weekday.String. The empty set yields an empty slice.
func (w Weekdays) Names() []string {
	names := []string{}
	for d := time.Sunday; d <= time.Saturday; d++ {
		if w.Contains(d) {
			names = append(names, d.String())
		}
	}
	return names
}

// String lists the members' full names separated by commas, Sunday first,
// e.g. "Monday,Tuesday"; the empty set prints as "none". Bit 7 is ignored.
func (w Weekdays) String() string {
	if w&AllDays == 0 {
		return "none"
	}
	return strings.Join(w.Names(), ",")
}
