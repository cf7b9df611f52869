// Package security proves on the test bed's real kube-apiserver what a node's agent
// token may do once the chart is installed: the chart's ServiceAccount, RBAC and
// ValidatingAdmissionPolicy, rendered by `helm template` and applied, with the chart's
// DaemonSet placing a pod on each of the test's simulated nodes. Each agent
// authenticates with a token bound to its node's pod (a TokenRequest whose
// boundObjectRef is the Pod, as the kubelet's projected token is), which the API server
// stamps with the pod's node. The oracle of the rolling reboot is the node simulator's
// record of when each host was down, not rebootgate's annotations.
//
// It runs only under `make test-e2e` (REBOOTGATE_E2E set); it builds helm as `make
// test-chart` does when _output/bin/helm is missing.
package security

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/rebootgate/rebootgate/engine/lock"
	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/chart"
	"github.com/rebootgate/rebootgate/test/testbed"
)

var binary string

func TestMain(m *testing.M) { os.Exit(testbed.MainWithBinary(m, &binary)) }

// nodeClaim is the user extra key a Pod-bound token carries its node in.
const nodeClaim = "authentication.kubernetes.io/node-name"

// install is the chart applied to a fresh namespace, with its DaemonSet on the test's
// own nodes only, which one pool selects.
type install struct {
	t                 *testing.T
	bed               *testbed.Bed
	ns, id, pool      string
	serviceAccount    string // the agent's
	policy            string // the ValidatingAdmissionPolicy's name
	config            string // the rendered config.yaml, written to a file
	nodes             []string
	pods              map[string]*corev1.Pod // the chart's DaemonSet pod on each node
	clusterScopedYAML []byte                 // what the namespace's deletion does not remove
}

// newInstall creates n simulated nodes, renders the chart (summarizer off, the
// DaemonSet and one pool of concurrency 1 on these nodes), applies it, and waits for
// the DaemonSet's pod on each node.
func newInstall(t *testing.T, n int) *install {
	t.Helper()
	ctx := context.Background()
	bed := testbed.Shared(t)
	in := &install{t: t, bed: bed, ns: bed.Namespace(t), id: strings.ToLower(testbed.NewUUID()[:6]), pool: "sec", pods: map[string]*corev1.Pod{}}
	for i := range n {
		node := testbed.NewNode(fmt.Sprintf("sec-%s-%c", in.id, 'a'+i), "user", "eastus-1")
		node.Labels["e2e-security"] = in.id
		bed.CreateNode(t, node)
		in.nodes = append(in.nodes, node.Name)
	}

	root, err := chart.Root()
	if err != nil {
		t.Fatal(err)
	}
	helm, err := chart.BuildHelm(root)
	if err != nil {
		t.Fatal(err)
	}
	values := filepath.Join(t.TempDir(), "values.yaml")
	doc := fmt.Sprintf(`summarizer:
  enabled: false
nodeSelector:
  e2e-security: %q
config:
  pools:
  - name: %s
    concurrency: 1
    selector: 'node.labels[?"e2e-security"] == optional.of("%s")'
`, in.id, in.pool, in.id)
	if err := os.WriteFile(values, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := chart.Template(helm, chart.Dir(root), "rg-"+in.ns, in.ns, "-f", values)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := chart.Split(out)
	if err != nil {
		t.Fatal(err)
	}
	var all, clusterScoped bytes.Buffer
	for _, o := range objs {
		fmt.Fprintf(&all, "---\n%s", o.YAML)
		switch o.Kind {
		case "ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
			fmt.Fprintf(&clusterScoped, "---\n%s", o.YAML)
			if o.Kind == "ValidatingAdmissionPolicy" {
				in.policy = o.Name
			}
		case "DaemonSet":
			var ds struct {
				Spec struct {
					Template struct {
						Spec corev1.PodSpec `json:"spec"`
					} `json:"template"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal(o.YAML, &ds); err != nil {
				t.Fatal(err)
			}
			in.serviceAccount = ds.Spec.Template.Spec.ServiceAccountName
		case "ConfigMap":
			var cm corev1.ConfigMap
			if err := yaml.Unmarshal(o.YAML, &cm); err != nil {
				t.Fatal(err)
			}
			if c, ok := cm.Data["config.yaml"]; ok {
				in.config = filepath.Join(t.TempDir(), "config.yaml")
				if err := os.WriteFile(in.config, []byte(c), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if in.serviceAccount == "" || in.policy == "" || in.config == "" {
		t.Fatalf("rendered chart: ServiceAccount %q, ValidatingAdmissionPolicy %q, config %q: want all three", in.serviceAccount, in.policy, in.config)
	}
	in.clusterScopedYAML = clusterScoped.Bytes()
	t.Cleanup(func() {
		if _, err := in.kubectl(in.clusterScopedYAML, "delete", "--ignore-not-found", "-f", "-"); err != nil {
			t.Errorf("deleting the chart's cluster-scoped objects: %v", err)
		}
	})
	if out, err := in.kubectl(all.Bytes(), "apply", "-n", in.ns, "-f", "-"); err != nil {
		t.Fatalf("applying the chart: %v\n%s", err, out)
	}

	err = testbed.Poll(ctx, 2*time.Minute, "the chart's DaemonSet pod running on each test node", func(ctx context.Context) (bool, error) {
		pods, err := bed.Client.CoreV1().Pods(in.ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=rebootgate"})
		if err != nil {
			return false, err
		}
		for i := range pods.Items {
			if p := &pods.Items[i]; testbed.PodRunning(p) && slices.Contains(in.nodes, p.Spec.NodeName) {
				in.pods[p.Spec.NodeName] = p
			}
		}
		return len(in.pods) == len(in.nodes), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func (in *install) kubectl(stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", in.bed.Kubeconfig}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	return cmd.CombinedOutput()
}

// agentUser is the agent ServiceAccount's user name.
func (in *install) agentUser() string {
	return "system:serviceaccount:" + in.ns + ":" + in.serviceAccount
}

// podKubeconfig writes a kubeconfig with a token bound to node's agent pod, to dir.
func (in *install) podKubeconfig(node, dir string) string {
	in.t.Helper()
	path, err := in.bed.PodTokenKubeconfig(context.Background(), in.pods[node], dir, time.Hour)
	if err != nil {
		in.t.Fatal(err)
	}
	return path
}

func client(t *testing.T, kubeconfig string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// whoAmI is the user the API server sees for c's token (a SelfSubjectReview).
func whoAmI(t *testing.T, c kubernetes.Interface) authenticationv1.UserInfo {
	t.Helper()
	r, err := c.AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Status.UserInfo
}

// patchNode applies a merge patch to node (its status with status set), as c.
func patchNode(ctx context.Context, c kubernetes.Interface, node, patch string, status, dryRun bool) error {
	opts := metav1.PatchOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	var sub []string
	if status {
		sub = []string{"status"}
	}
	_, err := c.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(patch), opts, sub...)
	return err
}

// waitPolicyInForce waits until agent a's dry-run annotation of node b is refused by
// the policy: a new policy takes a moment to reach the API server's admission.
func (in *install) waitPolicyInForce(a kubernetes.Interface, b string) {
	in.t.Helper()
	var last error
	err := testbed.Poll(context.Background(), time.Minute, "the admission policy in force", func(ctx context.Context) (bool, error) {
		last = patchNode(ctx, a, b, `{"metadata":{"annotations":{"e2e.rebootgate.io/canary":"1"}}}`, false, true)
		return last != nil && strings.Contains(last.Error(), in.policy), nil
	})
	if err != nil {
		in.t.Fatalf("%v (last answer: %v)", err, last)
	}
}

// refusal is one request an agent token must not get through, and the reason the
// policy gives when RBAC lets it reach admission.
type refusal struct {
	what  string
	attrs authorizationv1.ResourceAttributes // as RBAC sees the request
	do    func(ctx context.Context) error
	// policyReason is part of the policy's message.
	policyReason string
}

// expectRefused checks that r is refused as c for the right reason: if RBAC (as
// applied from the chart, asked with a SelfSubjectAccessReview) grants the request,
// the admission policy must refuse it with its reason; otherwise RBAC refuses it.
func (in *install) expectRefused(t *testing.T, c kubernetes.Interface, r refusal) {
	t.Helper()
	ctx := context.Background()
	sar, err := c.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &r.attrs},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = r.do(ctx)
	switch {
	case err == nil:
		t.Errorf("%s: allowed, want refused", r.what)
	case !apierrors.IsForbidden(err):
		t.Errorf("%s: %v, want Forbidden", r.what, err)
	case sar.Status.Allowed:
		if want := "ValidatingAdmissionPolicy '" + in.policy + "'"; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), r.policyReason) {
			t.Errorf("%s: RBAC grants it, refused with %q; want the policy's reason %q", r.what, err, r.policyReason)
		} else {
			t.Logf("%s: refused by the admission policy: %v", r.what, err)
		}
	default:
		if want := "cannot " + r.attrs.Verb + " resource"; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), in.agentUser()) {
			t.Errorf("%s: RBAC denies it, refused with %q; want RBAC's %q for %s", r.what, err, want, in.agentUser())
		} else {
			t.Logf("%s: refused by RBAC: %v", r.what, err)
		}
	}
}

// TestAgentTokenActsOnlyOnItsNode: with the chart's RBAC and admission policy in force,
// agent A (its pod's bound token, which names node A) cordons and annotates node A and
// writes its status, and one of rebootgate's Leases; it is refused on node B (object and
// status), on a Lease named kube-scheduler in kube-system and in rebootgate's namespace,
// on an unlabelled Lease, and on ConfigMaps (patch, create, in rebootgate's namespace and
// in kube-system), each for RBAC's or the policy's reason; and the ServiceAccount's
// token without the pod binding (a plain TokenRequest) is refused even on node A, the
// policy saying it has no node claim.
func TestAgentTokenActsOnlyOnItsNode(t *testing.T) {
	in := newInstall(t, 2)
	ctx := context.Background()
	a, b := in.nodes[0], in.nodes[1]
	agentA := client(t, in.podKubeconfig(a, t.TempDir()))

	who := whoAmI(t, agentA)
	if who.Username != in.agentUser() || !slices.Equal(who.Extra[nodeClaim], authenticationv1.ExtraValue{a}) {
		t.Fatalf("the pod-bound token of %s authenticates as %s with %s=%v; want %s with %s=[%s]",
			a, who.Username, nodeClaim, who.Extra[nodeClaim], in.agentUser(), nodeClaim, a)
	}
	in.waitPolicyInForce(agentA, b)

	// Its own node: cordon, annotate, a condition in its status.
	for _, p := range []struct {
		patch  string
		status bool
	}{
		{`{"spec":{"unschedulable":true}}`, false},
		{`{"metadata":{"annotations":{"e2e.rebootgate.io/by":"agent-a"}}}`, false},
		{`{"status":{"conditions":[{"type":"E2ESecurity","status":"True","reason":"Test","message":"written by agent A"}]}}`, true},
	} {
		if err := patchNode(ctx, agentA, a, p.patch, p.status, false); err != nil {
			t.Errorf("agent A on its own node (%s): %v", p.patch, err)
		}
	}
	if n, err := in.bed.Client.CoreV1().Nodes().Get(ctx, a, metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	} else if !n.Spec.Unschedulable || n.Annotations["e2e.rebootgate.io/by"] != "agent-a" {
		t.Errorf("node A after agent A's patches: unschedulable=%v annotations=%v", n.Spec.Unschedulable, n.Annotations)
	}
	// One of rebootgate's Leases, named and labelled as engine/lock makes them.
	slot := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: lock.SlotLeaseName(in.pool, 7), Labels: map[string]string{lock.LabelPool: in.pool}}}
	if _, err := agentA.CoordinationV1().Leases(in.ns).Create(ctx, slot, metav1.CreateOptions{}); err != nil {
		t.Errorf("agent A creating rebootgate's Lease %s: %v", slot.Name, err)
	} else if err := agentA.CoordinationV1().Leases(in.ns).Delete(ctx, slot.Name, metav1.DeleteOptions{}); err != nil {
		t.Errorf("agent A deleting rebootgate's Lease %s: %v", slot.Name, err)
	}

	lease := func(ns, name string, labels map[string]string) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}}
	}
	leaseAttrs := func(verb, ns, name string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Verb: verb, Group: "coordination.k8s.io", Resource: "leases", Namespace: ns, Name: name}
	}
	nodeAttrs := func(sub string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Verb: "patch", Resource: "nodes", Subresource: sub, Name: b}
	}
	cmAttrs := func(verb, ns, name string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Verb: verb, Resource: "configmaps", Namespace: ns, Name: name}
	}
	cmPatch := []byte(`{"data":{"concurrency":"100%"}}`)
	for _, r := range []refusal{
		{"cordon node B", nodeAttrs(""), func(ctx context.Context) error {
			return patchNode(ctx, agentA, b, `{"spec":{"unschedulable":true}}`, false, false)
		}, "may change only its own Node"},
		{"annotate node B", nodeAttrs(""), func(ctx context.Context) error {
			return patchNode(ctx, agentA, b, `{"metadata":{"annotations":{"e2e.rebootgate.io/by":"agent-a"}}}`, false, false)
		}, "may change only its own Node"},
		{"patch node B's status", nodeAttrs("status"), func(ctx context.Context) error {
			return patchNode(ctx, agentA, b, `{"status":{"conditions":[{"type":"E2ESecurity","status":"True"}]}}`, true, false)
		}, "may change only its own Node"},
		{"create Lease kube-system/kube-scheduler", leaseAttrs("create", "kube-system", ""), func(ctx context.Context) error {
			_, err := agentA.CoordinationV1().Leases("kube-system").Create(ctx, lease("kube-system", "kube-scheduler", nil), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}, "writes only rebootgate's Leases"},
		{"update Lease kube-system/kube-scheduler", leaseAttrs("update", "kube-system", "kube-scheduler"), func(ctx context.Context) error {
			_, err := agentA.CoordinationV1().Leases("kube-system").Update(ctx, lease("kube-system", "kube-scheduler", nil), metav1.UpdateOptions{})
			return err
		}, "writes only rebootgate's Leases"},
		{"delete Lease kube-system/kube-scheduler", leaseAttrs("delete", "kube-system", "kube-scheduler"), func(ctx context.Context) error {
			return agentA.CoordinationV1().Leases("kube-system").Delete(ctx, "kube-scheduler", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		}, "writes only rebootgate's Leases"},
		{"create Lease kube-scheduler in rebootgate's namespace", leaseAttrs("create", in.ns, ""), func(ctx context.Context) error {
			_, err := agentA.CoordinationV1().Leases(in.ns).Create(ctx, lease(in.ns, "kube-scheduler", nil), metav1.CreateOptions{})
			return err
		}, "writes only rebootgate's Leases"},
		{"create an unlabelled rebootgate-named Lease", leaseAttrs("create", in.ns, ""), func(ctx context.Context) error {
			_, err := agentA.CoordinationV1().Leases(in.ns).Create(ctx, lease(in.ns, lock.SlotLeaseName(in.pool, 8), nil), metav1.CreateOptions{})
			return err
		}, "writes only rebootgate's Leases"},
		{"patch the config ConfigMap", cmAttrs("patch", in.ns, "rg-"+in.ns+"-rebootgate-config"), func(ctx context.Context) error {
			_, err := agentA.CoreV1().ConfigMaps(in.ns).Patch(ctx, "rg-"+in.ns+"-rebootgate-config", types.MergePatchType, cmPatch, metav1.PatchOptions{})
			return err
		}, "writes only its own Node"},
		{"patch the node summary ConfigMap", cmAttrs("patch", in.ns, "rebootgate-node-summary"), func(ctx context.Context) error {
			_, err := agentA.CoreV1().ConfigMaps(in.ns).Patch(ctx, "rebootgate-node-summary", types.MergePatchType, cmPatch, metav1.PatchOptions{})
			return err
		}, "writes only its own Node"},
		{"create a ConfigMap", cmAttrs("create", in.ns, ""), func(ctx context.Context) error {
			_, err := agentA.CoreV1().ConfigMaps(in.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "rebootgate-node-summary"}}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}, "writes only its own Node"},
		{"patch ConfigMap kube-system/kube-root-ca.crt", cmAttrs("patch", "kube-system", "kube-root-ca.crt"), func(ctx context.Context) error {
			_, err := agentA.CoreV1().ConfigMaps("kube-system").Patch(ctx, "kube-root-ca.crt", types.MergePatchType, cmPatch, metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}, "writes only its own Node"},
	} {
		in.expectRefused(t, agentA, r)
	}
	if n, err := in.bed.Client.CoreV1().Nodes().Get(ctx, b, metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	} else if n.Spec.Unschedulable || n.Annotations["e2e.rebootgate.io/by"] != "" {
		t.Errorf("node B changed by agent A: unschedulable=%v annotations=%v", n.Spec.Unschedulable, n.Annotations)
	}

	// The same ServiceAccount's token without the pod binding: no node claim, no write.
	plain, err := in.bed.ServiceAccountKubeconfig(ctx, in.ns, in.serviceAccount, t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	unbound := client(t, plain)
	if who := whoAmI(t, unbound); who.Username != in.agentUser() || len(who.Extra[nodeClaim]) != 0 {
		t.Fatalf("the plain token authenticates as %s with %s=%v; want %s without a node claim", who.Username, nodeClaim, who.Extra[nodeClaim], in.agentUser())
	}
	in.expectRefused(t, unbound, refusal{"annotate node A with a token not bound to a pod",
		authorizationv1.ResourceAttributes{Verb: "patch", Resource: "nodes", Name: a},
		func(ctx context.Context) error {
			return patchNode(ctx, unbound, a, `{"metadata":{"annotations":{"e2e.rebootgate.io/by":"unbound"}}}`, false, false)
		}, "carries no node claim"})
}

// TestRollingRebootWithPodBoundTokens: a full rolling reboot of four nodes (one pool of
// concurrency 1) with every agent process authenticating with its own pod's bound token
// and the chart's admission policy in force. The simulator's record shows every node
// rebooted with never two hosts down at once, every node ends uncordoned, and no agent
// met a refusal from the policy.
func TestRollingRebootWithPodBoundTokens(t *testing.T) {
	in := newInstall(t, 4)
	ctx := context.Background()
	probe := client(t, in.podKubeconfig(in.nodes[0], t.TempDir()))
	in.waitPolicyInForce(probe, in.nodes[1])

	// One kubeconfig per node, each with the token bound to that node's agent pod.
	kubeconfigs := t.TempDir()
	for _, node := range in.nodes {
		if err := os.Rename(in.podKubeconfig(node, kubeconfigs), filepath.Join(kubeconfigs, node)); err != nil {
			t.Fatal(err)
		}
	}
	sim := in.bed.StartSimulator(t, testbed.SimConfig{
		Command: []string{
			binary, "agent",
			"--node-id", testbed.PhNode, "--namespace", in.ns, "--kubeconfig", filepath.Join(kubeconfigs, testbed.PhNode),
			"--config", in.config, "--reboot-sentinel", testbed.PhSentinel, "--reboot-command", testbed.PhRebootHook,
			"--nsenter=false", "--metrics-host", "127.0.0.1", "--metrics-port", testbed.PhPort,
			"--lock-ttl", "30s", "--lock-jitter", "100ms", "--recheck-interval", "2s", "--sentinel-period", "1s",
			"--reboot-timeout", "20s", "--ready-timeout", "1m", "--drain-timeout", "30s", "--drain-retry-delay", "1s",
			"--log-level", "debug",
		},
		Nodes: in.nodes, RebootDelay: 2 * time.Second, FlipReady: true,
	})
	t.Cleanup(func() {
		if t.Failed() {
			for _, node := range in.nodes {
				if data, err := os.ReadFile(sim.LogPath(node)); err == nil {
					t.Logf("--- agent log of %s (last 3 KiB) ---\n%s", node, tail(string(data), 3072))
				}
			}
		}
	})
	for _, node := range in.nodes {
		if err := sim.SetRebootRequired(node, true); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sim.WaitForReboots(ctx, len(in.nodes), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, node := range in.nodes {
		if _, err := in.bed.WaitNode(ctx, node, 2*time.Minute, "uncordoned and idle after its reboot", func(n *corev1.Node) bool {
			return !n.Spec.Unschedulable && n.Annotations[nodestate.AnnotationPhase] == ""
		}); err != nil {
			t.Error(err)
		}
	}
	downs := sim.DownIntervals()
	rebooted := map[string]int{}
	for _, d := range downs {
		rebooted[d.Node]++
		if d.To.IsZero() {
			t.Errorf("%s went down at %s and is not recorded back", d.Node, d.From.Format(time.RFC3339Nano))
		}
	}
	for _, node := range in.nodes {
		if rebooted[node] != 1 {
			t.Errorf("%s went down %d times, want once", node, rebooted[node])
		}
	}
	if most, which := testbed.MostDown(downs); most > 1 {
		t.Errorf("%d hosts down at once (%v), the pool's concurrency is 1", most, which)
	}
	if err := sim.Err(); err != nil {
		t.Error(err)
	}
	for _, node := range in.nodes {
		data, err := os.ReadFile(sim.LogPath(node))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, "ValidatingAdmissionPolicy") || strings.Contains(strings.ToLower(line), "forbidden") {
				t.Errorf("agent of %s was refused: %s", node, line)
			}
		}
	}
	// Still in force at the end: the agents did not get through because it was gone.
	in.waitPolicyInForce(probe, in.nodes[1])
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
