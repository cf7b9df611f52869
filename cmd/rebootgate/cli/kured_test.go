package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/facts"
	"github.com/rebootgate/rebootgate/engine/policy"
)

const blockerPod = `apiVersion: v1
kind: Pod
metadata: {name: backup, namespace: default, labels: {app: backup, tier: db}}
spec: {nodeName: n1}
status: {phase: Running}
`

func TestKuredFlagListHasNoDuplicates(t *testing.T) {
	seen := map[string]bool{}
	for _, kf := range kuredFlags {
		if seen[kf.Name] || kf.Name == "" || strings.HasPrefix(kf.Name, "-") || kf.Maps == "" {
			t.Errorf("bad or duplicate entry %+v", kf)
		}
		seen[kf.Name] = true
	}
}

func TestAgentHelpListsEveryKuredFlag(t *testing.T) {
	code, out, errOut := run("agent", "--help")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	cmd := newAgentCommand()
	for _, kf := range kuredFlags {
		if cmd.Flags().Lookup(kf.Name) == nil {
			t.Errorf("--%s is not a flag of rebootgate agent", kf.Name)
		}
		if !strings.Contains(out, "--"+kf.Name+" ") {
			t.Errorf("--%s is not in rebootgate agent --help", kf.Name)
		}
	}
}

// readmeSection is README.md from the heading to the next "## " heading; the test is
// skipped without a README.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	data, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Skipf("no README: %v", err)
	}
	_, section, ok := strings.Cut(string(data), heading)
	if !ok {
		t.Fatalf("README.md has no %q section", heading)
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	return section
}

func TestREADMEMapsEveryKuredFlag(t *testing.T) {
	section := readmeSection(t, "### kured flags")
	for _, kf := range kuredFlags {
		if !strings.Contains(section, "`--"+kf.Name+"`") {
			t.Errorf("README's kured flags section does not map --%s", kf.Name)
		}
	}
}

// configureAgent parses args and env as `rebootgate agent` does, short of the cluster.
func configureAgent(t *testing.T, env map[string]string, args ...string) (*agentOptions, string, error) {
	t.Helper()
	o := &agentOptions{lookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	cmd := newAgentCommandFor(o)
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatalf("parsing %v: %v", args, err)
	}
	var logs bytes.Buffer
	_, err := o.configure(cmd.Flags(), &logs)
	return o, logs.String(), err
}

func TestKuredEnvOverridesFlags(t *testing.T) {
	o, _, err := configureAgent(t, map[string]string{
		"KURED_NODE_ID":                "from-env",
		"KURED_CONCURRENCY":            "3",
		"KURED_REBOOT_DAYS":            "tu,we",
		"KURED_START_TIME":             "9pm",
		"KURED_BLOCKING_POD_SELECTOR":  "app=backup,tier=db",
		"KURED_ALERT_FIRING_ONLY":      "true",
		"KURED_DRAIN_TIMEOUT":          "5m",
		"KURED_DRAIN_GRACE_PERIOD":     "30",
		"KURED_FORCE_REBOOT":           "true",
		"KURED_REBOOT_COMMAND":         "/sbin/reboot now",
		"KURED_PERIOD":                 "10m",
		"KURED_LOCK_RELEASE_DELAY":     "30s",
		"KURED_PRE_REBOOT_NODE_LABELS": "a=1,b=2",
		"KURED_NOTIFY_URL":             "slack://token@channel",
		"KURED_METRICS_PORT":           "9090",
		"KURED_LOCK_TTL":               "10m",
		"KURED_REBOOT_SENTINEL":        "/sentinel/reboot-required",
		"NOT_KURED_SOAK":               "1h",
	}, "--node-id", "from-flag", "--namespace", "ns", "--concurrency", "1", "--reboot-days", "mon",
		"--blocking-pod-selector", "app=other", "--drain-timeout", "1m", "--pre-reboot-node-labels", "c=3",
		"--notify-url", "teams://x", "--end-time", "5am")
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.NodeName != "from-env" || c.Drain.Timeout != 5*time.Minute || c.Drain.GracePeriod != 30*time.Second || !c.ForceReboot ||
		!slices.Equal(c.RebootCommand, []string{"/sbin/reboot", "now"}) || c.RecheckInterval != 10*time.Minute || c.SentinelPeriod != 10*time.Minute || c.LockReleaseDelay != 30*time.Second || c.Soak != 0 ||
		len(c.PreRebootLabels) != 2 || c.PreRebootLabels["b"] != "2" || !slices.Equal(c.Notify.URLs, []string{"slack://token@channel"}) ||
		c.MetricsAddress != ":9090" || c.LockTTL != 10*time.Minute || c.SentinelPath != "/sentinel/reboot-required" {
		t.Errorf("config = %+v", c)
	}
	r := c.InlineConfig
	if r == nil {
		t.Fatal("no config from the kured flags")
	}
	p := r.Pools[0]
	if p.Name != "default" || p.Slots(10) != 3 || len(p.Params.Windows) != 1 {
		t.Fatalf("pool = %+v", p)
	}
	if w := p.Params.Windows[0]; !slices.Equal(w.Days, []string{"Tuesday", "Wednesday"}) || w.StartTime != "21:00:00" || w.EndTime != "05:00:00" {
		t.Errorf("window = %+v", w)
	}
	if sel := p.Params.PodSelectors; len(sel) != 1 || sel[0].Selector != "app=backup,tier=db" || !p.Params.Alerts.FiringOnly {
		t.Errorf("blockers = %+v %+v", sel, p.Params.Alerts)
	}
}

// kured blocks every node on every alert: the config made from kured's flags, and the
// one made when alerts are configured without any config, say nodeLabels: []; a config
// file keeps its own (here the default list).
func TestKuredAlertsAreClusterWide(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want []string // nil: no inline config
	}{
		"schedule flags":    {[]string{"--reboot-days", "mon"}, []string{}},
		"prometheus only":   {[]string{"--prometheus-url", "http://127.0.0.1:9090"}, []string{}},
		"alertmanager only": {[]string{"--alertmanager-url", "http://127.0.0.1:9093"}, []string{}},
		"config file":       {[]string{"--config", "/etc/rebootgate/config.yaml", "--prometheus-url", "http://127.0.0.1:9090"}, nil},
		"no alerts":         {nil, nil},
	} {
		t.Run(name, func(t *testing.T) {
			o, logs, err := configureAgent(t, nil, append([]string{"--node-id", "n", "--namespace", "ns"}, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if said := strings.Contains(logs, "every alert blocks every node (nodeLabels: [])"); said != strings.HasSuffix(name, " only") {
				t.Errorf("log says kured's alerts: %v; logs:\n%s", said, logs)
			}
			r := o.cfg.InlineConfig
			if tc.want == nil {
				if r != nil {
					t.Errorf("a config was made: %+v", r.Source)
				}
				return
			}
			if r == nil {
				t.Fatal("no config from the kured flags")
			}
			if got := r.Pools[0].Params.Alerts.NodeLabels; got == nil || !slices.Equal(got, tc.want) {
				t.Errorf("nodeLabels = %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestKuredFlagsWithoutEnv(t *testing.T) {
	o, _, err := configureAgent(t, nil, "--node-id", "n", "--namespace", "ns", "--ds-name", "kured", "--lock-annotation", "x/y", "--annotate-nodes")
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.InlineConfig != nil {
		t.Error("a config was made without any schedule flag")
	}
	if o.cfg.RecheckInterval != time.Minute || o.cfg.SentinelPeriod != 0 || o.cfg.LockTTL != 0 || o.cfg.Notify.SlackUsername != "" {
		t.Errorf("defaults changed: recheck %v, sentinel period %v, lock TTL %v, slack username %q",
			o.cfg.RecheckInterval, o.cfg.SentinelPeriod, o.cfg.LockTTL, o.cfg.Notify.SlackUsername)
	}
	if !o.cfg.KuredAnnotations {
		t.Error("--annotate-nodes did not turn on kured's node annotations")
	}
}

// A kured manifest sets neither --namespace nor POD_NAMESPACE: the agent's namespace is
// then rebootgate's own, never kured's --ds-namespace (kube-system), where its Leases and
// ConfigMaps would need writes beside the control plane's.
func TestKuredNamespaceFallback(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "rebootgate"},
		{[]string{"--ds-namespace", "kube-system"}, "rebootgate"},
		{[]string{"--ds-namespace", "kured", "--namespace", "ops"}, "ops"},
	} {
		o, _, err := configureAgent(t, nil, append([]string{"--node-id", "n"}, tc.args...)...)
		if err != nil {
			t.Fatal(err)
		}
		if o.cfg.Namespace != tc.want {
			t.Errorf("%v: namespace %q, want %q", tc.args, o.cfg.Namespace, tc.want)
		}
	}
	t.Setenv("POD_NAMESPACE", "from-pod")
	if o, _, _ := configureAgent(t, nil, "--node-id", "n", "--ds-namespace", "kured"); o.cfg.Namespace != "from-pod" {
		t.Errorf("namespace %q, want POD_NAMESPACE's from-pod", o.cfg.Namespace)
	}
}

// kured's slack companions: accepted from flags and env; the username is used only
// when given, since kured's default "kured" has not been used since 1.7.
func TestKuredSlackFlags(t *testing.T) {
	o, _, err := configureAgent(t, map[string]string{"KURED_SLACK_CHANNEL": "#ops"}, "--node-id", "n", "--namespace", "ns",
		"--slack-hook-url", "https://hooks.slack.com/services/T/B/X", "--slack-username", "rebooter")
	if err != nil {
		t.Fatal(err)
	}
	if n := o.cfg.Notify; n.SlackUsername != "rebooter" || n.SlackChannel != "#ops" {
		t.Errorf("slack username %q channel %q", n.SlackUsername, n.SlackChannel)
	}
}

// kured compiles an explicitly empty --alert-filter-regexp, and it matches every name:
// no alert blocks, or with --alert-filter-match-only every alert does.
func TestKuredEmptyAlertFilter(t *testing.T) {
	for _, env := range []map[string]string{nil, {"KURED_ALERT_FILTER_REGEXP": ""}} {
		args := []string{"--node-id", "n", "--namespace", "ns"}
		if env == nil {
			args = append(args, "--alert-filter-regexp=")
		}
		o, _, err := configureAgent(t, env, args...)
		if err != nil {
			t.Fatal(err)
		}
		if o.cfg.InlineConfig == nil {
			t.Fatalf("%v %v: no config from an explicit --alert-filter-regexp", args, env)
		}
		re := o.cfg.InlineConfig.Pools[0].Params.Alerts.FilterRegexp
		if re == "" || !regexp.MustCompile(re).MatchString("AnyAlert") || !regexp.MustCompile(re).MatchString("") {
			t.Errorf("%v %v: filter %v does not match every name", args, env, re)
		}
	}
	o, _, err := configureAgent(t, nil, "--node-id", "n", "--namespace", "ns", "--concurrency", "2")
	if err != nil {
		t.Fatal(err)
	}
	if re := o.cfg.InlineConfig.Pools[0].Params.Alerts.FilterRegexp; re != "" {
		t.Errorf("filter %v without --alert-filter-regexp, want none", re)
	}
}

func TestKuredEnvAndFlagErrors(t *testing.T) {
	base := []string{"--node-id", "n", "--namespace", "ns"}
	for name, tc := range map[string]struct {
		env  map[string]string
		args []string
		want []string
	}{
		"bad bool env":        {map[string]string{"KURED_FORCE_REBOOT": "yes"}, nil, []string{"env KURED_FORCE_REBOOT", `"yes"`, "--force-reboot"}},
		"bad duration env":    {map[string]string{"KURED_PERIOD": "1 hour"}, nil, []string{"env KURED_PERIOD", `"1 hour"`}},
		"bad int env":         {map[string]string{"KURED_METRICS_PORT": "http"}, nil, []string{"env KURED_METRICS_PORT", `"http"`}},
		"bad day env":         {map[string]string{"KURED_REBOOT_DAYS": "mon,funday"}, nil, []string{"--reboot-days (env KURED_REBOOT_DAYS)", `"funday" is not a day`}},
		"bad concurrency env": {map[string]string{"KURED_CONCURRENCY": "ten"}, nil, []string{"--concurrency (env KURED_CONCURRENCY)", `"ten"`}},
		"bad start time":      {nil, []string{"--start-time", "5:00pm"}, []string{`--start-time: "5:00pm" is not a time`}},
		"config and flags":    {nil, []string{"--config", "c.yaml", "--reboot-days", "mon", "--concurrency", "2"}, []string{"--config and --concurrency, --reboot-days"}},
		"config and env":      {map[string]string{"KURED_START_TIME": "9pm"}, []string{"--config", "c.yaml"}, []string{"--config and --start-time"}},
		"period and recheck":  {nil, []string{"--period", "1h", "--recheck-interval", "1m"}, []string{"--period", "--recheck-interval"}},
		"period and sentinel": {nil, []string{"--period", "1h", "--sentinel-period", "1m"}, []string{"--period", "--sentinel-period"}},
		"negative release":    {nil, []string{"--lock-release-delay", "-1m"}, []string{"--lock-release-delay"}},
		"negative lock ttl":   {nil, []string{"--lock-ttl", "-1s"}, []string{"--lock-ttl"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := configureAgent(t, tc.env, append(slices.Clone(base), tc.args...)...)
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestAgentCommandKuredErrorsExit2(t *testing.T) {
	t.Setenv("KURED_ALERT_FILTER_MATCH_ONLY", "maybe")
	code, _, errOut := run("agent", "--node-id", "n", "--namespace", "ns")
	if code != ExitBadInput || !strings.Contains(errOut, "env KURED_ALERT_FILTER_MATCH_ONLY") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	t.Setenv("KURED_ALERT_FILTER_MATCH_ONLY", "true")
	code, _, errOut = run("agent", "--node-id", "n", "--namespace", "ns", "--config", "c.yaml")
	if code != ExitBadInput || !strings.Contains(errOut, "--config and --alert-filter-match-only") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

// TestKuredFlagsEqualConfigFile checks that the config the flags make decides as the
// hand-written config file a kured user would migrate to.
func TestKuredFlagsEqualConfigFile(t *testing.T) {
	node, err := facts.ParseNode(mustRead(t, "testdata/node.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pods, err := facts.ParsePods([]byte(blockerPod))
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := facts.ParseAlerts(mustRead(t, "testdata/alerts-am.json"))
	if err != nil {
		t.Fatal(err)
	}
	factSets := map[string]*facts.Facts{
		"node":        {Node: node},
		"with pod":    {Node: node, Pods: pods},
		"with alerts": {Node: node, Alerts: alerts},
	}
	times := []string{
		"2019-04-01T20:59:59-07:00", // Monday, before the window
		"2019-04-01T21:00:00-07:00", // Monday, start
		"2019-04-02T00:49:00-07:00", // Tuesday, after midnight
		"2019-04-02T05:00:00-07:00", // Tuesday, end (inclusive)
		"2019-04-02T05:00:01-07:00", // Tuesday, just after
		"2019-04-04T00:49:00-07:00", // Thursday, inside the hours, not a day
		"2019-04-07T23:30:00-07:00", // Sunday
		"2019-11-03T01:30:00-07:00", // DST change
	}
	for name, tc := range map[string]struct {
		args []string
		yaml string
	}{
		"defaults": {nil, "pools:\n- name: default\n"},
		"window": {
			[]string{"--reboot-days", "mon,tue", "--start-time", "9pm", "--end-time", "5am", "--time-zone", "America/Los_Angeles"},
			"pools:\n- name: default\n  selector: 'true'\n  windows:\n  - {days: 'mon,tue', startTime: 9pm, endTime: 5am, timeZone: America/Los_Angeles}\n",
		},
		"days only": {
			[]string{"--reboot-days", "Sunday,1"},
			"pools:\n- name: default\n  windows:\n  - {days: [su, mo]}\n",
		},
		"zone only": {
			[]string{"--time-zone", "Europe/Berlin", "--start-time", "6", "--end-time", "6"},
			"pools:\n- name: default\n  windows:\n  - {startTime: '06:00', endTime: '06:00:00', timeZone: Europe/Berlin}\n",
		},
		"blockers": {
			[]string{"--concurrency", "2", "--blocking-pod-selector", "app=backup", "--blocking-pod-selector", "tier in (db,cache)", "--alert-filter-regexp", "^Disk", "--alert-firing-only"},
			"pools:\n- name: default\n  concurrency: 2\nblockers:\n  pods:\n    selectors: ['app=backup', 'tier in (db,cache)']\n  alerts:\n    filterRegexp: ^Disk\n    firingOnly: true\n",
		},
		"match only": {
			[]string{"--alert-filter-regexp", "Noisy|DiskFull", "--alert-filter-match-only", "--concurrency", "10%"},
			"pools:\n- name: default\n  concurrency: 10%\nblockers:\n  alerts: {filterRegexp: 'Noisy|DiskFull', filterMatchOnly: true}\n",
		},
	} {
		t.Run(name, func(t *testing.T) {
			var k kuredSchedule
			fs := pflag.NewFlagSet("kured", pflag.ContinueOnError)
			k.bind(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			fromFlags, err := k.resolve(fs, "")
			if err != nil {
				t.Fatal(err)
			}
			if fromFlags == nil {
				fromFlags = config.Default()
			}
			fromFile, err := config.Parse([]byte(cfgHeader + tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if a, b := fromFlags.Pools[0].Concurrency, fromFile.Pools[0].Concurrency; a != b {
				t.Errorf("concurrency %v, file %v", a.String(), b.String())
			}
			// The agent logs the flags' config as a file; it must read back the same.
			doc, err := yaml.Marshal(fromFlags.Source)
			if err != nil {
				t.Fatal(err)
			}
			logged, err := config.Parse(doc)
			if err != nil {
				t.Fatalf("the logged config does not parse: %v\n%s", err, doc)
			}
			engines := map[string]*decision.Engine{}
			for what, cfg := range map[string]*config.Resolved{"flags": fromFlags, "file": fromFile, "logged": logged} {
				if engines[what], err = decision.New(t.Context(), cfg, policy.DefaultModules()); err != nil {
					t.Fatal(err)
				}
			}
			for fname, f := range factSets {
				for _, at := range times {
					now, _ := time.Parse(time.RFC3339, at)
					want, _ := json.Marshal(engines["file"].Evaluate(t.Context(), f, now).Decision)
					for _, what := range []string{"flags", "logged"} {
						got, _ := json.Marshal(engines[what].Evaluate(t.Context(), f, now).Decision)
						if !bytes.Equal(got, want) {
							t.Errorf("%s at %s:\n%-6s %s\nfile   %s", fname, at, what, got, want)
						}
					}
				}
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

type evalResult struct {
	Allowed     bool   `json:"allowed"`
	Pool        string `json:"pool"`
	NextAllowed string `json:"nextAllowed"`
	Reasons     []struct {
		Source  string `json:"source"`
		Message string `json:"message"`
	} `json:"reasons"`
}

func evalJSON(t *testing.T, args ...string) evalResult {
	t.Helper()
	code, out, errOut := run(append([]string{"eval", "--node", "testdata/node.yaml", "-o", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, errOut)
	}
	var d evalResult
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return d
}

func TestEvalKuredSchedule(t *testing.T) {
	la := []string{"--start-time", "9pm", "--end-time", "5am", "--time-zone", "America/Los_Angeles"}
	for _, tc := range []struct {
		days, at string
		allowed  bool
	}{
		// The example: Thursday 00:49 is inside the 9pm-5am hours of the window
		// that opened on Wednesday, but kured tests the weekday of the instant.
		{"mon,tue", "2019-04-04T00:49:00-07:00", false},
		{"mon,tue,thu", "2019-04-04T00:49:00-07:00", true},
		{"thu", "2019-04-04T00:49:00-07:00", true},
		// Crossing midnight: Wednesday evening is in, Thursday morning is not a wed.
		{"wed", "2019-04-03T23:30:00-07:00", true},
		{"wed", "2019-04-04T00:49:00-07:00", false},
		{"we", "2019-04-03T21:00:00-07:00", true},
		{"we", "2019-04-03T20:59:59-07:00", false},
		// The end is inclusive to the end of its second.
		{"th", "2019-04-04T05:00:00.999-07:00", true},
		{"th", "2019-04-04T05:00:01-07:00", false},
		{"th", "2019-04-04T12:00:00-07:00", false},
		// Same instant, other zone's view.
		{"4", "2019-04-04T07:49:00Z", true},
	} {
		d := evalJSON(t, append([]string{"--reboot-days", tc.days, "--at", tc.at}, la...)...)
		if d.Allowed != tc.allowed || d.Pool != "default" {
			t.Errorf("days %s at %s: allowed %v (%+v), want %v", tc.days, tc.at, d.Allowed, d.Reasons, tc.allowed)
		}
		if !tc.allowed && (len(d.Reasons) != 1 || !strings.HasPrefix(d.Reasons[0].Message, "outside every reboot window")) {
			t.Errorf("days %s at %s: reasons %+v", tc.days, tc.at, d.Reasons)
		}
	}
	d := evalJSON(t, "--reboot-days", "mon,tue", "--at", "2019-04-04T00:49:00-07:00", "--start-time", "9pm", "--end-time", "5am", "--time-zone", "America/Los_Angeles")
	if d.NextAllowed != "2019-04-08T00:00:00-07:00" {
		t.Errorf("next allowed %q: Monday 00:00 is inside Sunday's 9pm-5am window and a Monday", d.NextAllowed)
	}
	// A one-second window when start == end.
	if d := evalJSON(t, "--start-time", "3am", "--end-time", "03:00", "--at", "2019-04-04T03:00:00Z"); !d.Allowed {
		t.Error("start == end: the second itself is not allowed")
	}
	if d := evalJSON(t, "--start-time", "3am", "--end-time", "03:00", "--at", "2019-04-04T03:00:01Z"); d.Allowed {
		t.Error("start == end: the next second is allowed")
	}
	// An empty --reboot-days means no day, as in kured.
	if d := evalJSON(t, "--reboot-days", "", "--at", "2019-04-04T03:00:00Z"); d.Allowed {
		t.Error("empty --reboot-days allows a reboot")
	}
}

func TestEvalKuredBlockers(t *testing.T) {
	pods := writeFile(t, "pods.yaml", blockerPod)
	alerts := "testdata/alerts-am.json"
	for name, tc := range map[string]struct {
		args   []string
		reason string // "" = allowed
	}{
		"pod blocks":               {[]string{"--pods", pods, "--blocking-pod-selector", "app=backup"}, "pod default/backup"},
		"second selector blocks":   {[]string{"--pods", pods, "--blocking-pod-selector", "app=x", "--blocking-pod-selector", "tier in (db,cache)"}, "pod default/backup"},
		"selector does not match":  {[]string{"--pods", pods, "--blocking-pod-selector", "app=backup,tier!=db"}, ""},
		"alert blocks":             {[]string{"--alerts", alerts}, "alert DiskFull"},
		"alert filtered":           {[]string{"--alerts", alerts, "--alert-filter-regexp", "^Disk"}, ""},
		"match only, no match":     {[]string{"--alerts", alerts, "--alert-filter-regexp", "^Mem", "--alert-filter-match-only"}, ""},
		"match only, match":        {[]string{"--alerts", alerts, "--alert-filter-regexp", "^Disk", "--alert-filter-match-only"}, "alert DiskFull"},
		"firing only (active)":     {[]string{"--alerts", alerts, "--alert-firing-only"}, "alert DiskFull"},
		"concurrency is accepted":  {[]string{"--concurrency", "25%"}, ""},
		"paused pool still allows": {[]string{"--concurrency", "0"}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			d := evalJSON(t, append(tc.args, "--at", "2019-04-04T03:00:00Z")...)
			if tc.reason == "" {
				if !d.Allowed {
					t.Errorf("not allowed: %+v", d.Reasons)
				}
				return
			}
			if d.Allowed || len(d.Reasons) == 0 || !strings.Contains(d.Reasons[0].Message, tc.reason) {
				t.Errorf("allowed %v, reasons %+v; want %q", d.Allowed, d.Reasons, tc.reason)
			}
		})
	}
}

func TestEvalKuredBadValuesExit2(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want []string
	}{
		"bad day":            {[]string{"--reboot-days", "mon,funday"}, []string{"--reboot-days", `"funday" is not a day`}},
		"bad start":          {[]string{"--start-time", "5:00pm"}, []string{`--start-time: "5:00pm" is not a time`}},
		"bad end":            {[]string{"--end-time", "24:00"}, []string{`--end-time: "24:00" is not a time`}},
		"upper-case pm":      {[]string{"--end-time", "5PM"}, []string{`--end-time: "5PM"`}},
		"bad zone":           {[]string{"--time-zone", "Nowhere/City"}, []string{"--time-zone", "Nowhere/City"}},
		"bad concurrency":    {[]string{"--concurrency", "ten"}, []string{`--concurrency: "ten" is not a count or a percentage`}},
		"neg concurrency":    {[]string{"--concurrency", "-1"}, []string{"--concurrency: -1 is negative"}},
		"bad percentage":     {[]string{"--concurrency", "150%"}, []string{`--concurrency: "150%"`}},
		"bad selector":       {[]string{"--blocking-pod-selector", "app in (x"}, []string{`--blocking-pod-selector: "app in (x" is not a label selector`}},
		"empty selector":     {[]string{"--blocking-pod-selector", " "}, []string{"--blocking-pod-selector: is empty"}},
		"bad regexp":         {[]string{"--alert-filter-regexp", "("}, []string{`--alert-filter-regexp: "(" is not a regular expression`}},
		"bad bool":           {[]string{"--alert-firing-only=maybe"}, []string{"alert-firing-only", "maybe"}},
		"several":            {[]string{"--start-time", "25pm", "--time-zone", "X/Y"}, []string{`--start-time: "25pm"`, `--time-zone: unknown time zone "X/Y"`}},
		"with --config":      {[]string{"--config", "c.yaml", "--reboot-days", "mon"}, []string{"--config and --reboot-days"}},
		"config and blocker": {[]string{"--config", "c.yaml", "--alert-firing-only"}, []string{"--config and --alert-firing-only"}},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, errOut := run(append([]string{"eval", "--node", "testdata/node.yaml"}, tc.args...)...)
			if code != ExitBadInput {
				t.Fatalf("exit %d, want 2: %s", code, errOut)
			}
			if strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("error is not one line: %q", errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q lacks %q", errOut, w)
				}
			}
		})
	}
}

// --kured-lock: kured's lock located by the ds flags, its holder count from
// --concurrency (allowed with --config for that alone), its TTL from --lock-ttl.
func TestKuredLockFlags(t *testing.T) {
	o, _, err := configureAgent(t, map[string]string{"KURED_CONCURRENCY": "2"}, "--node-id", "n", "--kured-lock", "--ds-name", "kured-ds",
		"--lock-annotation", "example.com/lock", "--lock-ttl", "30m")
	if err != nil {
		t.Fatal(err)
	}
	k := o.cfg.KuredLock
	if k == nil || k.Namespace != "kube-system" || k.DaemonSet != "kured-ds" || k.Annotation != "example.com/lock" || k.MaxOwners != 2 || k.TTL != 30*time.Minute || k.NodeID != "n" {
		t.Fatalf("kured lock %+v", k)
	}
	o, _, err = configureAgent(t, nil, "--node-id", "n", "--namespace", "ns", "--kured-lock", "--config", "c.yaml", "--concurrency", "3")
	if err != nil {
		t.Fatalf("--config with --kured-lock and --concurrency: %v", err)
	}
	if o.cfg.KuredLock.MaxOwners != 3 || o.cfg.InlineConfig != nil {
		t.Fatalf("kured lock %+v, inline config %v", o.cfg.KuredLock, o.cfg.InlineConfig)
	}
	if _, _, err := configureAgent(t, nil, "--node-id", "n", "--kured-lock", "--concurrency", "10%"); err == nil || !strings.Contains(err.Error(), "--kured-lock") {
		t.Fatalf("a percentage for kured's lock: %v", err)
	}
	if o, _, _ := configureAgent(t, nil, "--node-id", "n"); o.cfg.KuredLock != nil {
		t.Fatal("kured's lock taken without --kured-lock")
	}
}
