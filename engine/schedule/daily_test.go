package schedule

import (
	"fmt"
	"testing"
	"time"
)

func mustLoc(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func mustDaily(t testing.TB, days, start, end, zone string) Daily {
	t.Helper()
	d, err := ParseDaily([]string{days}, start, end, zone)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// at parses "2006-01-02 15:04:05.999999999" in zone. An ambiguous wall
// time can be pinned with a trailing zone abbreviation check via offset.
func at(t testing.TB, zone, s string) time.Time {
	t.Helper()
	tm, err := time.ParseInLocation("2006-01-02 15:04:05.999999999", s, mustLoc(t, zone))
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func utc(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// kuredModel is an independent statement of kured's window test, written
// with time.Time start and end times parsed in the zone the way kured
// keeps them. It is used to cross-check Daily.Contains.
func kuredModel(days Weekdays, start, end time.Time, loc *time.Location, t time.Time) bool {
	lt := t.In(loc)
	if days&(1<<uint(lt.Weekday())) == 0 {
		return false
	}
	y, m, d := lt.Date()
	s := time.Date(y, m, d, start.Hour(), start.Minute(), start.Second(), 0, loc)
	e := time.Date(y, m, d, end.Hour(), end.Minute(), end.Second(), 999999999, loc)
	if start.After(end) {
		if lt.Before(e) {
			s = s.Add(-24 * time.Hour)
		} else {
			e = e.Add(24 * time.Hour)
		}
	}
	return (lt.After(s) || lt.Equal(s)) && (lt.Before(e) || lt.Equal(e))
}

func kuredParse(s string, loc *time.Location) (time.Time, bool) {
	for _, l := range timeLayouts {
		if t, err := time.ParseInLocation(l, s, loc); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func TestDailyContains(t *testing.T) {
	type check struct {
		at   string // RFC 3339
		want bool
	}
	tests := []struct {
		name                   string
		days, start, end, zone string
		checks                 []check
	}{
		{
			name: "kured example: Thursday not allowed", days: "mon,tue", start: "9pm", end: "5am", zone: "America/Los_Angeles",
			checks: []check{{"2019-04-04T00:49:00-07:00", false}},
		},
		{
			name: "kured example with thu allowed", days: "mon,tue,thu", start: "9pm", end: "5am", zone: "America/Los_Angeles",
			checks: []check{{"2019-04-04T00:49:00-07:00", true}},
		},
		{
			name: "office hours", days: "mon,tue,wed,thu,fri", start: "9am", end: "5pm", zone: "America/Los_Angeles",
			checks: []check{
				{"2019-04-04T00:49:00-07:00", false},
				{"2019-04-04T12:00:00-07:00", true},
				{"2019-04-04T11:59:00Z", false}, // 04:59 PDT
				{"2019-04-04T16:00:00Z", true},  // 09:00 PDT
				{"2019-04-05T08:59:59.999999999-07:00", false},
				{"2019-04-05T09:00:00-07:00", true},
				{"2019-04-05T17:00:00-07:00", true},
				{"2019-04-05T17:00:00.999999999-07:00", true}, // end extended to the end of its second
				{"2019-04-05T17:00:01-07:00", false},
				{"2019-04-06T12:00:00-07:00", false}, // Saturday
			},
		},
		{
			name: "crossing midnight", days: "mon,tue", start: "21:00", end: "05:00", zone: "America/Los_Angeles",
			checks: []check{
				{"2019-04-01T03:00:00-07:00", true}, // Monday morning belongs to Sunday's window, but Monday is tested
				{"2019-04-01T20:59:59.999999999-07:00", false},
				{"2019-04-01T21:00:00-07:00", true},
				{"2019-04-01T23:59:59.999999999-07:00", true},
				{"2019-04-02T00:00:00-07:00", true},
				{"2019-04-02T05:00:00.999999998-07:00", true},
				// kured quirk: at the end's very last nanosecond "before end"
				// is false, so the window is taken to end tomorrow instead.
				{"2019-04-02T05:00:00.999999999-07:00", false},
				{"2019-04-02T05:00:01-07:00", false},
				{"2019-04-02T12:00:00-07:00", false},
				{"2019-04-02T22:00:00-07:00", true},
				{"2019-04-03T00:00:00-07:00", false}, // Wednesday morning: Tuesday's window, but Wednesday is tested
				{"2019-04-03T04:00:00-07:00", false},
			},
		},
		{
			name: "start == end is one second", days: "su,mo,tu,we,th,fr,sa", start: "17:00", end: "17:00", zone: "UTC",
			checks: []check{
				{"2026-01-05T16:59:59.999999999Z", false},
				{"2026-01-05T17:00:00Z", true},
				{"2026-01-05T17:00:00.999999999Z", true},
				{"2026-01-05T17:00:01Z", false},
			},
		},
		{
			name: "kured defaults", days: "su,mo,tu,we,th,fr,sa", start: "0:00", end: "23:59:59", zone: "UTC",
			checks: []check{
				{"2026-01-05T00:00:00Z", true},
				{"2026-01-05T23:59:59.999999999Z", true},
				{"2026-01-06T00:00:00Z", true},
			},
		},
		{
			name: "zone conversion", days: "mon", start: "0:00", end: "23:59:59", zone: "Europe/Berlin",
			checks: []check{
				{"2026-01-04T22:59:59Z", false}, // Sunday 23:59:59 CET
				{"2026-01-04T23:00:00Z", true},  // Monday 00:00 CET
				{"2026-01-05T22:59:59.999999999Z", true},
				{"2026-01-05T23:00:00Z", false},
			},
		},
		{
			name: "empty days never open", days: "", start: "0:00", end: "23:59:59", zone: "UTC",
			checks: []check{{"2026-01-05T12:00:00Z", false}},
		},
		// Los Angeles springs forward on 2026-03-08 (02:00 PST -> 03:00 PDT).
		{
			name: "LA spring forward, office hours", days: "su", start: "9am", end: "5pm", zone: "America/Los_Angeles",
			checks: []check{
				{"2026-03-08T15:59:59Z", false},          // 08:59:59 PDT
				{"2026-03-08T16:00:00Z", true},           // 09:00 PDT
				{"2026-03-09T00:00:00.999999999Z", true}, // 17:00:00.999999999 PDT
				{"2026-03-09T00:00:01Z", false},
			},
		},
		{
			name: "LA spring forward, crossing window", days: "su,sa", start: "22:00", end: "06:00", zone: "America/Los_Angeles",
			checks: []check{
				{"2026-03-08T00:30:00-08:00", true},
				{"2026-03-08T01:59:59-08:00", true},
				{"2026-03-08T03:00:00-07:00", true},
				{"2026-03-08T06:00:00.5-07:00", true},
				{"2026-03-08T06:00:01-07:00", false},
				{"2026-03-08T21:59:59-07:00", false},
				{"2026-03-08T22:00:00-07:00", true},
				{"2026-03-07T21:59:59-08:00", false},
				{"2026-03-07T22:00:00-08:00", true},
			},
		},
		{
			// The 02:00 start does not exist; time.Date (as in kured) resolves
			// it with the PDT offset to 01:00 PST, an hour early.
			name: "LA spring forward, start in the gap", days: "su", start: "2:00", end: "4:00", zone: "America/Los_Angeles",
			checks: []check{
				{"2026-03-08T00:59:59-08:00", false},
				{"2026-03-08T01:00:00-08:00", true},
				{"2026-03-08T03:00:00-07:00", true},
				{"2026-03-08T04:00:00.5-07:00", true},
				{"2026-03-08T04:00:01-07:00", false},
			},
		},
		// Los Angeles falls back on 2026-11-01 (02:00 PDT -> 01:00 PST).
		{
			// Ambiguous 01:00 and 01:30 resolve to the first (PDT)
			// occurrence, so the repeated hour (PST) is outside, as in kured.
			name: "LA fall back, window in the repeated hour", days: "su", start: "1:00", end: "1:30", zone: "America/Los_Angeles",
			checks: []check{
				{"2026-11-01T00:59:59-07:00", false},
				{"2026-11-01T01:00:00-07:00", true},
				{"2026-11-01T01:30:00.9-07:00", true},
				{"2026-11-01T01:30:01-07:00", false},
				{"2026-11-01T01:00:00-08:00", false},
				{"2026-11-01T01:15:00-08:00", false},
			},
		},
		{
			// Moving 24 h back from Sunday 23:00 PST lands on Saturday 23:00
			// PDT + 1 h = Sunday 00:00 PDT... kured's quirk: the previous
			// day's start is "start - 24h", so on a 25-hour day it is an hour
			// later than the calendar says.
			name: "LA fall back, crossing window", days: "su", start: "23:00", end: "03:00", zone: "America/Los_Angeles",
			checks: []check{
				{"2026-11-01T00:00:00-07:00", true}, // start = Sun 23:00 PST - 24h = Sun 00:00 PDT
				{"2026-11-01T02:59:59-08:00", true},
				{"2026-11-01T03:00:01-08:00", false},
				{"2026-11-01T22:59:59-08:00", false},
				{"2026-11-01T23:00:00-08:00", true},
			},
		},
		// Berlin springs forward on 2026-03-29 (02:00 CET -> 03:00 CEST) and
		// falls back on 2026-10-25 (03:00 CEST -> 02:00 CET).
		{
			name: "Berlin spring forward, crossing window", days: "su", start: "22:00", end: "6:00", zone: "Europe/Berlin",
			checks: []check{
				{"2026-03-29T01:59:59+01:00", true},
				{"2026-03-29T03:00:00+02:00", true},
				{"2026-03-29T06:00:00.999999998+02:00", true},
				{"2026-03-29T06:00:01+02:00", false},
			},
		},
		{
			// Ambiguous 02:00 resolves to the second (CET) occurrence in
			// Berlin, so the first 02:xx hour (CEST) is outside, as in kured.
			name: "Berlin fall back, window in the repeated hour", days: "su", start: "2:00", end: "2:59:59", zone: "Europe/Berlin",
			checks: []check{
				{"2026-10-25T02:30:00+02:00", false},
				{"2026-10-25T02:00:00+01:00", true},
				{"2026-10-25T02:59:59.999999999+01:00", true},
				{"2026-10-25T03:00:00+01:00", false},
			},
		},
		{
			name: "Berlin fall back, office hours", days: "su", start: "9am", end: "5pm", zone: "Europe/Berlin",
			checks: []check{
				{"2026-10-25T07:59:59Z", false},
				{"2026-10-25T08:00:00Z", true},
				{"2026-10-25T16:00:00.999999999Z", true},
				{"2026-10-25T16:00:01Z", false},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := mustDaily(t, tt.days, tt.start, tt.end, tt.zone)
			loc := mustLoc(t, tt.zone)
			ks, _ := kuredParse(tt.start, loc)
			ke, _ := kuredParse(tt.end, loc)
			for _, c := range tt.checks {
				tm := utc(t, c.at)
				if got := w.Contains(tm); got != c.want {
					t.Errorf("%s: Contains(%s [%s]) = %v, want %v", w, c.at, tm.In(loc).Format("Mon 15:04:05.999999999 MST"), got, c.want)
				}
				if got := kuredModel(w.Days, ks, ke, loc, tm); got != c.want {
					t.Errorf("model disagrees with table at %s: %v", c.at, got)
				}
			}
		})
	}
}

func TestDailyFractionalSecondDecidesCrossing(t *testing.T) {
	// time.Parse accepts "17:00:00.5"; kured compares the parsed times, so a
	// start of 17:00:00.5 is after an end of 17:00:00 and the window crosses
	// midnight, covering almost the whole day.
	w := mustDaily(t, "su,mo,tu,we,th,fr,sa", "17:00:00.5", "17:00:00", "UTC")
	if !w.Contains(utc(t, "2026-01-05T12:00:00Z")) {
		t.Error("noon should be inside the midnight-crossing window")
	}
	w = mustDaily(t, "su,mo,tu,we,th,fr,sa", "17:00:00", "17:00:00.5", "UTC")
	if w.Contains(utc(t, "2026-01-05T12:00:00Z")) || !w.Contains(utc(t, "2026-01-05T17:00:00.7Z")) {
		t.Error("17:00:00-17:00:00.5 should be the one-second window")
	}
}

func TestDailyNilLocationIsUTC(t *testing.T) {
	w := Daily{Days: AllDays, Start: TimeOfDay{Hour: 9}, End: TimeOfDay{Hour: 10}}
	if !w.Contains(utc(t, "2026-01-05T09:30:00Z")) || w.Contains(utc(t, "2026-01-05T09:30:00+01:00")) {
		t.Error("nil Location should mean UTC")
	}
}

func TestDailyNextOpening(t *testing.T) {
	tests := []struct {
		name                   string
		days, start, end, zone string
		from                   string
		want                   string // "" = none
	}{
		{name: "inside", days: "mon", start: "9am", end: "5pm", zone: "UTC", from: "2026-01-05T10:00:00Z", want: "2026-01-05T10:00:00Z"},
		{name: "before start", days: "mon", start: "9am", end: "5pm", zone: "UTC", from: "2026-01-05T08:00:00Z", want: "2026-01-05T09:00:00Z"},
		{name: "after end", days: "mon", start: "9am", end: "5pm", zone: "UTC", from: "2026-01-05T17:00:01Z", want: "2026-01-12T09:00:00Z"},
		{name: "last nanosecond", days: "mon", start: "9am", end: "5pm", zone: "UTC", from: "2026-01-05T17:00:00.999999999Z", want: "2026-01-05T17:00:00.999999999Z"},
		{name: "next allowed day", days: "fri", start: "9am", end: "5pm", zone: "UTC", from: "2026-01-05T08:00:00Z", want: "2026-01-09T09:00:00Z"},
		{name: "crossing: opens at allowed day's midnight", days: "mon,tue", start: "9pm", end: "5am", zone: "America/Los_Angeles", from: "2019-04-04T00:49:00-07:00", want: "2019-04-08T00:00:00-07:00"},
		{name: "crossing: evening", days: "mon,tue", start: "9pm", end: "5am", zone: "America/Los_Angeles", from: "2019-04-01T12:00:00-07:00", want: "2019-04-01T21:00:00-07:00"},
		{name: "crossing: tuesday morning inside", days: "mon,tue", start: "9pm", end: "5am", zone: "America/Los_Angeles", from: "2019-04-02T04:00:00-07:00", want: "2019-04-02T04:00:00-07:00"},
		{name: "empty days", days: "", start: "9am", end: "5pm", zone: "UTC", from: "2026-01-05T08:00:00Z", want: ""},
		{name: "one second", days: "wed", start: "17:00", end: "17:00", zone: "UTC", from: "2026-01-07T17:00:01Z", want: "2026-01-14T17:00:00Z"},
		{name: "LA spring forward gap", days: "su", start: "2:00", end: "4:00", zone: "America/Los_Angeles", from: "2026-03-08T00:00:00-08:00", want: "2026-03-08T01:00:00-08:00"},
		{name: "Berlin fall back, second 02:00", days: "su", start: "2:00", end: "2:59:59", zone: "Europe/Berlin", from: "2026-10-25T00:00:00+02:00", want: "2026-10-25T02:00:00+01:00"},
		{name: "LA fall back crossing, start-24h", days: "su", start: "23:00", end: "03:00", zone: "America/Los_Angeles", from: "2026-10-31T12:00:00-07:00", want: "2026-11-01T00:00:00-07:00"},
		// Samoa skipped 2011-12-30 (Friday): Thursday 23:59:59 -10 was followed by Saturday 00:00 +14.
		{name: "Samoa skipped day", days: "sa", start: "0:00", end: "23:59:59", zone: "Pacific/Apia", from: "2011-12-29T12:00:00-10:00", want: "2011-12-31T00:00:00+14:00"},
		{name: "Samoa skipped Friday", days: "fr", start: "0:00", end: "23:59:59", zone: "Pacific/Apia", from: "2011-12-29T12:00:00-10:00", want: "2012-01-06T00:00:00+14:00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := mustDaily(t, tt.days, tt.start, tt.end, tt.zone)
			from := utc(t, tt.from)
			got, ok := w.NextOpening(from)
			if tt.want == "" {
				if ok {
					t.Fatalf("NextOpening(%s) = %s, want none", tt.from, got)
				}
				return
			}
			want := utc(t, tt.want)
			if !ok || !got.Equal(want) {
				t.Fatalf("%s: NextOpening(%s) = %s, %v; want %s", w, tt.from, got, ok, want)
			}
			checkEarliest(t, w, from, got)
		})
	}
}

// checkEarliest asserts that got is inside w and that w is closed at every
// second (and the nanosecond before got) between from and got.
func checkEarliest(t testing.TB, w Window, from, got time.Time) {
	t.Helper()
	if !w.Contains(got) {
		t.Fatalf("NextOpening(%s) = %s, which Contains rejects", from, got)
	}
	if got.Equal(from) {
		return
	}
	if w.Contains(got.Add(-time.Nanosecond)) {
		t.Fatalf("NextOpening(%s) = %s, but the window is already open a nanosecond earlier", from, got)
	}
	step := got.Sub(from) / 2000
	if step < time.Second {
		step = time.Second
	}
	for x := from; x.Before(got); x = x.Add(step) {
		if w.Contains(x) {
			t.Fatalf("NextOpening(%s) = %s, but the window is open at %s", from, got, x)
		}
	}
}

func ExampleDaily_Contains() {
	w, _ := ParseDaily([]string{"mon,tue"}, "9pm", "5am", "America/Los_Angeles")
	thursday := time.Date(2019, 4, 4, 0, 49, 0, 0, w.Location)
	tuesday := time.Date(2019, 4, 2, 0, 49, 0, 0, w.Location)
	fmt.Println(w.Contains(thursday), w.Contains(tuesday))
	// Output: false true
}

func TestDailyBoundsOnDaylightSavingDays(t *testing.T) {
	// The bounds are kured's: Start and End on the instant's local date, resolved by
	// time.Date, End to the last nanosecond of its second. The Rego gate reads them
	// from the input (schedule.windows[i].startNs/endNs).
	tests := []struct {
		start, end, zone, at string
		wantStart, wantEnd   string
	}{
		// Berlin springs forward at 02:00: 02:30 does not exist and comes out as 03:30.
		{"02:30", "03:15", "Europe/Berlin", "2026-03-29T12:00:00+02:00", "2026-03-29T03:30:00+02:00", "2026-03-29T03:15:00.999999999+02:00"},
		// Berlin falls back at 03:00: 02:30 happens twice; time.Date picks the second.
		{"00:00", "02:30", "Europe/Berlin", "2026-10-25T01:00:00+02:00", "2026-10-25T00:00:00+02:00", "2026-10-25T02:30:00.999999999+01:00"},
		// West of UTC the skipped 02:30 comes out as 01:30 EST.
		{"02:30", "03:30", "America/New_York", "2026-03-08T12:00:00-04:00", "2026-03-08T01:30:00-05:00", "2026-03-08T03:30:00.999999999-04:00"},
		// Lord Howe moves by 30 minutes: 02:15 and 02:20 are skipped.
		{"02:15", "02:20", "Australia/Lord_Howe", "2026-10-04T12:00:00+11:00", "2026-10-04T02:45:00+11:00", "2026-10-04T02:50:00.999999999+11:00"},
	}
	for _, tt := range tests {
		w := mustDaily(t, "", tt.start, tt.end, tt.zone)
		s, e := w.Bounds(utc(t, tt.at))
		if !s.Equal(utc(t, tt.wantStart)) || !e.Equal(utc(t, tt.wantEnd)) {
			t.Errorf("%s %s-%s at %s: bounds %s, %s; want %s, %s", tt.zone, tt.start, tt.end, tt.at,
				s.Format(time.RFC3339Nano), e.Format(time.RFC3339Nano), tt.wantStart, tt.wantEnd)
		}
	}
}
