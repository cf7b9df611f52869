package summary

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/facts"
)

// indexWrites records the summarizer's writes of index shards, and checks at each
// write of the summary that every shard it names holds that hash already (shards are
// written before the summary naming them).
type indexWrites struct {
	mu        sync.Mutex
	at        []time.Time
	summaries int
	errs      []string
}

func (w *indexWrites) install(t *testing.T, client *fake.Clientset) {
	client.PrependReactor("*", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		var cm *corev1.ConfigMap
		switch a := a.(type) {
		case k8stesting.CreateAction:
			cm, _ = a.GetObject().(*corev1.ConfigMap)
		case k8stesting.UpdateAction:
			cm, _ = a.GetObject().(*corev1.ConfigMap)
		}
		if cm == nil {
			return false, nil, nil
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if strings.HasPrefix(cm.Name, IndexConfigMapPrefix) {
			w.at = append(w.at, time.Now())
			return false, nil, nil
		}
		w.summaries++
		var s disruption.Summary
		if err := json.Unmarshal([]byte(cm.Data[DataKey]), &s); err != nil || s.NodeIndex == nil {
			w.errs = append(w.errs, fmt.Sprintf("summary %v without an index: %v", s.NodeIndex, err))
			return false, nil, nil
		}
		for i, h := range s.NodeIndex.Hashes {
			obj, err := client.Tracker().Get(corev1.SchemeGroupVersion.WithResource("configmaps"), ns, IndexConfigMapName(i))
			if err != nil {
				w.errs = append(w.errs, fmt.Sprintf("the summary names shard %d, not written: %v", i, err))
				continue
			}
			if got := disruption.IndexHash([]byte(obj.(*corev1.ConfigMap).Data[IndexDataKey])); got != h {
				w.errs = append(w.errs, fmt.Sprintf("the summary names shard %d at %s, it holds %s", i, h, got))
			}
		}
		return false, nil, nil
	})
}

func (w *indexWrites) get() ([]time.Time, int, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.at), w.summaries, slices.Clone(w.errs)
}

// The summarizer publishes the node index in its own ConfigMaps, which the summary
// names by hash: written before the summary naming them, never rewritten by the
// heartbeat, rewritten when an address changes, and at most once per IndexInterval.
func TestSummarizerWritesIndexOnlyWhenItChanges(t *testing.T) {
	client := fake.NewClientset()
	var writes indexWrites
	writes.install(t, client)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := func(n *corev1.Node, ip string) *corev1.Node {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
		return n
	}
	for i := range 3 {
		if _, err := client.CoreV1().Nodes().Create(ctx, addr(readyNode(fmt.Sprint("user-", i), "user"), fmt.Sprint("10.0.0.", i)), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	engine := testEngine(t)
	const indexInterval = 400 * time.Millisecond
	s, err := New(Config{
		Client: client, Namespace: ns, Identity: "summarizer-0", Interval: 5 * time.Millisecond, Heartbeat: 50 * time.Millisecond,
		IndexInterval: indexInterval, Engine: func() (*decision.Engine, error) { return engine, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Run(ctx) }()

	first := waitSummary(t, client, "the summary naming the index", func(s *disruption.Summary) bool { return s.NodeIndex != nil })
	reader := NewIndexReader(client, ns, clocktesting.NewFakeClock(time.Now()))
	shards, err := reader.Read(ctx, first.NodeIndex, []string{"10.0.0.1"})
	if err != nil || len(shards) != 1 || shards[0].Hash != first.NodeIndex.Hashes[0] {
		t.Fatalf("reading the index: %v %+v", err, shards)
	}
	if nodes, _ := shards[0].Lookup("10.0.0.1"); !slices.Equal(nodes, []string{"user-1"}) {
		t.Errorf("10.0.0.1 is %v, want user-1", nodes)
	}
	// Heartbeats rewrite the summary, never the index.
	at, sums, _ := writes.get()
	waitSummary(t, client, "five heartbeats", func(*disruption.Summary) bool { _, n, _ := writes.get(); return n >= sums+5 })
	if again, _, _ := writes.get(); len(again) != len(at) || len(at) != 1 {
		t.Errorf("index written %d times, then %d after five heartbeats; want once", len(at), len(again))
	}

	// user-1 changes address twice in a row: the index follows, at most once per
	// IndexInterval.
	for _, ip := range []string{"10.0.1.1", "10.0.2.1"} {
		n, _ := client.CoreV1().Nodes().Get(ctx, "user-1", metav1.GetOptions{})
		if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, addr(n, ip), metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitSummary(t, client, "the index with "+ip, func(s *disruption.Summary) bool {
			shards, err := NewIndexReader(client, ns, clocktesting.NewFakeClock(time.Now())).Read(ctx, s.NodeIndex, []string{ip})
			if err != nil || len(shards) != 1 {
				return false
			}
			nodes, _ := shards[0].Lookup(ip)
			return shards[0].Hash == s.NodeIndex.Hashes[0] && slices.Equal(nodes, []string{"user-1"})
		})
	}
	at, _, errs := writes.get()
	if len(at) != 3 {
		t.Errorf("index written %d times, want 3 (one per content)", len(at))
	}
	for i := 1; i < len(at); i++ {
		// The summarizer dates a write when it decides it; the reactor sees it a little later.
		if gap := at[i].Sub(at[i-1]); gap < indexInterval-50*time.Millisecond {
			t.Errorf("index writes %d and %d %v apart, less than %v", i-1, i, gap, indexInterval)
		}
	}
	for _, e := range errs {
		t.Error(e)
	}
}

// An agent reads a shard only for a key it looks up, only when the summary names a
// hash it has not read, and retries a shard read at another hash (or not read) only
// after indexRetry; a summary that cannot be used costs no read at all.
func TestIndexReaderReadsOnlyWhatChanged(t *testing.T) {
	nodes := []*corev1.Node{readyNode("a", "user"), readyNode("b", "user")}
	nodes[0].Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}}
	nodes[1].Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.2"}}
	client := fake.NewClientset()
	gets := map[string]int{}
	client.PrependReactor("get", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		gets[a.(k8stesting.GetAction).GetName()]++
		return false, nil, nil
	})
	publish := func(nodes []*corev1.Node) *disruption.IndexRef {
		t.Helper()
		_, data, ref, err := disruption.BuildIndex(nodes, 4)
		if err != nil {
			t.Fatal(err)
		}
		for i := range data {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: IndexConfigMapName(i), Namespace: ns}, Data: map[string]string{IndexDataKey: string(data[i])}}
			if _, err := client.CoreV1().ConfigMaps(ns).Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
				if _, err := client.CoreV1().ConfigMaps(ns).Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		}
		return ref
	}
	ref := publish(nodes)
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC))
	r := NewIndexReader(client, ns, clk)
	ctx := context.Background()
	key := "10.0.0.2"
	name := IndexConfigMapName(disruption.ShardOf(key, ref.Shards))
	read := func(ref *disruption.IndexRef) *disruption.IndexShard {
		t.Helper()
		shards, err := r.Read(ctx, ref, []string{key})
		if err != nil || len(shards) != 1 {
			t.Fatalf("Read: %v %v", shards, err)
		}
		return shards[0]
	}
	total := func() int {
		n := 0
		for _, c := range gets {
			n += c
		}
		return n
	}

	if s := read(ref); gets[name] != 1 || total() != 1 || s.Hash != ref.Hashes[s.Shard] {
		t.Fatalf("first read: GETs %v, shard %s", gets, s.Hash)
	}
	read(ref)
	clk.Step(time.Hour)
	read(ref)
	if total() != 1 {
		t.Errorf("the same hash read again: GETs %v", gets)
	}
	// b moves: the summary names a new hash for its shard.
	nodes[1].Status.Addresses[0].Address = "10.0.9.2"
	moved := publish(nodes)
	if s := read(moved); gets[name] != 2 || s.Hash != moved.Hashes[s.Shard] {
		t.Errorf("after the change: GETs %v, shard %s want %s", gets, s.Hash, moved.Hashes[s.Shard])
	}
	// A summary naming a hash the shard does not hold yet: one read, then none until
	// indexRetry has passed, whatever the number of decisions.
	ahead := &disruption.IndexRef{Shards: moved.Shards, Hashes: slices.Clone(moved.Hashes)}
	ahead.Hashes[disruption.ShardOf(key, ref.Shards)] = "0000000000000000"
	for range 5 {
		read(ahead)
	}
	if gets[name] != 3 {
		t.Errorf("a shard at another hash: %d GETs, want 1 more (3)", gets[name])
	}
	clk.Step(indexRetry)
	read(ahead)
	if gets[name] != 4 || total() != 4 {
		t.Errorf("after indexRetry: GETs %v, want one more of %s", gets, name)
	}

	// Fill reads nothing without keys, or for a summary that cannot be used.
	sum := &disruption.Summary{Writer: "s", NodeIndex: moved}
	for what, f := range map[string]*facts.Facts{
		"stale":      {Summary: sum, SummarySeenAt: clk.Now().Add(-2 * decision.MaxSummaryAge)},
		"incomplete": {Summary: &disruption.Summary{Writer: "s", NodeIndex: moved, Errors: []string{"x"}}, SummarySeenAt: clk.Now()},
		"no index":   {Summary: &disruption.Summary{Writer: "s"}, SummarySeenAt: clk.Now()},
	} {
		r.Fill(ctx, f, []string{"10.0.0.1"}, clk.Now())
		if f.NodeIndex != nil || f.NodeIndexErr != nil {
			t.Errorf("%s summary: shards read %v %v", what, f.NodeIndex, f.NodeIndexErr)
		}
	}
	f := &facts.Facts{Summary: sum, SummarySeenAt: clk.Now()}
	r.Fill(ctx, f, nil, clk.Now())
	if f.NodeIndex != nil || total() != 4 {
		t.Errorf("no keys: shards %v, GETs %v", f.NodeIndex, gets)
	}
	r.Fill(ctx, f, []string{"10.0.0.1"}, clk.Now())
	if len(f.NodeIndex) != 1 || f.NodeIndexErr != nil || f.NodeIndex[0].Shard != disruption.ShardOf("10.0.0.1", 4) {
		t.Errorf("usable summary: shards %v, %v", f.NodeIndex, f.NodeIndexErr)
	}
	// A shard that does not exist says so.
	if _, err := r.Read(ctx, &disruption.IndexRef{Shards: 16, Hashes: make([]string, 16)}, []string{"10.0.0.1"}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing shard: %v", err)
	}
}
