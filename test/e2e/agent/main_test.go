// Package agent runs rebootgate's agent on the test bed: one real agent process per
// simulated node, against a real apiserver, with the node simulator standing in for the
// hosts' reboots. It runs only under `make test-e2e` (REBOOTGATE_E2E set).
package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// binary is the rebootgate binary built for this suite.
var binary string

func TestMain(m *testing.M) { os.Exit(testbed.MainWithBinary(m, &binary)) }

// cluster is one test's nodes, namespace and config.
type cluster struct {
	t     *testing.T
	bed   *testbed.Bed
	ns    string
	id    string
	nodes map[string][]string // pool → node names
	dir   string
}

// newCluster creates fresh kwok nodes for the test, perPool nodes in each pool, spread
// over three zones, labelled with the test's id so pool selectors see only them.
func newCluster(t *testing.T, perPool map[string]int) *cluster {
	bed := testbed.Shared(t)
	c := &cluster{t: t, bed: bed, ns: bed.Namespace(t), id: testbed.NewUUID()[:6], nodes: map[string][]string{}, dir: t.TempDir()}
	pools := make([]string, 0, len(perPool))
	for p := range perPool {
		pools = append(pools, p)
	}
	slices.Sort(pools)
	for _, pool := range pools {
		for i := range perPool[pool] {
			name := fmt.Sprintf("e2e-%s-%s-%d", c.id, pool, i)
			n := testbed.NewNode(name, pool, fmt.Sprintf("eastus-%d", i%3+1))
			n.Labels["e2e-run"] = c.id
			bed.CreateNode(t, n)
			c.nodes[pool] = append(c.nodes[pool], name)
		}
	}
	return c
}

func (c *cluster) allNodes() []string {
	var all []string
	for _, names := range c.nodes {
		all = append(all, names...)
	}
	slices.Sort(all)
	return all
}

// writeConfig writes a RebootGateConfig whose pools select this test's nodes by their
// agentpool label; body is YAML appended under each pool (indent 2).
func (c *cluster) writeConfig(pools string, rest string) string {
	path := filepath.Join(c.dir, "config.yaml")
	doc := "apiVersion: rebootgate.io/v1alpha1\nkind: RebootGateConfig\npools:\n" + pools + rest
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// userPoolOpeningAt is the pool "user" (the agentpool label) with the given
// concurrency and one daily window, UTC, from open for an hour.
func userPoolOpeningAt(open time.Time, concurrency int) string {
	return fmt.Sprintf(`- name: user
  selector: 'node.labels[?"agentpool"] == optional.of("user")'
  concurrency: %d
  windows:
  - startTime: "%s"
    endTime: "%s"
    timeZone: UTC
`, concurrency, open.Format("15:04:05"), open.Add(time.Hour).Format("15:04:05"))
}

// agentCommand is the agent's command line under the simulator.
func (c *cluster) agentCommand(configPath string, extra ...string) []string {
	args := []string{
		binary, "agent",
		"--node-id", testbed.PhNode,
		"--namespace", c.ns,
		"--kubeconfig", testbed.PhKubeconfig,
		"--config", configPath,
		"--reboot-sentinel", testbed.PhSentinel,
		"--reboot-command", testbed.PhRebootHook,
		"--nsenter=false",
		"--metrics-host", "127.0.0.1",
		"--metrics-port", testbed.PhPort,
		"--lock-ttl", "30s",
		"--lock-jitter", "100ms",
		"--recheck-interval", "2s",
		"--sentinel-period", "2s",
		"--reboot-timeout", "20s",
		"--ready-timeout", "1m",
		"--loop-backoff", "2m",
		"--drain-timeout", "30s",
		"--drain-retry-delay", "1s",
		"--log-level", "debug",
	}
	return append(args, extra...)
}

func (c *cluster) simulate(cfg testbed.SimConfig) *testbed.Simulator {
	if cfg.Nodes == nil {
		cfg.Nodes = c.allNodes()
	}
	if cfg.RebootDelay == 0 {
		cfg.RebootDelay = time.Second
	}
	sim := c.bed.StartSimulator(c.t, cfg)
	c.t.Cleanup(func() {
		if c.t.Failed() {
			for _, n := range cfg.Nodes {
				if data, err := os.ReadFile(sim.LogPath(n)); err == nil {
					c.t.Logf("--- agent log of %s (last 4 KiB) ---\n%s", n, tail(string(data), 4096))
				}
			}
		}
	})
	return sim
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

func (c *cluster) node(name string) *corev1.Node {
	n, err := c.bed.Client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

// waitNode waits for a condition on one node.
func (c *cluster) waitNode(name string, timeout time.Duration, what string, cond func(*corev1.Node) bool) *corev1.Node {
	c.t.Helper()
	n, err := c.bed.WaitNode(context.Background(), name, timeout, what, cond)
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

// decisionOf is the raw decision annotation on n, for matching its text.
func decisionOf(n *corev1.Node) string { return n.Annotations[nodestate.AnnotationDecision] }

// sampler records, every 50ms, how many of the test's nodes of each pool are inside
// the reboot pipeline (a phase annotation is set only while a slot is held), and the
// most ever seen at once.
type sampler struct {
	mu   sync.Mutex
	max  map[string]int
	stop chan struct{}
	done chan struct{}
}

func (c *cluster) sample() *sampler {
	s := &sampler{max: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			list, err := c.bed.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: "e2e-run=" + c.id})
			if err != nil {
				continue
			}
			busy := map[string]int{}
			for _, n := range list.Items {
				if nodestate.StateOf(&n).Phase != nodestate.PhaseIdle || n.Spec.Unschedulable {
					busy[n.Labels[testbed.PoolLabel]]++
				}
			}
			s.mu.Lock()
			for p, v := range busy {
				s.max[p] = max(s.max[p], v)
			}
			s.mu.Unlock()
		}
	}()
	c.t.Cleanup(s.finish)
	return s
}

func (s *sampler) finish() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

func (s *sampler) maxBusy() map[string]int {
	s.finish()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// waitLog waits until the node's agent log holds at least n occurrences of what: the
// agent's own account that it reached a point, instead of a guess at how long that takes.
func (c *cluster) waitLog(sim *testbed.Simulator, node, what string, n int) {
	c.t.Helper()
	err := testbed.Poll(context.Background(), time.Minute, fmt.Sprintf("%d× %q in the agent log of %s", n, what, node), func(context.Context) (bool, error) {
		data, err := os.ReadFile(sim.LogPath(node))
		return err == nil && strings.Count(string(data), what) >= n, nil
	})
	if err != nil {
		c.t.Fatal(err)
	}
}

// decisions reads the agent's count of its decisions (rebootgate_gate_decisions_total,
// every pool and result) from its /metrics.
func decisions(ctx context.Context, sim *testbed.Simulator, node string) (float64, error) {
	v, _, err := metricValue(ctx, sim, node, "rebootgate_gate_decisions_total", nil)
	return v, err
}

// metricValue scrapes the node's agent and sums the samples of the metric name (a
// histogram's name_sum or name_count too) for this node that carry every label in
// labels; found says whether any sample matched.
func metricValue(ctx context.Context, sim *testbed.Simulator, node, name string, labels map[string]string) (total float64, found bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", sim.Port(node)), nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, false, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, `node="`+node+`"`) {
			continue
		}
		match := true
		for k, v := range labels {
			match = match && strings.Contains(line, k+`="`+v+`"`)
		}
		if !match {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, false, fmt.Errorf("%q: %w", line, err)
		}
		total, found = total+v, true
	}
	return total, found, nil
}

// blocked is a node whose needed reboot is blocked: a recording of its changes since
// before the sentinel was set, to prove that nothing happened to it while blocked.
type blocked struct {
	c    *cluster
	sim  *testbed.Simulator
	node string
	rec  *testbed.NodeRecorder
}

// watchBlocked starts recording the node; call it before setting its sentinel.
func (c *cluster) watchBlocked(sim *testbed.Simulator, node string) *blocked {
	return &blocked{c: c, sim: sim, node: node, rec: c.bed.RecordNode(c.t, node, nodestate.AnnotationPhase)}
}

// holds waits until the agent has decided twice more after the blocked decision
// (each a chance to act on a reboot that is needed), then checks that the node has
// never been cordoned or entered the pipeline, holds no slot, and was not rebooted.
func (b *blocked) holds() {
	t := b.c.t
	t.Helper()
	ctx := context.Background()
	var base float64
	if err := testbed.Poll(ctx, time.Minute, "the agent's decision count on "+b.node, func(ctx context.Context) (bool, error) {
		v, err := decisions(ctx, b.sim, b.node)
		base = v
		return err == nil && v > 0, err
	}); err != nil {
		t.Fatal(err)
	}
	if err := testbed.Poll(ctx, time.Minute, "two more decisions on "+b.node, func(ctx context.Context) (bool, error) {
		v, err := decisions(ctx, b.sim, b.node)
		return err == nil && v >= base+2, err
	}); err != nil {
		t.Fatal(err)
	}
	b.untouched("while blocked")
}

// untouched checks that the node has not been cordoned, entered the pipeline, held a
// slot or rebooted since the recording began.
func (b *blocked) untouched(when string) {
	t := b.c.t
	t.Helper()
	if tr, ok := b.rec.FirstSince(time.Time{}, func(tr testbed.NodeTransition) bool {
		return tr.Unschedulable || tr.Annotations[nodestate.AnnotationPhase] != ""
	}); ok {
		t.Fatalf("%s: %s was cordoned or entered the pipeline at %s; changes:%s", when, b.node, tr.At.Format(time.RFC3339Nano), b.rec)
	}
	holders, err := b.c.bed.Client.CoordinationV1().Leases(b.c.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range holders.Items {
		if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == b.node {
			t.Fatalf("%s: %s holds the slot Lease %s", when, b.node, l.Name)
		}
	}
	// Only this node's reboots: another node's may be what the test waits for.
	if r := slices.DeleteFunc(b.sim.Reboots(), func(r testbed.Reboot) bool { return r.Node != b.node }); len(r) != 0 || b.sim.State(b.node).Rebooting {
		t.Fatalf("%s: %s rebooted: %v", when, b.node, r)
	}
}

// logCount counts what in the node's agent log so far.
func logCount(sim *testbed.Simulator, node, what string) int {
	data, _ := os.ReadFile(sim.LogPath(node))
	return strings.Count(string(data), what)
}
