package schedule

import (
	"strings"
	"testing"
	"time"
)

func TestParseDays(t *testing.T) {
	const (
		su = 1 << time.Sunday
		mo = 1 << time.Monday
		tu = 1 << time.Tuesday
		we = 1 << time.Wednesday
		th = 1 << time.Thursday
		fr = 1 << time.Friday
		sa = 1 << time.Saturday
	)
	tests := []struct {
		name    string
		items   []string
		want    Weekdays
		wantErr string
	}{
		{name: "nil", items: nil, want: 0},
		{name: "kured default", items: []string{"su", "mo", "tu", "we", "th", "fr", "sa"}, want: AllDays},
		{name: "short names", items: []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}, want: AllDays},
		{name: "full names", items: []string{"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"}, want: AllDays},
		{name: "numbers", items: []string{"0", "1", "2", "3", "4", "5", "6"}, want: AllDays},
		{name: "case-insensitive", items: []string{"MON", "Tue", "wEdNeSdAy", "FR"}, want: mo | tu | we | fr},
		{name: "comma list in one item", items: []string{"mon,tue"}, want: mo | tu},
		{name: "comma lists and items", items: []string{"mon,tue", "6", "sunday"}, want: mo | tu | sa | su},
		{name: "empty items skipped", items: []string{"", "mon,,tue,", ","}, want: mo | tu},
		{name: "duplicates", items: []string{"mon", "1", "monday"}, want: mo},
		{name: "atoi forms like kured", items: []string{"04", "+5"}, want: th | fr},
		{name: "sunday is zero", items: []string{"0"}, want: su},
		{name: "unknown name", items: []string{"funday"}, wantErr: `"funday" is not a day (use su|sun|sunday … sa|sat|saturday or 0-6)`},
		{name: "seven", items: []string{"mon", "7"}, wantErr: `"7" is not a day`},
		{name: "negative", items: []string{"-1"}, wantErr: `"-1" is not a day`},
		{name: "bad element in list", items: []string{"mon,tues"}, wantErr: `"tues" is not a day`},
		{name: "spaces not trimmed (kured neither)", items: []string{"mon, tue"}, wantErr: `" tue" is not a day`},
		{name: "prefix is not a name", items: []string{"m"}, wantErr: `"m" is not a day`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDays(tt.items)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseDays(%q) error = %v, want containing %q", tt.items, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDays(%q): %v", tt.items, err)
			}
			if got != tt.want {
				t.Errorf("ParseDays(%q) = %08b, want %08b", tt.items, got, tt.want)
			}
		})
	}
}

func TestWeekdaysMethods(t *testing.T) {
	w, err := ParseDays([]string{"sat,mon,sun"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(w.Names(), ","), "Sunday,Monday,Saturday"; got != want {
		t.Errorf("Names() = %s, want %s", got, want)
	}
	if got, want := w.String(), "Sunday,Monday,Saturday"; got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
	for d := time.Weekday(-3); d < 10; d++ {
		want := d == time.Sunday || d == time.Monday || d == time.Saturday
		if got := w.Contains(d); got != want {
			t.Errorf("Contains(%d) = %v, want %v", d, got, want)
		}
	}
	if got := Weekdays(0).String(); got != "none" {
		t.Errorf("empty String() = %q, want none", got)
	}
	if got := Weekdays(0).Names(); got == nil || len(got) != 0 {
		t.Errorf("empty Names() = %#v, want empty non-nil slice", got)
	}
	if got := len(AllDays.Names()); got != 7 {
		t.Errorf("AllDays has %d names", got)
	}
	if got := (AllDays | 1<<7).String(); got != AllDays.String() {
		t.Errorf("bit 7 leaked into String(): %s", got)
	}
}

func TestParseTimeOfDay(t *testing.T) {
	tests := []struct {
		in      string
		want    TimeOfDay
		wantErr bool
	}{
		{in: "5pm", want: TimeOfDay{17, 0, 0, 0}},
		{in: "3pm", want: TimeOfDay{15, 0, 0, 0}},
		{in: "17:00", want: TimeOfDay{17, 0, 0, 0}},
		{in: "17", want: TimeOfDay{17, 0, 0, 0}},
		{in: "7", want: TimeOfDay{7, 0, 0, 0}},
		{in: "9am", want: TimeOfDay{9, 0, 0, 0}},
		{in: "12am", want: TimeOfDay{0, 0, 0, 0}},
		{in: "12pm", want: TimeOfDay{12, 0, 0, 0}},
		{in: "0am", want: TimeOfDay{0, 0, 0, 0}},
		{in: "0pm", want: TimeOfDay{12, 0, 0, 0}}, // time.Parse's reading
		{in: "11:30pm", want: TimeOfDay{23, 30, 0, 0}},
		{in: "05:00pm", want: TimeOfDay{17, 0, 0, 0}},
		{in: "0:00", want: TimeOfDay{0, 0, 0, 0}},
		{in: "5:00", want: TimeOfDay{5, 0, 0, 0}},
		{in: "09:05", want: TimeOfDay{9, 5, 0, 0}},
		{in: "23:59:59", want: TimeOfDay{23, 59, 59, 0}},
		{in: "17:00:00.5", want: TimeOfDay{17, 0, 0, 500000000}},
		{in: "5:00pm", wantErr: true},
		{in: "1:00pm", wantErr: true},
		{in: "5PM", wantErr: true},
		{in: "5 pm", wantErr: true},
		{in: "24:00", wantErr: true},
		{in: "13pm", wantErr: true},
		{in: "9:5", wantErr: true},
		{in: "17:00:60", wantErr: true},
		{in: "007", wantErr: true},
		{in: " 5pm", wantErr: true},
		{in: "5pm ", wantErr: true},
		{in: "", wantErr: true},
		{in: "noon", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTimeOfDay(tt.in)
			if tt.wantErr {
				want := `"` + tt.in + `" is not a time (use 17:00, 5pm, 05:00pm)`
				if err == nil || err.Error() != want {
					t.Fatalf("ParseTimeOfDay(%q) error = %v, want %q", tt.in, err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTimeOfDay(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseTimeOfDay(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestTimeOfDayMethods(t *testing.T) {
	tod := TimeOfDay{Hour: 9, Minute: 5, Second: 7}
	if got := tod.String(); got != "09:05:07" {
		t.Errorf("String() = %s", got)
	}
	if got := tod.Seconds(); got != 9*3600+5*60+7 {
		t.Errorf("Seconds() = %d", got)
	}
}

func TestLoadLocation(t *testing.T) {
	for _, tt := range []struct {
		name, want string
		same       *time.Location
	}{
		{name: "", same: time.UTC},
		{name: "UTC", same: time.UTC},
		{name: "Local", same: time.Local},
		{name: "America/Los_Angeles", want: "America/Los_Angeles"},
		{name: "Europe/Berlin", want: "Europe/Berlin"},
	} {
		loc, err := LoadLocation(tt.name)
		if err != nil {
			t.Fatalf("LoadLocation(%q): %v", tt.name, err)
		}
		if tt.same != nil && loc != tt.same {
			t.Errorf("LoadLocation(%q) = %v, want %v", tt.name, loc, tt.same)
		}
		if tt.want != "" && loc.String() != tt.want {
			t.Errorf("LoadLocation(%q) = %v", tt.name, loc)
		}
	}
	for _, bad := range []string{"Mars/Olympus_Mons", "../etc/passwd", "utc "} {
		_, err := LoadLocation(bad)
		if err == nil || !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("LoadLocation(%q) error = %v, want one naming the zone", bad, err)
		}
	}
}

func TestParseDaily(t *testing.T) {
	d, err := ParseDaily([]string{"mon,tue"}, "9pm", "5am", "America/Los_Angeles")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.String(), "Monday,Tuesday 21:00:00-05:00:00 America/Los_Angeles"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	for _, tt := range []struct {
		days             []string
		start, end, zone string
		wantErr          string
	}{
		{days: []string{"xx"}, start: "1", end: "2", wantErr: `reboot days: "xx" is not a day`},
		{days: nil, start: "5:00pm", end: "2", wantErr: `start time: "5:00pm" is not a time`},
		{days: nil, start: "1", end: "24:00", wantErr: `end time: "24:00" is not a time`},
		{days: nil, start: "1", end: "2", zone: "Nowhere/Land", wantErr: `"Nowhere/Land"`},
	} {
		_, err := ParseDaily(tt.days, tt.start, tt.end, tt.zone)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseDaily(%q, %q, %q, %q) error = %v, want containing %q", tt.days, tt.start, tt.end, tt.zone, err, tt.wantErr)
		}
	}
}
