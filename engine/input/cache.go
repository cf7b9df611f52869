package input

import (
	"maps"
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Converter converts facts to OPA values, reusing the values of objects that did not
// change since the previous decision. An agent re-decides about the same node with
// mostly the same pods and alerts, and building OPA objects is most of a decision's
// cost. Each cache keeps only what the last conversion used, so memory stays bounded
// by one node's facts. A Converter is safe for concurrent use.
type Converter struct {
	mu     sync.Mutex
	pods   map[objectVersion]*ast.Term
	alerts map[alertKey][]cachedAlert
	node   struct {
		key  objectVersion
		term *ast.Term
	}
}

// objectVersion identifies one version of an API object.
type objectVersion struct {
	uid             types.UID
	resourceVersion string
}

func versionOf(uid types.UID, rv string) (objectVersion, bool) {
	return objectVersion{uid, rv}, uid != "" && rv != ""
}

// NodeTerm converts the node, reusing the last value while the Node's version is the
// same. Objects without a UID and resourceVersion (read from files) are not cached.
func (c *Converter) NodeTerm(n *corev1.Node, node *Node) *ast.Term {
	key, cacheable := versionOf(n.UID, n.ResourceVersion)
	c.mu.Lock()
	defer c.mu.Unlock()
	if cacheable && c.node.term != nil && c.node.key == key {
		return c.node.term
	}
	t := node.term()
	if cacheable {
		c.node.key, c.node.term = key, t
	}
	return t
}

// PodsTerm converts pods; pods[i] and converted[i] are the same pod.
func (c *Converter) PodsTerm(pods []corev1.Pod, converted []Pod) *ast.Term {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := make(map[objectVersion]*ast.Term, len(pods))
	terms := make([]*ast.Term, len(pods))
	for i := range pods {
		key, cacheable := versionOf(pods[i].UID, pods[i].ResourceVersion)
		t := c.pods[key]
		if !cacheable || t == nil {
			t = converted[i].term()
		}
		if cacheable {
			next[key] = t
		}
		terms[i] = t
	}
	c.pods = next
	return ast.ArrayTerm(terms...)
}

// AlertsTerm converts alerts, reusing the value of an alert equal to one of the last
// conversion (alerts have no version). The cache key is cheap (no label sorting) and a
// hit is confirmed by comparing the labels and the scope, so it is exact.
func (c *Converter) AlertsTerm(alerts []Alert) *ast.Term {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := make(map[alertKey][]cachedAlert, len(alerts))
	terms := make([]*ast.Term, len(alerts))
	for i := range alerts {
		a := &alerts[i]
		key := alertKey{a.Name, a.State, a.Source, a.Silenced, len(a.Labels), a.Scope.Kind, a.Scope.Label, a.Scope.Value, a.Scope.Reason}
		var t *ast.Term
		for _, cached := range c.alerts[key] {
			if maps.Equal(cached.labels, a.Labels) && slices.Equal(cached.nodes, a.Scope.Nodes) {
				t = cached.term
				break
			}
		}
		if t == nil {
			t = alertTerm(a)
		}
		next[key] = append(next[key], cachedAlert{labels: a.Labels, nodes: a.Scope.Nodes, term: t})
		terms[i] = t
	}
	c.alerts = next
	return ast.ArrayTerm(terms...)
}

// alertKey narrows the search for an equal alert; labels and scope nodes decide.
type alertKey struct {
	name, state, source string
	silenced            bool
	labels              int
	// The scope but its nodes.
	kind, label, value, reason string
}

type cachedAlert struct {
	labels map[string]string
	nodes  []string
	term   *ast.Term
}
