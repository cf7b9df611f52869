package cli

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// TestChartDefaultsAreTheAgents: a value the chart's values.yaml sets by default and
// renders as a flag (a non-empty string, a non-zero number, true) is the flag's own
// default, so the chart does not silently override the agent's defaults (agent.Config's,
// bound by newAgentCommandFor) with different ones. Keys left empty or 0 are not
// rendered: the agent's default applies. Every other configuration key must be a flag,
// so a renamed flag fails here too.
func TestChartDefaultsAreTheAgents(t *testing.T) {
	data, err := os.ReadFile("../../../charts/rebootgate/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var values struct {
		Configuration map[string]any `json:"configuration"`
		LogLevel      any            `json:"logLevel"`
		DryRun        any            `json:"dryRun"`
		Summarizer    map[string]any `json:"summarizer"`
	}
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	agent := newAgentCommand().Flags()
	// Configuration keys that are no agent flag: the chart uses them itself.
	notFlags := map[string]bool{"useRebootSentinelHostPath": true}
	kebab := regexp.MustCompile(`([a-z0-9])([A-Z])`)
	checked := 0
	check := func(fs *pflag.FlagSet, key string, v any) {
		t.Helper()
		name := strings.ToLower(kebab.ReplaceAllString(key, "${1}-${2}"))
		f := fs.Lookup(name)
		if f == nil {
			t.Errorf("values.yaml %s: no flag --%s", key, name)
			return
		}
		switch x := v.(type) {
		case nil, []any:
			return // not rendered (a list is the user's, empty by default)
		case string:
			if x == "" {
				return
			}
		case float64:
			if x == 0 {
				return
			}
		case bool:
			if !x {
				return
			}
		}
		checked++
		if got := fmt.Sprint(v); got != f.DefValue {
			t.Errorf("values.yaml %s: %s, but --%s defaults to %s", key, got, name, f.DefValue)
		}
	}
	for key, v := range values.Configuration {
		if !notFlags[key] {
			check(agent, key, v)
		}
	}
	check(agent, "logLevel", values.LogLevel)
	check(agent, "dryRun", values.DryRun)
	check(newSummarizerCommand().Flags(), "medik8sNamespace", values.Summarizer["medik8sNamespace"])
	// rebootMethod, rebootSentinel, metricsPort, logFormat, logLevel, medik8sNamespace.
	if checked < 6 {
		t.Errorf("only %d values compared with the flags' defaults, want at least 6", checked)
	}
}
