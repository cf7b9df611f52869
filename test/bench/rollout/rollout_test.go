// Package rollout measures a rolling reboot on the test bed (`make bench-rollout`):
// N nodes, concurrency C, simulated reboot delay D. It compares the wall time with
// ceil(N/C) × the time one node takes on its own, and reports an idle agent's RSS and
// API requests. It runs only when REBOOTGATE_BENCH_ROLLOUT is set.
package rollout

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/testbed"
)

const envBench = "REBOOTGATE_BENCH_ROLLOUT"

var binary string

func TestMain(m *testing.M) { os.Exit(testbed.BenchMain(m, envBench, "bench-rollout", &binary)) }

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func TestRollout(t *testing.T) {
	n, c := envInt("N", 30), envInt("C", 1)
	d, err := time.ParseDuration(os.Getenv("D"))
	if err != nil {
		d = 5 * time.Second
	}
	bed := testbed.Shared(t)
	ns := bed.Namespace(t)
	id := testbed.NewUUID()[:6]
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	doc := fmt.Sprintf(`apiVersion: rebootgate.io/v1alpha1
kind: RebootGateConfig
pools:
- name: solo
  selector: 'node.labels[?"bench-role"] == optional.of("solo")'
  concurrency: 1
- name: bench
  selector: 'node.labels[?"bench-role"] == optional.of("rollout")'
  concurrency: %d
`, c)
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	mk := func(role string, i int) string {
		name := fmt.Sprintf("bench-%s-%s-%d", id, role, i)
		node := testbed.NewNode(name, "user", fmt.Sprintf("eastus-%d", i%3+1))
		node.Labels["bench-role"] = role
		bed.CreateNode(t, node)
		return name
	}
	command := []string{
		binary, "agent", "--node-id", testbed.PhNode, "--namespace", ns, "--kubeconfig", testbed.PhKubeconfig,
		"--config", cfg, "--reboot-sentinel", testbed.PhSentinel, "--reboot-command", testbed.PhRebootHook,
		"--nsenter=false", "--metrics-host", "127.0.0.1", "--metrics-port", testbed.PhPort,
		"--lock-ttl", "60s", "--lock-jitter", "200ms", "--ready-timeout", "2m", "--reboot-timeout", "1m",
	}
	ctx := context.Background()

	// The baseline: one node at a time with nobody to coordinate with. The median of
	// three runs is the per-node time.
	var solo []time.Duration
	for i := range 3 {
		name := mk("solo", i)
		sim := bed.StartSimulator(t, testbed.SimConfig{Command: command, Nodes: []string{name}, RebootDelay: d, FlipReady: true})
		start := time.Now()
		if err := sim.SetRebootRequired(name, true); err != nil {
			t.Fatal(err)
		}
		waitDone(t, bed, []string{name}, 1, 5*time.Minute)
		solo = append(solo, time.Since(start))
		if err := sim.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(solo)
	perNode := solo[1]

	names := make([]string, n)
	for i := range n {
		names[i] = mk("rollout", i)
	}
	sim := bed.StartSimulator(t, testbed.SimConfig{Command: command, Nodes: names, RebootDelay: d, FlipReady: true})
	start := time.Now()
	for _, name := range names {
		if err := sim.SetRebootRequired(name, true); err != nil {
			t.Fatal(err)
		}
	}
	waitDone(t, bed, names, n, time.Duration(n)*(perNode+time.Minute))
	wall := time.Since(start)
	limit := time.Duration(math.Ceil(float64(n)/float64(c))) * perNode
	fmt.Printf("rollout nodes=%d concurrency=%d wall=%.1fs limit=%.1fs ratio=%.2f\n",
		n, c, wall.Seconds(), limit.Seconds(), wall.Seconds()/limit.Seconds())
	fmt.Printf("per-node time alone (median of 3): %.2fs (runs %v)\n", perNode.Seconds(), roundAll(solo))
	testbed.CheckRebootedOnce(t, sim, names)

	// Idle agents: every node rebooted and no reboot is needed. Measure RSS and the
	// API requests over a minute, extrapolated to an hour.
	idle := names[:min(5, len(names))]
	// The window starts once every measured agent is ready (informers synced, policies
	// loaded) after its last restart, so start-up requests are not counted.
	for _, name := range idle {
		url := fmt.Sprintf("http://127.0.0.1:%d/readyz", sim.Port(name))
		if err := testbed.Poll(ctx, time.Minute, name+" ready", func(context.Context) (bool, error) {
			resp, err := http.Get(url)
			if err != nil {
				return false, nil
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	before := scrapeAll(t, sim, idle)
	const window = 60 * time.Second
	time.Sleep(window)
	after := scrapeAll(t, sim, idle)
	var rss, anon []float64
	var nonWatch, watch []float64
	for _, name := range idle {
		total, private := rssMiB(t, sim.State(name).PID)
		rss, anon = append(rss, total), append(anon, private)
		nonWatch = append(nonWatch, (after[name]["false"]-before[name]["false"])*float64(time.Hour/window))
		watch = append(watch, (after[name]["true"]-before[name]["true"])*float64(time.Hour/window))
	}
	fmt.Printf("idle agent: rss=%.1fMiB (private %.1fMiB; the rest is the mapped binary) median of %d; api_requests_per_hour non-watch=%.0f watch=%.0f (median, from a %s window)\n",
		median(rss), median(anon), len(idle), median(nonWatch), median(watch), window)
}

// waitDone waits until n reboots have happened and the nodes are idle and uncordoned.
func waitDone(t *testing.T, bed *testbed.Bed, names []string, n int, timeout time.Duration) {
	t.Helper()
	err := testbed.Poll(context.Background(), timeout, fmt.Sprintf("%d nodes rebooted and uncordoned", n), func(ctx context.Context) (bool, error) {
		for _, name := range names {
			node, err := bed.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			if !finished(node) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func finished(n *corev1.Node) bool {
	return !n.Spec.Unschedulable && nodestate.StateOf(n).Phase == nodestate.PhaseIdle && n.Annotations[nodestate.AnnotationLastReboot] != ""
}

// scrapeAll reads rebootgate_api_requests_total by watch label from each agent.
func scrapeAll(t *testing.T, sim *testbed.Simulator, names []string) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	for _, name := range names {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", sim.Port(name)))
		if err != nil {
			t.Fatal(err)
		}
		counts := map[string]float64{}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "rebootgate_api_requests_total{") {
				continue
			}
			fields := strings.Fields(line)
			v, _ := strconv.ParseFloat(fields[len(fields)-1], 64)
			if strings.Contains(line, `watch="true"`) {
				counts["true"] += v
			} else {
				counts["false"] += v
			}
		}
		resp.Body.Close()
		out[name] = counts
	}
	return out
}

// rssMiB returns a process's resident memory and its private (anonymous) part.
func rssMiB(t *testing.T, pid int) (total, private float64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(fields[1], 64)
		switch fields[0] {
		case "VmRSS:":
			total = kb / 1024
		case "RssAnon:":
			private = kb / 1024
		}
	}
	return total, private
}

func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(10 * time.Millisecond)
	}
	return out
}
