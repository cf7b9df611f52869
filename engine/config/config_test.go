package config

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
)

const header = "apiVersion: rebootgate.io/v1alpha1\nkind: RebootGateConfig\n"

func TestParseIssueExample(t *testing.T) {
	r, err := Parse([]byte(header + `
pools:
- name: default
  selector: "true"
  concurrency: 1
  windows:
  - days: "mon,tue,wed,thu,fri"
    startTime: "9am"
    endTime: "5pm"
    timeZone: America/Los_Angeles
  - schedule: "0 2 * * sat"
    duration: 4h
    timeZone: Europe/Berlin
  blackouts:
  - start: "2026-12-24T00:00:00+01:00"
    end: "2026-12-27T00:00:00+01:00"
  conditions:
  - name: ubuntu-only
    expression: 'node.labels["kubernetes.azure.com/node-image-version"].startsWith("AKSUbuntu")'
    message: "only Ubuntu node images reboot automatically"
blockers:
  pods:
    selectors: ["app=blocker"]
  alerts:
    filterRegexp: ""
    filterMatchOnly: false
    firingOnly: false
`))
	if err != nil {
		t.Fatal(err)
	}
	p := r.Pools[0]
	if len(p.Windows) != 2 || len(p.Blackouts) != 1 || len(p.Conditions) != 1 {
		t.Fatalf("pool not fully resolved: %+v", p)
	}
	w := p.Params.Windows[0]
	if w.StartSeconds != 9*3600 || w.EndSeconds != 17*3600 || len(w.Days) != 5 || w.Days[0] != "Monday" {
		t.Errorf("daily window params = %+v", w)
	}
	if c := p.Params.Windows[1]; c.Kind != "cron" || c.DurationSeconds != 4*3600 || c.TimeZone != "Europe/Berlin" {
		t.Errorf("cron window params = %+v", c)
	}
	if got := p.Params.PodSelectors[0].Requirements[0]; got.Key != "app" || got.Operator != "In" || got.Values[0] != "blocker" {
		t.Errorf("selector = %+v", got)
	}
	if r.NodeImageLabel != DefaultNodeImageLabel || r.HoldAnnotation != DefaultHoldAnnotation {
		t.Errorf("defaults not applied: %q %q", r.NodeImageLabel, r.HoldAnnotation)
	}
}

func TestParseErrorsNameFieldAndValue(t *testing.T) {
	for name, tc := range map[string]struct {
		yaml string
		want []string
	}{
		"unknown key":          {"pools:\n- name: a\n  windowz: []\n", []string{`pools[0].windowz: unknown field`}},
		"unknown top key":      {"pool: []\n", []string{`pool: unknown field`}},
		"bad start time":       {"pools:\n- name: a\n- name: b\n  windows:\n  - startTime: \"5:00pm\"\n", []string{`pools[1].windows[0].startTime: "5:00pm" is not a time (use 17:00, 5pm, 05:00pm)`}},
		"bad day":              {"pools:\n- name: a\n  windows:\n  - days: [mon, funday]\n", []string{`pools[0].windows[0].days:`, `funday`}},
		"bad zone":             {"pools:\n- name: a\n  windows:\n  - timeZone: Mars/Olympus\n", []string{`pools[0].windows[0].timeZone:`, `Mars/Olympus`}},
		"bad cron":             {"pools:\n- name: a\n  windows:\n  - schedule: \"61 * * * *\"\n    duration: 1h\n", []string{`pools[0].windows[0].schedule:`, `61 * * * *`}},
		"cron no duration":     {"pools:\n- name: a\n  windows:\n  - schedule: \"@daily\"\n", []string{`pools[0].windows[0].duration: is required`}},
		"mixed window":         {"pools:\n- name: a\n  windows:\n  - schedule: \"@daily\"\n    duration: 1h\n    startTime: 9am\n", []string{`pools[0].windows[0]: set schedule and duration`}},
		"bad duration":         {"pools:\n- name: a\n  windows:\n  - schedule: \"@daily\"\n    duration: forever\n", []string{`pools[0].windows[0].duration: "forever"`}},
		"bad blackout":         {"pools:\n- name: a\n  blackouts:\n  - start: 2026-12-24\n    end: \"2026-12-27T00:00:00Z\"\n", []string{`pools[0].blackouts[0].start: "2026-12-24" is not an RFC 3339 time`}},
		"blackout order":       {"pools:\n- name: a\n  blackouts:\n  - start: \"2026-12-27T00:00:00Z\"\n    end: \"2026-12-24T00:00:00Z\"\n", []string{`pools[0].blackouts[0].end: "2026-12-24T00:00:00Z" is not after start`}},
		"bad concurrency":      {"pools:\n- name: a\n  concurrency: \"ten\"\n", []string{`pools[0].concurrency: "ten" is not a count or a percentage`}},
		"negative concurrency": {"pools:\n- name: a\n  concurrency: -1\n", []string{`pools[0].concurrency: -1 is negative`}},
		"no pool name":         {"pools:\n- selector: \"true\"\n", []string{`pools[0].name: is required`}},
		"dup pool name":        {"pools:\n- name: a\n- name: a\n", []string{`pools[1].name: "a" is already the name of pools[0]`}},
		"bad pool name":        {"pools:\n- name: Big_Pool\n", []string{`pools[0].name: "Big_Pool" is not a DNS label`}},
		"bad selector":         {"blockers:\n  pods:\n    selectors: [\"app in (x\"]\n", []string{`blockers.pods.selectors[0]: "app in (x" is not a label selector`}},
		"bad regexp":           {"blockers:\n  alerts:\n    filterRegexp: \"(\"\n", []string{`blockers.alerts.filterRegexp: "(" is not a regular expression`}},
		"wrong type":           {"blockers:\n  alerts:\n    firingOnly: \"yes\"\n", []string{`blockers.alerts.firingOnly`, `boolean`}},
		"bad node label":       {"blockers:\n  alerts:\n    nodeLabels: [node, \"kubernetes.io/hostname\", 1st]\n", []string{`blockers.alerts.nodeLabels[1]: "kubernetes.io/hostname" is not a Prometheus label name`, `blockers.alerts.nodeLabels[2]: "1st"`}},
		"node labels not list": {"blockers:\n  alerts:\n    nodeLabels: node\n", []string{`blockers.alerts.nodeLabels`}},
		"bad min date":         {"pools:\n- name: a\n  nodeImage:\n    minDate: 2025/01/01\n", []string{`pools[0].nodeImage.minDate: "2025/01/01" is not a date`}},
		"condition no name":    {"pools:\n- name: a\n  conditions:\n  - expression: \"true\"\n", []string{`pools[0].conditions[0].name: is required`}},
		"bad disruption taint": {"pools:\n- name: a\n  budget:\n    disruptionTaints: [\"bad key!\"]\n", []string{`pools[0].budget.disruptionTaints[0]: "bad key!" is not a taint key`}},
		"breaker no max":       {"pools:\n- name: a\n  breaker: {}\n", []string{`pools[0].breaker.maxUnavailable: is required`}},
		"bad breaker":          {"pools:\n- name: a\n  breaker:\n    maxUnavailable: \"120%\"\n", []string{`pools[0].breaker.maxUnavailable: "120%" is not a count or a percentage`}},
		"bad cluster breaker":  {"breaker:\n  maxUnavailable: -2\n", []string{`breaker.maxUnavailable: -2 is negative`}},
		"slotsPerKey zero":     {"pools:\n- name: a\n  slotKey: zone\n  slotsPerKey: 0\n", []string{`pools[0].slotsPerKey: 0 is less than 1`}},
		"slotsPerKey negative": {"pools:\n- name: a\n  slotKey: zone\n  slotsPerKey: -2\n", []string{`pools[0].slotsPerKey: -2 is less than 1`}},
		"slotsPerKey alone":    {"pools:\n- name: a\n  slotsPerKey: 2\n", []string{`pools[0].slotsPerKey: 2 is set but slotKey is not`}},
		"slotsPerKey string":   {"pools:\n- name: a\n  slotKey: zone\n  slotsPerKey: two\n", []string{`pools.slotsPerKey: string is not a number`}},
		"blank slotKey":        {"pools:\n- name: a\n  slotKey: \" \"\n", []string{`pools[0].slotKey: " " is blank`}},
		"several errors":       {"pools:\n- name: a\n  windows:\n  - startTime: 25pm\n    endTime: 5:00pm\n", []string{`pools[0].windows[0].startTime: "25pm"`, `pools[0].windows[0].endTime: "5:00pm"`}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(header + tc.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseRejectsWrongKindAndEmpty(t *testing.T) {
	for _, doc := range []string{"", "apiVersion: v1\nkind: ConfigMap\n", "- a\n", "{{{"} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("%q: no error", doc)
		}
	}
}

func TestCrossesMidnightComparesFractions(t *testing.T) {
	for _, tt := range []struct {
		start, end string
		want       bool
	}{{"9pm", "5am", true}, {"9am", "5pm", false}, {"17:00:00.5", "17:00:00", true}, {"17:00:00", "17:00:00.5", false}} {
		r, err := Parse([]byte(header + "pools:\n- name: p\n  windows:\n  - startTime: \"" + tt.start + "\"\n    endTime: \"" + tt.end + "\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Pools[0].Params.Windows[0].CrossesMidnight; got != tt.want {
			t.Errorf("%s-%s: crossesMidnight = %v, want %v", tt.start, tt.end, got, tt.want)
		}
	}
}

func TestDaysAsListOrString(t *testing.T) {
	for _, days := range []string{`"mon,tue"`, `[mon, tue]`, `["mo", "2"]`} {
		r, err := Parse([]byte(header + "pools:\n- name: a\n  windows:\n  - days: " + days + "\n"))
		if err != nil {
			t.Fatalf("%s: %v", days, err)
		}
		if got := r.Pools[0].Params.Windows[0].Days; len(got) != 2 || got[0] != "Monday" || got[1] != "Tuesday" {
			t.Errorf("%s: days = %v", days, got)
		}
	}
}

func TestSlotKeyForms(t *testing.T) {
	for _, tc := range []struct {
		yaml    string
		wantKey string
		wantPer int
	}{
		{"slotKey: topology.kubernetes.io/zone", `node.labels["topology.kubernetes.io/zone"]`, 1},
		{"slotKey: ' zone '", `node.labels["zone"]`, 1},
		{"slotKey: 'node.labels[\"topology.kubernetes.io/zone\"]'\n  slotsPerKey: 2", `node.labels["topology.kubernetes.io/zone"]`, 2},
		{"slotKey: '(node.name)'", `(node.name)`, 1},
		{"concurrency: 2", "", 1},
	} {
		r, err := Parse([]byte(header + "pools:\n- name: a\n  " + tc.yaml + "\n"))
		if err != nil {
			t.Fatalf("%s: %v", tc.yaml, err)
		}
		if p := r.Pools[0]; p.SlotKey != tc.wantKey || p.SlotsPerKey != tc.wantPer {
			t.Errorf("%s: slotKey %q, slotsPerKey %d; want %q, %d", tc.yaml, p.SlotKey, p.SlotsPerKey, tc.wantKey, tc.wantPer)
		}
	}
}

func TestSlots(t *testing.T) {
	for _, tc := range []struct {
		c     intstr.IntOrString
		nodes int
		want  int
	}{
		{intstr.FromInt(2), 10, 2},
		{intstr.FromString("10%"), 30, 3},
		{intstr.FromString("10%"), 31, 4},
		{intstr.FromString("10%"), 3, 1},
		{intstr.FromString("0%"), 30, 0},
		{intstr.FromString("100%"), 7, 7},
		{intstr.FromString("50%"), 0, 0},
	} {
		p := ResolvedPool{Concurrency: tc.c}
		if got := p.Slots(tc.nodes); got != tc.want {
			t.Errorf("Slots(%s, %d) = %d, want %d", tc.c.String(), tc.nodes, got, tc.want)
		}
	}
}

func TestDefault(t *testing.T) {
	d := Default()
	if len(d.Pools) != 1 || d.Pools[0].Name != "default" || d.Pools[0].Selector != "true" || len(d.Pools[0].Windows) != 0 {
		t.Fatalf("default = %+v", d.Pools)
	}
	if d.Pools[0].Slots(100) != 1 {
		t.Errorf("default concurrency is not 1")
	}
}

// Unset nodeLabels is the default list, an explicit [] is kured's cluster-wide alerts,
// and a list is taken as written; every pool gets the same.
func TestAlertNodeLabels(t *testing.T) {
	for name, tc := range map[string]struct {
		yaml string
		want []string
	}{
		"unset":    {"blockers:\n  alerts:\n    firingOnly: true\n", []string{"node", "instance", "kubernetes_node"}},
		"null":     {"blockers:\n  alerts:\n    nodeLabels: null\n", []string{"node", "instance", "kubernetes_node"}},
		"empty":    {"blockers:\n  alerts:\n    nodeLabels: []\n", []string{}},
		"explicit": {"blockers:\n  alerts:\n    nodeLabels: [node, host_name]\n", []string{"node", "host_name"}},
	} {
		t.Run(name, func(t *testing.T) {
			r, err := Parse([]byte(header + "pools:\n- name: a\n- name: b\n" + tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range r.Pools {
				if got := p.Params.Alerts.NodeLabels; got == nil || !slices.Equal(got, tc.want) {
					t.Errorf("pool %s: nodeLabels = %#v, want %#v", p.Name, got, tc.want)
				}
			}
		})
	}
	// The default list is copied, so that changing one config's params cannot change
	// another's.
	d := Default()
	d.Pools[0].Params.Alerts.NodeLabels[0] = "changed"
	if DefaultAlertNodeLabels[0] != "node" || Default().Pools[0].Params.Alerts.NodeLabels[0] != "node" {
		t.Error("the default nodeLabels list is shared")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(header + "pools:\n- name: a\n  windows:\n  - days: mon\n    startTime: 9am\n"))
	f.Add([]byte(header + "pools:\n- name: a\n  concurrency: \"10%\"\n  windows:\n  - schedule: \"0 2 8-14 * *\"\n    days: tue\n    duration: 4h\n"))
	f.Add([]byte(header + "blockers:\n  pods:\n    selectors: [\"a in (b), !c\"]\n"))
	f.Add([]byte("pools: {a: 1}"))
	f.Add([]byte(header + "pools:\n- name: a\n  concurrency: [1]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err == nil && len(r.Pools) == 0 {
			t.Fatal("a valid config has no pools")
		}
	})
}

func TestBudgetAndBreakerResolve(t *testing.T) {
	r, err := Parse([]byte(header + `
breaker:
  maxUnavailable: 10%
pools:
- name: user
  concurrency: 2
  budget:
    countOthers: true
    disruptionTaints: ["example.com/draining", "karpenter.sh/disrupted"]
  breaker:
    maxUnavailable: "30%"
- name: plain
`))
	if err != nil {
		t.Fatal(err)
	}
	user, plain := &r.Pools[0], &r.Pools[1]
	if !user.CountOthers || user.Breaker == nil || user.Breaker.String() != "30%" || r.Breaker.String() != "10%" {
		t.Fatalf("budget/breaker not resolved: countOthers=%v breaker=%v cluster=%v", user.CountOthers, user.Breaker, r.Breaker)
	}
	wantTaints := "karpenter.sh/disrupted,ToBeDeletedByClusterAutoscaler,remediator.kubernetes.azure.com/unschedulable,example.com/draining"
	if got := strings.Join(user.DisruptionTaints, ","); got != wantTaints {
		t.Errorf("user taints = %s, want %s (built-ins first, no duplicate)", got, wantTaints)
	}
	if got := strings.Join(plain.DisruptionTaints, ","); got != "karpenter.sh/disrupted,ToBeDeletedByClusterAutoscaler,remediator.kubernetes.azure.com/unschedulable" {
		t.Errorf("a pool without budget has the built-in taints only, got %s", got)
	}
	if plain.CountOthers || plain.Breaker != nil {
		t.Error("a pool without budget or breaker got one")
	}
	if !r.NeedsSummary(plain) {
		t.Error("the cluster breaker needs the summary for every pool")
	}
	for _, tc := range []struct {
		v     string
		nodes int
		want  int
	}{{"30%", 10, 3}, {"30%", 5, 2}, {"30%", 0, 0}, {"0%", 7, 0}, {"4", 2, 4}} {
		v := intstr.Parse(tc.v)
		if got := MaxUnavailable(&v, tc.nodes); got != tc.want {
			t.Errorf("MaxUnavailable(%s, %d) = %d, want %d (percentages round up)", tc.v, tc.nodes, got, tc.want)
		}
	}
}
