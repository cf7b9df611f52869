package schedule

import (
	"strings"
	"testing"
	"time"
)

func mustCron(t testing.TB, spec string, d time.Duration, days string, zone string) Cron {
	t.Helper()
	w, err := ParseDays([]string{days})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCron(spec, d, w, mustLoc(t, zone))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseCron(t *testing.T) {
	tue := Weekdays(1 << time.Tuesday)
	tests := []struct {
		spec    string
		d       time.Duration
		days    Weekdays
		wantErr string
	}{
		{spec: "0 2 8-14 * *", d: 4 * time.Hour, days: tue},
		{spec: "  0 2 8-14 * *  ", d: 4 * time.Hour, days: tue},
		{spec: "*/15 1-5 * * mon-fri", d: time.Minute},
		{spec: "0 0 1 jan,jul *", d: time.Hour},
		{spec: "@daily", d: time.Hour},
		{spec: "@midnight", d: time.Hour},
		{spec: "@weekly", d: time.Hour},
		{spec: "@monthly", d: MaxCronDuration},
		{spec: "@yearly", d: time.Hour},
		{spec: "@annually", d: time.Hour},
		{spec: "@hourly", d: time.Nanosecond},
		{spec: "0 0 29 2 *", d: time.Hour},
		{spec: "0 0 13 * *", d: time.Hour, days: 1 << time.Friday},
		{spec: "", d: time.Hour, wantErr: "empty"},
		{spec: "   ", d: time.Hour, wantErr: "empty"},
		{spec: "@every 1h", d: time.Hour, wantErr: `"@every 1h" has no fixed start`},
		{spec: "@every", d: time.Hour, wantErr: `"@every" has no fixed start`},
		{spec: "TZ=UTC 0 0 * * *", d: time.Hour, wantErr: `"TZ=UTC 0 0 * * *" sets its own time zone`},
		{spec: "TZ=UTC", d: time.Hour, wantErr: "sets its own time zone"}, // would panic in cron.ParseStandard
		{spec: "CRON_TZ=Europe/Berlin 0 0 * * *", d: time.Hour, wantErr: "use timeZone"},
		{spec: "0 0 * *", d: time.Hour, wantErr: `cron schedule "0 0 * *": expected exactly 5 fields`},
		{spec: "0 0 0 * * *", d: time.Hour, wantErr: "expected exactly 5 fields"},
		{spec: "60 * * * *", d: time.Hour, wantErr: `"60 * * * *"`},
		{spec: "* * * * 7", d: time.Hour, wantErr: "above maximum"},
		{spec: "*/0 * * * *", d: time.Hour, wantErr: "step"},
		{spec: "@fortnightly", d: time.Hour, wantErr: "unrecognized descriptor"},
		{spec: "0 0 30 2 *", d: time.Hour, wantErr: `"0 0 30 2 *" never fires`},
		{spec: "0 0 * * mon", d: time.Hour, days: tue, wantErr: `"0 0 * * mon" never fires on Tuesday`},
		{spec: "0 0 * * *", d: 0, wantErr: "duration 0s must be more than 0"},
		{spec: "0 0 * * *", d: -time.Hour, wantErr: "duration -1h0m0s"},
		{spec: "0 0 * * *", d: MaxCronDuration + 1, wantErr: "at most 744h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			c, err := ParseCron(tt.spec, tt.d, tt.days, time.UTC)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseCron(%q, %s, %s) error = %v, want containing %q", tt.spec, tt.d, tt.days, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCron(%q): %v", tt.spec, err)
			}
			if c.Spec != tt.spec || c.Duration != tt.d || c.Days != tt.days || c.Location != time.UTC {
				t.Errorf("ParseCron(%q) = %+v", tt.spec, c)
			}
		})
	}
}

func TestParseCronNilLocationIsUTC(t *testing.T) {
	c, err := ParseCron("0 9 * * *", time.Hour, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Location != time.UTC || !c.Contains(utc(t, "2026-01-05T09:30:00Z")) {
		t.Errorf("nil location: %+v", c)
	}
}

func TestCronPatchTuesday2026(t *testing.T) {
	secondTuesdays := []string{
		"2026-01-13", "2026-02-10", "2026-03-10", "2026-04-14", "2026-05-12", "2026-06-09",
		"2026-07-14", "2026-08-11", "2026-09-08", "2026-10-13", "2026-11-10", "2026-12-08",
	}
	for _, zone := range []string{"UTC", "Europe/Berlin", "America/Los_Angeles"} {
		c := mustCron(t, "0 2 8-14 * *", 4*time.Hour, "tue", zone)
		for i, day := range secondTuesdays {
			opens := at(t, zone, day+" 02:00:00")
			if opens.Weekday() != time.Tuesday || opens.Day() < 8 || opens.Day() > 14 {
				t.Fatalf("table error: %s is not a second Tuesday", day)
			}
			for _, tc := range []struct {
				at   time.Time
				want bool
			}{
				{opens.Add(-time.Nanosecond), false},
				{opens, true},
				{opens.Add(3*time.Hour + 59*time.Minute + 59*time.Second + 999999999), true},
				{opens.Add(4 * time.Hour), false},
				{opens.AddDate(0, 0, 1), false},  // the Wednesday after
				{opens.AddDate(0, 0, -7), false}, // the first Tuesday
				{opens.AddDate(0, 0, 7), false},  // the third Tuesday
			} {
				got, ok := c.Active(tc.at)
				if ok != tc.want {
					t.Errorf("%s: Active(%s) = %v, want %v", zone, tc.at, ok, tc.want)
				}
				if ok && !got.Equal(opens) {
					t.Errorf("%s: Active(%s) opened at %s, want %s", zone, tc.at, got, opens)
				}
			}
			// From the previous window's close, the next opening is this one.
			from := opens.AddDate(0, 0, -20)
			if i > 0 {
				from = at(t, zone, secondTuesdays[i-1]+" 06:00:00")
			}
			got, ok := c.NextOpening(from)
			if !ok || !got.Equal(opens) {
				t.Errorf("%s: NextOpening(%s) = %s, %v; want %s", zone, from, got, ok, opens)
			}
		}
	}
}

func TestCronActive(t *testing.T) {
	tests := []struct {
		name       string
		spec       string
		d          time.Duration
		days, zone string
		at         string
		want       string // opening, "" = inactive
	}{
		{name: "at the hit", spec: "0 0 * * *", d: time.Hour, zone: "UTC", at: "2026-01-05T00:00:00Z", want: "2026-01-05T00:00:00Z"},
		{name: "end is exclusive", spec: "0 0 * * *", d: time.Hour, zone: "UTC", at: "2026-01-05T01:00:00Z"},
		{name: "last nanosecond", spec: "0 0 * * *", d: time.Hour, zone: "UTC", at: "2026-01-05T00:59:59.999999999Z", want: "2026-01-05T00:00:00Z"},
		{name: "before the hit", spec: "0 0 * * *", d: time.Hour, zone: "UTC", at: "2026-01-04T23:59:59.999999999Z"},
		{name: "overlapping windows report the earliest", spec: "0 * * * *", d: 150 * time.Minute, zone: "UTC", at: "2026-01-05T03:29:59Z", want: "2026-01-05T01:00:00Z"},
		{name: "overlap: earliest window just closed", spec: "0 * * * *", d: 150 * time.Minute, zone: "UTC", at: "2026-01-05T03:30:00Z", want: "2026-01-05T02:00:00Z"},
		{name: "long window", spec: "@monthly", d: 10 * 24 * time.Hour, zone: "UTC", at: "2026-02-10T23:59:59Z", want: "2026-02-01T00:00:00Z"},
		{name: "long window closed", spec: "@monthly", d: 10 * 24 * time.Hour, zone: "UTC", at: "2026-02-11T00:00:00Z"},
		{name: "window spans days filter applies to hit", spec: "0 22 * * *", d: 4 * time.Hour, days: "fri", zone: "UTC", at: "2026-01-10T01:00:00Z", want: "2026-01-09T22:00:00Z"},
		{name: "non-counting hit", spec: "0 22 * * *", d: 4 * time.Hour, days: "fri", zone: "UTC", at: "2026-01-11T01:00:00Z"},
		{name: "zone", spec: "30 9 * * *", d: time.Hour, zone: "Europe/Berlin", at: "2026-01-05T08:30:00Z", want: "2026-01-05T08:30:00Z"},
		{name: "zone in summer", spec: "30 9 * * *", d: time.Hour, zone: "Europe/Berlin", at: "2026-07-06T07:30:00Z", want: "2026-07-06T07:30:00Z"},
		{name: "zone weekday", spec: "0 0 * * *", d: time.Hour, days: "mon", zone: "Europe/Berlin", at: "2026-01-04T23:30:00Z", want: "2026-01-04T23:00:00Z"},
		{name: "LA day after spring forward", spec: "30 9 * * *", d: time.Hour, zone: "America/Los_Angeles", at: "2026-03-08T16:30:00Z", want: "2026-03-08T16:30:00Z"},
		{name: "LA day before spring forward", spec: "30 9 * * *", d: time.Hour, zone: "America/Los_Angeles", at: "2026-03-07T17:30:00Z", want: "2026-03-07T17:30:00Z"},
		{name: "Berlin fall back, duration is real time", spec: "0 1 * * *", d: 3 * time.Hour, zone: "Europe/Berlin", at: "2026-10-25T03:30:00+01:00"},
		{name: "Berlin fall back, inside", spec: "0 1 * * *", d: 3 * time.Hour, zone: "Europe/Berlin", at: "2026-10-25T02:30:00+01:00", want: "2026-10-25T01:00:00+02:00"},
		{name: "year 10000 fails closed", spec: "* * * * *", d: time.Hour, zone: "UTC", at: "9999-12-31T23:59:59Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustCron(t, tt.spec, tt.d, tt.days, tt.zone)
			when := utc(t, tt.at)
			got, ok := c.Active(when)
			if tt.want == "" {
				if ok || c.Contains(when) {
					t.Fatalf("%s: Active(%s) = %s, want inactive", c, tt.at, got)
				}
				return
			}
			if !ok || !got.Equal(utc(t, tt.want)) || !c.Contains(when) {
				t.Fatalf("%s: Active(%s) = %s, %v; want %s", c, tt.at, got, ok, tt.want)
			}
		})
	}
}

func TestCronZeroValueFailsClosed(t *testing.T) {
	var c Cron
	now := utc(t, "2026-01-05T00:00:00Z")
	if _, ok := c.Active(now); ok {
		t.Error("zero Cron is active")
	}
	if _, ok := c.NextOpening(now); ok {
		t.Error("zero Cron opens")
	}
	c = Cron{Spec: "* * * * *", Duration: time.Hour}
	if c.Contains(now) {
		t.Error("hand-built Cron is active")
	}
}

func TestCronLocalUsesLocal(t *testing.T) {
	// The cron library treats time.Local as "the zone of the time given";
	// Cron must use Local regardless of the zone of the argument.
	c, err := ParseCron("0 12 * * *", time.Minute, 0, time.Local)
	if err != nil {
		t.Fatal(err)
	}
	noonLocal := time.Date(2026, 1, 5, 12, 0, 0, 0, time.Local)
	if got, ok := c.Active(noonLocal.In(mustLoc(t, "Asia/Tokyo"))); !ok || !got.Equal(noonLocal) {
		t.Errorf("Active = %s, %v; want %s", got, ok, noonLocal)
	}
}

func TestCronNextOpening(t *testing.T) {
	tests := []struct {
		name       string
		spec       string
		d          time.Duration
		days, zone string
		from       string
		want       string
	}{
		{name: "inside", spec: "0 0 * * *", d: time.Hour, zone: "UTC", from: "2026-01-05T00:10:00Z", want: "2026-01-05T00:10:00Z"},
		{name: "next hit", spec: "0 0 * * *", d: time.Hour, zone: "UTC", from: "2026-01-05T01:00:00Z", want: "2026-01-06T00:00:00Z"},
		{name: "exactly at hit", spec: "0 0 * * *", d: time.Hour, zone: "UTC", from: "2026-01-06T00:00:00Z", want: "2026-01-06T00:00:00Z"},
		{name: "skips non-counting days", spec: "0 22 * * *", d: time.Hour, days: "sat,sun", zone: "UTC", from: "2026-01-05T00:00:00Z", want: "2026-01-10T22:00:00Z"},
		{name: "friday the 13th", spec: "0 0 13 * *", d: time.Hour, days: "fri", zone: "UTC", from: "2026-01-01T00:00:00Z", want: "2026-02-13T00:00:00Z"},
		{name: "friday the 13th after February", spec: "0 0 13 * *", d: time.Hour, days: "fri", zone: "UTC", from: "2026-02-14T00:00:00Z", want: "2026-03-13T00:00:00Z"},
		{name: "every minute on the 13th that is a friday", spec: "* * 13 * *", d: time.Minute, days: "fri", zone: "UTC", from: "2026-03-14T00:00:00Z", want: "2026-11-13T00:00:00Z"},
		{name: "leap day beyond 400 days", spec: "0 0 29 2 *", d: time.Hour, zone: "UTC", from: "2024-03-01T00:00:00Z", want: ""},
		{name: "leap day within 400 days", spec: "0 0 29 2 *", d: time.Hour, zone: "UTC", from: "2027-03-01T00:00:00Z", want: "2028-02-29T00:00:00Z"},
		{name: "Berlin", spec: "0 2 * * *", d: time.Hour, zone: "Europe/Berlin", from: "2026-01-05T12:00:00Z", want: "2026-01-06T01:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustCron(t, tt.spec, tt.d, tt.days, tt.zone)
			from := utc(t, tt.from)
			got, ok := c.NextOpening(from)
			if tt.want == "" {
				if ok {
					t.Fatalf("NextOpening(%s) = %s, want none", tt.from, got)
				}
				return
			}
			if !ok || !got.Equal(utc(t, tt.want)) {
				t.Fatalf("%s: NextOpening(%s) = %s, %v; want %s", c, tt.from, got, ok, tt.want)
			}
			checkEarliest(t, c, from, got)
		})
	}
}

func TestCronString(t *testing.T) {
	c := mustCron(t, "0 2 8-14 * *", 4*time.Hour, "tue", "UTC")
	if got, want := c.String(), `"0 2 8-14 * *" for 4h0m0s on Tuesday in UTC`; got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
}

func TestCronFailsClosedOnSubMinuteOffsets(t *testing.T) {
	// Monrovia kept the offset -00:44:30 until 1972; the cron library's
	// minute rounding is wrong there, so such instants fail closed.
	c := mustCron(t, "1 0 * * *", time.Hour, "", "Africa/Monrovia")
	if _, ok := c.Active(at(t, "Africa/Monrovia", "1970-06-01 00:30:00")); ok {
		t.Error("active in 1970 Monrovia")
	}
	if _, ok := c.NextOpening(at(t, "Africa/Monrovia", "1970-06-01 00:30:00")); ok {
		t.Error("opening found in 1970 Monrovia")
	}
	when := at(t, "Africa/Monrovia", "1973-06-01 00:30:00")
	if got, ok := c.Active(when); !ok || !got.Equal(at(t, "Africa/Monrovia", "1973-06-01 00:01:00")) {
		t.Errorf("Active(%s) = %s, %v", when, got, ok)
	}
}
