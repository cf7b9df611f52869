package cli

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"

	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/summary"
	"github.com/rebootgate/rebootgate/test/chart"
)

// dropinTarget is the agent of examples/kured-dropin/daemonset.yaml on node n1, with
// --kured-lock, so every permission of the list is checked: its namespace is rebootgate's
// own, kured's DaemonSet is in kube-system.
var dropinTarget = accessTarget{node: "n1", namespace: defaultNamespace, dsNamespace: "kube-system", dsName: "kured", kuredLock: true}

// reviewer answers SelfSubjectRulesReviews (with one rule per check in the namespace
// asked, and per cluster-wide check, unless deny says otherwise; incomplete if asked) and
// SelfSubjectAccessReviews (allowed unless deny says otherwise).
func reviewer(checks []accessCheck, incomplete bool, deny func(authorizationv1.ResourceAttributes) bool) *fake.Clientset {
	client := fake.NewClientset()
	client.PrependReactor("create", "selfsubjectrulesreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		review := action.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectRulesReview).DeepCopy()
		review.Status.Incomplete = incomplete
		for _, c := range checks {
			if deny(c.ResourceAttributes) || (c.Namespace != "" && c.Namespace != review.Spec.Namespace) {
				continue
			}
			res := c.Resource
			if c.Subresource != "" {
				res += "/" + c.Subresource
			}
			rule := authorizationv1.ResourceRule{Verbs: []string{c.Verb}, APIGroups: []string{c.Group}, Resources: []string{res}}
			if c.Name != "" {
				rule.ResourceNames = []string{c.Name}
			}
			review.Status.ResourceRules = append(review.Status.ResourceRules, rule)
		}
		return true, review, nil
	})
	client.PrependReactor("create", "selfsubjectaccessreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		review := action.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview).DeepCopy()
		review.Status.Allowed = !deny(*review.Spec.ResourceAttributes)
		return true, review, nil
	})
	return client
}

func reviews(client *fake.Clientset, resource string) int {
	n := 0
	for _, a := range client.Actions() {
		if a.GetResource().Resource == resource {
			n++
		}
	}
	return n
}

// TestRBACCheckNamesTheMissingPermission: from the rules of the three namespaces (three
// requests, not one per permission), and from one access review per permission when
// the rules are incomplete, the error names exactly the denied permissions.
func TestRBACCheckNamesTheMissingPermission(t *testing.T) {
	checks := dropinTarget.checks(agentPermissions)
	deny := func(a authorizationv1.ResourceAttributes) bool {
		return a.Resource == "leases" && a.Verb == "create" || a.Resource == "nodes" && a.Subresource == "status"
	}
	for _, incomplete := range []bool{false, true} {
		client := reviewer(checks, incomplete, deny)
		err := checkRBAC(t.Context(), client, checks, agentRBACHint, slog.New(slog.DiscardHandler))
		if err == nil {
			t.Fatalf("incomplete=%v: no error with two permissions denied", incomplete)
		}
		msg := err.Error()
		for _, want := range []string{
			"2 permission(s) missing",
			"create leases (coordination.k8s.io) in namespace rebootgate",
			"patch nodes/status (core) named n1",
			"examples/kured-dropin/rbac.yaml",
		} {
			if !strings.Contains(msg, want) {
				t.Errorf("incomplete=%v: error lacks %q: %s", incomplete, want, msg)
			}
		}
		if strings.Contains(msg, "\n") || strings.Contains(msg, " get leases") {
			t.Errorf("error is not one line naming only the denied permissions: %s", msg)
		}
		rules, access := reviews(client, "selfsubjectrulesreviews"), reviews(client, "selfsubjectaccessreviews")
		switch {
		case !incomplete && (rules != 3 || access != 0):
			// default (the Node's Events), rebootgate, kube-system (--kured-lock).
			t.Errorf("%d rules reviews and %d access reviews, want 3 and 0", rules, access)
		case incomplete && access != len(checks):
			t.Errorf("incomplete rules: %d access reviews for %d checks", access, len(checks))
		}
	}
}

// TestRBACCheckClusterWideNeedsEveryNamespace: a permission granted in one namespace
// only (a RoleBinding) does not pass for a cluster-wide one.
func TestRBACCheckClusterWideNeedsEveryNamespace(t *testing.T) {
	rules := map[string][]authorizationv1.ResourceRule{
		"kube-system": {{Verbs: []string{"*"}, APIGroups: []string{""}, Resources: []string{"pods"}}},
	}
	client := fake.NewClientset()
	client.PrependReactor("create", "selfsubjectrulesreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		review := action.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectRulesReview).DeepCopy()
		review.Status.ResourceRules = rules[review.Spec.Namespace]
		return true, review, nil
	})
	checks := []accessCheck{
		{authorizationv1.ResourceAttributes{Verb: "list", Resource: "pods"}},
		{authorizationv1.ResourceAttributes{Verb: "list", Resource: "pods", Namespace: "kube-system"}},
	}
	err := checkRBAC(t.Context(), client, checks, agentRBACHint, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "1 permission(s) missing: list pods (core) cluster-wide;") {
		t.Fatalf("err = %v, want only the cluster-wide list denied", err)
	}
}

func TestRulesAllow(t *testing.T) {
	node := authorizationv1.ResourceAttributes{Verb: "patch", Resource: "nodes", Subresource: "status", Name: "n1"}
	for _, tc := range []struct {
		rule authorizationv1.ResourceRule
		want bool
	}{
		{authorizationv1.ResourceRule{Verbs: []string{"patch"}, APIGroups: []string{""}, Resources: []string{"nodes/status"}}, true},
		{authorizationv1.ResourceRule{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}}, true},
		{authorizationv1.ResourceRule{Verbs: []string{"patch"}, APIGroups: []string{""}, Resources: []string{"*/status"}}, true},
		{authorizationv1.ResourceRule{Verbs: []string{"patch"}, APIGroups: []string{""}, Resources: []string{"nodes/*"}}, true},
		{authorizationv1.ResourceRule{Verbs: []string{"patch"}, APIGroups: []string{""}, Resources: []string{"nodes/status"}, ResourceNames: []string{"n1"}}, true},
		{authorizationv1.ResourceRule{Verbs: []string{"patch"}, APIGroups: []string{""}, Resources: []string{"nodes/status"}, ResourceNames: []string{"n2"}}, false},
		{authorizationv1.ResourceRule{Verbs: []string{"patch"}, APIGroups: []string{""}, Resources: []string{"nodes"}}, false},
		{authorizationv1.ResourceRule{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"nodes/status"}}, false},
		{authorizationv1.ResourceRule{Verbs: []string{"patch"}, APIGroups: []string{"apps"}, Resources: []string{"nodes/status"}}, false},
	} {
		if got := rulesAllow([]authorizationv1.ResourceRule{tc.rule}, node); got != tc.want {
			t.Errorf("%+v allows patch nodes/status n1 = %v, want %v", tc.rule, got, tc.want)
		}
	}
}

func TestRBACCheckPasses(t *testing.T) {
	checks := dropinTarget.checks(agentPermissions)
	client := reviewer(checks, false, func(authorizationv1.ResourceAttributes) bool { return false })
	if err := checkRBAC(t.Context(), client, checks, agentRBACHint, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
}

// TestRBACCheckNeverBlocksOnAFailedReview: the API down or the review API missing skips
// the check with a warning, and the agent starts.
func TestRBACCheckNeverBlocksOnAFailedReview(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("create", "selfsubjectrulesreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	var logs bytes.Buffer
	if err := checkRBAC(t.Context(), client, dropinTarget.checks(agentPermissions), agentRBACHint, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
		t.Fatalf("a failed review blocked the start: %v", err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "RBAC check skipped") || !strings.Contains(logs.String(), "connection refused") {
		t.Errorf("no warning: %s", logs.String())
	}
}

func TestAccessChecks(t *testing.T) {
	target := accessTarget{node: "n1", namespace: "rg", policyNamespaces: []string{"rg", "team-a"}, dsNamespace: "kube-system", dsName: "kured"}
	var got []string
	for _, c := range target.checks(agentPermissions) {
		got = append(got, c.String())
	}
	for _, want := range []string{
		"list nodes (core) cluster-wide",
		"patch nodes (core) named n1",
		"watch pods (core) cluster-wide",
		"create pods/eviction (core) cluster-wide",
		"get daemonsets (apps) cluster-wide",
		"create events (core) in namespace default",
		"patch events (core) in namespace rg",
		"update leases (coordination.k8s.io) in namespace rg",
		"watch configmaps (core) in namespace team-a",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("no check %q in %q", want, got)
		}
	}
	if n := countPrefix(got, "create events (core) in namespace rg"); n != 1 {
		t.Errorf("events in the agent's namespace, also a policy namespace, checked %d times", n)
	}
	for _, c := range got {
		// An agent writes no ConfigMap, and reports policy errors on its own Node.
		if strings.HasPrefix(c, "patch configmaps") || strings.HasPrefix(c, "update configmaps") ||
			strings.HasPrefix(c, "create configmaps") || strings.HasSuffix(c, "events (core) in namespace team-a") {
			t.Errorf("checked %s: an agent needs no such grant", c)
		}
		if strings.Contains(c, "named kured") {
			t.Errorf("kured's DaemonSet checked without --kured-lock: %s", c)
		}
	}
	target.kuredLock = true
	withLock := target.checks(agentPermissions)
	if !slices.ContainsFunc(withLock, func(c accessCheck) bool {
		return c.String() == "watch daemonsets (apps) named kured in namespace kube-system"
	}) {
		t.Errorf("--kured-lock does not check watching kured's DaemonSet")
	}
}

func countPrefix(list []string, s string) int {
	n := 0
	for _, v := range list {
		if v == s {
			n++
		}
	}
	return n
}

// grant is the rules a subject has in a namespace ("" = every namespace and the cluster).
type grant struct {
	namespace string
	rules     []rbacv1.PolicyRule
}

// grantsOf collects the rules that the manifests' bindings give ServiceAccount ns/name.
func grantsOf(t *testing.T, manifests []byte, ns, name string) []grant {
	t.Helper()
	objs, err := chart.Split(manifests)
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string][]rbacv1.PolicyRule{} // kind/namespace/name
	type binding struct {
		namespace, roleKey string
	}
	var bindings []binding
	for _, o := range objs {
		switch o.Kind {
		case "ClusterRole", "Role":
			var r rbacv1.Role
			if err := yaml.UnmarshalStrict(o.YAML, &r); err != nil {
				t.Fatalf("%s %s: %v", o.Kind, o.Name, err)
			}
			roles[o.Kind+"/"+o.Namespace+"/"+o.Name] = r.Rules
		case "ClusterRoleBinding", "RoleBinding":
			var b rbacv1.RoleBinding
			if err := yaml.UnmarshalStrict(o.YAML, &b); err != nil {
				t.Fatalf("%s %s: %v", o.Kind, o.Name, err)
			}
			if !slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool {
				return s.Kind == "ServiceAccount" && s.Namespace == ns && s.Name == name
			}) {
				continue
			}
			roleNS := o.Namespace
			if b.RoleRef.Kind == "ClusterRole" {
				roleNS = ""
			}
			bindings = append(bindings, binding{o.Namespace, b.RoleRef.Kind + "/" + roleNS + "/" + b.RoleRef.Name})
		}
	}
	var out []grant
	for _, b := range bindings {
		rules, ok := roles[b.roleKey]
		if !ok {
			t.Fatalf("a binding refers to %s, which the manifests do not have", b.roleKey)
		}
		out = append(out, grant{b.namespace, rules})
	}
	return out
}

// allows is RBAC's rule match for one request.
func allows(grants []grant, a authorizationv1.ResourceAttributes) bool {
	res := a.Resource
	if a.Subresource != "" {
		res += "/" + a.Subresource
	}
	has := func(list []string, v string) bool { return slices.Contains(list, v) || slices.Contains(list, "*") }
	for _, g := range grants {
		if g.namespace != "" && g.namespace != a.Namespace {
			continue
		}
		for _, r := range g.rules {
			if has(r.APIGroups, a.Group) && has(r.Resources, res) && has(r.Verbs, a.Verb) &&
				(len(r.ResourceNames) == 0 || a.Name != "" && slices.Contains(r.ResourceNames, a.Name)) {
				return true
			}
		}
	}
	return false
}

func readDropin(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "examples", "kured-dropin", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// dropinGrants parses examples/kured-dropin/rbac.yaml into kured's own RBAC (the objects
// named kured) and rebootgate's delta (everything else), as granted to its ServiceAccount.
func dropinGrants(t *testing.T) (base, delta []grant) {
	t.Helper()
	objs, err := chart.Split(readDropin(t, "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var baseDocs, deltaDocs []byte
	for _, o := range objs {
		doc := append([]byte("---\n"), o.YAML...)
		if o.Name == "kured" {
			baseDocs = append(baseDocs, doc...)
		} else {
			deltaDocs = append(deltaDocs, doc...)
		}
	}
	return grantsOf(t, baseDocs, "kube-system", "kured"), grantsOf(t, deltaDocs, "kube-system", "kured")
}

// TestDropinRBACGrantsEveryPermission: examples/kured-dropin/rbac.yaml grants every
// permission the agent checks; kured's part alone grants exactly those marked kured, and
// the delta grants nothing the list does not need.
func TestDropinRBACGrantsEveryPermission(t *testing.T) {
	base, delta := dropinGrants(t)
	all := append(slices.Clone(base), delta...)
	for _, p := range agentPermissions {
		for _, c := range dropinTarget.checks([]permission{p}) {
			if !allows(all, c.ResourceAttributes) {
				t.Errorf("rbac.yaml does not grant %s", c)
			}
			if inBase := allows(base, c.ResourceAttributes); inBase != p.kured {
				t.Errorf("%s: granted by kured's RBAC alone = %v, but the list says kured = %v", c, inBase, p.kured)
			}
		}
	}
	// No rule of the delta beyond the list: each delta verb is a permission of the list.
	for _, g := range delta {
		for _, r := range g.rules {
			for _, group := range r.APIGroups {
				for _, res := range r.Resources {
					resource, sub, _ := strings.Cut(res, "/")
					for _, verb := range r.Verbs {
						if !slices.ContainsFunc(agentPermissions, func(p permission) bool {
							return !p.kured && p.group == group && p.resource == resource && p.subresource == sub && slices.Contains(p.verbs, verb)
						}) {
							t.Errorf("the delta grants %s %s (%q), which the agent's permission list does not need", verb, res, group)
						}
					}
				}
			}
		}
	}
}

// TestDropinRBACWritesNothingInKubeSystem: with the whole of rbac.yaml (kured's RBAC and
// the delta), the drop-in's token may not take a control-plane component's leader Lease
// or change a ConfigMap in kube-system (coredns, aws-auth), and the delta lets it do
// nothing there but read kured's DaemonSet. The agent's own objects are in its namespace.
func TestDropinRBACWritesNothingInKubeSystem(t *testing.T) {
	base, delta := dropinGrants(t)
	all := append(slices.Clone(base), delta...)
	leases := func(verb, name string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Namespace: "kube-system", Verb: verb, Group: "coordination.k8s.io", Resource: "leases", Name: name}
	}
	configMaps := func(verb, name string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Namespace: "kube-system", Verb: verb, Resource: "configmaps", Name: name}
	}
	for _, a := range []authorizationv1.ResourceAttributes{
		leases("create", "kube-scheduler"), leases("update", "kube-scheduler"), leases("patch", "kube-scheduler"),
		leases("delete", "kube-controller-manager"), leases("update", "kube-controller-manager"),
		configMaps("patch", "coredns"), configMaps("update", "coredns"), configMaps("patch", "aws-auth"),
		configMaps("create", ""), configMaps("delete", "aws-auth"),
	} {
		if allows(all, a) {
			t.Errorf("rbac.yaml lets every node %s %s %s/%s", a.Verb, a.Resource, a.Namespace, a.Name)
		}
	}
	// Whatever the delta grants that applies in kube-system (its Role there, and its
	// cluster rules on namespaced resources) only reads.
	readOnly := []string{"get", "list", "watch"}
	for _, g := range delta {
		if g.namespace != "" && g.namespace != "kube-system" {
			continue
		}
		for _, r := range g.rules {
			for _, res := range r.Resources {
				if g.namespace == "" && (res == "nodes" || res == "nodes/status") {
					continue // cluster-scoped
				}
				for _, verb := range r.Verbs {
					if !slices.Contains(readOnly, verb) {
						t.Errorf("the delta grants %s %s (%q) in kube-system", verb, res, r.APIGroups)
					}
				}
			}
		}
	}
	// The agent's namespace, where its Leases are: not kube-system.
	if dropinTarget.namespace == "kube-system" {
		t.Errorf("the drop-in's agent namespace is kube-system")
	}
	for _, a := range []authorizationv1.ResourceAttributes{
		{Namespace: dropinTarget.namespace, Verb: "create", Group: "coordination.k8s.io", Resource: "leases"},
		{Namespace: dropinTarget.namespace, Verb: "patch", Resource: "configmaps", Name: "rebootgate-policies"},
	} {
		if got, want := allows(all, a), a.Resource == "leases"; got != want {
			t.Errorf("%s %s in %s: allowed %v, want %v (Leases yes, ConfigMap writes no)", a.Verb, a.Resource, a.Namespace, got, want)
		}
	}
}

// TestDropinDaemonSetRunsTheAgent: the manifest's command is kured's (/usr/bin/kured and
// kured's flags) and the agent accepts it as it is.
func TestDropinDaemonSetRunsTheAgent(t *testing.T) {
	var ds struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Command []string `json:"command"`
					} `json:"containers"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(readDropin(t, "daemonset.yaml"), &ds); err != nil {
		t.Fatal(err)
	}
	cmd := ds.Spec.Template.Spec.Containers[0].Command
	if len(cmd) < 2 || cmd[0] != "/usr/bin/kured" {
		t.Fatalf("command %q is not /usr/bin/kured with kured's flags", cmd)
	}
	code, out, errOut := runArgv(append(slices.Clone(cmd), "--help")...)
	if code != ExitOK || !strings.Contains(out, "--reboot-sentinel") {
		t.Errorf("%s --help: exit %d: %s", strings.Join(cmd, " "), code, errOut)
	}
	o, _, err := configureAgent(t, map[string]string{"KURED_NODE_ID": "n1"}, cmd[1:]...)
	if err != nil {
		t.Fatalf("the agent rejects the manifest's flags: %v", err)
	}
	if o.cfg.Namespace != defaultNamespace || o.cfg.SentinelPath != "/sentinel/reboot-required" {
		t.Errorf("namespace %q, sentinel %q; want %s (not --ds-namespace's kube-system) and the mounted sentinel", o.cfg.Namespace, o.cfg.SentinelPath, defaultNamespace)
	}
}

// chartHelm returns the repository root and helm, or skips the test without helm.
func chartHelm(t *testing.T) (root, helm string) {
	t.Helper()
	root, err := chart.Root()
	if err != nil {
		t.Fatal(err)
	}
	helm, ok := chart.Helm(root)
	if !ok {
		t.Skipf("no helm at %s and $HELM unset: run `make test-chart`", helm)
	}
	return root, helm
}

// TestChartRBACGrantsEveryPermission renders the chart's RBAC (release namespace and two
// policy namespaces; then with configuration.kuredLock on kured's DaemonSet elsewhere)
// and checks it grants every permission the agent checks.
func TestChartRBACGrantsEveryPermission(t *testing.T) {
	root, helm := chartHelm(t)
	const ns, release = "rg", "rg"
	target := accessTarget{node: "n1", namespace: ns, policyNamespaces: []string{ns, "team-a"}, dsNamespace: "kured-ns", dsName: "my-kured"}
	for _, kuredLock := range []bool{false, true} {
		args := []string{"--set", "policyNamespaces={team-a,rg}"}
		if kuredLock {
			args = append(args, "--set", "configuration.kuredLock=true", "--set", "configuration.dsNamespace="+target.dsNamespace,
				"--set", "configuration.dsName="+target.dsName)
		}
		out, err := chart.Template(helm, chart.Dir(root), release, ns, args...)
		if err != nil {
			t.Fatal(err)
		}
		grants := grantsOf(t, out, ns, release+"-rebootgate")
		if len(grants) == 0 {
			t.Fatal("the chart binds nothing to its ServiceAccount")
		}
		target.kuredLock = kuredLock
		for _, c := range target.checks(agentPermissions) {
			if !allows(grants, c.ResourceAttributes) {
				t.Errorf("kuredLock=%v: the chart does not grant %s", kuredLock, c)
			}
		}
	}
}

// TestChartRBACGrantsSummarizerEveryPermission renders the chart (two policy namespaces,
// medik8s' Leases cluster-wide and then by a Role in their namespace) and checks it
// grants the summarizer's ServiceAccount every permission the summarizer uses.
func TestChartRBACGrantsSummarizerEveryPermission(t *testing.T) {
	root, helm := chartHelm(t)
	const ns, release = "rg", "rg"
	target := accessTarget{namespace: ns, policyNamespaces: []string{ns, "team-a", "team-b"}, medik8sNamespace: "maint"}
	for _, access := range []string{"cluster", "namespace"} {
		out, err := chart.Template(helm, chart.Dir(root), release, ns, "--set", "policyNamespaces={team-a,team-b}",
			"--set", "summarizer.medik8sNamespace=maint", "--set", "summarizer.medik8sLeaseAccess="+access)
		if err != nil {
			t.Fatal(err)
		}
		grants := grantsOf(t, out, ns, release+"-rebootgate-summarizer")
		if len(grants) == 0 {
			t.Fatal("the chart binds nothing to the summarizer's ServiceAccount")
		}
		for _, c := range target.checks(summarizerPermissions) {
			if !allows(grants, c.ResourceAttributes) {
				t.Errorf("medik8sLeaseAccess=%s: the chart does not grant the summarizer %s", access, c)
			}
		}
		// Leases of another namespace: only with the cluster-wide grant.
		other := authorizationv1.ResourceAttributes{Namespace: "kube-node-lease", Verb: "list", Group: "coordination.k8s.io", Resource: "leases"}
		if got := allows(grants, other); got != (access == "cluster") {
			t.Errorf("medik8sLeaseAccess=%s: leases listed in kube-node-lease = %v", access, got)
		}
		// Nothing written outside its namespaces: no Events in kube-system, no ConfigMap
		// or Lease writes there.
		for _, a := range []authorizationv1.ResourceAttributes{
			{Namespace: "kube-system", Verb: "create", Resource: "events"},
			{Namespace: "kube-system", Verb: "patch", Resource: "configmaps", Name: "coredns"},
			{Namespace: "kube-system", Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Name: "kube-scheduler"},
		} {
			if allows(grants, a) {
				t.Errorf("medik8sLeaseAccess=%s: the summarizer may %s %s in kube-system", access, a.Verb, a.Resource)
			}
		}
	}
}

// TestREADMETablesTheDelta: the README's delta table has a row for every permission of
// rebootgate's delta, with its verbs.
func TestREADMETablesTheDelta(t *testing.T) {
	section := readmeSection(t, "### A kured DaemonSet with the image swapped")
	for _, p := range agentPermissions {
		if p.kured {
			continue
		}
		res := p.resource
		if p.subresource != "" {
			res += "/" + p.subresource
		}
		var rows []string
		for _, line := range strings.Split(section, "\n") {
			if strings.HasPrefix(line, "| `"+res+"`") && (p.group == "" || strings.Contains(line, "`"+p.group+"`")) &&
				(p.name == "" || strings.Contains(line, "named `"+p.name+"`") || indexRow(line, p.name)) {
				rows = append(rows, line)
			}
		}
		if len(rows) == 0 {
			t.Errorf("README's delta table has no row for %s (%q) %s", res, p.group, p.name)
			continue
		}
		if !slices.ContainsFunc(rows, func(row string) bool {
			cells := strings.Split(row, "|")
			return len(cells) >= 3 && !slices.ContainsFunc(p.verbs, func(verb string) bool {
				return !slices.Contains(strings.Split(strings.ReplaceAll(cells[2], " ", ""), ","), verb)
			})
		}) {
			t.Errorf("README's delta rows for %s %s lack one of %v: %q", res, p.name, p.verbs, rows)
		}
	}
}

// indexRow reports whether a README row covers name as one of the node index shards'
// ConfigMaps, which it names as a range.
func indexRow(line, name string) bool {
	return strings.HasPrefix(name, summary.IndexConfigMapPrefix) &&
		strings.Contains(line, fmt.Sprintf("named `%s` to `%s`", summary.IndexConfigMapName(0), summary.IndexConfigMapName(disruption.MaxIndexShards-1)))
}

// TestAccessTargetFromFlags: the checks follow the agent's flags — its node, namespace
// (rebootgate when nothing says, never --ds-namespace) and, with --kured-lock, kured's
// DaemonSet.
func TestAccessTargetFromFlags(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "")
	o, _, err := configureAgent(t, map[string]string{"KURED_NODE_ID": "n1"}, "--ds-namespace=ops", "--ds-name=kured-ds", "--kured-lock")
	if err != nil {
		t.Fatal(err)
	}
	want := accessTarget{node: "n1", namespace: defaultNamespace, dsNamespace: "ops", dsName: "kured-ds", kuredLock: true}
	if got := o.accessTarget(); !reflect.DeepEqual(got, want) {
		t.Errorf("access target %+v, want %+v", got, want)
	}
}
