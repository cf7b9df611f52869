// Package budget runs disruption budgets and circuit breakers on the test bed: real
// agents under the node simulator, the real `rebootgate summarizer` publishing the
// node summary, and nodes made unavailable the way other systems do it (a Karpenter
// disruption taint, an admin's cordon, a medik8s maintenance Lease). The oracle is the
// simulator's record of when each host was down, not rebootgate's annotations.
//
// It runs only under `make test-e2e` (REBOOTGATE_E2E set).
package budget

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/testbed"
)

var binary string

func TestMain(m *testing.M) { os.Exit(testbed.MainWithBinary(m, &binary)) }

// world is one test's pool: fresh nodes, a namespace, a config and a summarizer.
type world struct {
	t     *testing.T
	bed   *testbed.Bed
	ns    string
	id    string
	cfg   string
	pool  string   // the pool's name
	nodes []string // all the pool's nodes
}

func newWorld(t *testing.T, prefix string, n int, poolYAML string) *world {
	w := newWorldConfig(t, prefix, n, poolYAML)
	w.startSummarizer(w.bed.Kubeconfig, "summarizer-"+w.id)
	return w
}

// newWorldConfig is newWorld without the summarizer.
func newWorldConfig(t *testing.T, prefix string, n int, poolYAML string) *world {
	bed := testbed.Shared(t)
	w := &world{t: t, bed: bed, ns: bed.Namespace(t), id: strings.ToLower(testbed.NewUUID()[:6]), pool: prefix}
	for i := range n {
		name := fmt.Sprintf("%s-%s-%d", prefix, w.id, i)
		node := testbed.NewNode(name, "user", "eastus-1")
		node.Labels["e2e-run"] = w.id
		bed.CreateNode(t, node)
		w.nodes = append(w.nodes, name)
	}
	if err := bed.WaitNodesReady(context.Background(), time.Minute, w.nodes...); err != nil {
		t.Fatal(err)
	}
	w.cfg = filepath.Join(t.TempDir(), "config.yaml")
	doc := fmt.Sprintf(`apiVersion: rebootgate.io/v1alpha1
kind: RebootGateConfig
pools:
- name: %s
  selector: 'node.labels[?"e2e-run"] == optional.of("%s")'
%s`, prefix, w.id, poolYAML)
	if err := os.WriteFile(w.cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return w
}

// startSummarizer runs `rebootgate summarizer` against the bed, as identity with
// kubeconfig, until the test ends.
func (w *world) startSummarizer(kubeconfig, identity string) *testbed.Summarizer {
	return testbed.StartSummarizer(w.t, binary, kubeconfig, w.ns, w.cfg, identity)
}

// simulate runs agents on the first n nodes of the pool, each needing a reboot.
func (w *world) simulate(n int) *testbed.Simulator {
	sim := w.bed.StartSimulator(w.t, testbed.SimConfig{
		Command: []string{
			binary, "agent",
			"--node-id", testbed.PhNode, "--namespace", w.ns, "--kubeconfig", testbed.PhKubeconfig,
			"--config", w.cfg, "--reboot-sentinel", testbed.PhSentinel, "--reboot-command", testbed.PhRebootHook,
			"--nsenter=false", "--metrics-host", "127.0.0.1", "--metrics-port", testbed.PhPort,
			"--lock-ttl", "30s", "--lock-jitter", "100ms", "--recheck-interval", "2s", "--sentinel-period", "1s",
			"--reboot-timeout", "20s", "--ready-timeout", "1m", "--loop-backoff", "10m", "--drain-timeout", "30s",
			"--log-level", "debug",
		},
		Nodes: w.nodes[:n], RebootDelay: 2 * time.Second, FlipReady: true,
	})
	w.t.Cleanup(func() {
		if w.t.Failed() {
			for _, node := range w.nodes[:n] {
				if data, err := os.ReadFile(sim.LogPath(node)); err == nil {
					w.t.Logf("--- agent log of %s (last 3 KiB) ---\n%s", node, tail(string(data), 3072))
				}
			}
		}
	})
	for _, node := range w.nodes[:n] {
		if err := sim.SetRebootRequired(node, true); err != nil {
			w.t.Fatal(err)
		}
	}
	return sim
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// patch applies a strategic-merge patch to a node, as another system would.
func (w *world) patch(node, patch string) {
	w.t.Helper()
	if _, err := w.bed.Client.CoreV1().Nodes().Patch(context.Background(), node, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		w.t.Fatalf("patching node %s with %s: %v", node, patch, err)
	}
}

// waitBlocked waits until every node's recorded decision is blocked with a reason
// containing want: the agents saw the disruption and decided on it.
func (w *world) waitBlocked(nodes []string, want string) {
	w.t.Helper()
	for _, node := range nodes {
		_, err := w.bed.WaitNode(context.Background(), node, time.Minute, "blocked by "+want, func(n *corev1.Node) bool {
			d, found, err := nodestate.DecisionOf(n)
			return found && err == nil && !d.Allowed && decisionView(d).has(want)
		})
		if err != nil {
			w.t.Fatal(err)
		}
	}
}

// checkDownAfter fails the test for a host that went down before t0, and returns the
// most hosts down at once among the simulated ones.
func checkDownAfter(t *testing.T, sim *testbed.Simulator, t0 time.Time) int {
	t.Helper()
	downs := sim.DownIntervals()
	for _, d := range downs {
		if d.From.Before(t0) {
			t.Errorf("%s went down at %s, before the disruption ended at %s", d.Node, d.From.Format(time.RFC3339Nano), t0.Format(time.RFC3339Nano))
		}
	}
	most, which := testbed.MostDown(downs)
	t.Logf("most hosts down at once: %d %v", most, which)
	return most
}

// A pool of concurrency 2 with countOthers: a node Karpenter is disrupting and a node
// an admin cordoned use the whole budget, so nothing reboots until one returns; then
// only one slot is left for rebootgate.
func TestOthersDisruptionsUseTheBudget(t *testing.T) {
	t.Parallel()
	w := newWorld(t, "bud", 5, `  concurrency: 2
  budget:
    countOthers: true
`)
	karpenterNode, cordonedNode := w.nodes[3], w.nodes[4]
	w.patch(karpenterNode, `{"spec":{"taints":[{"key":"karpenter.sh/disrupted","effect":"NoSchedule"}]}}`)
	w.patch(cordonedNode, `{"spec":{"unschedulable":true}}`)

	sim := w.simulate(3)
	w.waitBlocked(w.nodes[:3], "budget: the disruption budget of pool bud is used up: it allows 2 unavailable node(s) and 2 are unavailable for other reasons: "+
		karpenterNode+" (taint karpenter.sh/disrupted), "+cordonedNode+" (cordoned)")
	// The agents have decided on the disruption, with re-checks every 2 s: give them
	// a few more rounds, in which none may reboot.
	time.Sleep(6 * time.Second)
	if r := sim.Reboots(); len(r) > 0 {
		t.Fatalf("%d reboot(s) while others' disruptions used the whole budget: %+v", len(r), r)
	}

	returned := time.Now()
	w.patch(cordonedNode, `{"spec":{"unschedulable":false}}`)
	if _, err := sim.WaitForReboots(context.Background(), 3, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	testbed.CheckRebootedOnce(t, sim, w.nodes[:3])
	// Karpenter still holds one of the two: rebootgate had one slot.
	if most := checkDownAfter(t, sim, returned); most != 1 {
		t.Errorf("%d hosts down at once; with one node still disrupted by Karpenter, the budget of 2 leaves 1", most)
	}
}

// A pool of concurrency 3 with a breaker at 2 unavailable nodes: an admin's cordon and
// a medik8s maintenance Lease trip it (no reboot; the decision says why); when the
// Lease is released it resets, and nodes reboot one at a time (one more would make 3).
func TestBreakerTripsAndResets(t *testing.T) {
	t.Parallel()
	w := newWorld(t, "brk", 5, `  concurrency: 3
  breaker:
    maxUnavailable: 2
`)
	cordonedNode, maintainedNode := w.nodes[3], w.nodes[4]
	w.patch(cordonedNode, `{"spec":{"unschedulable":true}}`)
	ctx := context.Background()
	leases := w.bed.Client.CoordinationV1().Leases("medik8s-leases")
	if _, err := w.bed.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "medik8s-leases"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	lease, err := leases.Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "node-" + maintainedNode},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("node-maintenance-" + w.id), LeaseDurationSeconds: ptr.To[int32](3600),
			AcquireTime: &metav1.MicroTime{Time: time.Now()}, RenewTime: &metav1.MicroTime{Time: time.Now()}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = leases.Delete(context.Background(), lease.Name, metav1.DeleteOptions{}) })

	sim := w.simulate(3)
	w.waitBlocked(w.nodes[:3], "breaker: the circuit breaker of pool brk is open: 2 of its 5 node(s) are unavailable and rebooting this node would make 3, above maxUnavailable 2 (= 2): "+
		cordonedNode+" (cordoned), "+maintainedNode+" (medik8s maintenance lease)")
	time.Sleep(6 * time.Second)
	if r := sim.Reboots(); len(r) > 0 {
		t.Fatalf("%d reboot(s) while the breaker was open: %+v", len(r), r)
	}

	reset := time.Now()
	if err := leases.Delete(ctx, lease.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.WaitForReboots(ctx, 3, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	testbed.CheckRebootedOnce(t, sim, w.nodes[:3])
	if most := checkDownAfter(t, sim, reset); most != 1 {
		t.Errorf("%d hosts down at once; the breaker (2, one node still cordoned) allows 1 more though concurrency is 3", most)
	}
}
