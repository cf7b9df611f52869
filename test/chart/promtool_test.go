package chart

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// promRule is one rule of the rendered PrometheusRule, as Prometheus's rule files hold it.
type promRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type promGroup struct {
	Name  string     `json:"name"`
	Rules []promRule `json:"rules"`
}

// ruleFile renders the chart with values and writes its PrometheusRule's spec (the groups)
// as a Prometheus rule file in dir.
func ruleFile(t *testing.T, e env, dir string, values ...string) (string, []promGroup) {
	t.Helper()
	var pr struct {
		Spec struct {
			Groups []promGroup `json:"groups"`
		} `json:"spec"`
	}
	found := false
	for _, o := range e.render(t, values...) {
		if o.Kind == "PrometheusRule" {
			if err := yaml.Unmarshal(o.YAML, &pr); err != nil {
				t.Fatal(err)
			}
			found = true
		}
	}
	if !found {
		t.Fatal("no PrometheusRule rendered")
	}
	data, err := yaml.Marshal(map[string]any{"groups": pr.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, pr.Spec.Groups
}

// promtool finds Debian's promtool (package prometheus); without it the tests are skipped,
// but under CI=true they fail.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and no promtool (Debian package prometheus; make test-chart installs it): %v", err)
		}
		t.Skipf("no promtool (Debian package prometheus; make test-chart installs it): %v", err)
	}
	return p
}

func runPromtool(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The PrometheusRule's expressions parse and its rule file is valid for Prometheus
// (`promtool check rules`), with the defaults and with signal.values.yaml's durations.
func TestPrometheusRuleChecks(t *testing.T) {
	e := setup(t)
	bin := promtool(t)
	for _, values := range [][]string{
		{"--set", "metrics.prometheusRule.enabled=true"},
		{"-f", filepath.Join("testdata", "signal.values.yaml")},
	} {
		path, groups := ruleFile(t, e, t.TempDir(), values...)
		out := runPromtool(t, bin, "check", "rules", path)
		n := 0
		for _, g := range groups {
			n += len(g.Rules)
		}
		if want := fmt.Sprintf("SUCCESS: %d rules found", n); !strings.Contains(out, want) || n != 3 {
			t.Errorf("promtool check rules %v: want %q for the chart's 3 alerts:\n%s", values, want, out)
		}
	}
}

// Each alert fires when, and only when, its condition has held for its `for` duration
// (`promtool test rules`, the chart's defaults: 24h, 1h, 5m), with the labels and the
// annotations the chart renders, per node.
func TestPrometheusRuleAlerts(t *testing.T) {
	e := setup(t)
	bin := promtool(t)
	dir := t.TempDir()
	_, groups := ruleFile(t, e, dir, "--set", "metrics.prometheusRule.enabled=true")
	rules := map[string]promRule{}
	for _, r := range groups[0].Rules {
		rules[r.Alert] = r
	}
	annotations := func(alert string, labels map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range rules[alert].Annotations {
			for l, lv := range labels {
				v = strings.ReplaceAll(v, "{{ $labels."+l+" }}", lv)
			}
			out[k] = v
		}
		return out
	}
	type expAlert struct {
		ExpLabels      map[string]string `json:"exp_labels"`
		ExpAnnotations map[string]string `json:"exp_annotations"`
	}
	type alertTest struct {
		EvalTime  string     `json:"eval_time"`
		Alertname string     `json:"alertname"`
		ExpAlerts []expAlert `json:"exp_alerts"`
	}
	firing := func(alert string, labels map[string]string) []expAlert {
		l := map[string]string{"severity": "warning"}
		for k, v := range labels {
			l[k] = v
		}
		return []expAlert{{ExpLabels: l, ExpAnnotations: annotations(alert, labels)}}
	}
	n1 := map[string]string{"node": "n1"}
	n1Draining := map[string]string{"node": "n1", "phase": "Draining"}
	tests := map[string]any{
		"rule_files":          []string{"rules.yaml"},
		"evaluation_interval": "1m",
		"tests": []map[string]any{{
			"interval": "1m",
			// Two agents' series (the ServiceMonitor drops pod and instance, so node is the
			// identity): n1 needs a reboot all along, is stuck draining, its policies fail;
			// n2 needs none, moves through its phases, its policies load.
			"input_series": []map[string]string{
				{"series": `rebootgate_reboot_required{node="n1"}`, "values": "1x1500"},
				{"series": `rebootgate_reboot_required{node="n2"}`, "values": "0x1500"},
				{"series": `rebootgate_phase{node="n1",phase="Draining"}`, "values": "1x1500"},
				{"series": `rebootgate_phase{node="n2",phase="Draining"}`, "values": "1x30 0x1470"},
				{"series": `rebootgate_policy_status{node="n1"}`, "values": "0x1500"},
				{"series": `rebootgate_policy_status{node="n2"}`, "values": "1x1500"},
			},
			"alert_rule_test": []alertTest{
				{EvalTime: "23h50m", Alertname: "RebootgateRebootPendingTooLong"},
				{EvalTime: "24h10m", Alertname: "RebootgateRebootPendingTooLong", ExpAlerts: firing("RebootgateRebootPendingTooLong", n1)},
				{EvalTime: "50m", Alertname: "RebootgateNodeStuckInPhase"},
				{EvalTime: "1h10m", Alertname: "RebootgateNodeStuckInPhase", ExpAlerts: firing("RebootgateNodeStuckInPhase", n1Draining)},
				{EvalTime: "4m", Alertname: "RebootgatePolicyError"},
				{EvalTime: "6m", Alertname: "RebootgatePolicyError", ExpAlerts: firing("RebootgatePolicyError", n1)},
			},
		}},
	}
	data, err := yaml.Marshal(tests)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "rules_test.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, alert := range []string{"RebootgateRebootPendingTooLong", "RebootgateNodeStuckInPhase", "RebootgatePolicyError"} {
		if _, ok := rules[alert]; !ok {
			t.Errorf("the chart renders no alert %s", alert)
		}
	}
	out := runPromtool(t, bin, "test", "rules", path)
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules:\n%s", out)
	}
}
