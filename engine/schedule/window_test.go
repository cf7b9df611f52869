package schedule

import (
	"testing"
	"time"
)

func TestBlackoutContains(t *testing.T) {
	b := Blackout{Name: "freeze", Start: utc(t, "2026-12-20T00:00:00Z"), End: utc(t, "2027-01-04T00:00:00Z")}
	for _, tc := range []struct {
		at   string
		want bool
	}{
		{"2026-12-19T23:59:59.999999999Z", false},
		{"2026-12-20T00:00:00Z", true},
		{"2027-01-03T23:59:59.999999999Z", true},
		{"2027-01-04T00:00:00Z", false},
	} {
		if got := b.Contains(utc(t, tc.at)); got != tc.want {
			t.Errorf("Contains(%s) = %v, want %v", tc.at, got, tc.want)
		}
	}
	empty := Blackout{Start: b.End, End: b.Start}
	if empty.Contains(utc(t, "2026-12-25T00:00:00Z")) {
		t.Error("inverted blackout should be empty")
	}
}

func TestNextAllowed(t *testing.T) {
	office := mustDaily(t, "mon,tue,wed,thu,fri", "9am", "5pm", "UTC")
	nights := mustDaily(t, "su,mo,tu,we,th,fr,sa", "22:00", "02:00", "UTC")
	patch := mustCron(t, "0 2 8-14 * *", 4*time.Hour, "tue", "UTC")
	var nilDaily Window

	bo := func(start, end string) Blackout {
		return Blackout{Name: start, Start: utc(t, start), End: utc(t, end)}
	}
	week := 7 * 24 * time.Hour
	tests := []struct {
		name      string
		now       string
		windows   []Window
		blackouts []Blackout
		horizon   time.Duration
		want      string // "" = none
	}{
		{name: "no windows: now", now: "2026-01-05T03:00:00Z", horizon: week, want: "2026-01-05T03:00:00Z"},
		{name: "no windows, horizon 0", now: "2026-01-05T03:00:00Z", horizon: 0, want: "2026-01-05T03:00:00Z"},
		{name: "negative horizon", now: "2026-01-05T03:00:00Z", horizon: -1, want: ""},
		{name: "no windows, blackout", now: "2026-01-05T03:00:00Z", blackouts: []Blackout{bo("2026-01-05T00:00:00Z", "2026-01-06T00:00:00Z")}, horizon: week, want: "2026-01-06T00:00:00Z"},
		{name: "chained blackouts", now: "2026-01-05T03:00:00Z", blackouts: []Blackout{
			bo("2026-01-06T12:00:00Z", "2026-01-07T00:00:00Z"),
			bo("2026-01-05T00:00:00Z", "2026-01-06T00:00:00Z"),
			bo("2026-01-05T23:00:00Z", "2026-01-06T12:00:00Z"),
		}, horizon: week, want: "2026-01-07T00:00:00Z"},
		{name: "overlapping blackouts take the latest end", now: "2026-01-05T03:00:00Z", blackouts: []Blackout{
			bo("2026-01-05T00:00:00Z", "2026-01-05T06:00:00Z"),
			bo("2026-01-05T01:00:00Z", "2026-01-05T08:00:00Z"),
		}, horizon: week, want: "2026-01-05T08:00:00Z"},
		{name: "inside window", now: "2026-01-05T10:00:00Z", windows: []Window{office}, horizon: week, want: "2026-01-05T10:00:00Z"},
		{name: "before window", now: "2026-01-05T03:00:00Z", windows: []Window{office}, horizon: week, want: "2026-01-05T09:00:00Z"},
		{name: "weekend", now: "2026-01-09T17:30:00Z", windows: []Window{office}, horizon: week, want: "2026-01-12T09:00:00Z"},
		{name: "horizon too short", now: "2026-01-09T17:30:00Z", windows: []Window{office}, horizon: 24 * time.Hour, want: ""},
		{name: "horizon exactly reaches", now: "2026-01-05T03:00:00Z", windows: []Window{office}, horizon: 6 * time.Hour, want: "2026-01-05T09:00:00Z"},
		{name: "blackout delays inside window", now: "2026-01-05T08:00:00Z", windows: []Window{office}, blackouts: []Blackout{bo("2026-01-05T09:00:00Z", "2026-01-05T12:00:00Z")}, horizon: week, want: "2026-01-05T12:00:00Z"},
		{name: "blackout covers the window day", now: "2026-01-05T08:00:00Z", windows: []Window{office}, blackouts: []Blackout{bo("2026-01-05T00:00:00Z", "2026-01-06T00:00:00Z")}, horizon: week, want: "2026-01-06T09:00:00Z"},
		{name: "blackout ends after window closes", now: "2026-01-05T08:00:00Z", windows: []Window{office}, blackouts: []Blackout{bo("2026-01-05T08:00:00Z", "2026-01-05T17:00:01Z")}, horizon: week, want: "2026-01-06T09:00:00Z"},
		{name: "two windows: earliest", now: "2026-01-05T18:00:00Z", windows: []Window{office, nights}, horizon: week, want: "2026-01-05T22:00:00Z"},
		{name: "two windows: first inside", now: "2026-01-06T01:00:00Z", windows: []Window{office, nights}, horizon: week, want: "2026-01-06T01:00:00Z"},
		{name: "patch tuesday", now: "2026-01-01T00:00:00Z", windows: []Window{patch}, horizon: 400 * 24 * time.Hour, want: "2026-01-13T02:00:00Z"},
		{name: "patch tuesday blacked out", now: "2026-01-01T00:00:00Z", windows: []Window{patch}, blackouts: []Blackout{bo("2026-01-13T00:00:00Z", "2026-01-14T00:00:00Z")}, horizon: 400 * 24 * time.Hour, want: "2026-02-10T02:00:00Z"},
		{name: "patch tuesday partly blacked out", now: "2026-01-01T00:00:00Z", windows: []Window{patch}, blackouts: []Blackout{bo("2026-01-01T00:00:00Z", "2026-01-13T05:00:00Z")}, horizon: 400 * 24 * time.Hour, want: "2026-01-13T05:00:00Z"},
		{name: "nil window ignored", now: "2026-01-05T03:00:00Z", windows: []Window{nilDaily, office}, horizon: week, want: "2026-01-05T09:00:00Z"},
		{name: "only nil windows", now: "2026-01-05T03:00:00Z", windows: []Window{nilDaily}, horizon: week, want: ""},
		{name: "window that never opens", now: "2026-01-05T03:00:00Z", windows: []Window{Daily{}}, horizon: week, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := utc(t, tt.now)
			got, ok := NextAllowed(now, tt.windows, tt.blackouts, tt.horizon)
			if tt.want == "" {
				if ok {
					t.Fatalf("NextAllowed = %s, want none", got)
				}
				return
			}
			if !ok || !got.Equal(utc(t, tt.want)) {
				t.Fatalf("NextAllowed = %s, %v; want %s", got, ok, tt.want)
			}
		})
	}
}

func TestNextAllowedManyBlackouts(t *testing.T) {
	// 20000 adjacent one-second blackouts merge into one.
	start := utc(t, "2026-01-05T00:00:00Z")
	var bs []Blackout
	for i := 2*maxAllowedSteps - 1; i >= 0; i-- {
		s := start.Add(time.Duration(i) * time.Second)
		bs = append(bs, Blackout{Start: s, End: s.Add(time.Second)})
	}
	want := start.Add(2 * maxAllowedSteps * time.Second)
	if got, ok := NextAllowed(start, nil, bs, 365*24*time.Hour); !ok || !got.Equal(want) {
		t.Fatalf("NextAllowed = %s, %v; want %s", got, ok, want)
	}
}

func TestNextAllowedFailsClosedAfterTooManySteps(t *testing.T) {
	// A one-second window every day, each one blacked out, for 30 years:
	// the search gives up rather than running on.
	start := utc(t, "2026-01-05T00:00:00Z")
	w := mustDaily(t, "su,mo,tu,we,th,fr,sa", "12:00", "12:00", "UTC")
	var bs []Blackout
	for d := 0; d < 30*366; d++ {
		s := start.AddDate(0, 0, d).Add(12 * time.Hour)
		bs = append(bs, Blackout{Start: s, End: s.Add(time.Second)})
	}
	if got, ok := NextAllowed(start, []Window{w}, bs, 40*365*24*time.Hour); ok {
		t.Fatalf("NextAllowed = %s, want fail closed", got)
	}
}
