// Package features runs on the test bed the agent features that unit tests alone
// covered: cron windows and blackouts, node-image rules, the command sentinel, kured's
// KURED_* environment, live `rebootgate eval` against the agent's own decision, and
// the node lifecycle conditions of KEP-5683. Each test runs real agents under the node
// simulator and is judged on the simulator's record of when hosts were down. It runs
// only under `make test-e2e` (REBOOTGATE_E2E set).
package features

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// env is one test's fresh nodes, namespace and files.
type env struct {
	t   *testing.T
	bed *testbed.Bed
	ns  string
	id  string
	dir string
	n   int
}

func newEnv(t *testing.T) *env {
	t.Parallel()
	bed := testbed.Shared(t)
	return &env{t: t, bed: bed, ns: bed.Namespace(t), id: strings.ToLower(testbed.NewUUID()[:6]), dir: t.TempDir()}
}

// node creates a fresh kwok node of pool "user" (fresh names: kwok mis-simulates a
// node re-created under a deleted name), after edit, if any, changed it.
func (e *env) node(edit func(*corev1.Node)) string {
	e.n++
	name := fmt.Sprintf("feat-%s-%d", e.id, e.n)
	n := testbed.NewNode(name, "user", "eastus-1")
	n.Labels["e2e-run"] = e.id
	if edit != nil {
		edit(n)
	}
	e.bed.CreateNode(e.t, n)
	return name
}

// config writes a RebootGateConfig with one pool "user" selecting this test's nodes;
// pool is YAML added under the pool (indent 2), rest YAML at the top level.
func (e *env) config(pool, rest string) string {
	path := filepath.Join(e.dir, "config.yaml")
	doc := fmt.Sprintf(`apiVersion: rebootgate.io/v1alpha1
kind: RebootGateConfig
pools:
- name: user
  selector: 'node.labels[?"e2e-run"] == optional.of(%q)'
  concurrency: 1
%s%s`, e.id, pool, rest)
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// args is the agent's command line under the simulator, short timings, with extra
// flags; configPath "" leaves --config out.
func (e *env) args(configPath string, extra ...string) []string {
	args := []string{
		binary, "agent",
		"--node-id", testbed.PhNode,
		"--namespace", e.ns,
		"--kubeconfig", testbed.PhKubeconfig,
		"--reboot-sentinel", testbed.PhSentinel,
		"--reboot-command", testbed.PhRebootHook,
		"--nsenter=false",
		"--metrics-port", "0",
		"--lock-ttl", "30s",
		"--lock-jitter", "100ms",
		"--recheck-interval", "2s",
		"--sentinel-period", "1s",
		"--reboot-timeout", "20s",
		"--ready-timeout", "1m",
		"--drain-timeout", "30s",
		"--log-level", "debug",
	}
	if configPath != "" {
		args = append(args, "--config", configPath)
	}
	return append(args, extra...)
}

// simulate runs the agents of nodes under the simulator; a failed test shows the end
// of each agent's log.
func (e *env) simulate(nodes []string, command []string, environ ...string) *testbed.Simulator {
	sim := e.bed.StartSimulator(e.t, testbed.SimConfig{Command: command, Env: environ, Nodes: nodes, RebootDelay: time.Second, FlipReady: true})
	e.t.Cleanup(func() {
		if !e.t.Failed() {
			return
		}
		for _, n := range nodes {
			if data, err := os.ReadFile(sim.LogPath(n)); err == nil {
				s := string(data)
				e.t.Logf("--- agent log of %s (last 4 KiB) ---\n%s", n, s[max(0, len(s)-4096):])
			}
		}
	})
	return sim
}

func (e *env) required(sim *testbed.Simulator, nodes ...string) {
	for _, n := range nodes {
		if err := sim.SetRebootRequired(n, true); err != nil {
			e.t.Fatal(err)
		}
	}
}

// waitDecision waits until the agent of node reports a decision for which cond holds.
func (e *env) waitDecision(node string, timeout time.Duration, what string, cond func(nodestate.Decision) bool) nodestate.Decision {
	e.t.Helper()
	var d nodestate.Decision
	if _, err := e.bed.WaitNode(context.Background(), node, timeout, what, func(n *corev1.Node) bool {
		var found bool
		var err error
		d, found, err = nodestate.DecisionOf(n)
		return found && err == nil && cond(d)
	}); err != nil {
		e.t.Fatal(err)
	}
	return d
}

// reasons joins a decision's reasons, for matching and messages.
func reasons(rs []nodestate.Reason) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Source+": "+r.Message)
	}
	return strings.Join(out, "; ")
}

// downs is the simulator's record of node's down intervals.
func downs(sim *testbed.Simulator, node string) []testbed.DownInterval {
	var out []testbed.DownInterval
	for _, d := range sim.DownIntervals() {
		if d.Node == node {
			out = append(out, d)
		}
	}
	return out
}

// rebootedOnce waits for node's reboot and checks that it was the only one and that it
// began no earlier than notBefore (zero: any time).
func (e *env) rebootedOnce(sim *testbed.Simulator, node string, notBefore time.Time, timeout time.Duration) testbed.DownInterval {
	e.t.Helper()
	ctx := context.Background()
	if err := sim.WaitForRebootStarted(ctx, node, timeout); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.bed.WaitNode(ctx, node, time.Minute, "back, idle and uncordoned", func(n *corev1.Node) bool {
		return !n.Spec.Unschedulable && n.Annotations[nodestate.AnnotationPhase] == "" && n.Annotations[nodestate.AnnotationLastReboot] != ""
	}); err != nil {
		e.t.Fatal(err)
	}
	d := downs(sim, node)
	if len(d) != 1 {
		e.t.Fatalf("%s was down %d times, want once: %v", node, len(d), d)
	}
	if d[0].From.Before(notBefore) {
		e.t.Fatalf("%s went down at %s, before %s", node, d[0].From.Format(time.RFC3339Nano), notBefore.Format(time.RFC3339Nano))
	}
	return d[0]
}

// neverDown fails the test if node has been down.
func (e *env) neverDown(sim *testbed.Simulator, node, why string) {
	e.t.Helper()
	if d := downs(sim, node); len(d) > 0 {
		e.t.Fatalf("%s went down (%s): %v", node, why, d)
	}
}

// holds checks for d that none of nodes goes down: blocked nodes that had every chance
// to reboot (the agents re-decide every --recheck-interval, 2s) must not.
func (e *env) holds(sim *testbed.Simulator, d time.Duration, why string, nodes ...string) {
	e.t.Helper()
	err := testbed.Poll(context.Background(), d, why, func(context.Context) (bool, error) {
		for _, n := range nodes {
			if len(downs(sim, n)) > 0 {
				return false, testbed.Permanent(fmt.Errorf("%s went down: %v", n, downs(sim, n)))
			}
		}
		return false, nil
	})
	if !errors.Is(err, testbed.ErrTimeout) {
		e.t.Fatalf("%s: %v", why, err)
	}
}

// freezeFor is a pool's blackout "freeze" from a minute ago until d from now (whole
// seconds, as RFC 3339 writes them), and its end.
func freezeFor(d time.Duration) (pool string, end time.Time) {
	now := time.Now().UTC().Truncate(time.Second)
	end = now.Add(d)
	return fmt.Sprintf(`  blackouts:
  - name: freeze
    start: %q
    end: %q
`, now.Add(-time.Minute).Format(time.RFC3339), end.Format(time.RFC3339)), end
}
