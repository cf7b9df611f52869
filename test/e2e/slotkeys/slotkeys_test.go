// Package slotkeys runs slot keys on the test bed: real agents under the node
// simulator, a pool whose slotKey is a CEL expression (the node's zone) with
// slotsPerKey 1, and nodes in three zones plus one without the zone label. The oracle
// is the simulator's record of when each host was down, not rebootgate's annotations.
//
// It runs only under `make test-e2e` (REBOOTGATE_E2E set).
package slotkeys

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/pipeline"
	"github.com/rebootgate/rebootgate/test/testbed"
)

var binary string

func TestMain(m *testing.M) { os.Exit(testbed.MainWithBinary(m, &binary)) }

const slotKey = `node.labels["topology.kubernetes.io/zone"]`

// TestThreeZonesOnePerZone: six nodes, two in each of zones a, b and c, need a
// reboot in a pool of concurrency 4 keyed by zone, one per zone: only the key holds
// a zone's second node back. Every node reboots exactly once, never two of one zone
// at once, and at some point hosts of at least two zones are down together (the
// key, not the concurrency, limited the rollout). A seventh node without the zone label is blocked with a reason
// naming the pool, the expression and the error, and never goes down.
func TestThreeZonesOnePerZone(t *testing.T) {
	bed := testbed.Shared(t)
	ns := bed.Namespace(t)
	id := strings.ToLower(testbed.NewUUID()[:6])
	zoneOf := map[string]string{}
	var zoned []string
	for _, zone := range []string{"a", "b", "c"} {
		for i := range 2 {
			name := fmt.Sprintf("sk-%s-%s%d", id, zone, i)
			n := testbed.NewNode(name, "user", zone)
			n.Labels["e2e-run"] = id
			bed.CreateNode(t, n)
			zoned = append(zoned, name)
			zoneOf[name] = zone
		}
	}
	unzoned := fmt.Sprintf("sk-%s-nozone", id)
	n := testbed.NewNode(unzoned, "user", "")
	delete(n.Labels, testbed.ZoneLabel)
	n.Labels["e2e-run"] = id
	bed.CreateNode(t, n)
	all := append(append([]string{}, zoned...), unzoned)
	ctx := context.Background()
	if err := bed.WaitNodesReady(ctx, time.Minute, all...); err != nil {
		t.Fatal(err)
	}

	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`apiVersion: rebootgate.io/v1alpha1
kind: RebootGateConfig
pools:
- name: zones
  selector: 'node.labels[?"e2e-run"] == optional.of("%s")'
  concurrency: 4
  slotKey: '%s'
  slotsPerKey: 1
`, id, slotKey)), 0o644); err != nil {
		t.Fatal(err)
	}
	// Recorded from before its reboot is needed: no cordon or phase may ever show.
	rec := bed.RecordNode(t, unzoned, pipeline.AnnotationPhase)

	sim := bed.StartSimulator(t, testbed.SimConfig{
		Command: []string{
			binary, "agent",
			"--node-id", testbed.PhNode, "--namespace", ns, "--kubeconfig", testbed.PhKubeconfig,
			"--config", cfg, "--reboot-sentinel", testbed.PhSentinel, "--reboot-command", testbed.PhRebootHook,
			"--nsenter=false", "--metrics-host", "127.0.0.1", "--metrics-port", testbed.PhPort,
			"--lock-ttl", "30s", "--lock-jitter", "100ms", "--recheck-interval", "2s", "--sentinel-period", "1s",
			"--reboot-timeout", "20s", "--ready-timeout", "1m", "--loop-backoff", "10m", "--drain-timeout", "30s",
			"--log-level", "debug",
		},
		Nodes: all, RebootDelay: 3 * time.Second, FlipReady: true,
	})
	t.Cleanup(func() {
		if t.Failed() {
			for _, node := range all {
				if data, err := os.ReadFile(sim.LogPath(node)); err == nil {
					t.Logf("--- agent log of %s (last 3 KiB) ---\n%s", node, tail(string(data), 3072))
				}
			}
		}
	})
	for _, node := range all {
		if err := sim.SetRebootRequired(node, true); err != nil {
			t.Fatal(err)
		}
	}

	// The unlabelled node's agent decides, and is denied for its key.
	want := fmt.Sprintf(`pool "zones": slot key %s cannot be computed for node %s: no such key: topology.kubernetes.io/zone`, slotKey, unzoned)
	if _, err := bed.WaitNode(ctx, unzoned, time.Minute, "denied for its slot key", func(n *corev1.Node) bool {
		d := decisionOf(n)
		return !d.Allowed && len(d.Reasons) == 1 && d.Reasons[0].Source == "slotKey" && strings.HasPrefix(d.Reasons[0].Message, want)
	}); err != nil {
		t.Fatalf("%v (decision %s)", err, nodeDecision(t, bed, unzoned))
	}

	if _, err := sim.WaitForReboots(ctx, len(zoned), 150*time.Second); err != nil {
		t.Fatal(err)
	}
	testbed.CheckRebootedOnce(t, sim, zoned)
	for _, node := range zoned {
		n, err := bed.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d := decisionOf(n); d.SlotKey != zoneOf[node] {
			t.Errorf("%s: decision's slot key %q, want its zone %q", node, d.SlotKey, zoneOf[node])
		}
	}

	// The oracle: the simulator's down intervals.
	downs := sim.DownIntervals()
	zonesTogether := 0
	for i, d := range downs {
		if d.Node == unzoned {
			t.Errorf("%s, without a zone, went down at %s", unzoned, d.From.Format(time.RFC3339Nano))
		}
		if d.To.IsZero() {
			t.Errorf("%s is still down (down since %s)", d.Node, d.From.Format(time.RFC3339Nano))
		}
		together := map[string]bool{zoneOf[d.Node]: true}
		for j, o := range downs {
			if i == j || !overlap(d, o) {
				continue
			}
			if zoneOf[o.Node] == zoneOf[d.Node] {
				t.Errorf("zone %s: %s down %s–%s and %s down %s–%s at once", zoneOf[d.Node],
					d.Node, clock(d.From), clock(d.To), o.Node, clock(o.From), clock(o.To))
			}
			together[zoneOf[o.Node]] = true
		}
		zonesTogether = max(zonesTogether, len(together))
	}
	most, which := testbed.MostDown(downs)
	t.Logf("down intervals: %s; most hosts down at once: %d %v; most zones down together: %d", intervals(downs), most, which, zonesTogether)
	if most > 3 {
		t.Errorf("%d hosts down at once, more than one per zone: %v", most, which)
	}
	if zonesTogether < 2 {
		t.Errorf("hosts of at most %d zone were down at once: the rollout was serialised, so this run does not show that the key (not the concurrency) limited it", zonesTogether)
	}

	// The unlabelled node: still denied, never cordoned, in the pipeline or holding a Lease.
	if d := decisionOf(getNode(t, bed, unzoned)); d.Allowed || len(d.Reasons) == 0 || d.Reasons[0].Source != "slotKey" {
		t.Errorf("%s's decision at the end: %+v, want denied for its slot key", unzoned, d)
	}
	if tr, ok := rec.FirstSince(time.Time{}, func(tr testbed.NodeTransition) bool {
		return tr.Unschedulable || tr.Annotations[pipeline.AnnotationPhase] != ""
	}); ok {
		t.Errorf("%s was cordoned or entered the pipeline at %s; changes:%s", unzoned, tr.At.Format(time.RFC3339Nano), rec)
	}
	leases, err := bed.Client.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases.Items {
		if (l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == unzoned) || l.Annotations["rebootgate.io/waiter"] == unzoned {
			t.Errorf("%s holds or waits on Lease %s", unzoned, l.Name)
		}
	}
	if sim.State(unzoned).Rebooting {
		t.Errorf("%s is rebooting", unzoned)
	}
}

// decision is the part of the rebootgate.io/decision annotation the test reads.
type decision struct {
	Allowed bool   `json:"allowed"`
	SlotKey string `json:"slotKey"`
	Reasons []struct {
		Source  string `json:"source"`
		Message string `json:"message"`
	} `json:"reasons"`
}

func decisionOf(n *corev1.Node) decision {
	var d decision
	if json.Unmarshal([]byte(n.Annotations["rebootgate.io/decision"]), &d) != nil {
		return decision{}
	}
	return d
}

func getNode(t *testing.T, bed *testbed.Bed, name string) *corev1.Node {
	t.Helper()
	n, err := bed.Client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func nodeDecision(t *testing.T, bed *testbed.Bed, name string) string {
	return getNode(t, bed, name).Annotations["rebootgate.io/decision"]
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
