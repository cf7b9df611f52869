package summary

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/engine/policy"
)

const ns = "rebootgate"

func readyNode(name, pool string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pool": pool}},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}},
			Images:     []corev1.ContainerImage{{Names: []string{"registry.example/big:1"}, SizeBytes: 1 << 30}},
		},
	}
}

func testEngine(t *testing.T) *decision.Engine {
	t.Helper()
	cfg, err := config.Parse([]byte(`apiVersion: rebootgate.io/v1alpha1
kind: RebootGateConfig
pools:
- name: user
  selector: node.labels["pool"] == "user"
  budget:
    countOthers: true
    disruptionTaints: [example.com/draining]
- name: system
  selector: node.labels["pool"] == "system"
`))
	if err != nil {
		t.Fatal(err)
	}
	e, err := decision.New(context.Background(), cfg, policy.DefaultModules())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// waitSummary polls the summary until cond holds.
func waitSummary(t *testing.T, client *fake.Clientset, what string, cond func(*disruption.Summary) bool) *disruption.Summary {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last *disruption.Summary
	for time.Now().Before(deadline) {
		s, _, err := read(context.Background(), client, ns)
		if err == nil && cond(s) {
			return s
		}
		last = s
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: not published within 10s; last summary %+v", what, last)
	return nil
}

func TestSummarizerPublishesAndFollowsChanges(t *testing.T) {
	client := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 3 {
		for _, pool := range []string{"user", "system"} {
			if _, err := client.CoreV1().Nodes().Create(ctx, readyNode(fmt.Sprintf("%s-%d", pool, i), pool), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	engine := testEngine(t)
	s, err := New(Config{
		Client: client, Namespace: ns, Identity: "summarizer-0", Interval: 5 * time.Millisecond, Heartbeat: 200 * time.Millisecond,
		Engine: func() (*decision.Engine, error) { return engine, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	first := waitSummary(t, client, "the first summary", func(s *disruption.Summary) bool { return s.Cluster.Nodes == 6 })
	if u, sys := first.Pool("user"), first.Pool("system"); u.Nodes != 3 || u.Ready != 3 || sys.Nodes != 3 || first.Writer != "summarizer-0" {
		t.Fatalf("first summary: user %+v system %+v writer %q", u, sys, first.Writer)
	}
	if first.NodeIndex == nil || first.NodeIndex.Shards != 1 || first.NodeIndexError != "" {
		t.Errorf("first summary's node index = %+v (%s), want one shard", first.NodeIndex, first.NodeIndexError)
	}

	// An admin cordons user-0; Karpenter... here the pool's own taint marks user-1.
	n0, _ := client.CoreV1().Nodes().Get(ctx, "user-0", metav1.GetOptions{})
	n0.Spec.Unschedulable = true
	if _, err := client.CoreV1().Nodes().Update(ctx, n0, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	n1, _ := client.CoreV1().Nodes().Get(ctx, "user-1", metav1.GetOptions{})
	n1.Spec.Taints = []corev1.Taint{{Key: "example.com/draining", Effect: corev1.TaintEffectNoSchedule}}
	if _, err := client.CoreV1().Nodes().Update(ctx, n1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// medik8s holds system-2.
	if _, err := client.CoordinationV1().Leases(disruption.Medik8sNamespace).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "node-system-2", Namespace: disruption.Medik8sNamespace},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("node-maintenance"), LeaseDurationSeconds: ptr.To[int32](3600),
			RenewTime: &metav1.MicroTime{Time: time.Now()}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := waitSummary(t, client, "the changes", func(s *disruption.Summary) bool {
		return s.Pool("user").UnavailableOthers == 2 && s.Pool("system").Maintenance == 1
	})
	if u := got.Pool("user"); u.Cordoned != 1 || u.Disrupted != 1 || u.Describe("", false) != "user-0 (cordoned), user-1 (taint example.com/draining)" {
		t.Errorf("user: %+v", u)
	}
	// The example taint is the user pool's: on a system node it would not count.
	if got.Cluster.Unavailable != 3 {
		t.Errorf("cluster unavailable = %d, want 3", got.Cluster.Unavailable)
	}
	// Unchanged counts are rewritten as heartbeats, so agents can tell it is fresh.
	beat := waitSummary(t, client, "a heartbeat", func(s *disruption.Summary) bool { return s.ObservedAt.After(got.ObservedAt) })
	if !disruption.SameCounts(beat, got) {
		t.Errorf("a heartbeat changed the counts: %+v", beat)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestStripKeepsWhatAvailabilityNeeds(t *testing.T) {
	n := readyNode("a", "user")
	n.Spec.Unschedulable = true
	n.Spec.Taints = []corev1.Taint{{Key: "karpenter.sh/disrupted"}}
	n.Annotations = map[string]string{nodestate.AnnotationPhase: "Draining"}
	n.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
	n.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}, {Type: corev1.NodeInternalDNS, Address: "a.internal"},
		{Type: corev1.NodeExternalIP, Address: "20.0.0.1"}, {Type: corev1.NodeHostName, Address: "a-host"},
	}
	out, err := strip(n)
	if err != nil {
		t.Fatal(err)
	}
	s := out.(*corev1.Node)
	if len(s.Status.Images) != 0 || len(s.ManagedFields) != 0 || !s.Status.Conditions[0].LastHeartbeatTime.IsZero() {
		t.Error("images, managed fields or heartbeat times kept")
	}
	st := disruption.Classify(s, disruption.BuiltinTaints, false, disruption.InReboot(s))
	if !st.Cordoned || !st.Disrupted || !st.Rebootgate || st.NotReady || s.Labels["pool"] != "user" {
		t.Errorf("the stripped node classifies differently: %+v labels %v", st, s.Labels)
	}
	// The node index needs the addresses it resolves alerts' instance labels by.
	if got, want := disruption.IdentityAddresses(s), []string{"10.0.0.1", "20.0.0.1", "a-host"}; !slices.Equal(got, want) {
		t.Errorf("the stripped node's indexed addresses = %v, want %v", got, want)
	}
	if len(s.Status.Addresses) != 3 {
		t.Errorf("addresses kept = %v, want only the indexed types", s.Status.Addresses)
	}
}

func TestMedik8sLeaseHolds(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	renewed := func(ago time.Duration) *metav1.MicroTime { return &metav1.MicroTime{Time: now.Add(-ago)} }
	for name, tc := range map[string]struct {
		spec coordinationv1.LeaseSpec
		want bool
	}{
		"no holder":      {coordinationv1.LeaseSpec{LeaseDurationSeconds: ptr.To[int32](60), RenewTime: renewed(0)}, false},
		"empty holder":   {coordinationv1.LeaseSpec{HolderIdentity: ptr.To("")}, false},
		"held, fresh":    {coordinationv1.LeaseSpec{HolderIdentity: ptr.To("nm"), LeaseDurationSeconds: ptr.To[int32](60), RenewTime: renewed(30 * time.Second)}, true},
		"held, expired":  {coordinationv1.LeaseSpec{HolderIdentity: ptr.To("nm"), LeaseDurationSeconds: ptr.To[int32](60), RenewTime: renewed(2 * time.Minute)}, false},
		"no duration":    {coordinationv1.LeaseSpec{HolderIdentity: ptr.To("nm")}, true},
		"acquired only":  {coordinationv1.LeaseSpec{HolderIdentity: ptr.To("nm"), LeaseDurationSeconds: ptr.To[int32](60), AcquireTime: renewed(10 * time.Second)}, true},
		"no time at all": {coordinationv1.LeaseSpec{HolderIdentity: ptr.To("nm"), LeaseDurationSeconds: ptr.To[int32](60)}, true},
	} {
		if got := Holds(&coordinationv1.Lease{Spec: tc.spec}, now); got != tc.want {
			t.Errorf("%s: Holds = %v, want %v", name, got, tc.want)
		}
	}
}

func TestReadWithoutSummarySaysSo(t *testing.T) {
	_, _, err := NewObserver(fake.NewClientset(), ns).Read(context.Background(), time.Now())
	if err == nil || err.Error() != "no node summary: ConfigMap rebootgate/rebootgate-node-summary does not exist (is the summarizer running?)" {
		t.Errorf("err = %v", err)
	}
}

// A node list and watch that start failing (the summarizer's RBAC removed) make the
// summary incomplete, published at once and kept so at every heartbeat, instead of
// the last cache re-published as complete; once the nodes list again, it is complete.
func TestNodeWatchFailureMakesTheSummaryIncomplete(t *testing.T) {
	client := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 3 {
		if _, err := client.CoreV1().Nodes().Create(ctx, readyNode(fmt.Sprintf("user-%d", i), "user"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu      sync.Mutex
		denied  bool
		rv      int
		watches []*watch.FakeWatcher
	)
	forbidden := apierrors.NewForbidden(corev1.Resource("nodes"), "", errors.New(`User "system:serviceaccount:rebootgate:summarizer" cannot list resource "nodes"`))
	// Lists carry a new resourceVersion each time, as an API server's do.
	client.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if denied {
			return true, nil, forbidden
		}
		list, err := client.Tracker().List(corev1.SchemeGroupVersion.WithResource("nodes"), corev1.SchemeGroupVersion.WithKind("Node"), "")
		if err != nil {
			return true, nil, err
		}
		rv++
		list.(*corev1.NodeList).ResourceVersion = strconv.Itoa(rv)
		return true, list, nil
	})
	client.PrependWatchReactor("nodes", func(k8stesting.Action) (bool, watch.Interface, error) {
		mu.Lock()
		defer mu.Unlock()
		if denied {
			return true, nil, forbidden
		}
		w := watch.NewFake()
		watches = append(watches, w)
		return true, w, nil
	})
	engine := testEngine(t)
	s, err := New(Config{
		Client: client, Namespace: ns, Identity: "summarizer-0", Interval: 5 * time.Millisecond, Heartbeat: 100 * time.Millisecond,
		Engine: func() (*decision.Engine, error) { return engine, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitSummary(t, client, "a complete summary", func(s *disruption.Summary) bool { return s.Cluster.Nodes == 3 && len(s.Errors) == 0 })

	// RBAC removed, then the watch ends (its timeout, a connection reset): the
	// reflector re-lists and is refused.
	mu.Lock()
	denied = true
	for _, w := range watches {
		w.Stop()
	}
	mu.Unlock()
	// The reflector's error names the failed list and wraps the API server's.
	want := "Nodes cannot be listed or watched: failed to list *v1.Node: " + forbidden.Error()
	bad := waitSummary(t, client, "an incomplete summary", func(s *disruption.Summary) bool { return slices.Contains(s.Errors, want) })
	if err := decision.SummaryUsable(bad, time.Now(), time.Now()); err == nil || !strings.Contains(err.Error(), "the node summary is incomplete: [Nodes cannot be listed or watched: ") {
		t.Errorf("SummaryUsable = %v, want incomplete naming the nodes", err)
	}
	// Heartbeats keep it incomplete.
	later := waitSummary(t, client, "a later heartbeat", func(s *disruption.Summary) bool {
		return s.ObservedAt.After(bad.ObservedAt.Add(300 * time.Millisecond))
	})
	if !slices.Contains(later.Errors, want) {
		t.Errorf("a heartbeat while the nodes cannot be listed: errors %q", later.Errors)
	}

	mu.Lock()
	denied = false
	mu.Unlock()
	waitSummary(t, client, "a complete summary after the nodes list again", func(s *disruption.Summary) bool { return s.Cluster.Nodes == 3 && len(s.Errors) == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// A summarizer whose first node list is refused publishes an incomplete summary that
// says why, rather than waiting for the list silently.
func TestNodeListRefusedFromTheStart(t *testing.T) {
	client := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(corev1.Resource("nodes"), "", errors.New("no RBAC"))
	})
	engine := testEngine(t)
	s, err := New(Config{
		Client: client, Namespace: ns, Identity: "summarizer-0", Interval: 5 * time.Millisecond,
		Engine: func() (*decision.Engine, error) { return engine, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Run(ctx) }()
	waitSummary(t, client, "an incomplete summary", func(s *disruption.Summary) bool {
		return len(s.Errors) > 0 && strings.HasPrefix(s.Errors[0], "Nodes cannot be listed or watched: ") && strings.Contains(s.Errors[0], "no RBAC")
	})
}
