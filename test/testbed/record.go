package testbed

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// NodeTransition is one change of a recorded Node: its schedulability, one of the
// recorded annotations (absent keys are "") or the status of one of the recorded
// conditions (absent conditions are "").
type NodeTransition struct {
	// At is when the watch delivered the change.
	At            time.Time
	Unschedulable bool
	Annotations   map[string]string
	// Conditions maps each recorded condition type to its status (see
	// RecordNodeConditions).
	Conditions map[string]string
}

// NodeRecorder keeps every change of one Node's schedulability and chosen
// annotations, from a watch — so that no cordon, however short, falls between two
// polls. See Bed.RecordNode.
type NodeRecorder struct {
	keys, conds []string
	stop        chan struct{}

	mu  sync.Mutex
	log []NodeTransition
}

// RecordNode starts recording the node's changes (Spec.Unschedulable and the
// annotations keys) and returns once the watch has the node's current state as the
// first transition. It stops at test cleanup.
func (b *Bed) RecordNode(t testing.TB, node string, keys ...string) *NodeRecorder {
	t.Helper()
	return b.record(t, node, &NodeRecorder{keys: slices.Clone(keys), stop: make(chan struct{})})
}

// RecordNodeConditions records, as RecordNode does, the node's schedulability and the
// status of the given condition types (e.g. the lifecycle conditions), so that the
// order in which they changed can be checked.
func (b *Bed) RecordNodeConditions(t testing.TB, node string, types ...string) *NodeRecorder {
	t.Helper()
	return b.record(t, node, &NodeRecorder{conds: slices.Clone(types), stop: make(chan struct{})})
}

func (b *Bed) record(t testing.TB, node string, r *NodeRecorder) *NodeRecorder {
	t.Helper()
	f := informers.NewSharedInformerFactoryWithOptions(b.Client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", node).String()
	}))
	inf := f.Core().V1().Nodes().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    r.observe,
		UpdateFunc: func(_, cur any) { r.observe(cur) },
	}); err != nil {
		t.Fatalf("recording node %s: %v", node, err)
	}
	t.Cleanup(r.Stop)
	f.Start(r.stop)
	for typ, ok := range f.WaitForCacheSync(r.stop) {
		if !ok {
			t.Fatalf("recording node %s: syncing the %v informer", node, typ)
		}
	}
	return r
}

func (r *NodeRecorder) observe(obj any) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	tr := NodeTransition{At: time.Now(), Unschedulable: n.Spec.Unschedulable, Annotations: map[string]string{}, Conditions: map[string]string{}}
	for _, k := range r.keys {
		tr.Annotations[k] = n.Annotations[k]
	}
	for _, typ := range r.conds {
		tr.Conditions[typ] = ""
		for _, c := range n.Status.Conditions {
			if string(c.Type) == typ {
				tr.Conditions[typ] = string(c.Status)
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if k := len(r.log); k > 0 && r.log[k-1].Unschedulable == tr.Unschedulable &&
		maps.Equal(r.log[k-1].Annotations, tr.Annotations) && maps.Equal(r.log[k-1].Conditions, tr.Conditions) {
		return
	}
	r.log = append(r.log, tr)
}

// Stop ends the recording (idempotent).
func (r *NodeRecorder) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
}

// Transitions returns the recorded changes, the first being the state when the
// recording began.
func (r *NodeRecorder) Transitions() []NodeTransition {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

// Cordons returns when the node went from schedulable to unschedulable, and when it
// went back, in order.
func (r *NodeRecorder) Cordons() (cordoned, uncordoned []time.Time) {
	trs := r.Transitions()
	for i := 1; i < len(trs); i++ {
		switch {
		case trs[i].Unschedulable && !trs[i-1].Unschedulable:
			cordoned = append(cordoned, trs[i].At)
		case !trs[i].Unschedulable && trs[i-1].Unschedulable:
			uncordoned = append(uncordoned, trs[i].At)
		}
	}
	return cordoned, uncordoned
}

// FirstSince returns the first transition at or after since for which cond holds.
func (r *NodeRecorder) FirstSince(since time.Time, cond func(NodeTransition) bool) (NodeTransition, bool) {
	for _, tr := range r.Transitions() {
		if !tr.At.Before(since) && cond(tr) {
			return tr, true
		}
	}
	return NodeTransition{}, false
}

// String lists the transitions with their offsets from the first, for failure
// messages.
func (r *NodeRecorder) String() string {
	var sb strings.Builder
	trs := r.Transitions()
	for _, tr := range trs {
		fmt.Fprintf(&sb, "\n  +%6.2fs unschedulable=%v", tr.At.Sub(trs[0].At).Seconds(), tr.Unschedulable)
		for _, k := range r.keys {
			fmt.Fprintf(&sb, " %s=%q", k, tr.Annotations[k])
		}
		for _, typ := range r.conds {
			fmt.Fprintf(&sb, " %s=%q", typ, tr.Conditions[typ])
		}
	}
	return sb.String()
}
