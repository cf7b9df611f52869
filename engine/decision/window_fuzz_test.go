package decision

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/facts"
	"github.com/rebootgate/rebootgate/engine/input"
	"github.com/rebootgate/rebootgate/engine/schedule"
	"github.com/rebootgate/rebootgate/engine/schedule/scheduletest"
)

// windowZones are the schedule fuzz tests' zones, plus one-hour DST west of UTC
// (New York) and the largest offset (Kiritimati, +14).
var windowZones = append(slices.Clone(scheduletest.Zones), "America/New_York", "Pacific/Kiritimati")

// windowEpoch and windowEnd bound the instants checked: 1900 to 2200, inside the range
// of an int64 of nanoseconds (input.time.ns) with years to spare on either side.
var (
	windowEpoch = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	windowEnd   = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
	windowSpan  = windowEnd.Unix() - windowEpoch.Unix() // seconds
)

// dailyCase is one fuzz input, decoded.
type dailyCase struct {
	days       schedule.Weekdays
	start, end string
	zone       string
	at         time.Time
}

// decodeDailyCase maps the fuzzer's numbers onto a window and an instant. Times of day
// are seconds (mod 86400) with an optional fraction (frac mod 1e9, kept when non-zero).
// anchor's bits 0 and 1 place the start and the end within an hour either side of the
// instant's own local clock time; a non-zero shift moves the instant to the zone's next
// offset change plus shift seconds (within two days either way), where the daylight-saving
// arithmetic matters.
func decodeDailyCase(t *testing.T, days uint8, start, startFrac, end, endFrac uint32, anchor, zone uint8, sec, nsec int64, shift int32) dailyCase {
	c := dailyCase{days: schedule.Weekdays(days) & schedule.AllDays, zone: windowZones[int(zone)%len(windowZones)]}
	loc, err := schedule.LoadLocation(c.zone)
	if err != nil {
		t.Fatal(err)
	}
	c.at = scheduletest.Instant(sec, nsec, windowEpoch, windowSpan)
	if shift != 0 {
		if _, next := c.at.In(loc).ZoneBounds(); !next.IsZero() {
			c.at = next.Add(time.Duration(shift%(2*86400))*time.Second + time.Duration(c.at.Nanosecond()))
		}
	}
	lt := c.at.In(loc)
	clock := uint32(lt.Hour()*3600 + lt.Minute()*60 + lt.Second())
	tod := func(v, frac uint32, anchored bool) string {
		if anchored {
			v = clock + 86400 + v%7200 - 3600
		}
		v %= 86400
		out := fmt.Sprintf("%02d:%02d:%02d", v/3600, v/60%60, v%60)
		if f := frac % uint32(time.Second); f != 0 {
			out += fmt.Sprintf(".%09d", f)
		}
		return out
	}
	c.start = tod(start, startFrac, anchor&1 != 0)
	c.end = tod(end, endFrac, anchor&2 != 0)
	return c
}

// engineFor builds an engine for cfg that shares base's compiled gate and its pool
// selector ("true"), so each fuzz input does not recompile the Rego and the CEL.
func engineFor(t *testing.T, base *Engine, cfg *config.Resolved) *Engine {
	params, err := input.ParamsValue(cfg.Pools[0].Params)
	if err != nil {
		t.Fatal(err)
	}
	return &Engine{cfg: cfg, gate: base.gate, pools: []*pool{{cfg: &cfg.Pools[0], selector: base.pools[0].selector, params: params}}}
}

// FuzzDailyWindowGoAndRego checks that the two implementations of kured's daily window
// agree: engine/schedule's Daily.Contains (which also drives nextAllowed) and the
// default Rego gate's daily-window rules (policies/gate.rego), evaluated through the
// engine exactly as the agent does. Both are asked about the fuzzed instant and about the
// instants where either could flip: kured's start and end bounds on the instant's local
// date (and their 24-hour shifts for a window crossing midnight), a nanosecond either
// side of each, and Go's next opening.
func FuzzDailyWindowGoAndRego(f *testing.F) {
	base := newEngine(f, "")
	seed := func(days schedule.Weekdays, start, end, zone, at string) {
		tm, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			f.Fatal(err)
		}
		zi := slices.Index(windowZones, zone)
		if zi < 0 {
			f.Fatalf("seed zone %s is not in windowZones", zone)
		}
		secs := func(hms string) (uint32, uint32) {
			tod, err := schedule.ParseTimeOfDay(hms)
			if err != nil {
				f.Fatal(err)
			}
			frac := 0
			if i := strings.IndexByte(hms, '.'); i >= 0 {
				frac, _ = strconv.Atoi((hms[i+1:] + "000000000")[:9])
			}
			return uint32(tod.Seconds()), uint32(frac)
		}
		s, sf := secs(start)
		e, ef := secs(end)
		d := tm.Sub(windowEpoch)
		f.Add(uint8(days), s, sf, e, ef, uint8(0), uint8(zi), int64(d/time.Second), int64(d%time.Second), int32(0))
	}
	all := schedule.AllDays
	weekdays := schedule.Weekdays(0b0111110)
	seed(weekdays, "21:00:00", "05:00:00", "UTC", "2026-11-24T05:00:00.999999999Z") // last nanosecond of a crossing window
	seed(1<<time.Monday|1<<time.Tuesday, "21:00:00", "05:00:00", "America/Los_Angeles", "2019-04-04T00:49:00-07:00")
	seed(weekdays, "17:00:00.5", "17:00:00", "UTC", "2026-11-23T12:00:00Z")          // crosses midnight by half a second
	seed(1<<time.Wednesday, "23:59:59", "23:59:59", "UTC", "1969-12-31T23:59:59.5Z") // before 1970
	seed(0, "00:00:00", "23:59:59", "UTC", "2026-11-28T12:00:00Z")                   // no days: never
	// Europe/Berlin: spring forward 2026-03-29 02:00→03:00, fall back 2026-10-25 03:00→02:00.
	seed(all, "02:30:00", "03:15:00", "Europe/Berlin", "2026-03-29T03:10:00+02:00")
	seed(all, "00:00:00", "02:30:00", "Europe/Berlin", "2026-10-25T02:45:00+02:00")
	seed(all, "23:30:00", "04:00:00", "Europe/Berlin", "2026-10-25T00:15:00+02:00")
	seed(all, "22:00:00", "00:30:00", "Europe/Berlin", "2026-10-25T23:45:00+01:00")
	seed(all, "22:00:00", "04:00:00", "Europe/Berlin", "2026-03-29T03:30:00+02:00")
	// America/New_York: spring forward 2026-03-08 02:00→03:00, fall back 2026-11-01 02:00→01:00.
	seed(all, "02:30:00", "03:30:00", "America/New_York", "2026-03-08T01:45:00-05:00")
	seed(all, "01:30:00", "01:45:00", "America/New_York", "2026-11-01T01:40:00-05:00")
	seed(all, "23:00:00", "01:30:00", "America/New_York", "2026-11-01T01:20:00-05:00")
	seed(all, "22:00:00", "02:30:00", "America/New_York", "2026-03-08T22:30:00-04:00")
	// Australia/Lord_Howe: 30 minutes, forward 2026-10-04 02:00→02:30, back 2026-04-05 02:00→01:30.
	seed(all, "02:15:00", "02:20:00", "Australia/Lord_Howe", "2026-10-04T02:47:00+11:00")
	seed(all, "01:45:00", "01:50:00", "Australia/Lord_Howe", "2026-04-05T01:47:00+11:00")
	seed(all, "23:45:00", "01:45:00", "Australia/Lord_Howe", "2026-04-05T00:10:00+11:00")
	seed(all, "22:00:00", "02:15:00", "Australia/Lord_Howe", "2026-10-04T23:59:59.5+11:00")
	// Midnight DST (Sao Paulo 2018-11-04 has no 00:00) and a skipped day (Apia 2011-12-30).
	seed(all, "00:00:00", "00:30:00", "America/Sao_Paulo", "2018-11-04T01:15:00-02:00")
	seed(all, "22:00:00", "02:00:00", "Pacific/Apia", "2011-12-31T01:00:00+14:00")
	f.Add(uint8(0x7f), uint32(0), uint32(0), uint32(600), uint32(0), uint8(3), uint8(1), int64(4e9), int64(0), int32(-1800))

	f.Fuzz(func(t *testing.T, days uint8, start, startFrac, end, endFrac uint32, anchor, zone uint8, sec, nsec int64, shift int32) {
		c := decodeDailyCase(t, days, start, startFrac, end, endFrac, anchor, zone, sec, nsec, shift)
		dayList := strings.Join(c.days.Names(), ",") // "" = no days: never open, as in kured
		cfg, err := config.Resolve(&config.Config{
			APIVersion: config.APIVersion, Kind: config.Kind,
			Pools: []config.Pool{{Name: "p", Windows: []config.Window{{
				Days: config.Days{dayList}, StartTime: c.start, EndTime: c.end, TimeZone: c.zone,
			}}}},
		})
		if err != nil {
			t.Fatalf("config: %v", err)
		}
		e := engineFor(t, base, cfg)
		w := cfg.Pools[0].Windows[0].(schedule.Daily)
		node := &facts.Facts{Node: testNode("n1", nil)}

		check := func(what string, at time.Time) {
			if at.Before(windowEpoch) || !at.Before(windowEnd) {
				return
			}
			goOpen := w.Contains(at)
			d := e.Decide(context.Background(), node, at)
			regoOpen := d.Allowed
			if !regoOpen && (len(d.Reasons) != 1 || !strings.HasPrefix(d.Reasons[0].Message, "outside every reboot window")) {
				t.Fatalf("%s at %s: unexpected reasons %v", w, at.In(w.Location).Format(time.RFC3339Nano), sources(d))
			}
			if goOpen != regoOpen {
				t.Fatalf("window %q-%q days %q in %s, %s %s (%s, %s UTC): engine/schedule says open=%v, the Rego gate says open=%v",
					c.start, c.end, dayList, c.zone, what, at.In(w.Location).Format(time.RFC3339Nano), at.In(w.Location).Weekday(),
					at.UTC().Format(time.RFC3339Nano), goOpen, regoOpen)
			}
			if goOpen && d.NextAllowed != d.At {
				t.Fatalf("%s: open at %s but nextAllowed is %s", w, d.At, d.NextAllowed)
			}
		}
		check("at the fuzzed instant", c.at)

		// kured's bounds on the instant's local date, their 24-hour shifts, and a
		// nanosecond either side of each.
		s, en := w.Bounds(c.at)
		for _, b := range []struct {
			what string
			at   time.Time
		}{{"at the start", s}, {"at the end", en}, {"at the start less 24h", s.Add(-24 * time.Hour)}, {"at the end plus 24h", en.Add(24 * time.Hour)}} {
			check(b.what, b.at)
			check(b.what+" less 1ns", b.at.Add(-time.Nanosecond))
			check(b.what+" plus 1ns", b.at.Add(time.Nanosecond))
		}
		if o, ok := w.NextOpening(c.at); ok {
			check("at Go's next opening", o)
			check("1ns before Go's next opening", o.Add(-time.Nanosecond))
		}
	})
}
