// Package scale measures many real agent processes on the test bed (`make
// bench-scale`): for each N nodes and concurrency C, a rolling reboot of N
// simulated nodes, one agent process each. It prints one line per run with the
// wall time against ⌈N/C⌉ × one node alone, the hand-off times (a slot's
// release to the next node's cordon), the API server's own request counts per
// rebooted node with the idle background subtracted, and an idle agent's
// watches, memory and start-up time. It fails when a run breaks the safety
// contract (a node rebooted twice or not at all, more than C nodes down at once
// by the simulator's record). It runs only when REBOOTGATE_BENCH_SCALE is set.
package scale

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/lock"
	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/testbed"
)

const envBench = "REBOOTGATE_BENCH_SCALE"

var binary string

func TestMain(m *testing.M) { os.Exit(testbed.BenchMain(m, envBench, "bench-scale", &binary)) }

// rebootDelay is the simulated reboot; the targets assume 5 s.
const rebootDelay = 5 * time.Second

func TestScale(t *testing.T) {
	sizes := listEnv("SCALE_NODES", "10,30,100")
	concurrencies := listEnv("SCALE_CONCURRENCY", "1,5%")
	bed := testbed.Shared(t)
	ns := bed.Namespace(t)
	alone := perNodeAlone(t, bed, ns)
	fmt.Printf("per-node time alone (median of 3): %.2fs\n", alone.Seconds())
	for _, n := range sizes {
		size, err := strconv.Atoi(n)
		if err != nil || size < 1 {
			t.Fatalf("SCALE_NODES: %q is not a node count", n)
		}
		for _, c := range concurrencies {
			conc := intstr.Parse(c)
			slots := (&config.ResolvedPool{Concurrency: conc}).Slots(size)
			if slots < 1 {
				t.Fatalf("SCALE_CONCURRENCY: %q gives no slot for %d nodes", c, size)
			}
			r := runScale(t, bed, ns, size, c, slots)
			limit := time.Duration(math.Ceil(float64(size)/float64(slots))) * alone
			fmt.Printf("scale nodes=%d concurrency=%d wall=%.1fs limit=%.1fs ratio=%.2f handoff-p50=%.2fs handoff-p99=%.2fs "+
				"requests-per-reboot=%.1f writes-per-reboot=%.1f conflicts-per-reboot=%.2f watches-per-idle-agent=%.1f "+
				"idle-rss=%.1fMiB idle-private=%.1fMiB ready-after=%.2fs concurrency-spec=%s per-node=%.2fs max-overtake=%d "+
				"sim-writes-per-reboot=%.1f sim-requests-per-reboot=%.1f idle-requests-per-agent-hour=%.1f degraded-agents=%d %s\n",
				size, slots, r.wall.Seconds(), limit.Seconds(), r.wall.Seconds()/limit.Seconds(), r.handoffP50.Seconds(), r.handoffP99.Seconds(),
				r.requests/float64(size), r.writes/float64(size), r.conflicts/float64(size), r.watchesPerAgent,
				r.rss, r.private, r.readyAfter.Seconds(), c, r.wall.Seconds()/math.Ceil(float64(size)/float64(slots)), r.maxOvertake,
				r.simWrites/float64(size), r.simRequests/float64(size), r.idleRequestsPerAgentHour, r.degraded, r.byVerb)
		}
	}
}

func listEnv(name, def string) []string {
	v := os.Getenv(name)
	if v == "" {
		v = def
	}
	return strings.Split(v, ",")
}

func agentCommand(ns, cfg string) []string {
	return []string{
		binary, "agent", "--node-id", testbed.PhNode, "--namespace", ns, "--kubeconfig", testbed.PhKubeconfig,
		"--config", cfg, "--reboot-sentinel", testbed.PhSentinel, "--reboot-command", testbed.PhRebootHook,
		"--nsenter=false", "--metrics-host", "127.0.0.1", "--metrics-port", testbed.PhPort,
		"--lock-ttl", "60s", "--ready-timeout", "2m", "--reboot-timeout", "2m",
	}
}

// writeConfig writes a one-pool config selecting the nodes labelled role.
func writeConfig(t *testing.T, role, concurrency string) string {
	t.Helper()
	path := fmt.Sprintf("%s/%s.yaml", t.TempDir(), role)
	doc := fmt.Sprintf(`apiVersion: rebootgate.io/v1alpha1
kind: RebootGateConfig
pools:
- name: scale
  selector: 'node.labels[?"bench-role"] == optional.of(%q)'
  concurrency: %s
`, role, concurrency)
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// makeNodes creates n nodes labelled bench-role=role and deletes them at the end
// of the run, so later runs' background does not grow.
func makeNodes(t *testing.T, bed *testbed.Bed, role string, n int) []string {
	t.Helper()
	names := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("%s-%d", role, i)
		node := testbed.NewNode(names[i], "user", fmt.Sprintf("eastus-%d", i%3+1))
		node.Labels["bench-role"] = role
		bed.CreateNode(t, node)
	}
	return names
}

func deleteNodes(bed *testbed.Bed, names []string) {
	for _, name := range names {
		_ = bed.Client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{})
	}
}

// perNodeAlone is the median of three single-node reboots with nobody to
// coordinate with: sentinel to uncordon.
func perNodeAlone(t *testing.T, bed *testbed.Bed, ns string) time.Duration {
	var runs []time.Duration
	for range 3 {
		// A fresh name each time: kwok does not simulate a node re-created under
		// the name of one it has just seen deleted.
		role := "scale-alone-" + testbed.NewUUID()[:4]
		cfg := writeConfig(t, role, "1")
		names := makeNodes(t, bed, role, 1)
		sim := bed.StartSimulator(t, testbed.SimConfig{Command: agentCommand(ns, cfg), Nodes: names, RebootDelay: rebootDelay, FlipReady: true})
		w := watchRun(t, bed, ns, role)
		waitReady(t, sim, names)
		start := time.Now()
		if err := sim.SetRebootRequired(names[0], true); err != nil {
			t.Fatal(err)
		}
		w.waitDone(t, names, 3*time.Minute)
		runs = append(runs, time.Since(start))
		if err := sim.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		w.stop()
		deleteNodes(bed, names)
	}
	slices.Sort(runs)
	return runs[1]
}

type result struct {
	wall, handoffP50, handoffP99, readyAfter            time.Duration
	requests, writes, conflicts, simWrites, simRequests float64
	watchesPerAgent, rss, private                       float64
	idleRequestsPerAgentHour                            float64
	maxOvertake, degraded                               int
	byVerb                                              string
}

func runScale(t *testing.T, bed *testbed.Bed, ns string, n int, concurrency string, slots int) result {
	ctx := context.Background()
	role := fmt.Sprintf("scale-%d-%s", n, testbed.NewUUID()[:4])
	cfg := writeConfig(t, role, concurrency)
	names := makeNodes(t, bed, role, n)
	defer deleteNodes(bed, names)
	w := watchRun(t, bed, ns, role)
	defer w.stop()

	// The background, with this run's nodes created (kwok's heartbeats and node
	// leases are most of it) and no agent running. It is measured once the burst of
	// new nodes has passed (registration events, the controller manager's taints),
	// over two periods of kwok's node-lease renewals, so that it is a steady rate.
	const settle, baseWindow = 30 * time.Second, 100 * time.Second
	time.Sleep(settle)
	b0 := scrapeAPIServer(t, bed)
	time.Sleep(baseWindow)
	b1 := scrapeAPIServer(t, bed)
	background := b1.minus(b0).scale(1 / baseWindow.Seconds()) // per second

	m0, t0 := scrapeAPIServer(t, bed), time.Now()
	sim := bed.StartSimulator(t, testbed.SimConfig{Command: agentCommand(ns, cfg), Nodes: names, RebootDelay: rebootDelay, FlipReady: true, RestartOnExit: true})
	waitReady(t, sim, names)
	degraded := countDegraded(t, sim, names)
	start := time.Now()
	for _, name := range names {
		if err := sim.SetRebootRequired(name, true); err != nil {
			t.Fatal(err)
		}
	}
	w.waitDone(t, names, time.Duration(n)*time.Minute)
	wall := time.Since(start)
	m1, t1 := scrapeAPIServer(t, bed), time.Now()
	run := m1.minus(m0).minus(background.scale(t1.Sub(t0).Seconds()))
	simReq := sim.APIRequests()

	// The oracle: the simulator's record, not our annotations.
	testbed.CheckRebootedOnce(t, sim, names)
	if down := maxDown(sim.DownIntervals()); down > slots {
		t.Errorf("%d nodes were down at once, concurrency %d", down, slots)
	}

	r := result{degraded: degraded, wall: wall, requests: run.nonWatch(), writes: run.writes(), conflicts: run.conflicts(), byVerb: run.verbs(n)}
	for m, c := range simReq {
		r.simRequests += float64(c)
		if m != "GET" {
			r.simWrites += float64(c)
		}
	}
	r.handoffP50, r.handoffP99 = w.handoffs(slots)
	r.maxOvertake = w.maxOvertake()

	// Idle: every node rebooted once and none needs to. Watches open, requests over
	// a window (there must be none), memory, and the time to ready after a restart.
	time.Sleep(5 * time.Second)
	i0, it0 := scrapeAPIServer(t, bed), time.Now()
	const idleWindow = 30 * time.Second
	time.Sleep(idleWindow)
	i1, it1 := scrapeAPIServer(t, bed), time.Now()
	idle := i1.minus(i0).minus(background.scale(it1.Sub(it0).Seconds()))
	r.idleRequestsPerAgentHour = math.Max(0, idle.nonWatch()) / float64(n) * float64(time.Hour) / float64(it1.Sub(it0))
	r.watchesPerAgent = (i1.watches - b1.watches) / float64(n)
	var rss, private []float64
	var ready []time.Duration
	for _, name := range names[:min(5, n)] {
		m, err := testbed.ReadProcMem(sim.State(name).PID)
		if err != nil {
			t.Fatal(err)
		}
		rss, private = append(rss, testbed.MiB(m.Total)), append(private, testbed.MiB(m.Private))
	}
	for _, name := range names[:min(3, n)] {
		ready = append(ready, restartReady(t, sim, name))
	}
	r.rss, r.private = median(rss), median(private)
	slices.Sort(ready)
	r.readyAfter = ready[len(ready)/2]
	if err := sim.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

// restartReady kills one idle agent (the simulator restarts it, as a DaemonSet
// would) and returns the time from its new process's start to /readyz 200.
func restartReady(t *testing.T, sim *testbed.Simulator, name string) time.Duration {
	t.Helper()
	old, ok, err := sim.KillAgent(name, syscall.SIGKILL)
	if err != nil || !ok {
		t.Fatalf("kill %s's agent: ok=%v err=%v", name, ok, err)
	}
	var started time.Time
	deadline := time.Now().Add(time.Minute)
	for {
		if st := sim.State(name); st.Running && st.PID != old && st.PID != 0 {
			started = time.Now()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's agent was not restarted", name)
		}
		time.Sleep(2 * time.Millisecond)
	}
	d, err := testbed.WaitReady(context.Background(), fmt.Sprintf("http://127.0.0.1:%d/readyz", sim.Port(name)), started, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// countDegraded counts the agents whose /healthz says their detection is degraded
// (no inotify instance: the sentinel is polled).
func countDegraded(t *testing.T, sim *testbed.Simulator, names []string) int {
	t.Helper()
	n := 0
	for _, name := range names {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", sim.Port(name)))
		if err != nil {
			t.Fatalf("%s /healthz: %v", name, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s /healthz: %v", name, err)
		}
		if strings.Contains(string(body), "detection degraded") {
			n++
		}
	}
	return n
}

func waitReady(t *testing.T, sim *testbed.Simulator, names []string) {
	t.Helper()
	for _, name := range names {
		if _, err := testbed.WaitReady(context.Background(), fmt.Sprintf("http://127.0.0.1:%d/readyz", sim.Port(name)), time.Now(), 3*time.Minute); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

// maxDown is the largest number of simulated hosts down at one instant.
func maxDown(intervals []testbed.DownInterval) int {
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for _, iv := range intervals {
		to := iv.To
		if to.IsZero() {
			to = time.Now()
		}
		edges = append(edges, edge{iv.From, 1}, edge{to, -1})
	}
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta // an end before a start at the same instant
	})
	down, most := 0, 0
	for _, e := range edges {
		down += e.delta
		most = max(most, down)
	}
	return most
}

// runWatch records, from watches in this test process, when each node of the run
// was cordoned and queued and when slots were released.
type runWatch struct {
	mu       sync.Mutex
	cordoned map[string]time.Time
	queued   map[string]time.Time
	releases []time.Time
	nodes    cache.Store
	stop     func()
}

func watchRun(t *testing.T, bed *testbed.Bed, ns, role string) *runWatch {
	t.Helper()
	w := &runWatch{cordoned: map[string]time.Time{}, queued: map[string]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	w.stop = cancel
	nf := informers.NewSharedInformerFactoryWithOptions(bed.Client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = "bench-role=" + role
	}))
	ni := nf.Core().V1().Nodes().Informer()
	if _, err := ni.AddEventHandler(cache.ResourceEventHandlerFuncs{UpdateFunc: func(o, n any) {
		before, after := o.(*corev1.Node), n.(*corev1.Node)
		if !before.Spec.Unschedulable && after.Spec.Unschedulable {
			w.mu.Lock()
			if _, seen := w.cordoned[after.Name]; !seen {
				w.cordoned[after.Name] = time.Now()
			}
			w.mu.Unlock()
		}
	}}); err != nil {
		t.Fatal(err)
	}
	lf := informers.NewSharedInformerFactoryWithOptions(bed.Client, 0, informers.WithNamespace(ns), informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = lock.LabelPool + "=scale"
	}))
	li := lf.Coordination().V1().Leases().Informer()
	if _, err := li.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) {
			l := o.(*coordinationv1.Lease)
			// A waiter's turn is its ticket's queued-at time (the queue's own
			// order), not when this watch heard of it.
			if waiter := l.Annotations[lock.AnnotationWaiter]; waiter != "" && l.Spec.AcquireTime != nil {
				w.mu.Lock()
				if _, seen := w.queued[waiter]; !seen {
					w.queued[waiter] = l.Spec.AcquireTime.Time
				}
				w.mu.Unlock()
			}
		},
		UpdateFunc: func(o, n any) {
			before, after := o.(*coordinationv1.Lease), n.(*coordinationv1.Lease)
			if holder(before) != "" && holder(after) == "" && !strings.Contains(after.Name, "-key-") {
				w.mu.Lock()
				w.releases = append(w.releases, time.Now())
				w.mu.Unlock()
			}
		},
	}); err != nil {
		t.Fatal(err)
	}
	nf.Start(ctx.Done())
	lf.Start(ctx.Done())
	nf.WaitForCacheSync(ctx.Done())
	lf.WaitForCacheSync(ctx.Done())
	w.nodes = ni.GetStore()
	return w
}

func holder(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// waitDone waits, on the watch's cache (no polling of the API server, which
// would count against the run), until every node has rebooted and is idle.
func (w *runWatch) waitDone(t *testing.T, names []string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done := 0
		for _, name := range names {
			if o, ok, _ := w.nodes.GetByKey(name); ok {
				n := o.(*corev1.Node)
				if !n.Spec.Unschedulable && nodestate.StateOf(n).Phase == nodestate.PhaseIdle && n.Annotations[nodestate.AnnotationLastReboot] != "" {
					done++
				}
			}
		}
		if done == len(names) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d nodes rebooted and uncordoned after %s", done, len(names), timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// handoffs pairs the k-th slot release with the (k+slots)-th cordon: the node that
// got the freed slot. It returns the median and 99th percentile.
func (w *runWatch) handoffs(slots int) (p50, p99 time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var cordons []time.Time
	for _, at := range w.cordoned {
		cordons = append(cordons, at)
	}
	slices.SortFunc(cordons, time.Time.Compare)
	releases := slices.Clone(w.releases)
	slices.SortFunc(releases, time.Time.Compare)
	var d []time.Duration
	for k, rel := range releases {
		if k+slots < len(cordons) {
			d = append(d, cordons[k+slots].Sub(rel))
		}
	}
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	return d[len(d)/2], d[min(len(d)-1, int(math.Ceil(0.99*float64(len(d))))-1)]
}

// maxOvertake is the most nodes that were cordoned before a node although they
// queued after it. A node that never queued took a free slot at once: its turn is
// its cordon.
func (w *runWatch) maxOvertake() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	turn := func(name string) time.Time {
		if q, ok := w.queued[name]; ok {
			return q
		}
		return w.cordoned[name]
	}
	most := 0
	for a := range w.cordoned {
		over := 0
		for b := range w.cordoned {
			if turn(b).After(turn(a)) && w.cordoned[b].Before(w.cordoned[a]) {
				over++
			}
		}
		most = max(most, over)
	}
	return most
}

// apiCounts is the API server's apiserver_request_total summed by verb and by code,
// resource requests only (the scrape itself is not one), and its open watches.
type apiCounts struct {
	byVerb  map[string]float64
	byCode  map[string]float64
	watches float64
}

func scrapeAPIServer(t *testing.T, bed *testbed.Bed) apiCounts {
	t.Helper()
	raw, err := bed.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		t.Fatalf("scrape kube-apiserver /metrics: %v", err)
	}
	c := apiCounts{byVerb: map[string]float64{}, byCode: map[string]float64{}}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "apiserver_request_total{"):
			if label(line, "resource") == "" {
				continue
			}
			v := value(line)
			c.byVerb[label(line, "verb")] += v
			c.byCode[label(line, "code")] += v
		case strings.HasPrefix(line, "apiserver_longrunning_requests{") && label(line, "verb") == "WATCH":
			c.watches += value(line)
		}
	}
	return c
}

func label(line, name string) string {
	i := strings.Index(line, name+`="`)
	if i < 0 {
		return ""
	}
	rest := line[i+len(name)+2:]
	return rest[:strings.IndexByte(rest, '"')]
}

func value(line string) float64 {
	fields := strings.Fields(line)
	v, _ := strconv.ParseFloat(fields[len(fields)-1], 64)
	return v
}

func (c apiCounts) minus(o apiCounts) apiCounts {
	out := apiCounts{byVerb: map[string]float64{}, byCode: map[string]float64{}, watches: c.watches - o.watches}
	for k, v := range c.byVerb {
		out.byVerb[k] = v - o.byVerb[k]
	}
	for k, v := range c.byCode {
		out.byCode[k] = v - o.byCode[k]
	}
	return out
}

func (c apiCounts) scale(f float64) apiCounts {
	out := apiCounts{byVerb: map[string]float64{}, byCode: map[string]float64{}, watches: c.watches * f}
	for k, v := range c.byVerb {
		out.byVerb[k] = v * f
	}
	for k, v := range c.byCode {
		out.byCode[k] = v * f
	}
	return out
}

func (c apiCounts) nonWatch() float64 {
	total := 0.0
	for verb, v := range c.byVerb {
		if verb != "WATCH" {
			total += v
		}
	}
	return total
}

func (c apiCounts) writes() float64 {
	return c.byVerb["POST"] + c.byVerb["PUT"] + c.byVerb["PATCH"] + c.byVerb["DELETE"]
}

func (c apiCounts) conflicts() float64 { return c.byCode["409"] }

// verbs is the per-reboot breakdown, e.g. "GET=3.1 LIST=4.0 ...".
func (c apiCounts) verbs(n int) string {
	var parts []string
	for _, verb := range []string{"GET", "LIST", "POST", "PUT", "PATCH", "DELETE"} {
		parts = append(parts, fmt.Sprintf("%s=%.1f", verb, c.byVerb[verb]/float64(n)))
	}
	return strings.Join(parts, " ")
}

func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}
