// Package plan checks `rebootgate plan` against what then happens on the test bed: a
// forecast made live, before and during a rolling reboot of simulated nodes, against the
// simulator's record of when each host was down (the oracle). It runs only under
// `make test-e2e` (REBOOTGATE_E2E set).
package plan

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// binary is the rebootgate binary built for this suite.
var binary string

func TestMain(m *testing.M) { os.Exit(testbed.MainWithBinary(m, &binary)) }

const (
	nodes       = 6
	concurrency = 2
	// rebootDelay is how long the simulator keeps a host down.
	rebootDelay = 6 * time.Second
	// estimate is the operator's estimate of one reboot, cordon to uncordon: the
	// host's downtime plus what the README's make bench-rollout measured around it
	// on this bed (about 0.8 s per node for a 5 s reboot: detecting, cordoning, the
	// new boot ID, uncordoning, the slot's hand-off).
	estimate = rebootDelay + 800*time.Millisecond
	// tolerance is the largest error allowed on the rollout's length.
	tolerance = 0.20
)

// forecast is the part of `rebootgate plan -o json` the test reads.
type forecast struct {
	At         time.Time  `json:"at"`
	Completion *time.Time `json:"completion"`
	Nodes      []struct {
		Node   string     `json:"node"`
		Status string     `json:"status"`
		Start  *time.Time `json:"start"`
		End    *time.Time `json:"end"`
	} `json:"nodes"`
	Never []struct {
		Node string `json:"node"`
	} `json:"never"`
}

func (f *forecast) order() []string {
	var out []string
	for _, n := range f.Nodes {
		out = append(out, n.Node)
	}
	return out
}

// TestForecastMatchesRollingReboot: six nodes, two at a time, no window. A forecast
// made before any node needs a reboot (the nodes named by a selector) and one made
// while the first reboots (the nodes found by their RebootRequired annotations and
// phases) both predict the order the nodes then go down in, and the rollout's end
// within 20 % of its length, with a duration estimate given.
func TestForecastMatchesRollingReboot(t *testing.T) {
	r := newRollout(t, nodes, "")
	bed, names, cfg, sim, id := r.bed, r.names, r.cfg, r.sim, r.id
	ctx := context.Background()

	// Before: no node needs a reboot yet; the selector says which will.
	before := plan(t, bed, cfg, "--need-selector", "e2e-run="+id)
	if got := before.order(); !slices.Equal(got, names) || len(before.Never) != 0 || before.Completion == nil {
		t.Fatalf("forecast before the rollout: order %v, never %v, completion %v; want %v, none, a time", got, before.Never, before.Completion, names)
	}

	// The rollout: the nodes need a reboot one second apart, in name order (the order
	// of the forecast above, whose nodes had no time of need).
	for _, n := range names {
		if err := sim.SetRebootRequired(n, true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
	}
	// During: every node has said it needs a reboot; the first ones are rebooting.
	for _, n := range names {
		if _, err := bed.WaitNode(ctx, n, 30*time.Second, "a reboot required or begun", func(n *corev1.Node) bool {
			return n.Annotations[nodestate.AnnotationRebootRequired] != "" || nodestate.StateOf(n).Phase != nodestate.PhaseIdle
		}); err != nil {
			t.Fatal(err)
		}
	}
	during := plan(t, bed, cfg)

	if _, err := sim.WaitForReboots(ctx, nodes, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	downs, end := downsOf(t, sim)
	actual := slices.Clone(names)
	slices.SortFunc(actual, func(a, b string) int { return downs[a].From.Compare(downs[b].From) })

	for _, c := range []struct {
		name string
		f    *forecast
	}{{"before", before}, {"during", during}} {
		if got := c.f.order(); !slices.Equal(got, actual) {
			t.Errorf("forecast %s: order %v, the nodes went down in the order %v", c.name, got, actual)
		}
		if c.f.Completion == nil {
			t.Errorf("forecast %s: no completion", c.name)
			continue
		}
		checkCompletion(t, c.name, c.f, c.f.At, end)
	}
	// The forecast during the rollout saw the first reboots in progress.
	if during.Nodes[0].Status != "in-progress" {
		t.Errorf("forecast during the rollout: first node %+v, want in-progress", during.Nodes[0])
	}
}

// rollout is a test's simulated nodes, config and simulator.
type rollout struct {
	bed   *testbed.Bed
	id    string
	names []string
	cfg   string
	sim   *testbed.Simulator
}

// newRollout creates count fresh nodes, a config whose one pool (concurrency 2) selects
// them, with extra YAML under the pool, and starts their agents; it returns once every
// agent has reported that no reboot is required.
func newRollout(t *testing.T, count int, extra string) *rollout {
	t.Helper()
	bed := testbed.Shared(t)
	ns := bed.Namespace(t)
	id := testbed.NewUUID()[:6]
	var names []string
	for i := range count {
		name := fmt.Sprintf("plan-%s-%d", id, i)
		n := testbed.NewNode(name, "user", fmt.Sprintf("eastus-%d", i%3+1))
		n.Labels["e2e-run"] = id
		bed.CreateNode(t, n)
		names = append(names, name)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`apiVersion: rebootgate.io/v1alpha1
kind: RebootGateConfig
pools:
- name: user
  selector: 'node.labels[?"e2e-run"] == optional.of("%s")'
  concurrency: %d
%s`, id, concurrency, extra)), 0o644); err != nil {
		t.Fatal(err)
	}
	sim := bed.StartSimulator(t, testbed.SimConfig{
		Command: []string{
			binary, "agent", "--node-id", testbed.PhNode, "--namespace", ns, "--kubeconfig", testbed.PhKubeconfig,
			"--config", cfg, "--reboot-sentinel", testbed.PhSentinel, "--reboot-command", testbed.PhRebootHook,
			"--nsenter=false", "--metrics-host", "127.0.0.1", "--metrics-port", testbed.PhPort,
			"--lock-ttl", "30s", "--recheck-interval", "2s", "--sentinel-period", "2s", "--reboot-timeout", "30s",
			"--ready-timeout", "1m", "--drain-timeout", "30s", "--log-level", "debug",
		},
		Nodes: names, RebootDelay: rebootDelay, FlipReady: true,
	})
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range names {
				if data, err := os.ReadFile(sim.LogPath(n)); err == nil {
					t.Logf("--- agent log of %s (last 3 KiB) ---\n%s", n, tail(string(data), 3072))
				}
			}
		}
	})
	ctx := context.Background()
	// The agents are up once each has reported that no reboot is required.
	for _, n := range names {
		if _, err := bed.WaitNode(ctx, n, time.Minute, "RebootRequired=False", func(n *corev1.Node) bool {
			return condition(n, nodestate.ConditionRebootRequired) == corev1.ConditionFalse
		}); err != nil {
			t.Fatal(err)
		}
	}
	return &rollout{bed: bed, id: id, names: names, cfg: cfg, sim: sim}
}

// downsOf is each node's down interval (failing on a node down twice) and when the
// last came back.
func downsOf(t *testing.T, sim *testbed.Simulator) (map[string]testbed.DownInterval, time.Time) {
	t.Helper()
	downs := map[string]testbed.DownInterval{}
	var end time.Time
	for _, d := range sim.DownIntervals() {
		if _, seen := downs[d.Node]; seen {
			t.Errorf("%s went down twice", d.Node)
		}
		downs[d.Node] = d
		if d.To.After(end) {
			end = d.To
		}
	}
	return downs, end
}

// checkCompletion fails when the rollout, from start (the forecast's time, or the
// window's opening) to end, took more than tolerance longer or shorter than the
// forecast said.
func checkCompletion(t *testing.T, name string, f *forecast, start, end time.Time) {
	t.Helper()
	predicted, took := f.Completion.Sub(start), end.Sub(start)
	errRatio := math.Abs(took.Seconds()-predicted.Seconds()) / predicted.Seconds()
	t.Logf("forecast %s at %s: rollout done %s after %s, predicted %s (error %.0f %%)",
		name, f.At.Format(time.RFC3339), took.Round(100*time.Millisecond), start.Format(time.RFC3339), predicted.Round(100*time.Millisecond), 100*errRatio)
	if errRatio > tolerance {
		t.Errorf("forecast %s: the rollout took %s from the forecast, predicted %s: off by %.0f %%, more than %.0f %%",
			name, took, predicted, 100*errRatio, 100*tolerance)
	}
}

// TestForecastWaitsForTheWindow: four nodes need a reboot while their pool's daily
// window is closed; it opens 30 s after the test starts (time to start the agents and
// see the need). The forecast starts the first two exactly at the opening and the
// rollout, from the opening, ends within 20 % of its prediction (the wait before is
// exact, and not counted); no node goes down before the window opens. (The order is not compared: at an opening every waiter
// queues at once, and the lock takes them in the order their agents ask.)
func TestForecastWaitsForTheWindow(t *testing.T) {
	open := time.Now().UTC().Add(30 * time.Second).Truncate(time.Second)
	r := newRollout(t, 4, fmt.Sprintf(`  windows:
  - startTime: "%s"
    endTime: "%s"
    timeZone: UTC
`, open.Format("15:04:05"), open.Add(time.Hour).Format("15:04:05")))
	ctx := context.Background()
	for _, n := range r.names {
		if err := r.sim.SetRebootRequired(n, true); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range r.names {
		if _, err := r.bed.WaitNode(ctx, n, 30*time.Second, "a reboot required", func(n *corev1.Node) bool {
			return n.Annotations[nodestate.AnnotationRebootRequired] != ""
		}); err != nil {
			t.Fatal(err)
		}
	}
	f := plan(t, r.bed, r.cfg)
	if !time.Now().Before(open) {
		t.Fatalf("the forecast came after the window opened (%s): the machine is too slow for this test", open.Format(time.RFC3339))
	}
	if len(f.Nodes) != 4 || f.Completion == nil {
		t.Fatalf("forecast: %d nodes, completion %v; want 4 and a time", len(f.Nodes), f.Completion)
	}
	for i, n := range f.Nodes {
		want := open.Add(time.Duration(i/concurrency) * estimate)
		if n.Start == nil || !n.Start.Equal(want) {
			t.Errorf("forecast: %s starts at %v, want %s (wave %d after the opening)", n.Node, n.Start, want.Format(time.RFC3339), i/concurrency)
		}
	}
	if _, err := r.sim.WaitForReboots(ctx, len(r.names), 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	downs, end := downsOf(t, r.sim)
	for n, d := range downs {
		if d.From.Before(open) {
			t.Errorf("%s went down at %s, before the window opened at %s", n, d.From.Format(time.RFC3339Nano), open.Format(time.RFC3339))
		}
	}
	checkCompletion(t, "with a window", f, open, end)
}

// plan runs `rebootgate plan` live against the bed with the duration estimate and
// returns its JSON forecast.
func plan(t *testing.T, bed *testbed.Bed, cfg string, args ...string) *forecast {
	t.Helper()
	argv := append([]string{"plan", "--kubeconfig", bed.Kubeconfig, "--config", cfg, "--duration", estimate.String(), "-o", "json"}, args...)
	out, err := exec.Command(binary, argv...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("rebootgate %s: %v\n%s", strings.Join(argv, " "), err, stderr)
	}
	var f forecast
	if err := json.Unmarshal(out, &f); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Logf("rebootgate plan %s:\n%s", strings.Join(args, " "), out)
	return &f
}

func condition(n *corev1.Node, typ corev1.NodeConditionType) corev1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
