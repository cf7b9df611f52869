// Command demo shows a rolling reboot on the local test bed (`make demo`): 8 simulated
// nodes in two pools, one rebootgate agent per node, an example policy, every node
// marked reboot-required, and a live `rebootgate status` table until all have rebooted.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/testbed"
)

const (
	namespace = "rebootgate-demo"
	demoLabel = "rebootgate-demo"
)

// pools: name → nodes, concurrency.
var pools = []struct {
	name        string
	nodes       int
	concurrency int
}{{"system", 2, 1}, {"user", 6, 2}}

const config = `apiVersion: rebootgate.io/v1alpha1
kind: RebootGateConfig
pools:
- name: system
  selector: 'node.labels[?"agentpool"] == optional.of("system")'
  concurrency: 1
- name: user
  selector: 'node.labels[?"agentpool"] == optional.of("user")'
  concurrency: 2
  slotKey: topology.kubernetes.io/zone
  healthGate:
  - name: pool-ready
    expression: 'poolNodes.all(n, n.ready)'
    messageExpression: '"not Ready: " + poolNodes.filter(n, !n.ready).map(n, n.name).join(", ")'
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	bed, err := testbed.Start(ctx, testbed.Options{Log: log})
	if err != nil {
		return err
	}
	defer bed.Close()
	binary, cleanupBinary, err := testbed.BuildBinary()
	if err != nil {
		return err
	}
	defer cleanupBinary()
	dir, err := os.MkdirTemp("", "rebootgate-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		return err
	}
	cleanup, nodes, err := setUp(ctx, bed)
	defer cleanup()
	if err != nil {
		return err
	}

	sim, err := bed.NewSimulator(ctx, testbed.SimConfig{
		Command: []string{binary, "agent", "--node-id", testbed.PhNode, "--namespace", namespace,
			"--kubeconfig", testbed.PhKubeconfig, "--config", cfgPath,
			"--reboot-sentinel", testbed.PhSentinel, "--reboot-command", testbed.PhRebootHook, "--nsenter=false",
			"--metrics-port", "0", "--lock-ttl", "60s", "--lock-jitter", "200ms", "--soak", "2s"},
		Nodes: nodes, RebootDelay: 4 * time.Second, FlipReady: true, Log: log,
	})
	if err != nil {
		return err
	}
	if err := sim.Start(ctx); err != nil {
		return err
	}
	defer sim.Stop(context.WithoutCancel(ctx))

	start := time.Now()
	for _, n := range nodes {
		if err := sim.SetRebootRequired(n, true); err != nil {
			return err
		}
	}
	maxBusy := map[string]int{}
	for {
		table, err := exec.CommandContext(ctx, binary, "status", "--kubeconfig", bed.Kubeconfig, "-n", namespace, "-l", demoLabel+"=true").CombinedOutput()
		if err != nil {
			return fmt.Errorf("rebootgate status: %w: %s", err, table)
		}
		busy, done, err := progress(ctx, bed)
		if err != nil {
			return err
		}
		for p, v := range busy {
			maxBusy[p] = max(maxBusy[p], v)
		}
		fmt.Print("\033[H\033[2J")
		fmt.Printf("rebootgate demo — rolling reboot of %d nodes (system: 1 at a time, user: 2 at a time, one per zone)   %s\n\n",
			len(nodes), time.Since(start).Round(time.Second))
		fmt.Print(string(table))
		fmt.Printf("\nrebooted %d/%d\n", done, len(nodes))
		if done == len(nodes) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	per := map[string]int{}
	for _, r := range sim.Reboots() {
		per[r.Node]++
	}
	fmt.Printf("\nsummary: wall %s, nodes rebooted %d of %d (each exactly once: %v), most at once: system %d (limit 1), user %d (limit 2)\n",
		time.Since(start).Round(100*time.Millisecond), len(per), len(nodes), onceEach(per, nodes), maxBusy["system"], maxBusy["user"])
	fmt.Printf("the bed keeps running: KUBECONFIG=%s kubectl get nodes; stop it with make testbed-down\n", bed.Kubeconfig)
	return nil
}

// setUp creates the demo namespace, an example policy and the demo nodes.
func setUp(ctx context.Context, bed *testbed.Bed) (cleanup func(), nodes []string, err error) {
	var undo []func()
	cleanup = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	bg := context.WithoutCancel(ctx)
	_ = bed.Client.CoreV1().Namespaces().Delete(ctx, namespace, metav1.DeleteOptions{})
	if err := testbed.Poll(ctx, time.Minute, "old demo namespace gone", func(ctx context.Context) (bool, error) {
		_, err := bed.Client.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
		return err != nil, nil
	}); err != nil {
		return cleanup, nil, err
	}
	if _, err := bed.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		return cleanup, nil, err
	}
	undo = append(undo, func() { _ = bed.Client.CoreV1().Namespaces().Delete(bg, namespace, metav1.DeleteOptions{}) })
	policy, err := os.ReadFile(filepath.Join(bed.Root, "examples", "backup-job", "backup.rego"))
	if err != nil {
		return cleanup, nil, err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "backup-job", Labels: map[string]string{"rebootgate.io/policy": "rego"}},
		Data:       map[string]string{"backup.rego": string(policy)},
	}
	if _, err := bed.Client.CoreV1().ConfigMaps(namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		return cleanup, nil, err
	}
	for _, p := range pools {
		for i := range p.nodes {
			name := fmt.Sprintf("demo-%s-%d", p.name, i)
			_ = bed.Client.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
			n := testbed.NewNode(name, p.name, fmt.Sprintf("eastus-%d", i%3+1))
			n.Labels[demoLabel] = "true"
			if err := createNode(ctx, bed, n); err != nil {
				return cleanup, nil, err
			}
			undo = append(undo, func() { _ = bed.Client.CoreV1().Nodes().Delete(bg, name, metav1.DeleteOptions{}) })
			nodes = append(nodes, name)
		}
	}
	return cleanup, nodes, bed.WaitNodesReady(ctx, time.Minute, nodes...)
}

func createNode(ctx context.Context, bed *testbed.Bed, n *corev1.Node) error {
	return testbed.Poll(ctx, 30*time.Second, "create node "+n.Name, func(ctx context.Context) (bool, error) {
		_, err := bed.Client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		return err == nil, nil // a node of the same name may still be terminating
	})
}

// progress counts nodes inside the pipeline per pool, and nodes done.
func progress(ctx context.Context, bed *testbed.Bed) (busy map[string]int, done int, err error) {
	list, err := bed.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: demoLabel + "=true"})
	if err != nil {
		return nil, 0, err
	}
	busy = map[string]int{}
	for i := range list.Items {
		n := &list.Items[i]
		st := nodestate.StateOf(n)
		if st.Phase != nodestate.PhaseIdle {
			busy[n.Labels[testbed.PoolLabel]]++
		} else if !st.LastReboot.IsZero() && !n.Spec.Unschedulable {
			done++
		}
	}
	return busy, done, nil
}

func onceEach(per map[string]int, nodes []string) bool {
	sorted := append([]string(nil), nodes...)
	sort.Strings(sorted)
	for _, n := range sorted {
		if per[n] != 1 {
			return false
		}
	}
	return true
}
