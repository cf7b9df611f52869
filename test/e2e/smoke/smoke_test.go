// Package smoke proves the test bed works: nodes, scheduling, PDB-guarded
// evictions, alerts and silences, and the node simulator's reboots. It runs
// only under `make test-e2e` (REBOOTGATE_E2E set); see package testbed.
package smoke

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/rebootgate/rebootgate/test/testbed"
)

func TestMain(m *testing.M) { os.Exit(testbed.Main(m)) }

func TestNodesReady(t *testing.T) {
	bed := testbed.Shared(t)
	ctx := context.Background()
	if err := bed.WaitNodesReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	nodes, err := bed.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) < 2 {
		t.Fatalf("bed has %d nodes, want at least 2", len(nodes))
	}
	pools, zones := map[string]int{}, map[string]int{}
	for _, n := range nodes {
		pools[n.Labels[testbed.PoolLabel]]++
		zones[n.Labels[testbed.ZoneLabel]]++
		if !strings.HasPrefix(n.Labels[testbed.NodeImageLabel], "AKSUbuntu-") {
			t.Errorf("node %s: node image label %q", n.Name, n.Labels[testbed.NodeImageLabel])
		}
		if n.Status.NodeInfo.KernelVersion != testbed.DefaultKernel || n.Status.NodeInfo.BootID == "" {
			t.Errorf("node %s: nodeInfo %+v", n.Name, n.Status.NodeInfo)
		}
	}
	if pools["system"] == 0 || pools["user"] == 0 {
		t.Errorf("pools %v, want system and user", pools)
	}
	if len(nodes) >= 3 && len(zones) < 2 {
		t.Errorf("zones %v, want several", zones)
	}
}

func TestDeploymentRunsOnChosenNodes(t *testing.T) {
	bed := testbed.Shared(t)
	ctx := context.Background()
	ns := bed.Namespace(t)
	nodes, err := bed.NodeNames(ctx, "user")
	if err != nil {
		t.Fatal(err)
	}
	chosen := nodes[:min(2, len(nodes))]
	labels := map[string]string{"app": "web"}
	if _, err := bed.Client.AppsV1().Deployments(ns).Create(ctx, testbed.NewDeployment(ns, "web", 4, labels, chosen...), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := bed.WaitDeploymentAvailable(ctx, ns, "web", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	pods, err := bed.WaitPodsRunning(ctx, ns, "app=web", 4, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		if !contains(chosen, p.Spec.NodeName) {
			t.Errorf("pod %s on %q, want one of %v", p.Name, p.Spec.NodeName, chosen)
		}
	}
}

func TestDaemonSetOnEveryNode(t *testing.T) {
	bed := testbed.Shared(t)
	ctx := context.Background()
	ns := bed.Namespace(t)
	nodes, err := bed.NodeNames(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "agent"}
	if _, err := bed.Client.AppsV1().DaemonSets(ns).Create(ctx, testbed.NewDaemonSet(ns, "agent", labels), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Every bed node gets one (nodes that other tests add may get one too).
	err = testbed.Poll(ctx, 2*time.Minute, "a running agent pod on every bed node", func(ctx context.Context) (bool, error) {
		pods, err := bed.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=agent"})
		if err != nil {
			return false, err
		}
		running := map[string]bool{}
		for i := range pods.Items {
			if testbed.PodRunning(&pods.Items[i]) {
				running[pods.Items[i].Spec.NodeName] = true
			}
		}
		for _, n := range nodes {
			if !running[n] {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestServiceAccountKubeconfigHasRBAC(t *testing.T) {
	bed := testbed.Shared(t)
	ctx := context.Background()
	ns := bed.Namespace(t)
	path, err := bed.ServiceAccountKubeconfig(ctx, ns, "agent", t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sa.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("list nodes as an unprivileged service account: %v, want Forbidden", err)
	}
	if _, err := sa.CoreV1().ServiceAccounts(ns).Get(ctx, "agent", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("get own service account without a Role: %v, want Forbidden", err)
	}
}

func TestEvictionRespectsPDB(t *testing.T) {
	bed := testbed.Shared(t)
	ctx := context.Background()
	ns := bed.Namespace(t)
	nodes, err := bed.NodeNames(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "db"}
	for i, name := range []string{"db-0", "db-1"} {
		if _, err := bed.Client.CoreV1().Pods(ns).Create(ctx, testbed.NewPod(ns, name, nodes[i%len(nodes)], labels), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bed.WaitPodsRunning(ctx, ns, "app=db", 2, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := bed.Client.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, testbed.NewPDB(ns, "db", labels, intstr.FromInt32(2)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := bed.WaitPDB(ctx, ns, "db", 2, time.Minute); err != nil {
		t.Fatal(err)
	}
	err = bed.Evict(ctx, ns, "db-0")
	if !testbed.EvictionBlocked(err) {
		t.Fatalf("evict with minAvailable=2 of 2: got %v, want 429 TooManyRequests", err)
	}

	// Relax the PDB: one of the two may go.
	pdb, err := bed.Client.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	one := intstr.FromInt32(1)
	pdb.Spec.MinAvailable = &one
	if _, err := bed.Client.PolicyV1().PodDisruptionBudgets(ns).Update(ctx, pdb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = testbed.Poll(ctx, time.Minute, "PDB allows one disruption", func(ctx context.Context) (bool, error) {
		p, err := bed.Client.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "db", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return p.Status.ObservedGeneration >= p.Generation && p.Status.DisruptionsAllowed == 1, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := bed.Evict(ctx, ns, "db-0"); err != nil {
		t.Fatalf("evict with minAvailable=1 of 2: %v", err)
	}
	err = testbed.Poll(ctx, time.Minute, "db-0 gone", func(ctx context.Context) (bool, error) {
		_, err := bed.Client.CoreV1().Pods(ns).Get(ctx, "db-0", metav1.GetOptions{})
		return err != nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The survivor is now protected again.
	if err := bed.Evict(ctx, ns, "db-1"); !testbed.EvictionBlocked(err) {
		t.Fatalf("evict last pod with minAvailable=1: got %v, want 429", err)
	}
}

func TestAlertFiresAndSilences(t *testing.T) {
	bed := testbed.Shared(t)
	ctx := context.Background()
	name := "TestbedSmoke" + strings.ReplaceAll(testbed.NewUUID()[:8], "-", "")
	t.Cleanup(func() { _ = bed.RemoveAlert(context.Background(), name) })

	if err := bed.FireAlert(ctx, name, testbed.AlertOptions{Labels: map[string]string{"severity": "warning"}}); err != nil {
		t.Fatal(err)
	}
	if err := bed.WaitPrometheusAlert(ctx, name, "firing", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	samples, err := bed.QueryPrometheus(ctx, `ALERTS{alertname="`+name+`",alertstate="firing"}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 1 || samples[0].Labels["severity"] != "warning" {
		t.Fatalf("ALERTS for %s: %+v", name, samples)
	}
	a, err := bed.WaitAlertmanagerAlert(ctx, name, 30*time.Second, func(a *testbed.AMAlert) bool { return a.Status.State == "active" })
	if err != nil {
		t.Fatal(err)
	}
	if a.Silenced() {
		t.Fatalf("alert silenced before any silence: %+v", a.Status)
	}

	id, err := bed.Silence(ctx, map[string]string{"alertname": name}, time.Hour, "smoke test")
	if err != nil {
		t.Fatal(err)
	}
	a, err = bed.WaitAlertmanagerAlert(ctx, name, 30*time.Second, (*testbed.AMAlert).Silenced)
	if err != nil {
		t.Fatal(err)
	}
	if a.Status.State != "suppressed" || !contains(a.Status.SilencedBy, id) {
		t.Fatalf("silenced alert status %+v, want suppressed by %s", a.Status, id)
	}

	if err := bed.ExpireSilence(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := bed.WaitAlertmanagerAlert(ctx, name, 30*time.Second, func(a *testbed.AMAlert) bool {
		return a.Status.State == "active" && !a.Silenced()
	}); err != nil {
		t.Fatal(err)
	}

	if err := bed.ClearAlert(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := bed.WaitPrometheusAlert(ctx, name, "", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := bed.WaitAlertmanagerAlertGone(ctx, name, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

// dummyAgent asks for a reboot whenever the sentinel exists, the way kured
// does, then waits to be stopped.
const dummyAgent = `echo "agent up on $TESTBED_SIM_NODE"
while :; do
  if [ -e "$1" ]; then echo "rebooting"; "$2" --reason sentinel; sleep 3600; fi
  sleep 0.1
done`

func TestSimulatorReboots(t *testing.T) {
	for _, flip := range []bool{false, true} {
		name := "keepReady"
		if flip {
			name = "flipReady"
		}
		t.Run(name, func(t *testing.T) { testSimulatorReboots(t, flip) })
	}
}

func testSimulatorReboots(t *testing.T, flipReady bool) {
	bed := testbed.Shared(t)
	ctx := context.Background()
	nodes, err := bed.NodeNames(ctx, "user")
	if err != nil {
		t.Fatal(err)
	}
	nodes = nodes[:min(2, len(nodes))]
	sim := bed.StartSimulator(t, testbed.SimConfig{
		Command:     []string{"/bin/sh", "-c", dummyAgent, "agent", testbed.PhSentinel, testbed.PhRebootHook},
		Nodes:       nodes,
		RebootDelay: time.Second,
		FlipReady:   flipReady,
	})
	target, other := nodes[0], ""
	if len(nodes) > 1 {
		other = nodes[1]
	}
	before := sim.State(target)
	if !before.Running || before.Starts != 1 {
		t.Fatalf("agent on %s not running: %+v", target, before)
	}
	nodeBefore, err := bed.Client.CoreV1().Nodes().Get(ctx, target, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	if err := sim.SetRebootRequired(target, true); err != nil {
		t.Fatal(err)
	}
	reboots, err := sim.WaitForReboots(ctx, 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	r := reboots[0]
	if r.Node != target || r.OldBootID != nodeBefore.Status.NodeInfo.BootID || r.NewBootID == r.OldBootID || r.Args != "--reason sentinel" {
		t.Fatalf("reboot %+v, node boot ID before %s", r, nodeBefore.Status.NodeInfo.BootID)
	}
	if flipReady && (r.NotReadyAt.IsZero() || r.NotReadyAt.After(r.UpAt)) {
		t.Errorf("node was not seen NotReady during the reboot: %+v", r)
	}
	if sim.RebootRequired(target) {
		t.Error("sentinel still present after reboot")
	}
	after := sim.State(target)
	if !after.Running || after.Starts != 2 || after.PID == before.PID || after.BootID != r.NewBootID {
		t.Errorf("agent after reboot %+v, before %+v", after, before)
	}
	// The new boot ID sticks: kwok's status updates must not overwrite it.
	n, err := bed.WaitNode(ctx, target, 30*time.Second, "Ready with new boot ID", testbed.NodeReady)
	if err != nil {
		t.Fatal(err)
	}
	if n.Status.NodeInfo.BootID != r.NewBootID {
		t.Fatalf("node boot ID %s, want %s", n.Status.NodeInfo.BootID, r.NewBootID)
	}
	if flipReady {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.LastTransitionTime.Time.Before(r.DownAt.Add(-time.Second)) {
				t.Errorf("Ready lastTransitionTime %s is before the reboot (%s)", c.LastTransitionTime, r.DownAt)
			}
		}
	}
	if v, ok := n.Annotations[testbed.PoweredOffAnnotation]; ok {
		t.Errorf("node still annotated %s=%s", testbed.PoweredOffAnnotation, v)
	}
	// The restarted agent runs: its second greeting reaches the log.
	err = testbed.Poll(ctx, 30*time.Second, "second agent start in log", func(context.Context) (bool, error) {
		log, err := os.ReadFile(sim.LogPath(target))
		if err != nil {
			return false, err
		}
		return strings.Count(string(log), "agent up on "+target) == 2, nil
	})
	if err != nil {
		log, _ := os.ReadFile(sim.LogPath(target))
		t.Fatalf("%v; log:\n%s", err, log)
	}
	// No reboot loop, and the other node was left alone.
	if other != "" {
		if st := sim.State(other); st.Starts != 1 || !st.Running {
			t.Errorf("other node %s: %+v", other, st)
		}
	}
	if got := len(sim.Reboots()); got != 1 {
		t.Errorf("%d reboots, want 1", got)
	}
	if err := sim.Err(); err != nil {
		t.Fatal(err)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
