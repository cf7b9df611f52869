package budget

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// The summary faults run on a pool with both a budget and a breaker. Agents need a
// reboot from the start and are held by a blocking pod on each node, so that they
// decide, and read the summary, every 2 s throughout; the fault is injected while they
// are held. Once the decisions name the fault, the pods go: a pool that trusted the
// summary would now claim a slot and reboot within seconds. For holdFor nothing may go
// down, by the simulator's record. Then the summarizer is put right, and every node
// reboots, all after that: the nodes could reboot, and rebooted as soon as they could.
const (
	faultPool = `  concurrency: 2
  budget:
    countOthers: true
  breaker:
    maxUnavailable: 2
`
	holdFor = 30 * time.Second
)

// summaryFault is one fault of the node summary.
type summaryFault struct {
	// inject causes the fault; want is what the budget's and the breaker's reasons
	// then say (after "... cannot be checked, so no reboot starts: ").
	inject func()
	want   string
	// also is more the reasons say, after want ("": nothing).
	also string
	// restore puts the summarizer right again.
	restore func()
}

// summaryWorld is a world whose agents are held by blocking pods.
type summaryWorld struct {
	*world
	sim *testbed.Simulator
}

func newSummaryWorld(t *testing.T, prefix string) *summaryWorld {
	w := newWorldConfig(t, prefix, 4, faultPool)
	// A pod labelled e2e-hold=<world> blocks its node.
	cfg, err := os.ReadFile(w.cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg = fmt.Appendf(cfg, "blockers:\n  pods:\n    selectors: [\"e2e-hold=%s\"]\n", w.id)
	if err := os.WriteFile(w.cfg, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	return &summaryWorld{world: w}
}

// hold puts a blocking pod on each simulated node and starts the agents, each needing a
// reboot, and waits until every one is held by its pod alone, having read a usable
// summary.
func (w *summaryWorld) hold() {
	ctx := context.Background()
	for _, node := range w.nodes[:3] {
		pod := testbed.NewPod(w.ns, "hold-"+node, node, map[string]string{"e2e-hold": w.id})
		if _, err := w.bed.Client.CoreV1().Pods(w.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			w.t.Fatal(err)
		}
	}
	if _, err := w.bed.WaitPodsRunning(ctx, w.ns, "e2e-hold="+w.id, 3, time.Minute); err != nil {
		w.t.Fatal(err)
	}
	w.sim = w.simulate(3)
	w.waitBlocked(w.nodes[:3], "matches blocking selector")
	// Every agent must have read a live summary before the fault: a fault injected
	// before the first summary was written (or read) tests "no summary", not staleness.
	if err := w.waitDecided(w.nodes[:3], time.Minute, "blocked by its pod alone, the summary usable", func(d decisionView) bool {
		return !d.Allowed && d.has("matches blocking selector") && !d.has("budget: ") && !d.has("breaker: ")
	}); err != nil {
		w.t.Fatal(err)
	}
}

// run injects the fault, waits until both the budget and the breaker say so, lets the
// pods go, checks that nothing goes down for holdFor, then restores the summarizer and
// waits for every node to reboot, after the summary was usable again.
func (w *summaryWorld) run(f summaryFault) {
	t := w.t
	ctx := context.Background()
	f.inject()
	faulted := time.Now()
	budget := "budget: the disruption budget of pool " + w.pool + " cannot be checked, so no reboot starts: " + f.want
	breaker := "breaker: the circuit breaker cannot be checked, so no reboot starts: " + f.want
	// Not fatal: without the reason the pods still go, and the oracle below says
	// whether the pool rebooted on the summary (it did, before the fix).
	if err := w.waitDecided(w.nodes[:3], 2*time.Minute, "blocked by the budget and the breaker: "+f.want, func(d decisionView) bool {
		return !d.Allowed && d.has(budget) && d.has(breaker) && d.has(f.also)
	}); err != nil {
		t.Error(err)
	} else {
		t.Logf("the budget and the breaker said %q %s after the fault", f.want, time.Since(faulted).Round(time.Second))
	}

	for _, node := range w.nodes[:3] {
		if err := w.bed.Client.CoreV1().Pods(w.ns).Delete(ctx, "hold-"+node, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			t.Fatal(err)
		}
	}
	// The agents decide again without the pods: only the summary holds them now.
	if err := w.waitDecided(w.nodes[:3], time.Minute, "blocked by the summary alone", func(d decisionView) bool {
		return !d.Allowed && d.has(budget) && d.has(breaker) && !d.has("matches blocking selector")
	}); err != nil {
		t.Error(err)
	}
	released := time.Now()
	time.Sleep(holdFor) // the oracle: nothing may go down meanwhile, whenever it would
	if downs := w.sim.DownIntervals(); len(downs) > 0 {
		t.Fatalf("%d host(s) went down while the summary could not be trusted (%s): %+v", len(downs), f.want, downs)
	}
	if err := w.waitDecided(w.nodes[:3], 10*time.Second, "still blocked by the summary", func(d decisionView) bool {
		return !d.Allowed && d.has(budget) && d.has(breaker)
	}); err != nil {
		t.Fatal(err)
	}

	f.restore()
	usable := w.waitSummaryUsable()
	if _, err := w.sim.WaitForReboots(ctx, 3, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	testbed.CheckRebootedOnce(t, w.sim, w.nodes[:3])
	if most := checkDownAfter(t, w.sim, usable); most > 2 {
		t.Errorf("%d hosts down at once; the breaker allows 2", most)
	}
	first := time.Time{}
	for _, d := range w.sim.DownIntervals() {
		if first.IsZero() || d.From.Before(first) {
			first = d.From
		}
	}
	// Had the pods been the only hold, a node would have gone down within this.
	if took := first.Sub(usable); took > holdFor {
		t.Errorf("the first node went down %s after the summary was usable again, longer than the %s nothing went down for: that hold proves nothing", took, holdFor)
	} else {
		t.Logf("held %s from %s with nothing down; the first node went down %s after the summary was usable again", holdFor, released.Format(time.RFC3339), took.Round(time.Millisecond))
	}
}

// decisionView is the decision an agent recorded on its node.
type decisionView nodestate.Decision

// has reports a reason whose "source: message" contains s.
func (d decisionView) has(s string) bool {
	for _, r := range d.Reasons {
		if strings.Contains(r.Source+": "+r.Message, s) {
			return true
		}
	}
	return false
}

// waitDecided waits until every node's recorded decision satisfies cond.
func (w *world) waitDecided(nodes []string, timeout time.Duration, what string, cond func(decisionView) bool) error {
	for _, node := range nodes {
		var last string
		_, err := w.bed.WaitNode(context.Background(), node, timeout, what, func(n *corev1.Node) bool {
			last = n.Annotations[nodestate.AnnotationDecision]
			d, found, err := nodestate.DecisionOf(n)
			return found && err == nil && cond(decisionView(d))
		})
		if err != nil {
			return fmt.Errorf("%w; last decision of %s: %s", err, node, last)
		}
	}
	return nil
}

// summaryData is the summary ConfigMap's data and when it was read.
func (w *world) summaryData() (string, error) {
	cm, err := w.bed.Client.CoreV1().ConfigMaps(w.ns).Get(context.Background(), "rebootgate-node-summary", metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	return cm.Data["summary.json"], nil
}

// waitSummaryUsable waits until the summarizer has written a complete summary that
// differs from the one published now (a new write), and returns when it saw it.
func (w *world) waitSummaryUsable() time.Time {
	w.t.Helper()
	before, _ := w.summaryData()
	err := testbed.Poll(context.Background(), 2*time.Minute, "a new, complete node summary", func(context.Context) (bool, error) {
		data, err := w.summaryData()
		if err != nil {
			return false, nil
		}
		var s struct {
			Errors []string `json:"errors"`
		}
		return data != before && json.Unmarshal([]byte(data), &s) == nil && len(s.Errors) == 0, nil
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return time.Now()
}

// Regression: a summarizer stopped (SIGSTOP) leaves the summary unchanged; every
// agent finds it stale a minute after it last saw it change, and stops claiming.
func TestSummarizerStoppedFailsClosed(t *testing.T) {
	t.Parallel()
	w := newSummaryWorld(t, "sstop")
	sum := w.startSummarizer(w.bed.Kubeconfig, "summarizer-"+w.id)
	w.hold()
	w.run(summaryFault{
		inject: func() {
			if err := sum.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
		},
		want: "the node summary is stale: unchanged since this reader saw it appear at ",
		restore: func() {
			// Its leadership has lapsed meanwhile: a second replica takes over, as
			// in the chart's Deployment.
			_ = sum.Cmd.Process.Signal(syscall.SIGCONT)
			w.startSummarizer(w.bed.Kubeconfig, "summarizer-b-"+w.id)
		},
	})
}

// A summary written with a stamp an hour ahead, then never updated (the summarizer
// stopped): judged on the writer's stamp it stayed fresh for the hour, and the pool
// rebooted on it. Judged from when each agent saw it change, it is stale a minute later.
func TestFutureStampedSummaryFailsClosed(t *testing.T) {
	t.Parallel()
	w := newSummaryWorld(t, "sfut")
	sum := w.startSummarizer(w.bed.Kubeconfig, "summarizer-"+w.id)
	w.hold()
	w.run(summaryFault{
		inject: func() {
			sum.Stop()
			cms := w.bed.Client.CoreV1().ConfigMaps(w.ns)
			cm, err := cms.Get(context.Background(), "rebootgate-node-summary", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var s map[string]any
			if err := json.Unmarshal([]byte(cm.Data["summary.json"]), &s); err != nil {
				t.Fatal(err)
			}
			// The same counts (every node ready), stamped an hour ahead.
			s["observedAt"] = time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)
			data, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			cm.Data["summary.json"] = string(data)
			if _, err := cms.Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		},
		want:    "the node summary is stale: unchanged since this reader saw it appear at ",
		also:    "in the future of this reader's clock; is the summarizer running?",
		restore: func() { w.startSummarizer(w.bed.Kubeconfig, "summarizer-b-"+w.id) },
	})
}

// The summarizer loses its node RBAC; its node watch then ends (as a watch does at
// its timeout, or when its connection resets: here a proxy resets it), and the re-list
// is refused. Its cache of the nodes was re-published as a fresh, complete summary
// every heartbeat, and the pool rebooted on it. Now the summary says it is incomplete,
// until the nodes can be listed again.
func TestSummarizerNodeRBACRemovedFailsClosed(t *testing.T) {
	t.Parallel()
	w := newSummaryWorld(t, "srbac")
	ctx := context.Background()
	sa := "summarizer-" + w.id
	kubeconfig, err := w.bed.ServiceAccountKubeconfig(ctx, w.ns, sa, t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startProxy(t, kubeconfig)
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: w.ns, Name: sa}}
	// Everything else the summarizer needs (a test grant, not the chart's).
	w.grant("rg-e2e-sum-"+w.id, []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch", "create", "update"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
	}, subject)
	nodesGrant := "rg-e2e-sum-nodes-" + w.id
	nodeRules := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}}}
	w.grant(nodesGrant, nodeRules, subject)
	listNodes := authorizationv1.ResourceAttributes{Verb: "list", Resource: "nodes"}
	if err := testbed.WaitAccess(ctx, kubeconfig, listNodes, true, time.Minute); err != nil {
		t.Fatal(err)
	}
	w.startSummarizer(proxy.kubeconfig, "summarizer-"+w.id)
	w.hold()
	w.run(summaryFault{
		inject: func() {
			if err := w.bed.Client.RbacV1().ClusterRoleBindings().Delete(ctx, nodesGrant, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := testbed.WaitAccess(ctx, kubeconfig, listNodes, false, time.Minute); err != nil {
				t.Fatal(err)
			}
			proxy.reset()
		},
		want: "the node summary is incomplete: [Nodes cannot be listed or watched: ",
		restore: func() {
			w.grant(nodesGrant, nodeRules, subject)
			if err := testbed.WaitAccess(ctx, kubeconfig, listNodes, true, time.Minute); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// grant binds a ClusterRole of rules, both named name, to subjects until the test ends.
func (w *world) grant(name string, rules []rbacv1.PolicyRule, subjects []rbacv1.Subject) {
	w.t.Helper()
	ctx := context.Background()
	rbac := w.bed.Client.RbacV1()
	if _, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		w.t.Fatal(err)
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   subjects,
	}, metav1.CreateOptions{}); err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() {
		_ = rbac.ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = rbac.ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

// proxy forwards TCP connections to the API server, and can reset them all: what a
// watch meets at its timeout, or when a connection on its way drops.
type proxy struct {
	kubeconfig string // the kubeconfig given, pointed at the proxy
	ln         net.Listener
	mu         sync.Mutex
	conns      []net.Conn
}

// startProxy starts a proxy to the API server of kubeconfig until the test ends.
func startProxy(t *testing.T, kubeconfig string) *proxy {
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cluster := cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster]
	u, err := url.Parse(cluster.Server)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	upstream := u.Host
	u.Host = ln.Addr().String()
	cluster.Server = u.String()
	p.kubeconfig = filepath.Join(t.TempDir(), "kubeconfig-proxied")
	if err := clientcmd.WriteToFile(*cfg, p.kubeconfig); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go pipe(c, up)
			go pipe(up, c)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		p.reset()
	})
	return p
}

// pipe copies src to dst until either closes, then closes dst: a reset of one side
// reaches the other.
func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
}

// reset closes every connection through the proxy (new ones are still forwarded).
func (p *proxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}
