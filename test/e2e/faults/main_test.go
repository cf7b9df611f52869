// Package faults injects faults into the middle of rollouts on the test bed and checks
// rebootgate's safety contract (issue 8, I1–I5) from outside: the node simulator's
// record of when each host was down, Node objects, Leases and Events — never
// rebootgate's own phase annotations. It runs only under `make test-e2e`
// (REBOOTGATE_E2E set). REBOOTGATE_BIN runs it against another binary (say, one built
// from an older commit); flags that binary does not know are left out.
//
// Each test has its own nodes, namespace and pool, so the tests run in parallel,
// except the one that stops kube-apiserver: Go runs it first, alone.
//
// The package imports nothing from engine/ on purpose: it must build while the engine
// is being rewritten, and it judges the agent as a black box.
package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/rebootgate/rebootgate/test/testbed"
)

// binary is the rebootgate binary under test.
var binary string

func TestMain(m *testing.M) { os.Exit(testbed.MainWithBinary(m, &binary)) }

// Annotations and labels of rebootgate's contract, spelled out here rather than
// imported (see the package comment).
const (
	annHold     = "rebootgate.io/hold"
	annDecision = "rebootgate.io/decision"
	labelPool   = "rebootgate.io/pool"
	runLabel    = "faults-run"
)

// Timings shared by the suite's agents; a test overrides some with extra flags.
const (
	lockTTL         = 24 * time.Second // the current lock wants its 5s clock-skew allowance below TTL/4
	recheckInterval = 2 * time.Second
	failureBackoff  = 2 * time.Second
	skew            = 5 * time.Second // the lock's clock-skew allowance
)

// fleet is one test's nodes, namespace, pool and config file.
type fleet struct {
	t      *testing.T
	bed    *testbed.Bed
	ns     string
	id     string
	pool   string
	nodes  []string
	config string
}

// newFleet creates n fresh kwok nodes, all in one pool of the test's own (selected by
// the test's run label), and writes a config with that pool at the given concurrency.
func newFleet(t *testing.T, n int, concurrency int, rest string) *fleet {
	bed := testbed.Shared(t)
	f := &fleet{t: t, bed: bed, ns: bed.Namespace(t), id: strings.ToLower(testbed.NewUUID()[:6])}
	f.pool = "f" + f.id
	f.config = filepath.Join(t.TempDir(), "config.yaml")
	for i := range n {
		name := fmt.Sprintf("fault-%s-%d", f.id, i)
		node := testbed.NewNode(name, "user", fmt.Sprintf("eastus-%d", i%3+1))
		node.Labels[runLabel] = f.id
		bed.CreateNode(t, node)
		f.nodes = append(f.nodes, name)
	}
	f.writeConfig(concurrency, rest)
	return f
}

// writeConfig (re)writes the RebootGateConfig atomically, as a ConfigMap mount swaps
// its files: the agents never read half a file.
func (f *fleet) writeConfig(concurrency int, rest string) {
	f.t.Helper()
	doc := fmt.Sprintf(`apiVersion: rebootgate.io/v1alpha1
kind: RebootGateConfig
pools:
- name: %s
  selector: 'node.labels[?"%s"] == optional.of("%s")'
  concurrency: %d
%s`, f.pool, runLabel, f.id, concurrency, rest)
	f.writeDoc(doc)
}

// writeDoc replaces the config file with doc atomically.
func (f *fleet) writeDoc(doc string) {
	f.t.Helper()
	tmp := f.config + ".tmp"
	if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(tmp, f.config); err != nil {
		f.t.Fatal(err)
	}
}

// writeBroken replaces the config, atomically, with one that does not load: an unknown
// key in the pool, as a typo in an edit would be.
func (f *fleet) writeBroken() {
	f.t.Helper()
	f.writeDoc(fmt.Sprintf(`apiVersion: rebootgate.io/v1alpha1
kind: RebootGateConfig
pools:
- name: %s
  selector: 'node.labels[?"%s"] == optional.of("%s")'
  concurrency: 1
  blackuot: [{from: "2026-01-01T00:00:00Z", to: "2099-01-01T00:00:00Z"}]
`, f.pool, runLabel, f.id))
}

// agentCommand is the agent's command line under the simulator; extra flags (name,
// value pairs) override the defaults.
func (f *fleet) agentCommand(extra ...string) []string {
	args := []string{
		"--node-id", testbed.PhNode,
		"--namespace", f.ns,
		"--kubeconfig", testbed.PhKubeconfig,
		"--config", f.config,
		"--reboot-sentinel", testbed.PhSentinel,
		"--reboot-command", testbed.PhRebootHook,
		"--nsenter=false",
		"--metrics-port", "0",
		"--lock-ttl", lockTTL.String(),
		"--lock-jitter", "100ms",
		"--recheck-interval", recheckInterval.String(),
		"--sentinel-period", "2s",
		"--reboot-timeout", "20s",
		"--ready-timeout", "1m",
		"--loop-backoff", "10m",
		"--drain-timeout", "30s",
		"--drain-retry-delay", "1s",
		"--failure-backoff", failureBackoff.String(),
		"--max-failures", "3",
		"--log-level", "debug",
	}
	return append([]string{binary, "agent"}, knownFlags(f.t, append(args, extra...))...)
}

var (
	helpOnce sync.Once
	known    map[string]bool // the flags of `binary agent --help`
)

// knownFlags drops the flags (with their values) that the binary under test does not
// know, so that the suite also runs against an older binary to show that it fails
// there for the right reason. Flags given as --name=value keep their value with them.
func knownFlags(t *testing.T, args []string) []string {
	helpOnce.Do(func() {
		out, _ := exec.Command(binary, "agent", "--help").CombinedOutput()
		known = map[string]bool{}
		for _, m := range regexp.MustCompile(`--([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
			known[m[1]] = true
		}
	})
	var kept, dropped []string
	for i := 0; i < len(args); i++ {
		name, _, hasValue := strings.Cut(args[i], "=")
		n := 1 // the flag, and its value when it is the next argument
		if !hasValue && i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
			n = 2
		}
		if known[strings.TrimPrefix(name, "--")] {
			kept = append(kept, args[i:i+n]...)
		} else {
			dropped = append(dropped, args[i:i+n]...)
		}
		i += n - 1
	}
	if len(dropped) > 0 {
		t.Logf("the binary under test does not know %v: left out", dropped)
	}
	return kept
}

// simulate starts the node simulator on nodes (default: all the fleet's), hosts going
// NotReady while down for rebootDelay, and prints the agents' logs when the test fails.
func (f *fleet) simulate(rebootDelay time.Duration, command []string, nodes ...string) *testbed.Simulator {
	if len(nodes) == 0 {
		nodes = f.nodes
	}
	sim := f.bed.StartSimulator(f.t, testbed.SimConfig{Command: command, Nodes: nodes, RebootDelay: rebootDelay, FlipReady: true})
	f.t.Cleanup(func() {
		if f.t.Failed() {
			for _, n := range nodes {
				if data, err := os.ReadFile(sim.LogPath(n)); err == nil {
					f.t.Logf("--- agent log of %s (last 6 KiB) ---\n%s", n, tail(string(data), 6144))
				}
			}
		}
	})
	return sim
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

func (f *fleet) setRequired(sim *testbed.Simulator, nodes ...string) {
	f.t.Helper()
	for _, n := range nodes {
		if err := sim.SetRebootRequired(n, true); err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fleet) node(name string) *corev1.Node {
	f.t.Helper()
	n, err := f.bed.Client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *fleet) waitNode(name string, timeout time.Duration, what string, cond func(*corev1.Node) bool) *corev1.Node {
	f.t.Helper()
	n, err := f.bed.WaitNode(context.Background(), name, timeout, what, cond)
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func cordoned(n *corev1.Node) bool { return n.Spec.Unschedulable }

// waitAllowed waits until the node's agent reports that its reboot is allowed: it is
// then waiting for a slot (or taking one).
func (f *fleet) waitAllowed(node string) {
	f.t.Helper()
	f.waitNode(node, time.Minute, "reported an allowed reboot", func(n *corev1.Node) bool {
		return strings.Contains(n.Annotations[annDecision], `"allowed":true`)
	})
}

// slotName is the name of the pool's slot i Lease.
func (f *fleet) slotName(i int) string { return fmt.Sprintf("rebootgate-%s-%d", f.pool, i) }

// slotHolder is the holder of the pool's slot 0 ("" when free or absent).
func (f *fleet) slotHolder(ctx context.Context) (string, error) {
	l, err := f.bed.Client.CoordinationV1().Leases(f.ns).Get(ctx, f.slotName(0), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if l.Spec.HolderIdentity == nil {
		return "", nil
	}
	return *l.Spec.HolderIdentity, nil
}

func (f *fleet) waitSlotHolder(timeout time.Duration, what string, cond func(holder string) bool) string {
	f.t.Helper()
	var holder string
	err := testbed.Poll(context.Background(), timeout, "slot "+f.slotName(0)+" "+what, func(ctx context.Context) (bool, error) {
		h, err := f.slotHolder(ctx)
		holder = h
		return err == nil && cond(h), err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return holder
}

// workload runs one pod of a Deployment pinned to node, so that the node's drain has
// something to evict: the pod leaving the node is outside evidence that the drain is
// done and the agent is in its --reboot-delay. It returns the pods' label selector.
func (f *fleet) workload(node string) string {
	f.t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": "work-" + node}
	if _, err := f.bed.Client.AppsV1().Deployments(f.ns).Create(ctx, testbed.NewDeployment(f.ns, "work-"+node, 1, labels, node), metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	if err := f.bed.WaitDeploymentAvailable(ctx, f.ns, "work-"+node, 2*time.Minute); err != nil {
		f.t.Fatal(err)
	}
	return "app=work-" + node
}

// waitDrained waits until node is cordoned and no pod of the workload is left on it,
// and returns when that was seen.
func (f *fleet) waitDrained(node, selector string, timeout time.Duration) time.Time {
	f.t.Helper()
	err := testbed.Poll(context.Background(), timeout, "node "+node+" cordoned and drained", func(ctx context.Context) (bool, error) {
		n, err := f.bed.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil || !cordoned(n) {
			return false, err
		}
		pods, err := f.bed.Client.CoreV1().Pods(f.ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if p.Spec.NodeName == node {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return time.Now()
}

// rebootRequested reports whether node's host has been asked to reboot (in progress
// or done).
func rebootRequested(sim *testbed.Simulator, node string) bool {
	return slices.ContainsFunc(sim.DownIntervals(), func(d testbed.DownInterval) bool { return d.Node == node })
}

// holdsFor checks, every poll interval for d, that bad reports nothing, and fails the
// test with the first violation. Call it only once the thing it rules out could have
// happened (after positive evidence), never as a guess.
func (f *fleet) holdsFor(d time.Duration, what string, bad func(ctx context.Context) string) {
	f.t.Helper()
	err := testbed.Poll(context.Background(), d, what, func(ctx context.Context) (bool, error) {
		if why := bad(ctx); why != "" {
			return false, testbed.Permanent(errors.New(why))
		}
		return false, nil
	})
	if !errors.Is(err, testbed.ErrTimeout) {
		f.t.Fatalf("violated while %v", err) // "violated while waiting for <what>: <why>"
	}
}

// neitherCordonedNorRebooted is a holdsFor check: none of nodes is cordoned or has had
// a reboot request.
func (f *fleet) neitherCordonedNorRebooted(sim *testbed.Simulator, nodes ...string) func(ctx context.Context) string {
	return func(ctx context.Context) string {
		for _, name := range nodes {
			if rebootRequested(sim, name) {
				return name + " was asked to reboot"
			}
			n, err := f.bed.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err == nil && cordoned(n) {
				return name + " was cordoned"
			}
		}
		return ""
	}
}

// checkMostDown fails the test if more than limit hosts were down at one instant.
func (f *fleet) checkMostDown(sim *testbed.Simulator, limit int) {
	f.t.Helper()
	if most, nodes := testbed.MostDown(sim.DownIntervals()); most > limit {
		f.t.Errorf("%d hosts down at once (%v), the pool allows %d; hosts down: %s", most, nodes, limit, describe(sim))
	}
}

// describe lists when each host was down.
func describe(sim *testbed.Simulator) string {
	var b strings.Builder
	for _, d := range sim.DownIntervals() {
		up := "still down"
		if !d.To.IsZero() {
			up = "back " + d.To.Format("15:04:05.000")
		}
		fmt.Fprintf(&b, "\n  %s: reboot requested %s, %s", d.Node, d.From.Format("15:04:05.000"), up)
	}
	return b.String()
}

// waitFinished waits until every node has rebooted (the simulator's records) and all
// are uncordoned, and checks that each rebooted exactly once.
func (f *fleet) waitFinished(sim *testbed.Simulator, timeout time.Duration) {
	f.t.Helper()
	if _, err := sim.WaitForReboots(context.Background(), len(f.nodes), timeout); err != nil {
		f.t.Fatalf("%v; reboots: %s", err, describe(sim))
	}
	for _, n := range f.nodes {
		f.waitNode(n, time.Minute, "uncordoned", func(n *corev1.Node) bool { return !cordoned(n) })
	}
	per := map[string]int{}
	for _, r := range sim.Reboots() {
		per[r.Node]++
	}
	for _, n := range f.nodes {
		if per[n] != 1 {
			f.t.Errorf("%s rebooted %d times, want 1", n, per[n])
		}
	}
}

// annotate sets (value non-nil) or removes an annotation on a Node.
func (f *fleet) annotate(node, key string, value *string) {
	f.t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{key: value}}})
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.bed.Client.CoreV1().Nodes().Patch(context.Background(), node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// events lists the Events with reason about the object named name, in any namespace.
func (f *fleet) events(ctx context.Context, kind, name, reason string) ([]corev1.Event, error) {
	list, err := f.bed.Client.CoreV1().Events("").List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=" + kind + ",involvedObject.name=" + name + ",reason=" + reason,
	})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// waitEvent waits for an Event with reason about kind/name whose message contains text.
func (f *fleet) waitEvent(timeout time.Duration, kind, name, reason, text string) corev1.Event {
	f.t.Helper()
	var found corev1.Event
	err := testbed.Poll(context.Background(), timeout, fmt.Sprintf("a %s Event on %s %s saying %q", reason, kind, name, text), func(ctx context.Context) (bool, error) {
		evs, err := f.events(ctx, kind, name, reason)
		for _, e := range evs {
			if strings.Contains(e.Message, text) {
				found = e
				return true, nil
			}
		}
		return false, err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return found
}

// logCount counts what in the node's agent log so far.
func logCount(sim *testbed.Simulator, node, what string) int {
	data, _ := os.ReadFile(sim.LogPath(node))
	return bytes.Count(data, []byte(what))
}

// waitLog waits until the node's agent log holds at least n occurrences of what.
func (f *fleet) waitLog(sim *testbed.Simulator, node, what string, n int) {
	f.t.Helper()
	err := testbed.Poll(context.Background(), time.Minute, fmt.Sprintf("%d× %q in the agent log of %s", n, what, node), func(context.Context) (bool, error) {
		return logCount(sim, node, what) >= n, nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// leaseAt builds the pool's slot-0 Lease as held by holder, with times by a clock
// that is lag behind.
func (f *fleet) leaseAt(cur *coordinationv1.Lease, holder string, lag time.Duration) *coordinationv1.Lease {
	l := cur
	if l == nil {
		l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: f.slotName(0), Namespace: f.ns, Labels: map[string]string{labelPool: f.pool}}}
	} else {
		l = l.DeepCopy()
	}
	at := metav1.NewMicroTime(time.Now().Add(-lag))
	seconds := int32(lockTTL / time.Second)
	l.Spec.HolderIdentity = &holder
	l.Spec.LeaseDurationSeconds = &seconds
	if l.Spec.AcquireTime == nil {
		l.Spec.AcquireTime = &at
	}
	l.Spec.RenewTime = &at
	return l
}
