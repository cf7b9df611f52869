package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/lock"
	"github.com/rebootgate/rebootgate/engine/summary"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// runLabel marks the chaos rollout's nodes; its value is the run's id.
const runLabel = "rebootgate-chaos"

// settings are the knobs of `make test-chaos`, from the environment.
type settings struct {
	seeds  []uint64      // SEEDS: comma list (default 1)
	window time.Duration // DURATION: faults fall in [3s, window); the rollout is paced to last about as long (default 60s)
	kinds  []faultKind   // CHAOS_FAULTS: all (default), none, or a comma list of kinds
	nodes  int           // CHAOS_NODES: simulated nodes (default 18; see createNodes)
	grace  time.Duration // CHAOS_PAUSE_GRACE: time the agents get to see a paused pool (default 2s)
}

func readSettings(t *testing.T) settings {
	t.Helper()
	s := settings{seeds: []uint64{1}, window: 60 * time.Second, nodes: 18, grace: 2 * time.Second}
	if v := os.Getenv("SEEDS"); strings.TrimSpace(v) != "" {
		s.seeds = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
			if err != nil {
				t.Fatalf("SEEDS=%q: %v", v, err)
			}
			s.seeds = append(s.seeds, n)
		}
	}
	for _, d := range []struct {
		env string
		to  *time.Duration
	}{{"DURATION", &s.window}, {"CHAOS_PAUSE_GRACE", &s.grace}} {
		if v := os.Getenv(d.env); v != "" {
			var err error
			if *d.to, err = time.ParseDuration(v); err != nil {
				t.Fatalf("%s=%q: %v", d.env, v, err)
			}
		}
	}
	if v := os.Getenv("CHAOS_NODES"); v != "" {
		var err error
		if s.nodes, err = strconv.Atoi(v); err != nil || s.nodes < 18 {
			t.Fatalf("CHAOS_NODES=%q: want a number of at least 18", v)
		}
	}
	var err error
	if s.kinds, err = parseKinds(os.Getenv("CHAOS_FAULTS")); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestChaosRollout reboots every chaos node once, in pools "system" (concurrency 1),
// "user" (concurrency 2) and "zoned" (concurrency 3, one per zone, a budget that
// counts others' disruptions and a breaker at 2, with two summarizer replicas
// publishing the node summary), while the seed's faults hit; then it checks I1 at
// every instant of the simulator's record of down hosts, never two hosts of a zone
// down at once, the zoned pool's budget at every claim the summary was fresh for,
// no host going down while an alert with a pod instance fired, and that each node
// rebooted exactly once, none is left cordoned but the one an admin cordoned (which
// must stay cordoned) and no slot Lease is held. One summary line per seed.
func TestChaosRollout(t *testing.T) {
	if binary == "" {
		t.Skipf("needs the test bed: set %s and %s (make test-chaos)", envChaos, testbed.EnvE2E)
	}
	s := readSettings(t)
	for _, seed := range s.seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			// kube-controller-manager and kube-scheduler exit when they lose their leader
			// Lease, which an earlier seed's apiserver outage may have made them do late.
			if err := testbed.Shared(t).StartComponents(context.Background()); err != nil {
				t.Fatal(err)
			}
			newRun(t, seed, s).execute()
		})
	}
}

// event is one line of a run's timeline.
type event struct {
	at   time.Time
	what string
}

// run is one seed's chaos rollout.
type run struct {
	t      *testing.T
	bed    *testbed.Bed
	seed   uint64
	s      settings
	id, ns string
	dir    string // agent logs and the simulator's log are copied here on failure
	nodes  []string
	poolOf map[string]string
	zone   map[string]string        // zoned nodes' zones: their slot key
	delay  map[string]time.Duration // each host's usual reboot delay
	usual  time.Duration
	faults []fault
	sim    *testbed.Simulator
	cfg    *configFile
	summ   *summarizers
	claims *claims
	t0     time.Time

	apiMu, promMu sync.Mutex // one apiserver fault and one Prometheus fault at a time

	mu       sync.Mutex
	timeline []event
	injected int
	skipped  int
	restore  map[int]func() error // undo of each active fault, run at cleanup if the run ends first
	cordoned string               // the node the admin cordoned
	stale    [][2]time.Time       // faults that may leave the node summary stale, from start to end
	reads    []summaryRead        // the summary ConfigMap as polled
	others   []otherSpan          // others' disruptions of zoned nodes the run made
	firing   [][2]time.Time       // when the pod alert was firing
}

func newRun(t *testing.T, seed uint64, s settings) *run {
	bed := testbed.Shared(t)
	r := &run{t: t, bed: bed, seed: seed, s: s, id: fmt.Sprintf("s%d-%s", seed, testbed.NewUUID()[:4]), ns: bed.Namespace(t),
		poolOf: map[string]string{}, zone: map[string]string{}, delay: map[string]time.Duration{}, restore: map[int]func() error{}}
	r.faults = newSchedule(seed, s.window, s.kinds)
	return r
}

func (r *run) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timeline = append(r.timeline, event{time.Now(), fmt.Sprintf(format, args...)})
}

func (r *run) rel(at time.Time) string { return fmt.Sprintf("+%6.1fs", at.Sub(r.t0).Seconds()) }

// createNodes makes the run's kwok nodes, named after the seed, after deleting any a
// crashed run left behind: a third (rounded down to whole zones) in "zoned", spread
// over three zones, a third of the rest in "system" and the others in "user" (18:
// 6 zoned, 4 system, 8 user).
func (r *run) createNodes() {
	ctx := context.Background()
	stale, err := r.bed.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: runLabel})
	if err != nil {
		r.t.Fatal(err)
	}
	for _, n := range stale.Items {
		if err := r.bed.Client.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			r.t.Fatal(err)
		}
	}
	nzoned := 3 * (r.s.nodes / 9)
	nsys := (r.s.nodes - nzoned) / 3
	nuser := r.s.nodes - nzoned - nsys
	rnd := rand.New(rand.NewPCG(r.seed, 1))
	for i := range r.s.nodes {
		p, idx := "system", i
		switch {
		case i >= nsys+nuser:
			p, idx = zoned, i-nsys-nuser
		case i >= nsys:
			p, idx = "user", i-nsys
		}
		name := fmt.Sprintf("chaos-s%d-%s-%d", r.seed, p, idx)
		node := testbed.NewNode(name, p, zoneOf(idx))
		node.Labels[runLabel] = r.id
		r.bed.CreateNode(r.t, node)
		r.nodes = append(r.nodes, name)
		r.poolOf[name] = p
		if p == zoned {
			r.zone[name] = zoneOf(idx)
		}
	}
	// Pace the rollout to last about the window: the slowest pool needs `rounds`
	// reboots one after another; each host's delay varies by ±25% around the usual.
	rounds := 0
	for _, p := range pools {
		n := map[string]int{"system": nsys, "user": nuser, zoned: nzoned}[p.name]
		rounds = max(rounds, int(math.Ceil(float64(n)/float64(p.budget()))))
	}
	r.usual = max(2*time.Second, r.s.window/time.Duration(rounds)-5*time.Second)
	for _, n := range r.nodes {
		r.delay[n] = time.Duration(float64(r.usual) * (0.75 + 0.5*rnd.Float64()))
	}
}

func (r *run) agentCommand() []string {
	return []string{
		binary, "agent",
		"--node-id", testbed.PhNode,
		"--namespace", r.ns,
		"--kubeconfig", testbed.PhKubeconfig,
		"--config", r.cfg.path,
		"--reboot-sentinel", testbed.PhSentinel,
		"--reboot-command", testbed.PhRebootHook,
		"--nsenter=false",
		"--metrics-port", "0",
		"--prometheus-url", r.bed.PrometheusURL,
		"--lock-ttl", lockTTL.String(),
		"--lock-jitter", "200ms",
		"--recheck-interval", "2s",
		"--sentinel-period", "2s",
		"--reboot-timeout", "1m",
		"--ready-timeout", "3m",
		"--drain-timeout", "30s",
		"--drain-retry-delay", "1s",
		"--log-level", "debug",
	}
}

func (r *run) execute() {
	t := r.t
	r.dir = t.TempDir()
	r.createNodes()
	r.cfg = newConfigFile(filepath.Join(r.dir, "config.yaml"), r.id)
	if err := r.cfg.write(); err != nil {
		t.Fatal(err)
	}
	r.summ = r.startSummarizers()
	t.Cleanup(r.summ.close)
	if err := testbed.Poll(context.Background(), time.Minute, "the node summary published", func(ctx context.Context) (bool, error) {
		_, err := r.bed.Client.CoreV1().ConfigMaps(r.ns).Get(ctx, summary.ConfigMapName, metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	simLog, err := os.Create(filepath.Join(r.dir, "simulator.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { simLog.Close() })
	r.sim = r.bed.StartSimulator(t, testbed.SimConfig{
		Command:       r.agentCommand(),
		Nodes:         r.nodes,
		RebootDelay:   r.usual,
		FlipReady:     true,
		RestartOnExit: true,            // a killed agent comes back, as under a DaemonSet
		APITimeout:    5 * time.Minute, // hosts outlast an apiserver outage
		Log:           slog.New(slog.NewTextHandler(simLog, nil)),
	})
	for _, n := range r.nodes {
		r.sim.SetRebootDelay(n, r.delay[n])
	}
	// Registered after the simulator, so it runs first: no fault outlives the run.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		r.undoAll()
		if err := r.bed.RemoveAlert(context.Background(), podAlertName); err != nil {
			t.Errorf("removing the pod alert's rule: %v", err)
		}
	})

	r.t0 = time.Now()
	var zonedNodes []string
	for _, n := range r.nodes {
		if r.poolOf[n] == zoned {
			zonedNodes = append(zonedNodes, n)
		}
	}
	r.claims = newClaims(zonedNodes, r.t0)
	claimsDone := make(chan struct{})
	go func() {
		defer close(claimsDone)
		r.pollClaims(ctx)
	}()
	summaryDone := make(chan struct{})
	go func() {
		defer close(summaryDone)
		r.pollSummary(ctx)
	}()
	r.note("rollout starts: %d nodes, usual reboot %s, %d faults scheduled (seed %d)", len(r.nodes), r.usual.Round(100*time.Millisecond), len(r.faults), r.seed)
	for _, n := range r.nodes {
		if err := r.sim.SetRebootRequired(n, true); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i, f := range r.faults {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !sleepUntil(ctx, r.t0.Add(f.At)) {
				return
			}
			r.inject(ctx, i, f)
		}()
	}
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		r.watchCluster(ctx)
	}()

	lastFault := time.Duration(0)
	for _, f := range r.faults {
		lastFault = max(lastFault, f.At+f.For+30*time.Second)
	}
	// The zoned pool's faults may wait up to activeWait for its rollout to be under way.
	deadline := lastFault + r.s.window + 7*r.usual + 2*time.Minute + activeWait
	finished, missing := r.waitFinished(ctx, &wg, deadline)
	wall := time.Since(r.t0)
	if finished {
		// Nothing may happen after the end: no second reboot, no cordon.
		sleepUntil(ctx, time.Now().Add(10*time.Second))
	}
	cancel()
	wg.Wait()
	<-watchDone
	<-claimsDone
	<-summaryDone
	r.undoAll()
	r.judge(finished, missing, deadline, wall)
}

// sleepUntil waits until at, or returns false when ctx ends first.
func sleepUntil(ctx context.Context, at time.Time) bool {
	tm := time.NewTimer(time.Until(at))
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

// waitFinished waits until every fault has been undone, every host has been down
// once and is up, no chaos node but the admin's is cordoned and no Lease is held.
func (r *run) waitFinished(ctx context.Context, faults *sync.WaitGroup, deadline time.Duration) (bool, string) {
	allDone := make(chan struct{})
	go func() {
		faults.Wait()
		close(allDone)
	}()
	missing := ""
	for time.Since(r.t0) < deadline {
		select {
		case <-allDone:
			var ok bool
			if ok, missing = r.finishedNow(ctx); ok {
				return true, ""
			}
		default:
			missing = "faults still running"
		}
		if !sleepUntil(ctx, time.Now().Add(time.Second)) {
			return false, "cancelled"
		}
	}
	return false, missing
}

func (r *run) finishedNow(ctx context.Context) (bool, string) {
	rebooted := map[string]bool{}
	for _, d := range r.sim.DownIntervals() {
		if d.To.IsZero() {
			return false, d.Node + " is down"
		}
		rebooted[d.Node] = true
	}
	for _, n := range r.nodes {
		if !rebooted[n] {
			return false, n + " has not rebooted"
		}
	}
	cordoned, held, err := r.observe(ctx)
	if err != nil {
		return false, err.Error()
	}
	if len(cordoned) > 0 {
		return false, "cordoned: " + strings.Join(cordoned, ", ")
	}
	if len(held) > 0 {
		return false, "Leases held: " + strings.Join(held, ", ")
	}
	return true, ""
}

// observe lists the chaos nodes cordoned (but for the admin's) and the pools' held Leases.
func (r *run) observe(ctx context.Context) (cordoned, held []string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	nodes, err := r.bed.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: runLabel + "=" + r.id})
	if err != nil {
		return nil, nil, err
	}
	r.mu.Lock()
	admin := r.cordoned
	r.mu.Unlock()
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable && n.Name != admin {
			cordoned = append(cordoned, n.Name)
		}
	}
	// The pools' Leases (the summarizers' leader Lease is held while they run).
	leases, err := r.bed.Client.CoordinationV1().Leases(r.ns).List(ctx, metav1.ListOptions{LabelSelector: lock.LabelPool})
	if err != nil {
		return nil, nil, err
	}
	for _, l := range leases.Items {
		if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
			held = append(held, l.Name+" ("+*l.Spec.HolderIdentity+")")
		}
	}
	slices.Sort(cordoned)
	slices.Sort(held)
	return cordoned, held, nil
}

// watchCluster adds cordons, uncordons and Lease holder changes to the timeline, for
// the reader of a failure (the oracle does not use them).
func (r *run) watchCluster(ctx context.Context) {
	cordoned := map[string]bool{}
	holders := map[string]string{}
	for sleepUntil(ctx, time.Now().Add(500*time.Millisecond)) {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		nodes, err := r.bed.Client.CoreV1().Nodes().List(cctx, metav1.ListOptions{LabelSelector: runLabel + "=" + r.id})
		if err == nil {
			for _, n := range nodes.Items {
				if n.Spec.Unschedulable != cordoned[n.Name] {
					cordoned[n.Name] = n.Spec.Unschedulable
					r.note("node %s %s", n.Name, map[bool]string{true: "cordoned", false: "uncordoned"}[n.Spec.Unschedulable])
				}
			}
		}
		leases, err := r.bed.Client.CoordinationV1().Leases(r.ns).List(cctx, metav1.ListOptions{})
		cancel()
		if err != nil {
			continue
		}
		seen := map[string]bool{}
		for _, l := range leases.Items {
			seen[l.Name] = true
			h := ""
			if l.Spec.HolderIdentity != nil {
				h = *l.Spec.HolderIdentity
			}
			if old, ok := holders[l.Name]; !ok || old != h {
				holders[l.Name] = h
				r.note("Lease %s holder %q", l.Name, h)
			}
		}
		for name := range holders {
			if !seen[name] {
				delete(holders, name)
				r.note("Lease %s gone", name)
			}
		}
	}
}

// judge applies the oracle, prints the summary line and fails on any violation.
func (r *run) judge(finished bool, missing string, deadline, wall time.Duration) {
	t := r.t
	end := time.Now()
	var downs []downInterval
	for _, d := range r.sim.DownIntervals() {
		downs = append(downs, downInterval{Node: d.Node, Pool: r.poolOf[d.Node], From: d.From, To: d.To, Key: r.zone[d.Node]})
	}
	i1 := checkI1(downs, r.cfg.history(), end, r.t0, r.s.grace)
	violations := slices.Clone(i1.Violations)
	perKey := checkPerKey(downs, end, r.t0)
	violations = append(violations, perKey.Violations...)
	r.mu.Lock()
	stale, others, firing := slices.Clone(r.stale), slices.Clone(r.others), slices.Clone(r.firing)
	r.mu.Unlock()
	r.mu.Lock()
	stale = staleWindows(stale, r.reads, summarySettle, end)
	r.mu.Unlock()
	budget := checkBudget(budgetInput{Downs: downs, Others: others, ClaimAfter: r.claims.snapshot(), Start: r.t0,
		Stale: stale, Lag: summaryLag, End: end, T0: r.t0})
	violations = append(violations, budget.Violations...)
	violations = append(violations, checkQuiet(downs, firing, alertLag, r.t0)...)
	if !finished {
		violations = append(violations, fmt.Sprintf("the rollout did not finish within %s: %s", deadline.Round(time.Second), missing))
	}

	times := map[string]int{}
	for _, d := range downs {
		times[d.Node]++
		if d.To.IsZero() {
			violations = append(violations, fmt.Sprintf("%s is still down at the end (since %s)", d.Node, r.rel(d.From)))
		}
	}
	once := 0
	for _, n := range r.nodes {
		if times[n] == 1 {
			once++
		} else {
			violations = append(violations, fmt.Sprintf("%s went down %d times, want exactly 1", n, times[n]))
		}
	}
	cordoned, held, err := r.observe(context.Background())
	if err != nil {
		violations = append(violations, "final state unreadable: "+err.Error())
	}
	for _, n := range cordoned {
		violations = append(violations, fmt.Sprintf("%s left cordoned (I3)", n))
	}
	for _, l := range held {
		violations = append(violations, fmt.Sprintf("Lease %s still held at the end", l))
	}
	r.mu.Lock()
	admin := r.cordoned
	injected, skipped := r.injected, r.skipped
	r.mu.Unlock()
	if admin != "" {
		n, err := r.bed.Client.CoreV1().Nodes().Get(context.Background(), admin, metav1.GetOptions{})
		if err != nil || !n.Spec.Unschedulable {
			violations = append(violations, fmt.Sprintf("%s, cordoned by an admin, was uncordoned (I3) (%v)", admin, err))
		}
	}
	if err := r.sim.Err(); err != nil {
		violations = append(violations, "node simulator: "+err.Error())
	}

	var maxDown []string
	for _, p := range pools {
		maxDown = append(maxDown, fmt.Sprintf("%s:%d/%d", p.name, i1.MaxDown[p.name], p.limit))
	}
	keyed := poolNamed(zoned)
	fmt.Printf("chaos seed=%d faults=%d nodes=%d max-down=%s max-per-key=%d/%d max-budget=%d/%d (claims judged %d, %d in stale windows) rebooted-once=%d/%d left-cordoned=%d leases-held=%d wall=%.0fs\n",
		r.seed, injected, len(r.nodes), strings.Join(maxDown, ","), perKey.MaxDown, keyed.slotsPerKey, budget.Most, keyed.budget(),
		budget.Checked, budget.Skipped, once, len(r.nodes), len(cordoned), len(held), wall.Seconds())
	if skipped > 0 {
		t.Logf("%d scheduled faults found no target (see the timeline)", skipped)
	}
	if len(violations) == 0 {
		if os.Getenv("CHAOS_TIMELINE") != "" {
			t.Logf("chaos seed=%d schedule:\n  %s\n\ntimeline (t0 = rollout start):\n%s", r.seed, joinFaults(r.faults), r.renderTimeline(downs))
		}
		return
	}
	logs := r.keepLogs()
	t.Errorf("chaos seed=%d: %d violations:\n  %s\n\nschedule:\n  %s\n\ntimeline (t0 = rollout start):\n%s\nagent logs and the simulator's log: %s\nreproduce: make test-chaos SEEDS=%d DURATION=%s",
		r.seed, len(violations), strings.Join(violations, "\n  "), joinFaults(r.faults), r.renderTimeline(downs), logs, r.seed, r.s.window)
}

func joinFaults(fs []fault) string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.String()
	}
	return strings.Join(out, "\n  ")
}

// renderTimeline merges the faults, config writes, down intervals and the cluster
// changes seen into one list, in time order.
func (r *run) renderTimeline(downs []downInterval) string {
	r.mu.Lock()
	evs := slices.Clone(r.timeline)
	r.mu.Unlock()
	for _, d := range downs {
		evs = append(evs, event{d.From, fmt.Sprintf("DOWN %s (%s): reboot requested", d.Node, d.Pool)})
		if !d.To.IsZero() {
			evs = append(evs, event{d.To, fmt.Sprintf("UP   %s (%s) after %s", d.Node, d.Pool, d.To.Sub(d.From).Round(100*time.Millisecond))})
		}
	}
	for _, w := range r.cfg.history() {
		what := "config written: broken YAML"
		if w.Valid {
			what = fmt.Sprintf("config written: concurrency system=%d user=%d %s=%d", w.Concurrency["system"], w.Concurrency["user"], zoned, w.Concurrency[zoned])
		}
		evs = append(evs, event{w.At, what})
	}
	slices.SortStableFunc(evs, func(a, b event) int { return a.at.Compare(b.at) })
	var sb strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&sb, "  %s  %s\n", r.rel(e.at), e.what)
	}
	return sb.String()
}

// keepLogs copies the agents' logs and the simulator's log out of the test's
// temporary directories, which go away, and returns where they are.
func (r *run) keepLogs() string {
	dir, err := os.MkdirTemp("", fmt.Sprintf("rebootgate-chaos-seed%d-", r.seed))
	if err != nil {
		return "(not kept: " + err.Error() + ")"
	}
	copyFile := func(from, to string) {
		if data, err := os.ReadFile(from); err == nil {
			_ = os.WriteFile(to, data, 0o644)
		}
	}
	for _, n := range r.nodes {
		copyFile(r.sim.LogPath(n), filepath.Join(dir, n+".log"))
	}
	copyFile(filepath.Join(r.dir, "simulator.log"), filepath.Join(dir, "simulator.log"))
	for _, p := range r.summ.logs {
		copyFile(p, filepath.Join(dir, filepath.Base(p)))
	}
	return dir
}

// undoAll undoes the faults still in force (the run ended or was cut short).
func (r *run) undoAll() {
	r.mu.Lock()
	undo := r.restore
	r.restore = map[int]func() error{}
	r.mu.Unlock()
	for i, f := range undo {
		if err := f(); err != nil {
			r.t.Errorf("undoing fault %d (%s): %v", i, r.faults[i].Kind, err)
		}
	}
}

// hold records the undo of an active fault; release runs it once, now.
func (r *run) hold(i int, undo func() error) {
	r.mu.Lock()
	r.restore[i] = undo
	r.mu.Unlock()
}

func (r *run) release(i int) error {
	r.mu.Lock()
	undo := r.restore[i]
	delete(r.restore, i)
	r.mu.Unlock()
	if undo == nil {
		return nil // undone at cleanup already
	}
	return undo()
}

// inject applies fault i now and, for faults that last, waits and undoes it.
func (r *run) inject(ctx context.Context, i int, f fault) {
	err := r.apply(ctx, i, f)
	if err != nil {
		r.note("FAULT %s failed: %v", f.Kind, err)
		if ctx.Err() == nil {
			r.t.Errorf("fault %d (%s) could not be injected: %v", i, f, err)
		}
	}
}

// lasting applies a fault that lasts f.For: start begins it and returns its undo.
func (r *run) lasting(ctx context.Context, i int, f fault, start func() (func() error, error)) error {
	undo, err := start()
	if err != nil {
		return err
	}
	r.hold(i, undo)
	r.count(true)
	sleepUntil(ctx, time.Now().Add(f.For))
	return r.release(i)
}

func (r *run) count(injected bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if injected {
		r.injected++
	} else {
		r.skipped++
	}
}

func (r *run) apply(ctx context.Context, i int, f fault) error {
	switch f.Kind {
	case killAgent:
		for k := range r.nodes {
			n := r.nodes[(f.Target+k)%len(r.nodes)]
			pid, ok, err := r.sim.KillAgent(n, syscall.SIGKILL)
			if err != nil {
				return err
			}
			if ok {
				r.note("FAULT SIGKILL agent of %s (pid %d)", n, pid)
				r.count(true)
				return nil
			}
		}
		r.note("FAULT kill-agent skipped: no agent running")
		r.count(false)
		return nil

	case pauseAPIServer:
		r.apiMu.Lock()
		defer r.apiMu.Unlock()
		return r.lasting(ctx, i, f, func() (func() error, error) {
			at := time.Now()
			resume, err := r.bed.APIServer().Pause(f.For + time.Minute)
			if err != nil {
				return nil, err
			}
			r.note("FAULT kube-apiserver SIGSTOP for %s", f.For.Round(100*time.Millisecond))
			return func() error {
				err := resume()
				r.note("FAULT kube-apiserver SIGCONT")
				// The summarizers' watches re-list after it.
				r.staleWindow(at, time.Now())
				// Controller manager and scheduler may have exited meanwhile.
				return errors.Join(err, r.bed.StartComponents(context.Background()))
			}, nil
		})

	case restartAPIServer:
		r.apiMu.Lock()
		defer r.apiMu.Unlock()
		at := time.Now()
		st, err := r.bed.APIServer().Stop(ctx)
		if err != nil {
			return err
		}
		// Until it is ready again, and the summarizers' watches have re-listed.
		defer func() { r.staleWindow(at, time.Now()) }()
		r.note("FAULT kube-apiserver stopped")
		r.count(true)
		if err := st.Start(context.Background()); err != nil {
			return err
		}
		if err := r.waitAPIServer(); err != nil {
			return err
		}
		r.note("FAULT kube-apiserver started again and ready")
		return nil

	case deleteLease:
		return r.deleteHeldLease(ctx, f)

	case longDown:
		taken := map[string]bool{}
		for _, d := range r.sim.DownIntervals() {
			taken[d.Node] = true
		}
		for k := range r.nodes {
			n := r.nodes[(f.Target+k)%len(r.nodes)]
			if taken[n] || r.sim.State(n).Rebooting {
				continue
			}
			d := time.Duration(f.Factor * float64(r.delay[n]))
			r.sim.SetRebootDelay(n, d)
			r.note("FAULT host %s will stay down %s when it reboots (usual %s)", n, d.Round(100*time.Millisecond), r.delay[n].Round(100*time.Millisecond))
			r.count(true)
			return nil
		}
		r.note("FAULT long-down skipped: every host has rebooted")
		r.count(false)
		return nil

	case prometheusDown:
		r.promMu.Lock()
		defer r.promMu.Unlock()
		return r.lasting(ctx, i, f, func() (func() error, error) {
			st, err := r.bed.Prometheus().Stop(ctx)
			if err != nil {
				return nil, err
			}
			r.note("FAULT Prometheus stopped for %s", f.For.Round(100*time.Millisecond))
			return func() error {
				if err := st.Start(context.Background()); err != nil {
					return err
				}
				err := testbed.Poll(context.Background(), time.Minute, "Prometheus ready", func(ctx context.Context) (bool, error) {
					resp, err := r.bed.HTTP.Get(r.bed.PrometheusURL + "/-/ready")
					if err != nil {
						return false, err
					}
					resp.Body.Close()
					return resp.StatusCode == 200, nil
				})
				r.note("FAULT Prometheus started again")
				return err
			}, nil
		})

	case brokenConfig:
		return r.lasting(ctx, i, f, func() (func() error, error) {
			if err := r.cfg.set(func(c *configFile) { c.broken = true }); err != nil {
				return nil, err
			}
			r.note("FAULT broken config pushed for %s", f.For.Round(100*time.Millisecond))
			return func() error { return r.cfg.set(func(c *configFile) { c.broken = false }) }, nil
		})

	case pausePool:
		return r.lasting(ctx, i, f, func() (func() error, error) {
			if err := r.cfg.set(func(c *configFile) { c.paused[f.Pool] = true }); err != nil {
				return nil, err
			}
			r.note("FAULT pool %s paused (concurrency 0) for %s", f.Pool, f.For.Round(100*time.Millisecond))
			return func() error { return r.cfg.set(func(c *configFile) { c.paused[f.Pool] = false }) }, nil
		})

	case adminCordon:
		return r.cordonByAdmin(ctx, f)

	case summarizerKill: // at its time: the budget needs claims under a fresh summary too
		return r.killLeader(ctx)

	case summarizerStop:
		return r.stopLeader(ctx, i, f)

	case deleteKeyLease:
		r.whileActive(ctx, zoned)
		return r.deleteKeyLease(ctx, f)

	case disruptionTaint:
		r.whileActive(ctx, zoned)
		return r.taint(ctx, i, f)

	case podAlert:
		r.whileActive(ctx, "")
		// Not while Prometheus is down (its alerts start again from none) nor while the
		// apiserver is away (nothing could reboot): the alert alone must hold reboots.
		r.promMu.Lock()
		defer r.promMu.Unlock()
		r.apiMu.Lock()
		defer r.apiMu.Unlock()
		return r.firePodAlert(ctx, i, f)
	}
	return fmt.Errorf("unknown fault kind %q", f.Kind)
}

// waitAPIServer waits until kube-apiserver answers /readyz again.
func (r *run) waitAPIServer() error {
	return testbed.Poll(context.Background(), 3*time.Minute, "kube-apiserver ready", func(ctx context.Context) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err := r.bed.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil, err
	})
}

// deleteHeldLease deletes one of the pools' Leases while it has a holder, waiting up
// to a minute for one to be held (the apiserver may be paused meanwhile).
func (r *run) deleteHeldLease(ctx context.Context, f fault) error {
	return r.deleteLeaseWhere(ctx, f, lock.LabelPool, "Lease", func(items []coordinationv1.Lease, _ bool) []int {
		var held []int
		for k, l := range items {
			if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
				held = append(held, k)
			}
		}
		return held
	})
}

// deleteLeaseWhere deletes one of the Leases listed with selector among those pick
// returns (indices into items; late is true in the last 20 s of the minute it waits
// for one), the f.Target-th in name order. The holder's claim bound is fixed first.
func (r *run) deleteLeaseWhere(ctx context.Context, f fault, selector, what string, pick func(items []coordinationv1.Lease, late bool) []int) error {
	leases := r.bed.Client.CoordinationV1().Leases(r.ns)
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		list, err := leases.List(cctx, metav1.ListOptions{LabelSelector: selector})
		if err == nil {
			cand := pick(list.Items, time.Until(deadline) < 20*time.Second)
			slices.SortFunc(cand, func(a, b int) int { return strings.Compare(list.Items[a].Name, list.Items[b].Name) })
			if len(cand) > 0 {
				l := list.Items[cand[f.Target%len(cand)]]
				holder := *l.Spec.HolderIdentity
				r.claims.sawHolding(holder)
				state := "up"
				if slices.Contains(r.nodes, holder) && r.sim.State(holder).Rebooting {
					state = "down"
				}
				err = leases.Delete(cctx, l.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &l.UID, ResourceVersion: &l.ResourceVersion}})
				if err == nil {
					cancel()
					r.note("FAULT deleted %s %s held by %s (host %s)", what, l.Name, holder, state)
					r.count(true)
					return nil
				}
			}
		}
		cancel()
		if !sleepUntil(ctx, time.Now().Add(200*time.Millisecond)) {
			return nil
		}
	}
	r.note("FAULT %s skipped: no %s held for a minute", f.Kind, what)
	r.count(false)
	return nil
}

// cordonByAdmin cordons, as `kubectl cordon` would, the first node from the target
// on that is neither down nor cordoned; the update is conditional on the node's
// resourceVersion, so a node an agent has just cordoned is never taken over.
func (r *run) cordonByAdmin(ctx context.Context, f fault) error {
	nodes := r.bed.Client.CoreV1().Nodes()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		for k := range r.nodes {
			name := r.nodes[(f.Target+k)%len(r.nodes)]
			if r.sim.State(name).Rebooting {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			n, err := nodes.Get(cctx, name, metav1.GetOptions{})
			if err == nil && !n.Spec.Unschedulable && !r.sim.State(name).Rebooting {
				n.Spec.Unschedulable = true
				_, err = nodes.Update(cctx, n, metav1.UpdateOptions{})
				if err == nil {
					cancel()
					r.mu.Lock()
					r.cordoned = name
					if r.poolOf[name] == zoned {
						r.others = append(r.others, otherSpan{Node: name, Pool: zoned, Why: "cordoned by an admin", From: time.Now()})
					}
					r.mu.Unlock()
					r.note("FAULT admin cordoned %s", name)
					r.count(true)
					return nil
				}
			}
			cancel()
		}
		if !sleepUntil(ctx, time.Now().Add(time.Second)) {
			return nil
		}
	}
	r.note("FAULT admin-cordon skipped: no node free to cordon")
	r.count(false)
	return nil
}

// configFile is the agents' RebootGateConfig file, rewritten (atomically) by faults.
type configFile struct {
	path, run string

	mu      sync.Mutex
	broken  bool
	paused  map[string]bool
	written []configWrite
}

func newConfigFile(path, run string) *configFile {
	return &configFile{path: path, run: run, paused: map[string]bool{}}
}

// set changes the state under the lock and writes the file.
func (c *configFile) set(change func(*configFile)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	change(c)
	return c.writeLocked()
}

func (c *configFile) write() error { return c.set(func(*configFile) {}) }

func (c *configFile) writeLocked() error {
	w := configWrite{Valid: !c.broken, Concurrency: map[string]int{}}
	var doc string
	if c.broken {
		doc = "apiVersion: rebootgate.io/v1alpha1\nkind: RebootGateConfig\npools: [\n  - name: system\n    concurrency: {{{\n"
	} else {
		var sb strings.Builder
		sb.WriteString("apiVersion: rebootgate.io/v1alpha1\nkind: RebootGateConfig\npools:\n")
		for _, p := range pools {
			limit := p.limit
			if c.paused[p.name] {
				limit = 0
			}
			w.Concurrency[p.name] = limit
			fmt.Fprintf(&sb, "- name: %s\n  selector: 'node.labels[?%q] == optional.of(%q) && node.labels[?\"agentpool\"] == optional.of(%q)'\n  concurrency: %d\n",
				p.name, runLabel, c.run, p.name, limit)
			if p.slotsPerKey > 0 {
				fmt.Fprintf(&sb, "  slotKey: 'node.labels[%q]'\n  slotsPerKey: %d\n", testbed.ZoneLabel, p.slotsPerKey)
			}
			if p.breaker > 0 {
				fmt.Fprintf(&sb, "  budget:\n    countOthers: true\n  breaker:\n    maxUnavailable: %d\n", p.breaker)
			}
		}
		// Only the pod alert blocks (the bed's other alerts are other tests'), under the
		// default nodeLabels: its instance resolves to no node through the summarizer's node
		// index (or, while the summary is stale, cannot be resolved), so it blocks every node.
		fmt.Fprintf(&sb, "blockers:\n  alerts:\n    filterRegexp: \"^%s$\"\n    filterMatchOnly: true\n", podAlertName)
		doc = sb.String()
	}
	tmp := c.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, c.path); err != nil {
		return err
	}
	w.At = time.Now()
	c.written = append(c.written, w)
	return nil
}

func (c *configFile) history() []configWrite {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.written)
}
