// Package mixedfleet runs a migration in progress on the test bed: some simulated
// nodes run rebootgate agents with --kured-lock, the others a kured test double
// (./kureddouble) that speaks kured's lock protocol. The oracle is the node
// simulator's record of when each host was down, never rebootgate's annotations.
// It runs only under `make test-e2e` (REBOOTGATE_E2E set).
package mixedfleet

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/test/testbed"
)

// binary is rebootgate, double the kured test double, both built for this suite.
var binary, double string

func TestMain(m *testing.M) {
	os.Exit(testbed.MainWithBinary(m, &binary))
}

// buildDouble builds ./kureddouble once per test binary.
func buildDouble(t *testing.T) string {
	t.Helper()
	if double != "" {
		return double
	}
	path := filepath.Join(os.TempDir(), "rebootgate-e2e-kureddouble-"+testbed.NewUUID()[:8])
	cmd := exec.Command("go", "build", "-o", path, "github.com/rebootgate/rebootgate/test/e2e/mixedfleet/kureddouble")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("building the kured double: %v", err)
	}
	double = path
	return path
}

// fleet is one test's nodes: the first half runs rebootgate, the rest the double.
type fleet struct {
	t          *testing.T
	bed        *testbed.Bed
	ns         string
	rebootgate []string
	kured      []string
}

func newFleet(t *testing.T, perKind int) *fleet {
	bed := testbed.Shared(t)
	f := &fleet{t: t, bed: bed, ns: bed.Namespace(t)}
	id := testbed.NewUUID()[:6]
	for i := range 2 * perKind {
		name := fmt.Sprintf("e2e-%s-mix-%d", id, i)
		n := testbed.NewNode(name, "mix"+id, fmt.Sprintf("eastus-%d", i%3+1))
		bed.CreateNode(t, n)
		if i < perKind {
			f.rebootgate = append(f.rebootgate, name)
		} else {
			f.kured = append(f.kured, name)
		}
	}
	// The DaemonSet that carries kured's lock, in the test's namespace.
	ds := testbed.NewDaemonSet(f.ns, "kured", map[string]string{"app": "kured-" + id})
	if _, err := bed.Client.AppsV1().DaemonSets(f.ns).Create(context.Background(), ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return f
}

// start runs both halves under two simulators and returns them. rebootgate's own
// pool allows all of its nodes at once, so only kured's lock can keep the fleet at
// kured's concurrency.
func (f *fleet) start(concurrency int, kuredLock bool) []*testbed.Simulator {
	dir := f.t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	doc := fmt.Sprintf("apiVersion: rebootgate.io/v1alpha1\nkind: RebootGateConfig\npools:\n- name: all\n  selector: \"true\"\n  concurrency: %d\n", len(f.rebootgate))
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		f.t.Fatal(err)
	}
	rg := []string{
		binary, "agent", "--node-id", testbed.PhNode, "--namespace", f.ns, "--kubeconfig", testbed.PhKubeconfig,
		"--config", cfg, "--reboot-sentinel", testbed.PhSentinel, "--reboot-command", testbed.PhRebootHook, "--nsenter=false",
		"--metrics-port", "0", "--lock-ttl", "30s", "--lock-jitter", "100ms", "--recheck-interval", "2s", "--sentinel-period", "1s",
		"--reboot-timeout", "20s", "--drain-timeout", "30s", "--log-level", "debug",
		"--ds-namespace", f.ns, "--ds-name", "kured",
	}
	if kuredLock {
		// With --config, --concurrency is allowed only as kured's lock's holder count.
		rg = append(rg, "--kured-lock", "--concurrency", strconv.Itoa(concurrency))
	}
	kd := []string{
		buildDouble(f.t), "--node-id", testbed.PhNode, "--kubeconfig", testbed.PhKubeconfig, "--reboot-sentinel", testbed.PhSentinel,
		"--reboot-command", testbed.PhRebootHook, "--ds-namespace", f.ns, "--ds-name", "kured", "--concurrency", strconv.Itoa(concurrency),
		"--period", "1s",
	}
	sims := []*testbed.Simulator{
		f.bed.StartSimulator(f.t, testbed.SimConfig{Command: rg, Nodes: f.rebootgate, RebootDelay: 3 * time.Second}),
		f.bed.StartSimulator(f.t, testbed.SimConfig{Command: kd, Nodes: f.kured, RebootDelay: 3 * time.Second}),
	}
	f.t.Cleanup(func() {
		if !f.t.Failed() {
			return
		}
		for _, s := range sims {
			for _, n := range s.Nodes() {
				if data, err := os.ReadFile(s.LogPath(n)); err == nil {
					f.t.Logf("--- log of %s (last 3 KiB) ---\n%s", n, data[max(0, len(data)-3072):])
				}
			}
		}
	})
	return sims
}

// rollout makes every node need a reboot, waits for one reboot each, and returns the
// down intervals of both simulators together.
func (f *fleet) rollout(sims []*testbed.Simulator) []testbed.DownInterval {
	for _, s := range sims {
		for _, n := range s.Nodes() {
			if err := s.SetRebootRequired(n, true); err != nil {
				f.t.Fatal(err)
			}
		}
	}
	var downs []testbed.DownInterval
	for _, s := range sims {
		if _, err := s.WaitForReboots(context.Background(), len(s.Nodes()), 4*time.Minute); err != nil {
			f.t.Fatal(err)
		}
		downs = append(downs, s.DownIntervals()...)
	}
	return downs
}

// A mixed fleet never has more hosts down at once than kured's concurrency, in the
// one-holder form (1) and the multi-holder form (2); every node reboots once, ends
// uncordoned, and kured's lock ends empty.
func TestMixedFleetKeepsKuredConcurrency(t *testing.T) {
	for _, concurrency := range []int{1, 2} {
		t.Run(fmt.Sprintf("concurrency=%d", concurrency), func(t *testing.T) {
			f := newFleet(t, 3)
			sims := f.start(concurrency, true)
			downs := f.rollout(sims)
			most, nodes := testbed.MostDown(downs)
			if most > concurrency {
				t.Errorf("%d hosts down at once (%v), kured's concurrency is %d", most, nodes, concurrency)
			}
			t.Logf("mixed fleet, kured's concurrency %d: at most %d hosts down at once", concurrency, most)
			for _, s := range sims {
				for _, n := range s.Nodes() {
					count := 0
					for _, r := range s.Reboots() {
						if r.Node == n {
							count++
						}
					}
					if count != 1 {
						t.Errorf("node %s rebooted %d times, want once", n, count)
					}
				}
			}
			ctx := context.Background()
			for _, n := range append(slices.Clone(f.rebootgate), f.kured...) {
				if _, err := f.bed.WaitNode(ctx, n, time.Minute, "uncordoned", func(node *corev1.Node) bool { return !node.Spec.Unschedulable }); err != nil {
					t.Error(err)
				}
			}
			err := testbed.Poll(ctx, time.Minute, "kured's lock released", func(ctx context.Context) (bool, error) {
				ds, err := f.bed.Client.AppsV1().DaemonSets(f.ns).Get(ctx, "kured", metav1.GetOptions{})
				if err != nil {
					return false, err
				}
				v, ok := ds.Annotations["weave.works/kured-node-lock"]
				return !ok || v == `{"maxOwners":2,"locks":[]}` || v == `{"maxOwners":2,"locks":null}`, nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
}

// The control: without --kured-lock the two halves ignore each other, and more hosts
// than kured's concurrency go down together. It shows the oracle above can fail.
func TestMixedFleetWithoutKuredLockOverlaps(t *testing.T) {
	f := newFleet(t, 3)
	downs := f.rollout(f.start(1, false))
	most, nodes := testbed.MostDown(downs)
	if most <= 1 {
		t.Errorf("at most %d host down at once without --kured-lock; the fleets should have overlapped", most)
	}
	t.Logf("without --kured-lock: %d hosts down at once (%v) where kured allows 1", most, nodes)
}
