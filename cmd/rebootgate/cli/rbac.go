package cli

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/rebootgate/rebootgate/engine/summary"
)

// scope says where the agent uses a permission, and so where it is checked.
type scope int

const (
	// scopeCluster: a cluster-scoped resource, or a namespaced one in every namespace
	// (the drain reads the node's pods and their DaemonSets wherever they are).
	scopeCluster scope = iota
	// scopeOwnNode: the agent's own Node only.
	scopeOwnNode
	// scopeNamespace: the agent's namespace (--namespace, POD_NAMESPACE, else
	// "rebootgate"; never kured's --ds-namespace).
	scopeNamespace
	// scopePolicyNamespaces: each --policy-namespace (default: the agent's namespace).
	scopePolicyNamespaces
	// scopeEventNamespaces: where the agent's Events go: "default" for the Node's (a
	// cluster-scoped object's events live there) and the agent's namespace for its slot
	// Leases'. Its policy errors go on its Node, never on a ConfigMap.
	scopeEventNamespaces
	// scopeKuredDaemonSet: kured's DaemonSet (--ds-name in --ds-namespace), only with
	// --kured-lock.
	scopeKuredDaemonSet
	// scopeMedik8sNamespace: the summarizer's --medik8s-namespace.
	scopeMedik8sNamespace
)

// permission is one API permission the agent needs. agentPermissions is the one list:
// the start-up check asks for each, and the tests check that
// examples/kured-dropin/rbac.yaml and the chart grant each.
type permission struct {
	group, resource, subresource string
	// name, if set, is the one object the permission is for (a rule's resourceNames).
	name  string
	verbs []string
	scope scope
	// kured: granted by kured's own RBAC (kured ≥ 1.20); false means rebootgate's delta.
	kured bool
}

// agentPermissions is every permission `rebootgate agent` uses, from its code.
var agentPermissions = append([]permission{
	// Its Node, fresh before each patch, and a slot holder's Node.
	{group: "", resource: "nodes", verbs: []string{"get"}, scope: scopeCluster, kured: true},
	// State annotations, cordon and uncordon, labels, taint.
	{group: "", resource: "nodes", verbs: []string{"patch"}, scope: scopeOwnNode, kured: true},
	// The informer on its own Node (a field selector on metadata.name), pool sizes and
	// slot users (list).
	{group: "", resource: "nodes", verbs: []string{"list", "watch"}, scope: scopeCluster},
	// The RebootRequired and RebootPolicyLoaded conditions, and the lifecycle
	// conditions (KEP-5683).
	{group: "", resource: "nodes", subresource: "status", verbs: []string{"patch"}, scope: scopeOwnNode},
	// The drain lists the node's pods and waits for each to go.
	{group: "", resource: "pods", verbs: []string{"get", "list"}, scope: scopeCluster, kured: true},
	// The informer on the pods bound to its node (blocking pods).
	{group: "", resource: "pods", verbs: []string{"watch"}, scope: scopeCluster},
	// The drain evicts through the eviction API (PDBs honoured).
	{group: "", resource: "pods", subresource: "eviction", verbs: []string{"create"}, scope: scopeCluster, kured: true},
	// The drain looks up the DaemonSet of each DaemonSet pod.
	{group: "apps", resource: "daemonsets", verbs: []string{"get"}, scope: scopeCluster, kured: true},
	// client-go's recorder (core/v1 Events, not events.k8s.io): create, and patch for a
	// repeated event.
	{group: "", resource: "events", verbs: []string{"create", "patch"}, scope: scopeEventNamespaces},
	// The reboot slots, one Lease per pool slot.
	{group: "coordination.k8s.io", resource: "leases", verbs: []string{"get", "list", "watch", "create", "update", "delete"}, scope: scopeNamespace},
	// Policy ConfigMaps (informer): read only. An agent writes no ConfigMap, so one
	// node's token cannot rewrite the fleet's policy.
	{group: "", resource: "configmaps", verbs: []string{"list", "watch"}, scope: scopePolicyNamespaces},
	// The summarizer's node summary, read when a budget, breaker or summary reference,
	// or an alert's node label that is not this node's own, needs it (a GET served from
	// the watch cache). The node index shards follow (indexPermissions).
	{group: "", resource: "configmaps", name: summary.ConfigMapName, verbs: []string{"get"}, scope: scopeNamespace},
	// --kured-lock: kured's lock annotation, a GET and a full-object UPDATE.
	{group: "apps", resource: "daemonsets", verbs: []string{"get", "update"}, scope: scopeKuredDaemonSet, kured: true},
	// --kured-lock: watching kured's lock (with a field selector on metadata.name, which
	// is what lets a rule with resourceNames cover a list or watch).
	{group: "apps", resource: "daemonsets", verbs: []string{"list", "watch"}, scope: scopeKuredDaemonSet},
}, indexPermissions([]string{"get"})...)

// summarizerPermissions is every permission `rebootgate summarizer` uses, from its code
// (cmd/rebootgate/cli/summarizer.go, engine/summary, and engine/source as the agents
// use it); the tests check that the chart grants each to the summarizer's
// ServiceAccount. scopeNamespace is the summarizer's --namespace.
var summarizerPermissions = append([]permission{
	// One informer of every Node.
	{group: "", resource: "nodes", verbs: []string{"list", "watch"}, scope: scopeCluster},
	// The informer of medik8s' node-maintenance Leases.
	{group: "coordination.k8s.io", resource: "leases", verbs: []string{"list", "watch"}, scope: scopeMedik8sNamespace},
	// The summary and the node index shards (indexPermissions): read before the first
	// write, created once, then updated.
	{group: "", resource: "configmaps", name: summary.ConfigMapName, verbs: []string{"get", "update"}, scope: scopeNamespace},
	{group: "", resource: "configmaps", verbs: []string{"create"}, scope: scopeNamespace},
	// Leader election (client-go's LeaseLock: get, create, update).
	{group: "coordination.k8s.io", resource: "leases", name: summary.LeaseName, verbs: []string{"get", "update"}, scope: scopeNamespace},
	{group: "coordination.k8s.io", resource: "leases", verbs: []string{"create"}, scope: scopeNamespace},
	// Policy ConfigMaps, read as the agents read them (engine/source).
	{group: "", resource: "configmaps", verbs: []string{"list", "watch"}, scope: scopePolicyNamespaces},
	// client-go's recorder: ConfigError on the summary ConfigMap, PolicyError on a policy
	// ConfigMap.
	{group: "", resource: "events", verbs: []string{"create", "patch"}, scope: scopePolicyNamespaces},
	{group: "", resource: "events", verbs: []string{"create", "patch"}, scope: scopeNamespace},
}, indexPermissions([]string{"get", "update"})...)

// accessCheck is one SelfSubjectAccessReview to ask.
type accessCheck struct {
	authorizationv1.ResourceAttributes
}

// String is `verb resource[/subresource] (group)`, then `named N`, and `in namespace X`
// or, for every namespace or any cluster-scoped object, `cluster-wide`.
func (c accessCheck) String() string {
	res := c.Resource
	if c.Subresource != "" {
		res += "/" + c.Subresource
	}
	group := c.Group
	if group == "" {
		group = "core"
	}
	s := fmt.Sprintf("%s %s (%s)", c.Verb, res, group)
	if c.Name != "" {
		s += " named " + c.Name
	}
	switch {
	case c.Namespace != "":
		s += " in namespace " + c.Namespace
	case c.Name == "":
		s += " cluster-wide"
	}
	return s
}

// accessTarget is what the scopes resolve to for one agent.
type accessTarget struct {
	node, namespace     string
	policyNamespaces    []string
	dsNamespace, dsName string
	kuredLock           bool
	medik8sNamespace    string // the summarizer's
}

// checks expands the permissions into one check per verb and place.
func (t accessTarget) checks(perms []permission) []accessCheck {
	policyNS := t.policyNamespaces
	if len(policyNS) == 0 {
		policyNS = []string{t.namespace}
	}
	var out []accessCheck
	for _, p := range perms {
		var where []authorizationv1.ResourceAttributes // namespace and name only
		switch p.scope {
		case scopeCluster:
			where = []authorizationv1.ResourceAttributes{{}}
		case scopeOwnNode:
			where = []authorizationv1.ResourceAttributes{{Name: t.node}}
		case scopeNamespace:
			where = []authorizationv1.ResourceAttributes{{Namespace: t.namespace}}
		case scopePolicyNamespaces:
			where = namespaces(policyNS)
		case scopeEventNamespaces:
			where = namespaces([]string{metav1.NamespaceDefault, t.namespace})
		case scopeKuredDaemonSet:
			if !t.kuredLock {
				continue
			}
			where = []authorizationv1.ResourceAttributes{{Namespace: t.dsNamespace, Name: t.dsName}}
		case scopeMedik8sNamespace:
			where = []authorizationv1.ResourceAttributes{{Namespace: t.medik8sNamespace}}
		}
		for _, w := range where {
			if p.name != "" {
				w.Name = p.name
			}
			for _, verb := range p.verbs {
				out = append(out, accessCheck{authorizationv1.ResourceAttributes{
					Namespace: w.Namespace, Name: w.Name, Verb: verb,
					Group: p.group, Resource: p.resource, Subresource: p.subresource,
				}})
			}
		}
	}
	return out
}

// namespaces is one place per distinct namespace, in order.
func namespaces(list []string) []authorizationv1.ResourceAttributes {
	var out []authorizationv1.ResourceAttributes
	var seen []string
	for _, ns := range list {
		if ns != "" && !slices.Contains(seen, ns) {
			seen = append(seen, ns)
			out = append(out, authorizationv1.ResourceAttributes{Namespace: ns})
		}
	}
	return out
}

// rbacCheckTimeout bounds the whole start-up check; past it the check is skipped.
const rbacCheckTimeout = 15 * time.Second

// The end of checkRBAC's error: where the permissions it names are granted.
const (
	agentRBACHint      = "grant them (examples/kured-dropin/rbac.yaml, kured's RBAC plus rebootgate's delta, or the chart's RBAC)"
	summarizerRBACHint = "grant them to the summarizer's ServiceAccount (the chart's RBAC for rebootgate summarizer, templates/rbac.yaml)"
)

// checkRBAC asks the apiserver whether the agent (or the summarizer) may do everything
// it will do, and returns one error naming every denied permission, ending with hint.
// It asks with one SelfSubjectRulesReview per namespace the checks name (two at least:
// the agent starts after every reboot, so the check must cost a few requests, not one
// per permission); a cluster-wide permission must be allowed by the rules of every
// namespace asked, so a RoleBinding in one namespace does not pass for a cluster-wide
// grant. When the rules are incomplete (an authorizer that cannot list them, such as a
// webhook) it falls back to one SelfSubjectAccessReview per check. A review that fails
// (API down, review API not served) skips the check with a warning: it must never keep
// the process from starting.
func checkRBAC(ctx context.Context, client kubernetes.Interface, checks []accessCheck, hint string, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, rbacCheckTimeout)
	defer cancel()
	allowed, complete, err := rulesAllowChecks(ctx, client, checks)
	if err == nil && !complete {
		allowed, err = reviewsAllowChecks(ctx, client, checks)
	}
	if err != nil {
		log.Warn("RBAC check skipped: the access review failed", "err", err)
		return nil
	}
	var denied []string
	for i, c := range checks {
		if !allowed[i] {
			denied = append(denied, c.String())
		}
	}
	if len(denied) == 0 {
		log.Debug("RBAC check passed", "permissions", len(checks))
		return nil
	}
	return fmt.Errorf("RBAC: %d permission(s) missing: %s; %s", len(denied), strings.Join(denied, "; "), hint)
}

// rulesAllowChecks answers every check from SelfSubjectRulesReviews; complete is false
// when the apiserver says its rules are incomplete.
func rulesAllowChecks(ctx context.Context, client kubernetes.Interface, checks []accessCheck) (allowed []bool, complete bool, err error) {
	var asked []string
	for _, c := range checks {
		if c.Namespace != "" && !slices.Contains(asked, c.Namespace) {
			asked = append(asked, c.Namespace)
		}
	}
	for _, ns := range []string{metav1.NamespaceDefault, metav1.NamespaceSystem} {
		if len(asked) < 2 && !slices.Contains(asked, ns) {
			asked = append(asked, ns)
		}
	}
	rules := map[string][]authorizationv1.ResourceRule{}
	for _, ns := range asked {
		review := &authorizationv1.SelfSubjectRulesReview{Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: ns}}
		res, err := client.AuthorizationV1().SelfSubjectRulesReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return nil, false, fmt.Errorf("rules review in namespace %s: %w", ns, err)
		}
		if res.Status.Incomplete {
			return nil, false, nil
		}
		rules[ns] = res.Status.ResourceRules
	}
	allowed = make([]bool, len(checks))
	for i, c := range checks {
		if c.Namespace != "" {
			allowed[i] = rulesAllow(rules[c.Namespace], c.ResourceAttributes)
			continue
		}
		allowed[i] = true
		for _, ns := range asked {
			allowed[i] = allowed[i] && rulesAllow(rules[ns], c.ResourceAttributes)
		}
	}
	return allowed, true, nil
}

// reviewsAllowChecks asks one SelfSubjectAccessReview per check.
func reviewsAllowChecks(ctx context.Context, client kubernetes.Interface, checks []accessCheck) ([]bool, error) {
	allowed := make([]bool, len(checks))
	for i, c := range checks {
		attrs := c.ResourceAttributes
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs}}
		res, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("access review of %s: %w", c, err)
		}
		allowed[i] = res.Status.Allowed
	}
	return allowed, nil
}

// rulesAllow says whether one of rules grants a: RBAC's matching of verbs, API groups,
// resources (with "*", "*/sub" and "res/*") and resource names.
func rulesAllow(rules []authorizationv1.ResourceRule, a authorizationv1.ResourceAttributes) bool {
	res := a.Resource
	if a.Subresource != "" {
		res += "/" + a.Subresource
	}
	matches := func(list []string, v string) bool { return slices.Contains(list, v) || slices.Contains(list, "*") }
	for _, r := range rules {
		if !matches(r.Verbs, a.Verb) || !matches(r.APIGroups, a.Group) {
			continue
		}
		if !slices.ContainsFunc(r.Resources, func(g string) bool {
			return g == "*" || g == res || (a.Subresource != "" && (g == "*/"+a.Subresource || g == a.Resource+"/*"))
		}) {
			continue
		}
		if len(r.ResourceNames) > 0 && (a.Name == "" || !slices.Contains(r.ResourceNames, a.Name)) {
			continue
		}
		return true
	}
	return false
}

// indexPermissions are verbs on every node index shard's ConfigMap in the namespace
// (summary.IndexConfigMapNames: a Role names each, as resourceNames cannot match a
// prefix). Agents only get the shard an alert needs; the summarizer writes them.
func indexPermissions(verbs []string) []permission {
	var out []permission
	for _, name := range summary.IndexConfigMapNames() {
		out = append(out, permission{group: "", resource: "configmaps", name: name, verbs: verbs, scope: scopeNamespace})
	}
	return out
}
