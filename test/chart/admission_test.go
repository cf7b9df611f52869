package chart

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"

	"github.com/rebootgate/rebootgate/engine/lock"
)

// admissionPolicy returns the rendered ValidatingAdmissionPolicy and its binding (nil
// when not rendered), failing on more than one of either.
func admissionPolicy(t *testing.T, objs []Object) (*admissionv1.ValidatingAdmissionPolicy, *admissionv1.ValidatingAdmissionPolicyBinding) {
	t.Helper()
	var p *admissionv1.ValidatingAdmissionPolicy
	var b *admissionv1.ValidatingAdmissionPolicyBinding
	for _, o := range objs {
		switch o.Kind {
		case "ValidatingAdmissionPolicy":
			if p != nil {
				t.Fatalf("two ValidatingAdmissionPolicies: %s and %s", p.Name, o.Name)
			}
			p = &admissionv1.ValidatingAdmissionPolicy{}
			if err := yaml.UnmarshalStrict(o.YAML, p); err != nil {
				t.Fatalf("ValidatingAdmissionPolicy %s: %v", o.Name, err)
			}
		case "ValidatingAdmissionPolicyBinding":
			if b != nil {
				t.Fatalf("two ValidatingAdmissionPolicyBindings: %s and %s", b.Name, o.Name)
			}
			b = &admissionv1.ValidatingAdmissionPolicyBinding{}
			if err := yaml.UnmarshalStrict(o.YAML, b); err != nil {
				t.Fatalf("ValidatingAdmissionPolicyBinding %s: %v", o.Name, err)
			}
		}
	}
	return p, b
}

// TestAdmissionPolicyShape: for every values file the chart renders the agent's
// ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1) and a binding to it that
// denies; the policy fails closed, matches every create, update and delete but
// self-reviews, and only the requests of the DaemonSet's own ServiceAccount (whatever
// serviceAccount.name says); admissionPolicy.enabled=false renders neither.
func TestAdmissionPolicyShape(t *testing.T) {
	e := setup(t)
	cases := map[string][]string{"serviceAccount.name": {"--set", "serviceAccount.name=custom-agent"}}
	for _, f := range valuesFiles(t) {
		cases[caseName(f)] = []string{"-f", f}
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			objs := e.render(t, args...)
			p, b := admissionPolicy(t, objs)
			if p == nil || b == nil {
				t.Fatalf("policy %v, binding %v: want both rendered by default", p != nil, b != nil)
			}
			if b.Spec.PolicyName != p.Name || !slices.Equal(b.Spec.ValidationActions, []admissionv1.ValidationAction{admissionv1.Deny}) {
				t.Errorf("binding %s: policyName %q (want %q), validationActions %v (want [Deny])", b.Name, b.Spec.PolicyName, p.Name, b.Spec.ValidationActions)
			}
			if b.Spec.ParamRef != nil || b.Spec.MatchResources != nil {
				t.Errorf("binding %s narrows the policy: %+v", b.Name, b.Spec)
			}
			if p.Spec.FailurePolicy == nil || *p.Spec.FailurePolicy != admissionv1.Fail {
				t.Errorf("failurePolicy %v, want Fail", p.Spec.FailurePolicy)
			}
			sa := daemonSet(t, objs).Spec.Template.Spec.ServiceAccountName
			want := fmt.Sprintf(`request.userInfo.username == "system:serviceaccount:%s:%s"`, Namespace, sa)
			if len(p.Spec.MatchConditions) != 1 || p.Spec.MatchConditions[0].Expression != want {
				t.Errorf("matchConditions %+v, want the one condition %s", p.Spec.MatchConditions, want)
			}
			mc := p.Spec.MatchConstraints
			if mc == nil || len(mc.ResourceRules) != 1 {
				t.Fatalf("matchConstraints %+v, want one rule for every write", mc)
			}
			r := mc.ResourceRules[0]
			if !slices.Equal(r.APIGroups, []string{"*"}) || !slices.Equal(r.Resources, []string{"*/*"}) ||
				!slices.Equal(r.Operations, []admissionv1.OperationType{admissionv1.Create, admissionv1.Update, admissionv1.Delete}) ||
				len(r.ResourceNames) != 0 {
				t.Errorf("resource rule %+v, want every create, update and delete of every resource", r)
			}
			if mc.NamespaceSelector != nil && len(mc.NamespaceSelector.MatchLabels)+len(mc.NamespaceSelector.MatchExpressions) > 0 ||
				mc.ObjectSelector != nil && len(mc.ObjectSelector.MatchLabels)+len(mc.ObjectSelector.MatchExpressions) > 0 {
				t.Errorf("matchConstraints select namespaces or objects: %+v", mc)
			}
			for _, ex := range mc.ExcludeResourceRules {
				for _, res := range ex.Resources {
					if !strings.HasPrefix(res, "selfsubject") || !slices.Equal(ex.Operations, []admissionv1.OperationType{admissionv1.Create}) {
						t.Errorf("excluded %v %s: only self-reviews may be left out", ex.Operations, res)
					}
				}
			}
			for _, v := range p.Spec.Variables {
				// The API server requires a CEL identifier, and refuses the reserved words
				// (namespace, package, …) that cel-go still parses as a field name.
				if !celIdentifier.MatchString(v.Name) || slices.Contains(celReserved, v.Name) {
					t.Errorf("variable %q: not a valid CEL identifier", v.Name)
				}
			}
			for _, v := range p.Spec.Validations {
				if v.Reason == nil || *v.Reason != "Forbidden" || v.MessageExpression == "" {
					t.Errorf("validation %q: reason %v, messageExpression %q; want Forbidden and a message", v.Expression, v.Reason, v.MessageExpression)
				}
			}
			off, offB := admissionPolicy(t, e.render(t, append(slices.Clone(args), "--set", "admissionPolicy.enabled=false")...))
			if off != nil || offB != nil {
				t.Errorf("admissionPolicy.enabled=false still renders the policy (%v) or the binding (%v)", off != nil, offB != nil)
			}
		})
	}
}

// celIdentifier and celReserved: what the API server accepts as a variable's name (the
// CEL spec's identifiers, less its reserved words).
var (
	celIdentifier = regexp.MustCompile(`^[_a-zA-Z][_a-zA-Z0-9]*$`)
	celReserved   = []string{"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function",
		"if", "import", "let", "loop", "package", "namespace", "return", "var", "void", "while"}
)

// vapRequest is one admission request, as the policy's CEL sees it.
type vapRequest struct {
	op, group, resource, sub, namespace, name string
	// node is the token's node claim ("": none).
	node              string
	object, oldObject map[string]any
}

// leaseObject is a Lease with the given name and, when pool is set, its pool label.
func leaseObject(name, pool string) map[string]any {
	meta := map[string]any{"name": name}
	if pool != "" {
		meta["labels"] = map[string]any{lock.LabelPool: pool}
	}
	return map[string]any{"metadata": meta}
}

func named(name string) map[string]any {
	return map[string]any{"metadata": map[string]any{"name": name}}
}

// evalPolicy evaluates the policy on r as user, offline with cel-go (the API server's
// CEL is the same language; test/e2e/security proves the policy on a real one):
// matched is false when matchConditions skip the request; otherwise denied holds the
// message of the first failing validation ("" when admitted).
func evalPolicy(t *testing.T, p *admissionv1.ValidatingAdmissionPolicy, user string, r vapRequest) (matched bool, denied string) {
	t.Helper()
	env, err := cel.NewEnv(cel.Variable("request", cel.DynType), cel.Variable("object", cel.DynType),
		cel.Variable("oldObject", cel.DynType), cel.Variable("variables", cel.DynType))
	if err != nil {
		t.Fatal(err)
	}
	userInfo := map[string]any{"username": user}
	if r.node != "" {
		userInfo["extra"] = map[string]any{"authentication.kubernetes.io/node-name": []any{r.node}}
	}
	vars := map[string]any{}
	// The API server leaves empty fields out of the request (a core group, no
	// subresource, a cluster-scoped object): an expression reading one fails.
	resource := map[string]any{"version": "v1", "resource": r.resource}
	if r.group != "" {
		resource["group"] = r.group
	}
	request := map[string]any{"operation": r.op, "userInfo": userInfo, "resource": resource}
	for k, v := range map[string]string{"namespace": r.namespace, "name": r.name, "subResource": r.sub} {
		if v != "" {
			request[k] = v
		}
	}
	act := map[string]any{"request": request, "object": r.object, "oldObject": r.oldObject, "variables": vars}
	eval := func(what, expr string) any {
		t.Helper()
		ast, iss := env.Compile(expr)
		if iss.Err() != nil {
			t.Fatalf("%s %q: %v", what, expr, iss.Err())
		}
		prg, err := env.Program(ast)
		if err != nil {
			t.Fatalf("%s %q: %v", what, expr, err)
		}
		out, _, err := prg.Eval(act)
		if err != nil {
			t.Fatalf("%s %q on %+v: %v (failurePolicy Fail would deny)", what, expr, r, err)
		}
		return out.Value()
	}
	for _, c := range p.Spec.MatchConditions {
		if eval("matchCondition", c.Expression) != true {
			return false, ""
		}
	}
	for _, v := range p.Spec.Variables {
		vars[v.Name] = eval("variable "+v.Name, v.Expression)
	}
	for _, v := range p.Spec.Validations {
		if eval("validation", v.Expression) != true {
			msg, _ := eval("messageExpression", v.MessageExpression).(string)
			return true, msg
		}
	}
	return true, ""
}

// TestAdmissionPolicyDecisions evaluates the rendered policy's expressions on the
// agent's own writes (its Node and status, the Leases engine/lock names and labels,
// kured's lock DaemonSet with kuredLock, Events, evictions) and on what a stolen token
// would try (another Node, kube-scheduler's Lease, a ConfigMap, a DaemonSet, a token
// without a node claim); each refusal names its reason. Requests of anyone else are not
// matched.
func TestAdmissionPolicyDecisions(t *testing.T) {
	e := setup(t)
	const a, b = "node-a", "node-b"
	ns := Namespace
	slot, key := lock.SlotLeaseName("default", 0), lock.KeyLeaseName("default", "eastus-1", 0)
	type tc struct {
		name string
		r    vapRequest
		deny string // "" = admitted; else a part of the message
	}
	common := []tc{
		{"cordon own node", vapRequest{op: "UPDATE", resource: "nodes", name: a, node: a, object: named(a), oldObject: named(a)}, ""},
		{"own node status", vapRequest{op: "UPDATE", resource: "nodes", sub: "status", name: a, node: a, object: named(a), oldObject: named(a)}, ""},
		{"other node", vapRequest{op: "UPDATE", resource: "nodes", name: b, node: a, object: named(b), oldObject: named(b)}, "may change only its own Node"},
		{"other node status", vapRequest{op: "UPDATE", resource: "nodes", sub: "status", name: b, node: a, object: named(b), oldObject: named(b)}, "may change only its own Node"},
		{"delete own node", vapRequest{op: "DELETE", resource: "nodes", name: a, node: a, oldObject: named(a)}, "writes only its own Node"},
		{"no node claim", vapRequest{op: "UPDATE", resource: "nodes", name: a, object: named(a), oldObject: named(a)}, "carries no node claim"},
		{"no node claim, lease", vapRequest{op: "CREATE", group: "coordination.k8s.io", resource: "leases", namespace: ns, name: slot, object: leaseObject(slot, "default")}, "carries no node claim"},
		{"create slot lease", vapRequest{op: "CREATE", group: "coordination.k8s.io", resource: "leases", namespace: ns, name: slot, node: a, object: leaseObject(slot, "default")}, ""},
		{"update slot lease", vapRequest{op: "UPDATE", group: "coordination.k8s.io", resource: "leases", namespace: ns, name: slot, node: a, object: leaseObject(slot, "default"), oldObject: leaseObject(slot, "default")}, ""},
		{"label a legacy slot lease", vapRequest{op: "UPDATE", group: "coordination.k8s.io", resource: "leases", namespace: ns, name: slot, node: a, object: leaseObject(slot, "default"), oldObject: leaseObject(slot, "")}, ""},
		{"delete key lease", vapRequest{op: "DELETE", group: "coordination.k8s.io", resource: "leases", namespace: ns, name: key, node: a, oldObject: leaseObject(key, "default")}, ""},
		{"relabel a lease", vapRequest{op: "UPDATE", group: "coordination.k8s.io", resource: "leases", namespace: ns, name: "rebootgate-default-0", node: a, object: leaseObject("rebootgate-default-0", "default"), oldObject: leaseObject("rebootgate-default-0", "other")}, "the label kept on update"},
		{"lease of another pool's name", vapRequest{op: "CREATE", group: "coordination.k8s.io", resource: "leases", namespace: ns, name: lock.SlotLeaseName("other", 0), node: a, object: leaseObject(lock.SlotLeaseName("other", 0), "default")}, "writes only rebootgate's Leases"},
		{"unlabelled lease", vapRequest{op: "CREATE", group: "coordination.k8s.io", resource: "leases", namespace: ns, name: slot, node: a, object: leaseObject(slot, "")}, "writes only rebootgate's Leases"},
		{"kube-scheduler lease here", vapRequest{op: "CREATE", group: "coordination.k8s.io", resource: "leases", namespace: ns, name: "kube-scheduler", node: a, object: leaseObject("kube-scheduler", "")}, "writes only rebootgate's Leases"},
		{"kube-scheduler lease in kube-system", vapRequest{op: "UPDATE", group: "coordination.k8s.io", resource: "leases", namespace: "kube-system", name: "kube-scheduler", node: a, object: leaseObject("kube-scheduler", ""), oldObject: leaseObject("kube-scheduler", "")}, "writes only rebootgate's Leases"},
		{"delete the summarizer's lease", vapRequest{op: "DELETE", group: "coordination.k8s.io", resource: "leases", namespace: ns, name: "rebootgate-summarizer", node: a, oldObject: leaseObject("rebootgate-summarizer", "")}, "writes only rebootgate's Leases"},
		{"lease in another namespace", vapRequest{op: "CREATE", group: "coordination.k8s.io", resource: "leases", namespace: "kube-system", name: slot, node: a, object: leaseObject(slot, "default")}, "writes only rebootgate's Leases"},
		{"patch a configmap", vapRequest{op: "UPDATE", resource: "configmaps", namespace: ns, name: "rebootgate-node-summary", node: a, object: named("rebootgate-node-summary"), oldObject: named("rebootgate-node-summary")}, "writes only its own Node"},
		{"delete a configmap", vapRequest{op: "DELETE", resource: "configmaps", namespace: "kube-system", name: "coredns", node: a, oldObject: named("coredns")}, "writes only its own Node"},
		{"event", vapRequest{op: "CREATE", resource: "events", namespace: "default", name: a + ".1", node: a, object: named(a + ".1")}, ""},
		{"event patch", vapRequest{op: "UPDATE", resource: "events", namespace: "default", name: a + ".1", node: a, object: named(a + ".1"), oldObject: named(a + ".1")}, ""},
		{"eviction", vapRequest{op: "CREATE", resource: "pods", sub: "eviction", namespace: "web", name: "web-1", node: a, object: named("web-1")}, ""},
		{"delete a pod", vapRequest{op: "DELETE", resource: "pods", namespace: "web", name: "web-1", node: a, oldObject: named("web-1")}, "writes only its own Node"},
		{"secret", vapRequest{op: "CREATE", resource: "secrets", namespace: ns, name: "x", node: a, object: named("x")}, "writes only its own Node"},
	}
	kuredLock := vapRequest{op: "UPDATE", group: "apps", resource: "daemonsets", namespace: "kube-system", name: "kured", node: a, object: named("kured"), oldObject: named("kured")}
	otherDS := kuredLock
	otherDS.namespace, otherDS.name, otherDS.object, otherDS.oldObject = ns, "rebootgate", named("rebootgate"), named("rebootgate")
	cases := map[string][]tc{
		"default": append(slices.Clone(common),
			tc{"kured's DaemonSet without kuredLock", kuredLock, "writes only its own Node"}),
		"kuredlock": append(slices.Clone(common),
			tc{"kured's lock DaemonSet", kuredLock, ""},
			tc{"another DaemonSet", otherDS, "updates only kured's lock DaemonSet kube-system/kured"}),
	}
	for file, cases := range cases {
		t.Run(file, func(t *testing.T) {
			objs := e.render(t, "-f", filepath.Join("testdata", file+".values.yaml"))
			p, _ := admissionPolicy(t, objs)
			if p == nil {
				t.Fatal("no ValidatingAdmissionPolicy rendered")
			}
			agent := "system:serviceaccount:" + ns + ":" + daemonSet(t, objs).Spec.Template.Spec.ServiceAccountName
			for _, c := range cases {
				matched, denied := evalPolicy(t, p, agent, c.r)
				switch {
				case !matched:
					t.Errorf("%s: the agent's request is not matched", c.name)
				case c.deny == "" && denied != "":
					t.Errorf("%s: denied (%s), want admitted", c.name, denied)
				case c.deny != "" && !strings.Contains(denied, c.deny):
					t.Errorf("%s: %q, want denied with %q", c.name, denied, c.deny)
				case c.deny != "" && !strings.Contains(denied, c.r.op+" "):
					t.Errorf("%s: message %q does not name the request", c.name, denied)
				}
				if matched, _ := evalPolicy(t, p, "system:serviceaccount:"+ns+":someone-else", c.r); matched {
					t.Errorf("%s: another ServiceAccount's request is matched", c.name)
				}
			}
		})
	}
}
