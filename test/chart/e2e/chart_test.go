// Package e2e applies the Helm chart to the test bed: every golden values file through
// `kubectl apply --dry-run=server`, a real `helm install`, and a real agent running
// with exactly the chart's RBAC and admission policy (its pod's bound token) through a
// drain and reboot under the node simulator, and two real summarizers with exactly the summarizer's RBAC
// electing a leader and publishing the node summary. kwok does not run the chart's
// containers (the DaemonSet's and the summarizer Deployment's pods are simulated); the
// API objects must still be accepted and scheduled. It runs only under `make test-e2e` (REBOOTGATE_E2E).
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/chart"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// binary is the rebootgate binary built for this suite.
var binary string

func TestMain(m *testing.M) { os.Exit(testbed.MainWithBinary(m, &binary)) }

type env struct {
	bed               *testbed.Bed
	root, chart, helm string
}

func setup(t *testing.T) env {
	t.Helper()
	root, err := chart.Root()
	if err != nil {
		t.Fatal(err)
	}
	helm, err := chart.BuildHelm(root)
	if err != nil {
		t.Fatal(err)
	}
	return env{bed: testbed.Shared(t), root: root, chart: chart.Dir(root), helm: helm}
}

// run runs a command against the bed and returns its stdout.
func (e env) run(t *testing.T, stdin []byte, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.bed.Kubeconfig)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// monitoringCRDs installs the Prometheus Operator's own ServiceMonitor and
// PrometheusRule CRDs (chart.PrometheusOperator, from the module proxy), so the dry runs
// and the install check the chart's monitoring objects against the operator's schemas.
// They are too large for client-side apply's annotation: server-side apply.
func (e env) monitoringCRDs(t *testing.T) {
	t.Helper()
	crds, err := chart.MonitoringCRDs()
	if err != nil {
		t.Fatal(err)
	}
	e.run(t, crds, "kubectl", "apply", "--server-side", "--force-conflicts", "--field-manager=rebootgate-e2e", "-f", "-")
	// kubectl wait fails, rather than waits, on a CRD the apiserver has not given any
	// condition yet (just applied): ask again until it answers.
	var out []byte
	err = testbed.Poll(context.Background(), time.Minute, "monitoring CRDs established", func(context.Context) (bool, error) {
		cmd := exec.Command("kubectl", "wait", "--for=condition=Established", "--timeout=30s",
			"crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com")
		cmd.Env = append(os.Environ(), "KUBECONFIG="+e.bed.Kubeconfig)
		var err error
		out, err = cmd.CombinedOutput()
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}

// TestMonitoringSchemasEnforced: the CRDs the dry runs use are the operator's, with their
// schemas: a ServiceMonitor whose interval is not a Prometheus duration, and a
// PrometheusRule rule without expr, are refused, while the chart's own are accepted.
func TestMonitoringSchemasEnforced(t *testing.T) {
	e := setup(t)
	e.monitoringCRDs(t)
	ns := e.bed.Namespace(t)
	out, err := chart.Template(e.helm, e.chart, "rg-"+ns, ns, "-f", filepath.Join("..", "testdata", "signal.values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := chart.Split(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		var bad []byte
		var field string
		switch o.Kind {
		case "ServiceMonitor":
			bad, field = bytes.Replace(o.YAML, []byte("interval: 60s"), []byte("interval: one minute"), 1), "spec.endpoints[0].interval"
		case "PrometheusRule":
			bad, field = bytes.Replace(o.YAML, []byte("expr: max by (node) (rebootgate_reboot_required) == 1"), []byte("record: rebootgate:pending"), 1), "expr"
		default:
			continue
		}
		if bytes.Equal(bad, o.YAML) {
			t.Fatalf("%s: the text to break is not in the rendered object:\n%s", o.Kind, o.YAML)
		}
		e.run(t, o.YAML, "kubectl", "apply", "--dry-run=server", "-f", "-")
		cmd := exec.Command("kubectl", "apply", "--dry-run=server", "-f", "-")
		cmd.Env = append(os.Environ(), "KUBECONFIG="+e.bed.Kubeconfig)
		cmd.Stdin = bytes.NewReader(bad)
		res, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(res), field) {
			t.Errorf("a broken %s was not refused on %s (err %v):\n%s", o.Kind, field, err, res)
		}
	}
}

// TestServerDryRun renders every golden values file into a fresh namespace and has the
// apiserver validate and admit each object without persisting it.
func TestServerDryRun(t *testing.T) {
	e := setup(t)
	e.monitoringCRDs(t)
	files, err := filepath.Glob(filepath.Join("..", "testdata", "*.values.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no values files: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".values.yaml")
		t.Run(name, func(t *testing.T) {
			ns := e.bed.Namespace(t)
			// Namespaces the values name must exist for the dry run; use fresh ones.
			extra := []string{"--set", "metrics.namespace=" + ns,
				"--set", fmt.Sprintf("policyNamespaces={%s,%s}", e.bed.Namespace(t), e.bed.Namespace(t))}
			if name != "config" {
				extra = extra[:2]
			}
			out, err := chart.Template(e.helm, e.chart, "rg-"+ns, ns, append([]string{"-f", f}, extra...)...)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := chart.Split(out)
			if err != nil {
				t.Fatal(err)
			}
			res := e.run(t, out, "kubectl", "apply", "--dry-run=server", "-f", "-")
			if got := strings.Count(res, "(server dry run)"); got != len(objs) {
				t.Errorf("server dry run accepted %d objects, rendered %d:\n%s", got, len(objs), res)
			}
			t.Logf("%s: %d objects accepted by the apiserver (dry run)", name, len(objs))
		})
	}
}

// install runs `helm install` of the chart into a fresh namespace and uninstalls it at
// cleanup (the ClusterRole and its binding are cluster-scoped). It returns the namespace,
// the release name and helm's output (with the NOTES).
func (e env) install(t *testing.T, args ...string) (ns, release, out string) {
	t.Helper()
	ns = e.bed.Namespace(t)
	release = "rg-" + ns
	out = e.run(t, nil, e.helm, append([]string{"install", release, e.chart, "--namespace", ns}, args...)...)
	t.Cleanup(func() {
		cmd := exec.Command(e.helm, "uninstall", release, "--namespace", ns, "--wait", "--timeout", "2m")
		cmd.Env = append(os.Environ(), "KUBECONFIG="+e.bed.Kubeconfig)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("helm uninstall %s: %v\n%s", release, err, b)
		}
	})
	return ns, release, out
}

// TestHelmInstall installs the chart for real (signal method, monitoring on, a policy
// from --set-file) and checks every object exists and the DaemonSet controller places a
// pod on each Linux node.
func TestHelmInstall(t *testing.T) {
	e := setup(t)
	e.monitoringCRDs(t)
	ctx := context.Background()
	ns, release, out := e.install(t,
		"-f", filepath.Join("..", "testdata", "signal.values.yaml"),
		"--set-file", "policies.backup="+filepath.Join(e.root, "examples", "backup-job", "backup.rego"))
	if !strings.Contains(out, "STATUS: deployed") || !strings.Contains(out, "Reboot method: signal") {
		t.Errorf("helm install output lacks the status or the NOTES:\n%s", out)
	}
	full := release + "-rebootgate"
	c := e.bed.Client
	if _, err := c.CoreV1().ServiceAccounts(ns).Get(ctx, full, metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
	if _, err := c.RbacV1().ClusterRoles().Get(ctx, full, metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
	if _, err := c.RbacV1().Roles(ns).Get(ctx, full, metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
	cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, full+"-policy-backup", metav1.GetOptions{})
	if err != nil {
		t.Error(err)
	} else if cm.Labels["rebootgate.io/policy"] != "rego" {
		t.Errorf("policy ConfigMap labels %v", cm.Labels)
	}
	dyn, err := dynamic.NewForConfig(e.bed.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range []string{"servicemonitors", "prometheusrules"} {
		gvr := schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: res}
		var u *unstructured.Unstructured
		if u, err = dyn.Resource(gvr).Namespace(ns).Get(ctx, full, metav1.GetOptions{}); err != nil {
			t.Errorf("%s: %v", res, err)
		} else if u.GetLabels()["release"] != "kube-prometheus-stack" {
			t.Errorf("%s labels %v", res, u.GetLabels())
		}
	}
	// The DaemonSet controller schedules a pod on every Linux node (kwok marks them
	// running without running anything).
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/os=linux"})
	if err != nil {
		t.Fatal(err)
	}
	err = testbed.Poll(ctx, 2*time.Minute, "DaemonSet scheduled on every Linux node", func(ctx context.Context) (bool, error) {
		ds, err := c.AppsV1().DaemonSets(ns).Get(ctx, full, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		st := ds.Status
		return st.ObservedGeneration >= ds.Generation && st.DesiredNumberScheduled > 0 &&
			st.CurrentNumberScheduled == st.DesiredNumberScheduled && int(st.DesiredNumberScheduled) <= len(nodes.Items), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: agentPods(release)})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		sc := p.Spec.Containers[0].SecurityContext
		if !p.Spec.HostPID || sc == nil || sc.Privileged == nil || *sc.Privileged || sc.Capabilities == nil || len(sc.Capabilities.Add) != 1 {
			t.Errorf("pod %s: admitted spec lost the signal-mode security context: hostPID=%v %+v", p.Name, p.Spec.HostPID, sc)
		}
	}
	t.Logf("installed %s: DaemonSet pods on %d of %d Linux nodes", release, len(pods.Items), len(nodes.Items))
	checkSummarizerScheduled(ctx, t, c, ns, release)
}

// checkSummarizerScheduled: the summarizer's two replicas are available (kwok runs them
// as simulated pods) on two nodes, admitted non-root without capabilities, and its
// PodDisruptionBudget, computed by the disruption controller, allows one eviction.
func checkSummarizerScheduled(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, release string) {
	t.Helper()
	name := release + "-rebootgate-summarizer"
	err := testbed.Poll(ctx, 2*time.Minute, "summarizer Deployment available", func(ctx context.Context) (bool, error) {
		d, err := c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return d.Status.ObservedGeneration >= d.Generation && d.Status.AvailableReplicas == 2, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=summarizer,app.kubernetes.io/instance=" + release})
	if err != nil {
		t.Fatal(err)
	}
	onNode := map[string]bool{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		onNode[p.Spec.NodeName] = true
		sc := p.Spec.Containers[0].SecurityContext
		if p.Spec.HostPID || sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 {
			t.Errorf("summarizer pod %s: admitted spec lost its hardening: hostPID=%v %+v", p.Name, p.Spec.HostPID, sc)
		}
	}
	if len(onNode) != 2 {
		t.Errorf("summarizer replicas on nodes %v, want two nodes", onNode)
	}
	err = testbed.Poll(ctx, time.Minute, "summarizer PodDisruptionBudget allows one eviction", func(ctx context.Context) (bool, error) {
		pdb, err := c.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return pdb.Status.ObservedGeneration >= pdb.Generation && pdb.Status.ExpectedPods == 2 && pdb.Status.DisruptionsAllowed == 1, nil
	})
	if err != nil {
		t.Error(err)
	}
}

// TestSummarizerDrainOneAtATime checks the summarizer's PodDisruptionBudget and spread
// on two fresh nodes its nodeSelector confines it to (one replica each): with both
// cordoned, a drain's eviction takes one replica and the other is refused (429) while
// the replacement has nowhere to go; once one node is schedulable again the replacement
// joins the other replica there (the cordoned node does not count in the spread), after
// which the other replica can be evicted too.
func TestSummarizerDrainOneAtATime(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	c := e.bed.Client
	id := strings.ToLower(testbed.NewUUID()[:6])
	var nodes []string
	for _, n := range []string{"e2e-summ-a-" + id, "e2e-summ-b-" + id} {
		node := testbed.NewNode(n, "user", "eastus-1")
		node.Labels["e2e-summarizer"] = id
		e.bed.CreateNode(t, node)
		nodes = append(nodes, n)
	}
	ns, release, _ := e.install(t, "--set-string", "summarizer.nodeSelector.e2e-summarizer="+id) // an all-digit id stays a string
	name := release + "-rebootgate-summarizer"
	// replicas waits for the Deployment to have want available replicas and returns its
	// live pods by node.
	replicas := func(what string, want int) map[string][]string {
		t.Helper()
		var byNode map[string][]string
		err := testbed.Poll(ctx, 2*time.Minute, what, func(ctx context.Context) (bool, error) {
			d, err := c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=summarizer"})
			if err != nil {
				return false, err
			}
			byNode = map[string][]string{}
			live := 0
			for _, p := range pods.Items {
				if p.DeletionTimestamp == nil && p.Spec.NodeName != "" {
					byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p.Name)
					live++
				}
			}
			return d.Status.AvailableReplicas == int32(want) && d.Status.UpdatedReplicas == int32(want) && live == want, nil
		})
		if err != nil {
			t.Fatalf("%v (pods by node: %v)", err, byNode)
		}
		return byNode
	}
	cordon := func(node string, on bool) {
		t.Helper()
		patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, on)
		if _, err := c.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitBudget := func(allowed int32) {
		t.Helper()
		err := testbed.Poll(ctx, time.Minute, fmt.Sprintf("the budget allowing %d eviction(s)", allowed), func(ctx context.Context) (bool, error) {
			pdb, err := c.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			return pdb.Status.ObservedGeneration >= pdb.Generation && pdb.Status.DisruptionsAllowed == allowed, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	byNode := replicas("one summarizer replica on each fresh node", 2)
	if len(byNode[nodes[0]]) != 1 || len(byNode[nodes[1]]) != 1 {
		t.Fatalf("replicas by node %v, want one on each of %v", byNode, nodes)
	}
	waitBudget(1)
	cordon(nodes[0], true)
	cordon(nodes[1], true)
	if err := e.bed.Evict(ctx, ns, byNode[nodes[0]][0]); err != nil {
		t.Fatalf("the first eviction: %v", err)
	}
	err := e.bed.Evict(ctx, ns, byNode[nodes[1]][0])
	if !apierrors.IsTooManyRequests(err) {
		t.Fatalf("the second eviction while the replacement has no node: %v, want 429 (the budget)", err)
	}
	cordon(nodes[1], false)
	byNode = replicas("the replacement beside the other replica", 2)
	if len(byNode[nodes[1]]) != 2 {
		t.Fatalf("replicas by node %v, want both on %s (the cordoned %s left out of the spread)", byNode, nodes[1], nodes[0])
	}
	waitBudget(1)
	if err := e.bed.Evict(ctx, ns, byNode[nodes[1]][0]); err != nil {
		t.Errorf("an eviction once the replacement is Ready: %v", err)
	}
}

// TestSummarizerRBACIsEnough runs two real summarizers as the chart's summarizer
// ServiceAccount (a token, so exactly its RBAC), with medik8s' Leases granted either way
// (summarizerMedik8sLeaseAccess cluster and namespace): one is elected and publishes a
// summary without errors that counts a medik8s maintenance Lease; stopped, it hands the
// lead over and the other takes the summary over. Leader election (Lease create, get,
// update), the summary's create, get and update, and the Lease watch all pass.
func TestSummarizerRBACIsEnough(t *testing.T) {
	e := setup(t)
	for _, access := range []string{"cluster", "namespace"} {
		t.Run(access, func(t *testing.T) {
			ctx := context.Background()
			c := e.bed.Client
			medik8s := e.bed.Namespace(t)
			ns, release, _ := e.install(t, "--set", "summarizer.medik8sNamespace="+medik8s, "--set", "summarizer.medik8sLeaseAccess="+access)
			kubeconfig, err := e.bed.ServiceAccountKubeconfig(ctx, ns, release+"-rebootgate-summarizer", t.TempDir(), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if err != nil || len(nodes.Items) == 0 {
				t.Fatalf("nodes: %v (%d)", err, len(nodes.Items))
			}
			held := nodes.Items[0].Name
			holder, secs, now := "medik8s-e2e", int32(3600), metav1.NewMicroTime(time.Now())
			if _, err := c.CoordinationV1().Leases(medik8s).Create(ctx, &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: "node-" + held},
				Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now},
			}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}

			replicas := map[string]*exec.Cmd{}
			logs := map[string]string{}
			for _, id := range []string{"summarizer-a", "summarizer-b"} {
				logs[id] = filepath.Join(t.TempDir(), id+".log")
				f, err := os.Create(logs[id])
				if err != nil {
					t.Fatal(err)
				}
				cmd := exec.Command(binary, "summarizer", "--kubeconfig", kubeconfig, "--namespace", ns,
					"--identity", id, "--medik8s-namespace", medik8s, "--log-level", "debug")
				cmd.Stdout, cmd.Stderr = f, f
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				replicas[id] = cmd
				t.Cleanup(func() {
					_ = cmd.Process.Signal(syscall.SIGTERM)
					_ = cmd.Wait()
					f.Close()
					data, _ := os.ReadFile(logs[id])
					if t.Failed() {
						t.Logf("--- %s log ---\n%s", id, tail(string(data), 4096))
					}
				})
			}
			published := func(what string, ok func(s *disruption.Summary) bool) *disruption.Summary {
				t.Helper()
				var last *disruption.Summary
				err := testbed.Poll(ctx, time.Minute, what, func(ctx context.Context) (bool, error) {
					s, err := readSummary(ctx, c, ns)
					if err != nil {
						return false, nil // not written yet
					}
					last = s
					return ok(s), nil
				})
				if err != nil {
					t.Fatalf("%v; last summary %+v", err, last)
				}
				return last
			}
			first := published("a summary without errors counting the medik8s Lease", func(s *disruption.Summary) bool {
				return s.Writer != "" && len(s.Errors) == 0 && s.Cluster.Nodes == len(nodes.Items) && s.Cluster.Maintenance >= 1
			})
			leader := first.Writer
			lease, err := c.CoordinationV1().Leases(ns).Get(ctx, "rebootgate-summarizer", metav1.GetOptions{})
			if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != leader {
				t.Fatalf("leader Lease %+v (%v), want held by the writer %s", lease, err, leader)
			}
			other := "summarizer-a"
			if leader == other {
				other = "summarizer-b"
			}
			if err := replicas[leader].Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			published("the other replica leads and writes", func(s *disruption.Summary) bool {
				return s.Writer == other && len(s.Errors) == 0
			})
			for id, path := range logs {
				data, _ := os.ReadFile(path)
				if bytes.Contains(bytes.ToLower(data), []byte("forbidden")) {
					t.Errorf("%s hit a missing permission:\n%s", id, tail(string(data), 4096))
				}
			}
		})
	}
}

// TestChartRBACIsEnough runs a real agent as the chart's ServiceAccount (its pod's bound
// token, so exactly the chart's RBAC and admission policy) on a fresh simulated node and reboots it: slot Lease, node
// patches and condition, cordon, a drain that evicts a Deployment's pod and looks up the
// DaemonSet of the chart's own pod on that node, events, and the policy ConfigMap's status
// annotation. Any missing permission shows up as a Forbidden in the agent's log or a
// reboot that never happens.
func TestChartRBACIsEnough(t *testing.T) {
	e := setup(t)
	sc := e.rebootScenario(t, nil)
	ctx := context.Background()
	c := e.bed.Client
	if _, err := sc.sim.WaitForReboots(ctx, 1, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := e.bed.WaitNode(ctx, sc.node, 2*time.Minute, "uncordoned and idle after the reboot", func(n *corev1.Node) bool {
		return !n.Spec.Unschedulable && n.Annotations[nodestate.AnnotationPhase] == ""
	}); err != nil {
		t.Fatal(err)
	}
	// The workload pod was evicted (its replacement has another name).
	if _, err := c.CoreV1().Pods(sc.ns).Get(ctx, sc.webPod, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod %s still exists after the drain (err %v)", sc.webPod, err)
	}
	// The agent reports its policies' load status on its own Node (nodes/status patch);
	// it writes no ConfigMap.
	err := testbed.Poll(ctx, time.Minute, "the RebootPolicyLoaded condition True", func(ctx context.Context) (bool, error) {
		n, err := c.CoreV1().Nodes().Get(ctx, sc.node, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == nodestate.ConditionPolicyLoaded {
				return cond.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Error(err)
	}
	// Events about the node were recorded (events create).
	evs, err := c.CoreV1().Events(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + sc.node + ",reason=Rebooted"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs.Items) == 0 {
		t.Error("no Rebooted event on the node")
	}
	if err := sc.sim.Err(); err != nil {
		t.Error(err)
	}
	log := sc.log(t)
	for _, want := range []string{"ignoring DaemonSet-managed Pods", "evicting pod " + sc.ns + "/" + sc.webPod} {
		if !bytes.Contains(log, []byte(want)) {
			t.Errorf("agent log lacks %q: the drain did not meet both kinds of pod", want)
		}
	}
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(strings.ToLower(line), "forbidden") {
			t.Errorf("agent hit a missing permission: %s", line)
		}
	}
}

// TestDrainNeedsDaemonSetGet is the control for the least obvious rule: without apps
// daemonsets get, kubectl's drain cannot look up the DaemonSet of the chart's own pod on
// the node, the drain fails, and the node is not rebooted. The rule goes once the agent
// runs: at start-up, its RBAC check would refuse to start without it.
func TestDrainNeedsDaemonSetGet(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	sc := e.rebootScenario(t, func(ctx context.Context, role, kubeconfig string) {
		cr, err := e.bed.Client.RbacV1().ClusterRoles().Get(ctx, role, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		kept := cr.Rules[:0]
		for _, r := range cr.Rules {
			if !slices.Contains(r.Resources, "daemonsets") {
				kept = append(kept, r)
			}
		}
		cr.Rules = kept
		if _, err := e.bed.Client.RbacV1().ClusterRoles().Update(ctx, cr, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		denied := authorizationv1.ResourceAttributes{Verb: "get", Group: "apps", Resource: "daemonsets"}
		if err := testbed.WaitAccess(ctx, kubeconfig, denied, false, time.Minute); err != nil {
			t.Fatal(err)
		}
	}, "--drain-attempts", "1")
	err := testbed.Poll(ctx, 2*time.Minute, "drain failed and given up", func(ctx context.Context) (bool, error) {
		n, err := e.bed.Client.CoreV1().Nodes().Get(ctx, sc.node, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return !n.Spec.Unschedulable && n.Annotations[nodestate.AnnotationPhase] == "" && bytes.Contains(sc.log(t), []byte("DrainFailed")), nil
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, tail(string(sc.log(t)), 4096))
	}
	if n := len(sc.sim.Reboots()); n != 0 {
		t.Errorf("%d reboots without daemonsets get, want 0", n)
	}
	if log := sc.log(t); !bytes.Contains(log, []byte("daemonsets.apps")) || !bytes.Contains(bytes.ToLower(log), []byte("forbidden")) {
		t.Errorf("agent log has no Forbidden on daemonsets.apps:\n%s", tail(string(log), 4096))
	}
}

// scenario is one chart install with a real agent on one fresh node.
type scenario struct {
	ns, full, node, webPod string
	sim                    *testbed.Simulator
}

func (sc *scenario) log(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(sc.sim.LogPath(sc.node))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rebootScenario installs the chart, creates a fresh node carrying the chart's DaemonSet
// pod and a Deployment's pod, starts a real agent on the node as the chart's
// ServiceAccount, lets mutate change the ClusterRole once the agent has started (past its
// start-up RBAC check), and marks the node reboot-required.
func (e env) rebootScenario(t *testing.T, mutate func(ctx context.Context, clusterRole, kubeconfig string), extraArgs ...string) *scenario {
	t.Helper()
	ctx := context.Background()
	// Only this test's node is in the pool, so nothing else on the bed is touched.
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte("config:\n  pools:\n  - name: chart\n    selector: 'node.labels[?\"e2e-chart\"].hasValue()'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ns, release, _ := e.install(t, "-f", values,
		"--set-file", "policies.backup="+filepath.Join(e.root, "examples", "backup-job", "backup.rego"))
	sc := &scenario{ns: ns, full: release + "-rebootgate", node: "e2e-chart-" + strings.ToLower(testbed.NewUUID()[:6])}
	c := e.bed.Client

	n := testbed.NewNode(sc.node, "user", "eastus-1")
	n.Labels["e2e-chart"] = "true"
	e.bed.CreateNode(t, n)

	// The chart's DaemonSet pod on the node: the drain must skip it, which needs the
	// DaemonSet get permission. (A summarizer replica may land there too: the drain
	// evicts it like any Deployment's pod.)
	var agentPod corev1.Pod
	err := testbed.Poll(ctx, time.Minute, "chart's DaemonSet pod running on "+sc.node, func(ctx context.Context) (bool, error) {
		pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + sc.node, LabelSelector: agentPods(release)})
		if err != nil || len(pods.Items) != 1 {
			return false, err
		}
		agentPod = pods.Items[0]
		return testbed.PodRunning(&agentPod), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A workload pod on the node that the drain evicts (pods/eviction, then pods get
	// while waiting for it to go).
	labels := map[string]string{"app": "web"}
	if _, err := c.AppsV1().Deployments(ns).Create(ctx, testbed.NewDeployment(ns, "web", 1, labels, sc.node), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	web, err := e.bed.WaitPodsRunning(ctx, ns, "app=web", 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sc.webPod = web[0].Name

	// The agent authenticates with its pod's token, as the kubelet projects it (bound to
	// the pod, so it names the node): the chart's RBAC and admission policy only.
	kubeconfig, err := e.bed.PodTokenKubeconfig(ctx, &agentPod, t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, sc.full+"-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cm.Data["config.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	sc.sim = e.bed.StartSimulator(t, testbed.SimConfig{
		Nodes: []string{sc.node},
		Command: append([]string{binary, "agent",
			"--node-id", testbed.PhNode,
			"--namespace", ns,
			"--kubeconfig", kubeconfig,
			"--config", cfgPath,
			"--reboot-sentinel", testbed.PhSentinel,
			"--reboot-command", testbed.PhRebootHook,
			"--nsenter=false",
			"--metrics-port", "0",
			"--lock-ttl", "30s",
			"--lock-jitter", "100ms",
			"--recheck-interval", "2s",
			"--sentinel-period", "2s",
			"--reboot-timeout", "20s",
			"--ready-timeout", "1m",
			"--drain-timeout", "30s",
			"--drain-retry-delay", "1s",
			"--log-level", "debug",
		}, extraArgs...),
		RebootDelay: time.Second,
		FlipReady:   true,
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- agent log (last 6 KiB) ---\n%s", tail(string(sc.log(t)), 6144))
		}
	})
	if mutate != nil {
		err := testbed.Poll(ctx, time.Minute, "the agent started", func(context.Context) (bool, error) {
			return bytes.Contains(sc.log(t), []byte("agent started")), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		mutate(ctx, sc.full, kubeconfig)
	}
	if err := sc.sim.SetRebootRequired(sc.node, true); err != nil {
		t.Fatal(err)
	}
	return sc
}

// agentPods selects the chart's DaemonSet pods of a release (its selector labels),
// not the summarizer's.
func agentPods(release string) string {
	return "app.kubernetes.io/name=rebootgate,app.kubernetes.io/instance=" + release
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
