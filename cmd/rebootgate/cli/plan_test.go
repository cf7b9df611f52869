package cli

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// planArgs is the golden forecast: two pools, a weekly cron window, a nightly window
// with a blackout, 50 % concurrency with a slot key, recorded durations, and nodes
// that never reboot (no pool, a false condition, a hold, a blocking pod).
var planArgs = []string{"plan", "--config", "testdata/plan/config.yaml", "--nodes", "testdata/plan/nodes.json",
	"--pods", "testdata/plan/pods.yaml", "--at", "2026-11-23T09:00:00+01:00"}

func TestPlanTableGolden(t *testing.T) {
	code, out, errOut := run(planArgs...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	golden(t, "plan/forecast.txt.golden", out)
}

func TestPlanJSONGolden(t *testing.T) {
	code, out, errOut := run(append(planArgs, "-o", "json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	golden(t, "plan/forecast.json.golden", out)
	var res struct {
		Completion string `json:"completion"`
		Nodes      []struct {
			Node  string `json:"node"`
			Start string `json:"start"`
		} `json:"nodes"`
		Never []struct {
			Node string `json:"node"`
		} `json:"never"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.Completion != "2026-11-28T01:25:00Z" || len(res.Nodes) != 6 || len(res.Never) != 4 || res.Nodes[0].Start != "2026-11-23T21:00:00Z" {
		t.Fatalf("forecast = %+v", res)
	}
}

// nodeNames lists the NODE column of the table's node section.
func nodeNames(t *testing.T, out string) []string {
	t.Helper()
	_, nodes, ok := strings.Cut(out, "\nNODE ")
	if !ok {
		t.Fatalf("no node table in:\n%s", out)
	}
	var names []string
	for _, line := range strings.Split(nodes, "\n")[1:] {
		if line == "" {
			break
		}
		names = append(names, strings.Fields(line)[0])
	}
	return names
}

func TestPlanWhichNodesNeedAReboot(t *testing.T) {
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		// sys-1 and user-5 do not say they need one; --need-all adds them.
		{nil, "user-3 user-1 user-4 user-0 user-2 sys-0"},
		{[]string{"--need-all"}, "user-3 user-1 user-4 user-0 user-2 user-5 sys-0 sys-1"},
		{[]string{"--need", "user-5,sys-1", "--need", "user-4"}, "user-4 user-5 sys-1"},
		{[]string{"--need-selector", "topology.kubernetes.io/zone=westeurope-2"}, "user-3 user-2 sys-1"},
	} {
		code, out, errOut := run(append(planArgs, tc.flags...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.flags, code, errOut)
		}
		if got := strings.Join(nodeNames(t, out), " "); got != tc.want {
			t.Errorf("%v: nodes %s, want %s", tc.flags, got, tc.want)
		}
	}
}

// --duration replaces every estimate; a node mid-reboot holds its slot from its start.
func TestPlanGivenDurationAndInProgress(t *testing.T) {
	nodes := writeFile(t, "nodes.yaml", `apiVersion: v1
kind: NodeList
items:
- metadata:
    name: a
    annotations: {rebootgate.io/phase: Rebooting, rebootgate.io/reboot-started-at: "2026-11-23T08:55:00Z"}
- metadata:
    name: b
    annotations: {rebootgate.io/reboot-required: "2026-11-23T08:00:00Z", rebootgate.io/last-reboot-duration: 1h0m0s}
`)
	code, out, errOut := run("plan", "--nodes", nodes, "--duration", "7m", "--at", "2026-11-23T09:00:00Z")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"Rollout done: 2026-11-23T09:09:00Z.",
		"Reboot duration: 7m0s each (--duration).",
		"a     default  -         in-progress  2026-11-23T08:55:00Z  2026-11-23T09:02:00Z  7m0s (given)",
		"b     default  -         scheduled    2026-11-23T09:02:00Z  2026-11-23T09:09:00Z  7m0s (given)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestPlanBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", "input"}, `-o: "input" is not one of table, json`},
		{[]string{"--need", "nobody"}, `--need: node "nobody" is not among the nodes`},
		{[]string{"--need-all", "--need", "user-1"}, "--need, --need-selector and --need-all: use one"},
		{[]string{"--need-selector", "a in (b"}, "--need-selector:"},
		{[]string{"--horizon", "0s"}, "--horizon: 0s is not positive"},
		{[]string{"--at", "tomorrow"}, `--at: "tomorrow" is not an RFC 3339 time`},
		{[]string{"--nodes", "testdata/plan/pods.yaml"}, `items[0].kind: "Pod" is not a Node`},
	} {
		code, _, errOut := run(append(slicesClone(planArgs), tc.args...)...)
		if code != ExitBadInput || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// The README shows the golden forecast as the command prints it.
func TestPlanREADMEShowsTheGolden(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/plan/forecast.txt.golden")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), string(want)) {
		t.Fatalf("README.md's rebootgate plan example is not testdata/plan/forecast.txt.golden; paste it again:\n%s", want)
	}
}

// kured's schedule flags make the pool, as for eval.
func TestPlanKuredFlags(t *testing.T) {
	nodes := writeFile(t, "nodes.yaml", `apiVersion: v1
kind: Node
metadata: {name: a}
`)
	code, out, errOut := run("plan", "--nodes", nodes, "--need-all", "--duration", "20m", "--reboot-days", "sat",
		"--start-time", "2am", "--end-time", "4am", "--time-zone", "Europe/Berlin", "--at", "2026-11-23T09:00:00+01:00")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if want := "a     default  -         scheduled  2026-11-28T02:00:00+01:00  2026-11-28T02:20:00+01:00  20m0s (given)"; !strings.Contains(out, want) {
		t.Fatalf("output lacks %q:\n%s", want, out)
	}
}
