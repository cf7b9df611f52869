package schedule

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rebootgate/rebootgate/engine/schedule/scheduletest"
)

func fuzzZone(t testing.TB, i uint8) *time.Location {
	return mustLoc(t, scheduletest.Zones[int(i)%len(scheduletest.Zones)])
}

// saneTime maps any int64 to an instant between 1900 and 2300, where the
// window properties are checked; others are only checked not to panic.
func saneTime(sec int64, nsec int64) time.Time {
	return scheduletest.Instant(sec, nsec, time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), 400*365*24*3600)
}

func FuzzParseDays(f *testing.F) {
	for _, s := range []string{"", "mon", "mon,tue", "Su,MO,tu,We,th,Fr,sA", "0,1,2,3,4,5,6", "funday", "7", "-0", "+6", "mon\ntue", ",,", "ſun", "MONDAY", "İ", "mon, tue"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		items := strings.Split(s, "\n")
		w, err := ParseDays(items)
		if err != nil {
			msg := err.Error()
			if !strings.Contains(msg, "is not a day (use su|sun|sunday … sa|sat|saturday or 0-6)") {
				t.Fatalf("ParseDays(%q): unexpected error text %q", items, msg)
			}
			return
		}
		if w&^AllDays != 0 {
			t.Fatalf("ParseDays(%q) = %08b sets bit 7", items, w)
		}
		again, err := ParseDays(w.Names())
		if err != nil || again != w {
			t.Fatalf("round trip of %s: %08b, %v", w, again, err)
		}
		_ = w.String()
		for d := time.Sunday; d <= time.Saturday; d++ {
			_ = w.Contains(d)
		}
	})
}

func FuzzParseTimeOfDay(f *testing.F) {
	for _, s := range []string{"5pm", "17:00", "17", "9am", "12am", "11:30pm", "5:00pm", "5PM", "24:00", "23:59:59", "17:00:00.5", "0pm", "05:00pm", "", "1:2:3", "٣pm"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tod, err := ParseTimeOfDay(s)
		parsedBy := ""
		var ref time.Time
		for _, l := range timeLayouts {
			if r, e := time.Parse(l, s); e == nil {
				parsedBy, ref = l, r
				break
			}
		}
		if (err == nil) != (parsedBy != "") {
			t.Fatalf("ParseTimeOfDay(%q) error = %v, but time.Parse with %q says otherwise", s, err, parsedBy)
		}
		if err != nil {
			if want := strconv.Quote(s) + ` is not a time`; !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("error %q does not name the value", err)
			}
			return
		}
		if tod.Hour != ref.Hour() || tod.Minute != ref.Minute() || tod.Second != ref.Second() || tod.nsec != ref.Nanosecond() {
			t.Fatalf("ParseTimeOfDay(%q) = %+v, time.Parse(%q) = %s", s, tod, parsedBy, ref)
		}
		if tod.Hour < 0 || tod.Hour > 23 || tod.Minute < 0 || tod.Minute > 59 || tod.Second < 0 || tod.Second > 59 {
			t.Fatalf("ParseTimeOfDay(%q) = %+v out of range", s, tod)
		}
		back, err := ParseTimeOfDay(tod.String())
		if err != nil || back.Seconds() != tod.Seconds() {
			t.Fatalf("round trip of %q via %q: %+v, %v", s, tod.String(), back, err)
		}
	})
}

// checkOpening verifies a NextOpening answer: inside, not before from, and
// the window is closed just before it and at sampled instants in between.
func checkOpening(t *testing.T, w Window, from time.Time) {
	t.Helper()
	got, ok := w.NextOpening(from)
	if !ok {
		return
	}
	if got.Before(from) {
		t.Fatalf("NextOpening(%s) = %s is before it", from, got)
	}
	if !w.Contains(got) {
		t.Fatalf("NextOpening(%s) = %s, which Contains rejects", from, got)
	}
	if got.Equal(from) {
		return
	}
	if w.Contains(got.Add(-time.Nanosecond)) {
		t.Fatalf("NextOpening(%s) = %s, but already open a nanosecond earlier", from, got)
	}
	step := got.Sub(from) / 97
	if step <= 0 {
		step = 1
	}
	for x := from; x.Before(got); x = x.Add(step) {
		if w.Contains(x) {
			t.Fatalf("NextOpening(%s) = %s, but open at %s", from, got, x)
		}
	}
}

func FuzzDaily(f *testing.F) {
	f.Add(uint8(0b0000110), uint32(21*3600), uint32(5*3600), int64(0), int64(0), uint8(1), int64(1554364140), int64(0)) // kured example
	f.Add(uint8(0b1111111), uint32(9*3600), uint32(17*3600), int64(0), int64(0), uint8(2), int64(1792886400), int64(0)) // Berlin fall back 2026
	f.Add(uint8(0b0000001), uint32(2*3600), uint32(4*3600), int64(0), int64(0), uint8(1), int64(1772956800), int64(1))  // LA spring forward 2026
	f.Add(uint8(0b1000000), uint32(0), uint32(86399), int64(0), int64(0), uint8(7), int64(1325152800), int64(0))        // Apia skipped day
	f.Add(uint8(0b1111111), uint32(61200), uint32(61200), int64(5e8), int64(0), uint8(0), int64(1767632400), int64(999999999))
	f.Add(uint8(0b0100000), uint32(23*3600), uint32(3600), int64(0), int64(0), uint8(3), int64(1572739200), int64(0)) // Sao Paulo midnight DST
	f.Add(uint8(0), uint32(0), uint32(0), int64(0), int64(0), uint8(0), int64(0), int64(0))
	f.Fuzz(func(t *testing.T, days uint8, start, end uint32, startNsec, endNsec int64, zone uint8, sec, nsec int64) {
		loc := fuzzZone(t, zone)
		mk := func(s uint32, ns int64) TimeOfDay {
			s %= 86400
			n := int(ns % int64(time.Second))
			if n < 0 {
				n = -n
			}
			return TimeOfDay{Hour: int(s / 3600), Minute: int(s / 60 % 60), Second: int(s % 60), nsec: n}
		}
		w := Daily{Days: Weekdays(days), Start: mk(start, startNsec), End: mk(end, endNsec), Location: loc}

		// Any instant at all: no panic.
		raw := time.Unix(sec, nsec)
		_ = w.Contains(raw)
		_, _ = w.NextOpening(raw)

		// Sane instants: agree with the model of kured and find openings.
		tm := saneTime(sec, nsec)
		ks := time.Date(0, 1, 1, w.Start.Hour, w.Start.Minute, w.Start.Second, w.Start.nsec, loc)
		ke := time.Date(0, 1, 1, w.End.Hour, w.End.Minute, w.End.Second, w.End.nsec, loc)
		if got, want := w.Contains(tm), kuredModel(w.Days, ks, ke, loc, tm); got != want {
			t.Fatalf("%s: Contains(%s) = %v, kured says %v", w, tm.In(loc), got, want)
		}
		checkOpening(t, w, tm)

		// Out-of-range literal fields: no panic.
		odd := Daily{Days: Weekdays(days), Start: TimeOfDay{Hour: int(sec), Minute: int(nsec)}, End: TimeOfDay{Second: -int(sec)}, Location: loc}
		_ = odd.Contains(tm)
		_, _ = odd.NextOpening(tm)
		_ = odd.String()
	})
}

func FuzzParseCron(f *testing.F) {
	f.Add("0 2 8-14 * *", int64(4*time.Hour), uint8(1<<time.Tuesday), uint8(0), int64(1768262400), int64(0))
	f.Add("@daily", int64(time.Hour), uint8(0), uint8(1), int64(1772956800), int64(0))
	f.Add("@every 1h", int64(time.Hour), uint8(0), uint8(0), int64(0), int64(0))
	f.Add("TZ=UTC", int64(time.Hour), uint8(0), uint8(0), int64(0), int64(0))
	f.Add("*/7 1-3 * 2,3 mon-fri", int64(time.Minute), uint8(0x55), uint8(3), int64(1551600000), int64(0))
	f.Add("0 0 29 2 *", int64(24*time.Hour), uint8(0), uint8(7), int64(0), int64(0))
	f.Add("* * 13 * *", int64(time.Second), uint8(1<<time.Friday), uint8(5), int64(-1), int64(-1))
	f.Add("30 2 * * *", int64(MaxCronDuration), uint8(0x7f), uint8(8), int64(1792886400), int64(0))
	f.Add("0 0 * * mon", int64(time.Hour), uint8(1<<time.Tuesday), uint8(0), int64(0), int64(0))
	f.Fuzz(func(t *testing.T, spec string, d int64, days uint8, zone uint8, sec, nsec int64) {
		loc := fuzzZone(t, zone)
		c, err := ParseCron(spec, time.Duration(d), Weekdays(days), loc)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if c.Duration <= 0 || c.Duration > MaxCronDuration {
			t.Fatalf("accepted duration %s", c.Duration)
		}
		_ = c.String()

		raw := time.Unix(sec, nsec)
		_, _ = c.Active(raw)
		_, _ = c.NextOpening(raw)

		tm := saneTime(sec, nsec)
		if opened, ok := c.Active(tm); ok {
			if opened.After(tm) || !tm.Before(opened.Add(c.Duration)) {
				t.Fatalf("%s: Active(%s) opened at %s, which does not cover it", c, tm, opened)
			}
			if !c.counts(opened) {
				t.Fatalf("%s: Active(%s) opened at %s, on a day that does not count", c, tm, opened)
			}
		}
		checkOpening(t, c, tm)
	})
}

func FuzzNextAllowed(f *testing.F) {
	f.Add(uint8(0b0111110), uint32(9*3600), uint32(17*3600), uint8(0), int64(1767571200), int64(3600), int64(7200), int64(86400), int64(600), uint16(168))
	f.Add(uint8(0), uint32(0), uint32(0), uint8(1), int64(0), int64(0), int64(0), int64(0), int64(0), uint16(0))
	f.Add(uint8(0x7f), uint32(22*3600), uint32(2*3600), uint8(2), int64(1774742400), int64(-3600), int64(86400*3), int64(3600), int64(60), uint16(1000))
	f.Fuzz(func(t *testing.T, days uint8, start, end uint32, zone uint8, sec, b1off, b1len, b2off, b2len int64, horizonHours uint16) {
		loc := fuzzZone(t, zone)
		tod := func(s uint32) TimeOfDay {
			s %= 86400
			return TimeOfDay{Hour: int(s / 3600), Minute: int(s / 60 % 60), Second: int(s % 60)}
		}
		w := Daily{Days: Weekdays(days), Start: tod(start), End: tod(end), Location: loc}
		now := saneTime(sec, 0)
		clamp := func(v int64) time.Duration { return time.Duration(v%(30*86400)) * time.Second }
		b1 := Blackout{Start: now.Add(clamp(b1off)), End: now.Add(clamp(b1off) + clamp(b1len))}
		b2 := Blackout{Start: b1.End.Add(clamp(b2off)), End: b1.End.Add(clamp(b2off) + clamp(b2len))}
		horizon := time.Duration(horizonHours) * time.Hour
		for _, windows := range [][]Window{nil, {w}} {
			got, ok := NextAllowed(now, windows, []Blackout{b1, b2}, horizon)
			if !ok {
				continue
			}
			if got.Before(now) || got.After(now.Add(horizon)) {
				t.Fatalf("NextAllowed(%s) = %s outside [now, now+%s]", now, got, horizon)
			}
			if b1.Contains(got) || b2.Contains(got) {
				t.Fatalf("NextAllowed(%s) = %s is blacked out", now, got)
			}
			if len(windows) > 0 && !w.Contains(got) {
				t.Fatalf("NextAllowed(%s) = %s is outside %s", now, got, w)
			}
		}
		_, _ = NextAllowed(time.Unix(sec, 0), []Window{w}, []Blackout{b1, b2}, time.Duration(sec))
	})
}
