// Package slotkeys runs slot keys on the test bed: real agents under the node
// simulator, pools whose slotKey is a CEL expression (the node's zone), with one and
// with two nodes per zone, and a node without the zone label. The oracle is the
// simulator's record of when each host was down, not rebootgate's annotations.
//
// It runs only under `make test-e2e` (REBOOTGATE_E2E set).
package slotkeys

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/testbed"
)

var binary string

func TestMain(m *testing.M) { os.Exit(testbed.MainWithBinary(m, &binary)) }

const slotKey = `node.labels["topology.kubernetes.io/zone"]`

// TestThreeZonesOnePerZone: six nodes, two in each of zones a, b and c, need a
// reboot in a pool of concurrency 4 keyed by zone, one per zone: only the key holds
// a zone's second node back. Every node reboots exactly once, never two of one zone
// at once, and at some point hosts of several zones are down together (the key, not
// the concurrency, limited the rollout). A seventh node without the zone label is
// blocked with a reason naming the pool, the expression and the error, and never
// goes down, is cordoned or queues.
func TestThreeZonesOnePerZone(t *testing.T) {
	t.Parallel()
	r := start(t, []string{"a", "b", "c"}, 2, true, "  concurrency: 4\n  slotsPerKey: 1\n")

	want := fmt.Sprintf(`pool "zones": slot key %s cannot be computed for node %s: no such key: topology.kubernetes.io/zone`, slotKey, r.unzoned)
	if _, err := r.bed.WaitNode(context.Background(), r.unzoned, time.Minute, "denied for its slot key", func(n *corev1.Node) bool {
		d := decisionOf(n)
		return !d.Allowed && len(d.Reasons) == 1 && d.Reasons[0].Source == "slotKey" && strings.HasPrefix(d.Reasons[0].Message, want)
	}); err != nil {
		t.Fatalf("%v (decision %s)", err, r.node(r.unzoned).Annotations[nodestate.AnnotationDecision])
	}

	r.finish()
	perZone, zonesTogether := r.checkDowns()
	for zone, most := range perZone {
		if most != 1 {
			t.Errorf("zone %s: %d hosts down at once, want 1 (slotsPerKey 1)", zone, most)
		}
	}
	if zonesTogether < 2 {
		t.Errorf("hosts of at most %d zone were down at once: the rollout was serialised, so this run does not show that the key (not the concurrency) limited it", zonesTogether)
	}

	// The unlabelled node: still denied, never cordoned, in the pipeline, queued or down.
	if d := decisionOf(r.node(r.unzoned)); d.Allowed || len(d.Reasons) == 0 || d.Reasons[0].Source != "slotKey" {
		t.Errorf("%s's decision at the end: %+v, want denied for its slot key", r.unzoned, d)
	}
	if tr, ok := r.rec.FirstSince(time.Time{}, func(tr testbed.NodeTransition) bool {
		return tr.Unschedulable || tr.Annotations[nodestate.AnnotationPhase] != ""
	}); ok {
		t.Errorf("%s was cordoned or entered the pipeline at %s; changes:%s", r.unzoned, tr.At.Format(time.RFC3339Nano), r.rec)
	}
	leases, err := r.bed.Client.CoordinationV1().Leases(r.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases.Items {
		if (l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == r.unzoned) || l.Annotations["rebootgate.io/waiter"] == r.unzoned {
			t.Errorf("%s holds or waits on Lease %s", r.unzoned, l.Name)
		}
	}
	if r.sim.State(r.unzoned).Rebooting {
		t.Errorf("%s is rebooting", r.unzoned)
	}
}

// TestTwoPerZone: six nodes, three in each of zones a and b, in a pool of concurrency
// 6 with slotsPerKey 2: each node reboots once, never three of a zone at once, and
// two of one zone do go down together (the second key Lease of a value is used).
func TestTwoPerZone(t *testing.T) {
	t.Parallel()
	r := start(t, []string{"a", "b"}, 3, false, "  concurrency: 6\n  slotsPerKey: 2\n")
	r.finish()
	perZone, _ := r.checkDowns()
	for _, zone := range []string{"a", "b"} {
		if perZone[zone] != 2 {
			t.Errorf("zone %s: at most %d hosts down at once, want 2 (slotsPerKey 2, concurrency 6)", zone, perZone[zone])
		}
	}
}

// rollout is one test's pool "zones": fresh nodes in zones, each running an agent
// under the simulator and needing a reboot.
type rollout struct {
	t      *testing.T
	bed    *testbed.Bed
	ns     string
	zoneOf map[string]string // zoned node → zone
	zoned  []string
	// unzoned is the node without a zone label ("" if none), rec its recording from
	// before its reboot was needed.
	unzoned string
	rec     *testbed.NodeRecorder
	sim     *testbed.Simulator
	id      string // the run's label value, in node names
	// later are nodes whose reboot a prepare func leaves to the test.
	later map[string]bool
}

// start creates perZone nodes in each zone (and one without a zone label if
// unzoned), a pool selecting them keyed by zone with pool (YAML under the pool, indent
// 2) and the agents, runs prepare (faults set up before any reboot), and makes every
// node need a reboot.
func start(t *testing.T, zones []string, perZone int, unzoned bool, pool string, prepare ...func(*rollout)) *rollout {
	bed := testbed.Shared(t)
	id := strings.ToLower(testbed.NewUUID()[:6])
	r := &rollout{t: t, bed: bed, ns: bed.Namespace(t), zoneOf: map[string]string{}, later: map[string]bool{}}
	create := func(name, zone string) {
		n := testbed.NewNode(name, "user", zone)
		if zone == "" {
			delete(n.Labels, testbed.ZoneLabel)
		}
		n.Labels["e2e-run"] = id
		bed.CreateNode(t, n)
	}
	for _, zone := range zones {
		for i := range perZone {
			name := fmt.Sprintf("sk-%s-%s%d", id, zone, i)
			create(name, zone)
			r.zoned = append(r.zoned, name)
			r.zoneOf[name] = zone
		}
	}
	all := slices.Clone(r.zoned)
	if unzoned {
		r.unzoned = fmt.Sprintf("sk-%s-nozone", id)
		create(r.unzoned, "")
		all = append(all, r.unzoned)
	}
	if err := bed.WaitNodesReady(context.Background(), time.Minute, all...); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`apiVersion: rebootgate.io/v1alpha1
kind: RebootGateConfig
pools:
- name: zones
  selector: 'node.labels[?"e2e-run"] == optional.of("%s")'
  slotKey: '%s'
%s`, id, slotKey, pool)), 0o644); err != nil {
		t.Fatal(err)
	}
	if unzoned {
		r.rec = bed.RecordNode(t, r.unzoned, nodestate.AnnotationPhase)
	}
	r.sim = bed.StartSimulator(t, testbed.SimConfig{
		Command: []string{
			binary, "agent",
			"--node-id", testbed.PhNode, "--namespace", r.ns, "--kubeconfig", testbed.PhKubeconfig,
			"--config", cfg, "--reboot-sentinel", testbed.PhSentinel, "--reboot-command", testbed.PhRebootHook,
			"--nsenter=false", "--metrics-host", "127.0.0.1", "--metrics-port", testbed.PhPort,
			"--lock-ttl", "30s", "--lock-jitter", "100ms", "--recheck-interval", "2s", "--sentinel-period", "1s",
			"--reboot-timeout", "20s", "--ready-timeout", "1m", "--loop-backoff", "10m", "--drain-timeout", "30s",
			"--log-level", "debug",
		},
		Nodes: all, RebootDelay: 3 * time.Second, FlipReady: true,
	})
	r.id = id
	t.Cleanup(func() {
		if t.Failed() {
			for _, node := range all {
				if data, err := os.ReadFile(r.sim.LogPath(node)); err == nil {
					t.Logf("--- agent log of %s (last 3 KiB) ---\n%s", node, tail(string(data), 3072))
				}
			}
		}
	})
	for _, p := range prepare {
		p(r)
	}
	for _, node := range all {
		if r.later[node] {
			continue
		}
		if err := r.sim.SetRebootRequired(node, true); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// finish waits for every zoned node's reboot and checks that each rebooted once,
// under its zone as the decision's slot key.
func (r *rollout) finish() {
	r.t.Helper()
	if _, err := r.sim.WaitForReboots(context.Background(), len(r.zoned), 150*time.Second); err != nil {
		r.t.Fatal(err)
	}
	testbed.CheckRebootedOnce(r.t, r.sim, r.zoned)
	for _, node := range r.zoned {
		if d := decisionOf(r.node(node)); d.SlotKey != r.zoneOf[node] {
			r.t.Errorf("%s: decision's slot key %q, want its zone %q", node, d.SlotKey, r.zoneOf[node])
		}
	}
}

// checkDowns reads the oracle, the simulator's down intervals: it fails the test for a
// host still down or one that is not a zoned node, and returns the most hosts of each
// zone down at once and the most zones with a host down at once.
func (r *rollout) checkDowns() (perZone map[string]int, zonesTogether int) {
	r.t.Helper()
	downs := r.sim.DownIntervals()
	byZone := map[string][]testbed.DownInterval{}
	for i, d := range downs {
		zone, ok := r.zoneOf[d.Node]
		switch {
		case !ok:
			r.t.Errorf("%s, without a zone, went down at %s", d.Node, d.From.Format(time.RFC3339Nano))
			continue
		case d.To.IsZero():
			r.t.Errorf("%s is still down (down since %s)", d.Node, d.From.Format(time.RFC3339Nano))
		}
		byZone[zone] = append(byZone[zone], d)
		together := map[string]bool{zone: true}
		for j, o := range downs {
			if i != j && overlap(d, o) {
				together[r.zoneOf[o.Node]] = true
			}
		}
		zonesTogether = max(zonesTogether, len(together))
	}
	perZone = map[string]int{}
	for zone, ds := range byZone {
		most, which := testbed.MostDown(ds)
		perZone[zone] = most
		if most > 1 {
			r.t.Logf("zone %s: %d down at once: %v", zone, most, which)
		}
	}
	most, which := testbed.MostDown(downs)
	r.t.Logf("down intervals: %s; most hosts down at once: %d %v; per zone %v; most zones down together: %d",
		intervals(downs), most, which, perZone, zonesTogether)
	return perZone, zonesTogether
}

func (r *rollout) node(name string) *corev1.Node {
	r.t.Helper()
	n, err := r.bed.Client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	return n
}

// decisionOf is the decision recorded on n; the zero Decision when there is none or
// it does not decode.
func decisionOf(n *corev1.Node) nodestate.Decision {
	d, _, err := nodestate.DecisionOf(n)
	if err != nil {
		return nodestate.Decision{}
	}
	return d
}

// overlap says whether two down intervals share an instant (an open end is now).
func overlap(a, b testbed.DownInterval) bool {
	end := func(d testbed.DownInterval) time.Time {
		if d.To.IsZero() {
			return time.Now()
		}
		return d.To
	}
	return a.From.Before(end(b)) && b.From.Before(end(a))
}

func clock(t time.Time) string { return t.Format("15:04:05.000") }

func intervals(downs []testbed.DownInterval) string {
	parts := make([]string, len(downs))
	for i, d := range downs {
		parts[i] = fmt.Sprintf("%s %s–%s", d.Node, clock(d.From), clock(d.To))
	}
	return strings.Join(parts, ", ")
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
