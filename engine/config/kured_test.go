package config

import (
	"slices"
	"strings"
	"testing"
)

// TestFromKured: kured's flags make one pool "default" over every node, a window only
// when a window flag was given, kured's alert filter semantics, and errors named after
// the flag (and its KURED_* variable) quoting the value.
func TestFromKured(t *testing.T) {
	everyDay := []string{"su", "mo", "tu", "we", "th", "fr", "sa"}
	defaults := func() KuredFlags {
		return KuredFlags{Concurrency: "1", RebootDays: everyDay, StartTime: "0:00", EndTime: "23:59:59", TimeZone: "UTC", Given: map[string]bool{}}
	}
	cases := []struct {
		name   string
		edit   func(*KuredFlags)
		check  func(t *testing.T, r *Resolved)
		errHas string
	}{
		{name: "defaults: any time, one at a time, alerts block every node", check: func(t *testing.T, r *Resolved) {
			p := r.Pools[0]
			if p.Name != DefaultPoolName || len(r.Pools) != 1 || len(r.Source.Pools[0].Windows) != 0 || p.Concurrency.String() != "1" {
				t.Errorf("pool = %+v, want default, no window, concurrency 1", r.Source.Pools[0])
			}
			if nl := r.Source.Blockers.Alerts.NodeLabels; nl == nil || len(*nl) != 0 {
				t.Errorf("alert nodeLabels = %v, want [] (kured: every alert blocks every node)", nl)
			}
		}},
		{name: "a window flag makes the window", edit: func(k *KuredFlags) {
			k.StartTime, k.EndTime, k.TimeZone = "9pm", "5am", "Europe/Berlin"
			k.Given[KuredStartTime] = true
		}, check: func(t *testing.T, r *Resolved) {
			w := r.Source.Pools[0].Windows
			if len(w) != 1 || w[0].StartTime != "9pm" || w[0].EndTime != "5am" || w[0].TimeZone != "Europe/Berlin" || !slices.Equal(w[0].Days, Days(everyDay)) {
				t.Errorf("windows = %+v", w)
			}
		}},
		{name: "empty reboot days: never", edit: func(k *KuredFlags) {
			k.RebootDays = nil
			k.Given[KuredRebootDays] = true
		}, check: func(t *testing.T, r *Resolved) {
			if w := r.Source.Pools[0].Windows; len(w) != 1 || !slices.Equal(w[0].Days, Days{""}) {
				t.Errorf("windows = %+v, want one with no day", w)
			}
		}},
		{name: "explicitly empty alert filter matches every name", edit: func(k *KuredFlags) { k.Given[KuredAlertFilterRegexp] = true },
			check: func(t *testing.T, r *Resolved) {
				if f := r.Source.Blockers.Alerts.FilterRegexp; f != ".*" {
					t.Errorf("filterRegexp = %q, want .*", f)
				}
			}},
		{name: "percent concurrency and blockers", edit: func(k *KuredFlags) {
			k.Concurrency, k.BlockingPodSelectors, k.AlertFiringOnly = " 10% ", []string{"app=backup"}, true
		}, check: func(t *testing.T, r *Resolved) {
			if c := r.Source.Pools[0].Concurrency.String(); c != "10%" {
				t.Errorf("concurrency = %s", c)
			}
			if b := r.Source.Blockers; !slices.Equal(b.Pods.Selectors, []string{"app=backup"}) || !b.Alerts.FiringOnly {
				t.Errorf("blockers = %+v", b)
			}
		}},
		{name: "bad start time names the flag and the value", edit: func(k *KuredFlags) {
			k.StartTime = "25:00"
			k.Given[KuredStartTime] = true
		}, errHas: `--start-time: "25:00"`},
		{name: "from env, the variable too", edit: func(k *KuredFlags) {
			k.TimeZone = "Mars/Olympus"
			k.Given[KuredTimeZone] = true
			k.Env = map[string]string{KuredTimeZone: "KURED_TIME_ZONE"}
		}, errHas: `--time-zone (env KURED_TIME_ZONE): `},
		{name: "bad selector", edit: func(k *KuredFlags) { k.BlockingPodSelectors = []string{"a=b", "=="} }, errHas: "--blocking-pod-selector: "},
		{name: "bad concurrency", edit: func(k *KuredFlags) { k.Concurrency = "many" }, errHas: `--concurrency: `},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k := defaults()
			if c.edit != nil {
				c.edit(&k)
			}
			r, err := FromKured(k)
			if c.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), c.errHas) {
					t.Fatalf("err = %v, want it to contain %q", err, c.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, r)
		})
	}
}
