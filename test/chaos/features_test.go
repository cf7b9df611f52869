package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/lock"
	"github.com/rebootgate/rebootgate/engine/summary"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// The zoned pool's features under faults: the summarizer replicas the run supervises,
// the record of when each zoned node surely had not claimed a slot yet, and the faults
// that hit the node summary, the key Leases, the others' disruptions and the alerts.

const (
	// summarizerLease is the summarizer replicas' leader-election Lease (cmd/rebootgate).
	summarizerLease = "rebootgate-summarizer"
	// summarizerRestart is how long a summarizer that exited stays down before it is
	// started again, as by its Deployment.
	summarizerRestart = 2 * time.Second
	// summaryLag bounds how old the others' state in a fresh node summary can be when
	// an agent claims: the summarizer's watch and --interval (300ms), its write, and
	// the agent's one-second reuse of what it read, with room for a loaded machine.
	summaryLag = 10 * time.Second
	// summarySettle is how long after a summarizer or apiserver fault ends a summarizer
	// gets to catch up (its watches resuming or re-listing) before the oracle trusts
	// the next summary written.
	summarySettle = 5 * time.Second
	// alertLag is how long after Prometheus reports the pod alert firing an agent
	// whose final check read the alerts just before may still request its reboot.
	alertLag = 5 * time.Second
	// disruptedTaint is Karpenter's disruption taint, one of rebootgate's built-ins.
	disruptedTaint = "karpenter.sh/disrupted"
	// podAlertName is the alert the pod-alert fault fires; the config's filter lets
	// only it block.
	podAlertName = "RebootgateChaosPodAlert"
)

// activeWait is how long a fault of the newer features waits for a rollout under way.
const activeWait = 2 * time.Minute

// whileActive waits, up to activeWait, until a host of pool ("": any pool) is down and
// some node of it has yet to reboot: the key Lease deletion, the taint and the pod
// alert then meet the agents deciding, not a pool idle or done.
func (r *run) whileActive(ctx context.Context, pool string) {
	deadline := time.Now().Add(activeWait)
	for time.Now().Before(deadline) {
		rebooted := map[string]bool{}
		down := false
		for _, d := range r.sim.DownIntervals() {
			rebooted[d.Node] = true
			if d.To.IsZero() && (pool == "" || r.poolOf[d.Node] == pool) {
				down = true
			}
		}
		pending := slices.ContainsFunc(r.nodes, func(n string) bool { return (pool == "" || r.poolOf[n] == pool) && !rebooted[n] })
		if down && pending {
			return
		}
		if !sleepUntil(ctx, time.Now().Add(250*time.Millisecond)) {
			return
		}
	}
}

// zoneOf is the zone the run gives a zoned node: the key of its slot.
func zoneOf(idx int) string { return fmt.Sprintf("eastus-%d", idx%3+1) }

// summarizers runs two `rebootgate summarizer` replicas against the bed, as the chart
// does (one elected writer), and starts each again summarizerRestart after it exits.
type summarizers struct {
	r    *run
	done chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	procs   map[string]*os.Process // identity → running process
	stopped map[string]bool        // identities SIGSTOPped and not yet continued
	logs    []string
}

func (r *run) startSummarizers() *summarizers {
	s := &summarizers{r: r, done: make(chan struct{}), procs: map[string]*os.Process{}, stopped: map[string]bool{}}
	for _, id := range []string{"a", "b"} {
		identity := "chaos-summarizer-" + id
		path := filepath.Join(r.dir, identity+".log")
		s.logs = append(s.logs, path)
		s.wg.Add(1)
		go s.supervise(identity, path)
	}
	return s
}

func (s *summarizers) supervise(identity, logPath string) {
	defer s.wg.Done()
	for {
		log, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			s.r.note("summarizer %s cannot log: %v", identity, err)
			return
		}
		cmd := exec.Command(binary, "summarizer", "--kubeconfig", s.r.bed.Kubeconfig, "--namespace", s.r.ns,
			"--config", s.r.cfg.path, "--identity", identity, "--interval", "300ms", "--heartbeat", "5s", "--log-level", "debug")
		cmd.Stdout, cmd.Stderr = log, log
		err = cmd.Start()
		if err == nil {
			s.mu.Lock()
			s.procs[identity] = cmd.Process
			s.mu.Unlock()
			err = cmd.Wait()
			s.mu.Lock()
			delete(s.procs, identity)
			delete(s.stopped, identity)
			s.mu.Unlock()
		}
		log.Close()
		select {
		case <-s.done:
			return
		default:
		}
		s.r.note("summarizer %s exited (%v); started again in %s", identity, err, summarizerRestart)
		select {
		case <-s.done:
			return
		case <-time.After(summarizerRestart):
		}
	}
}

// close continues any stopped replica and ends them all.
func (s *summarizers) close() {
	close(s.done)
	s.mu.Lock()
	for _, p := range s.procs {
		_ = p.Signal(syscall.SIGCONT)
		_ = p.Signal(os.Interrupt)
	}
	s.mu.Unlock()
	ended := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(15 * time.Second):
		s.mu.Lock()
		for _, p := range s.procs {
			_ = p.Kill()
		}
		s.mu.Unlock()
		<-ended
	}
}

// leader waits up to a minute for the replica holding the leader Lease to be running
// (and not stopped), and returns its identity and process.
func (s *summarizers) leader(ctx context.Context) (string, *os.Process, error) {
	var identity string
	var proc *os.Process
	err := testbed.Poll(ctx, time.Minute, "a running summarizer leading", func(ctx context.Context) (bool, error) {
		l, err := s.r.bed.Client.CoordinationV1().Leases(s.r.ns).Get(ctx, summarizerLease, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return false, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		identity = *l.Spec.HolderIdentity
		proc = s.procs[identity]
		return proc != nil && !s.stopped[identity], nil
	})
	return identity, proc, err
}

// killLeader SIGKILLs the leading replica; its supervisor starts it again.
func (r *run) killLeader(ctx context.Context) error {
	identity, proc, err := r.summ.leader(ctx)
	if err != nil {
		return err
	}
	at := time.Now()
	if err := proc.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("SIGKILL summarizer %s (pid %d): %w", identity, proc.Pid, err)
	}
	r.note("FAULT SIGKILL summarizer %s (pid %d), the leader", identity, proc.Pid)
	r.count(true)
	// Stale until the next leader (the restarted one or the other) has written.
	r.staleWindow(at, time.Now())
	return nil
}

// stopLeader SIGSTOPs the leading replica for f.For, then SIGCONTs it.
func (r *run) stopLeader(ctx context.Context, i int, f fault) error {
	identity, proc, err := r.summ.leader(ctx)
	if err != nil {
		return err
	}
	return r.lasting(ctx, i, f, func() (func() error, error) {
		at := time.Now()
		r.summ.mu.Lock()
		r.summ.stopped[identity] = true
		r.summ.mu.Unlock()
		if err := proc.Signal(syscall.SIGSTOP); err != nil {
			return nil, fmt.Errorf("SIGSTOP summarizer %s (pid %d): %w", identity, proc.Pid, err)
		}
		r.note("FAULT SIGSTOP summarizer %s (pid %d), the leader, for %s", identity, proc.Pid, f.For.Round(100*time.Millisecond))
		return func() error {
			r.summ.mu.Lock()
			delete(r.summ.stopped, identity)
			r.summ.mu.Unlock()
			err := proc.Signal(syscall.SIGCONT)
			if errors.Is(err, os.ErrProcessDone) {
				err = nil
			}
			r.note("FAULT SIGCONT summarizer %s", identity)
			r.staleWindow(at, time.Now())
			return err
		}, nil
	})
}

// staleWindow records a fault, from its start to its end, after which the node summary
// may be stale until a summarizer has caught up and written it again (staleWindows).
func (r *run) staleWindow(from, to time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stale = append(r.stale, [2]time.Time{from, to})
}

// summaryRead is one poll of the summary ConfigMap: when the GET was sent and its
// answer received, and the resourceVersion it showed (every write changes it; the
// summarizer rewrites it at least every heartbeat).
type summaryRead struct {
	sent, recv time.Time
	rv         string
}

// pollSummary reads the summary ConfigMap every 500ms until ctx ends.
func (r *run) pollSummary(ctx context.Context) {
	cms := r.bed.Client.CoreV1().ConfigMaps(r.ns)
	for sleepUntil(ctx, time.Now().Add(500*time.Millisecond)) {
		sent := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		cm, err := cms.Get(cctx, summary.ConfigMapName, metav1.GetOptions{})
		cancel()
		if err != nil {
			continue
		}
		r.mu.Lock()
		r.reads = append(r.reads, summaryRead{sent: sent, recv: time.Now(), rv: cm.ResourceVersion})
		r.mu.Unlock()
	}
}

// staleWindows turns the faults that may leave the summary stale into the windows
// in which it may have been: from a fault's start until a summary surely written
// more than settle after its end was read (a read sent after that moment sees one
// version, a later read a newer one: that write came after it). Without such a
// write the window lasts until end.
func staleWindows(faults [][2]time.Time, reads []summaryRead, settle time.Duration, end time.Time) [][2]time.Time {
	out := make([][2]time.Time, 0, len(faults))
	for _, f := range faults {
		w := [2]time.Time{f[0], end}
		base := ""
	reads:
		for _, rd := range reads {
			switch {
			case rd.sent.Before(f[1].Add(settle)):
			case base == "":
				base = rd.rv
			case rd.rv != base:
				w[1] = rd.recv
				break reads
			}
		}
		out = append(out, w)
	}
	return out
}

// claims records, for each zoned node, a time before which it surely had not claimed
// a slot: when the last list of the zoned pool's Leases that showed it holding none
// was sent, before any showed it holding one (or a fault saw it holding one).
type claims struct {
	mu    sync.Mutex
	after map[string]time.Time
	held  map[string]bool
}

func newClaims(nodes []string, start time.Time) *claims {
	c := &claims{after: map[string]time.Time{}, held: map[string]bool{}}
	for _, n := range nodes {
		c.after[n] = start
	}
	return c
}

// sawHolding marks node as having held a Lease: its bound is final. Call it before
// deleting a Lease the node holds, so that no later list moves the bound past it.
func (c *claims) sawHolding(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.after[node]; ok {
		c.held[node] = true
	}
}

func (c *claims) snapshot() map[string]time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]time.Time, len(c.after))
	for n, t := range c.after {
		out[n] = t
	}
	return out
}

// pollClaims lists the zoned pool's Leases every 250ms until ctx ends.
func (r *run) pollClaims(ctx context.Context) {
	leases := r.bed.Client.CoordinationV1().Leases(r.ns)
	for sleepUntil(ctx, time.Now().Add(250*time.Millisecond)) {
		sent := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		list, err := leases.List(cctx, metav1.ListOptions{LabelSelector: lock.LabelPool + "=" + zoned})
		cancel()
		if err != nil {
			continue
		}
		holding := map[string]bool{}
		for _, l := range list.Items {
			if l.Spec.HolderIdentity != nil {
				holding[*l.Spec.HolderIdentity] = true
			}
		}
		r.claims.mu.Lock()
		for n := range r.claims.after {
			switch {
			case r.claims.held[n]:
			case holding[n]:
				r.claims.held[n] = true
			default:
				r.claims.after[n] = sent
			}
		}
		r.claims.mu.Unlock()
	}
}

// deleteKeyLease deletes a held key Lease of the zoned pool, preferring one whose
// holder is down (then its zone's other nodes must still wait), waiting up to a
// minute for one.
func (r *run) deleteKeyLease(ctx context.Context, f fault) error {
	keys := map[string]bool{}
	for z := range 3 {
		keys[lock.KeyLeaseName(zoned, zoneOf(z), 0)] = true
	}
	return r.deleteLeaseWhere(ctx, f, lock.LabelPool+"="+zoned, "key Lease", func(items []coordinationv1.Lease, late bool) []int {
		var held, down []int
		for k, l := range items {
			if !keys[l.Name] || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
				continue
			}
			held = append(held, k)
			if slices.Contains(r.nodes, *l.Spec.HolderIdentity) && r.sim.State(*l.Spec.HolderIdentity).Rebooting {
				down = append(down, k)
			}
		}
		if len(down) == 0 && late {
			return held // none down for most of a minute: any held key
		}
		return down
	})
}

// taint sets Karpenter's disruption taint on the first zoned node from the target on
// that is not down, for f.For, and records when the node was surely tainted.
func (r *run) taint(ctx context.Context, i int, f fault) error {
	var zonedNodes []string
	for _, n := range r.nodes {
		if r.poolOf[n] == zoned {
			zonedNodes = append(zonedNodes, n)
		}
	}
	for k := range zonedNodes {
		name := zonedNodes[(f.Target+k)%len(zonedNodes)]
		if r.sim.State(name).Rebooting {
			continue
		}
		return r.lasting(ctx, i, f, func() (func() error, error) {
			if err := r.updateTaints(ctx, name, true); err != nil {
				return nil, err
			}
			span := otherSpan{Node: name, Pool: zoned, Why: "taint " + disruptedTaint, From: time.Now()}
			r.note("FAULT taint %s on %s for %s", disruptedTaint, name, f.For.Round(100*time.Millisecond))
			return func() error {
				span.To = time.Now()
				r.mu.Lock()
				r.others = append(r.others, span)
				r.mu.Unlock()
				err := r.updateTaints(context.Background(), name, false)
				r.note("FAULT taint %s removed from %s", disruptedTaint, name)
				return err
			}, nil
		})
	}
	r.note("FAULT disruption-taint skipped: every zoned node is down")
	r.count(false)
	return nil
}

// updateTaints adds or removes the disruption taint, read-modify-write guarded by
// the node's resourceVersion (the node lifecycle controller taints NotReady nodes
// too), retried on conflicts and while the apiserver is away for up to 3 minutes.
func (r *run) updateTaints(ctx context.Context, name string, on bool) error {
	nodes := r.bed.Client.CoreV1().Nodes()
	return testbed.Poll(ctx, 3*time.Minute, fmt.Sprintf("taint %s on %s: %v", disruptedTaint, name, on), func(ctx context.Context) (bool, error) {
		n, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		has := slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == disruptedTaint })
		if has == on {
			return true, nil
		}
		if on {
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: disruptedTaint, Effect: corev1.TaintEffectNoSchedule})
		} else {
			n.Spec.Taints = slices.DeleteFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == disruptedTaint })
		}
		_, err = nodes.Update(ctx, n, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			return false, nil
		}
		return err == nil, err
	})
}

// podInstance is the pod-alert's instance: a pod address, as kube-state-metrics' is,
// that is no node's name or address (the bed's nodes have only a Hostname address).
const podInstance = "10.244.7.21:8080"

// firePodAlert fires an alert whose instance is a pod address, as kube-state-metrics'
// alerts carry, for f.For; it names no node, so it must block every node. The oracle
// window is from Prometheus reporting it firing to its clearing.
func (r *run) firePodAlert(ctx context.Context, i int, f fault) error {
	return r.lasting(ctx, i, f, func() (func() error, error) {
		if err := r.bed.FireAlert(ctx, podAlertName, testbed.AlertOptions{Labels: map[string]string{"instance": podInstance, "namespace": "shop", "pod": "cart-5d9f-x2x7q"}}); err != nil {
			return nil, err
		}
		if err := r.bed.WaitPrometheusAlert(ctx, podAlertName, "firing", time.Minute); err != nil {
			return nil, err
		}
		from := time.Now()
		r.note("FAULT alert %s{instance=%q} firing for %s", podAlertName, podInstance, f.For.Round(100*time.Millisecond))
		return func() error {
			to := time.Now()
			r.mu.Lock()
			r.firing = append(r.firing, [2]time.Time{from, to})
			r.mu.Unlock()
			err := r.bed.ClearAlert(context.Background(), podAlertName)
			r.note("FAULT alert %s cleared", podAlertName)
			return err
		}, nil
	})
}
