package summary

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/disruption"
)

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// writeSummary creates or updates the summary ConfigMap with a summary stamped at stamp.
func writeSummary(t *testing.T, client *fake.Clientset, stamp time.Time) {
	t.Helper()
	data, err := json.Marshal(&disruption.Summary{ObservedAt: stamp, Writer: "summarizer-0", Pools: map[string]disruption.Counts{}})
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ConfigMapName}, Data: map[string]string{DataKey: string(data)}}
	cms := client.CoreV1().ConfigMaps(ns)
	if _, err := cms.Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		if _, err := cms.Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// A summary written with a stamp an hour ahead, then never updated, stays fresh for
// MaxSummaryAge from when the reader saw it appear, on the reader's clock, and is stale
// after that; the next real write makes it fresh again. (Judged on the stamp, as
// before, it stayed fresh for the hour.)
func TestFutureStampedSummaryGoesStaleOnTheReadersClock(t *testing.T) {
	client := fake.NewClientset()
	clk := testingclock.NewFakeClock(t0)
	obs := NewObserver(client, ns)
	usable := func() error {
		t.Helper()
		s, seenAt, err := obs.Read(context.Background(), clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		return decision.SummaryUsable(s, seenAt, clk.Now())
	}
	// The summarizer writes every 20 s; the agent reads every 2 s.
	for range 3 {
		writeSummary(t, client, clk.Now())
		for range 10 {
			if err := usable(); err != nil {
				t.Fatalf("at %s, written at most 20 s ago: %v", clk.Now().Format(time.RFC3339), err)
			}
			clk.Step(2 * time.Second)
		}
	}
	// The summarizer stops; a summary stamped an hour ahead appears between two reads.
	lastRead := clk.Now().Add(-2 * time.Second)
	writeSummary(t, client, clk.Now().Add(time.Hour))
	for clk.Now().Sub(lastRead) <= decision.MaxSummaryAge {
		if err := usable(); err != nil {
			t.Fatalf("at %s, %s after the last read before it appeared: %v", clk.Now().Format(time.RFC3339), clk.Now().Sub(lastRead), err)
		}
		clk.Step(2 * time.Second)
	}
	err := usable()
	if err == nil || !strings.Contains(err.Error(), "the node summary is stale") || !strings.Contains(err.Error(), "in the future of this reader's clock") {
		t.Fatalf("at %s, unchanged for more than %s: %v, want stale, stamped in the future", clk.Now().Format(time.RFC3339), decision.MaxSummaryAge, err)
	}
	clk.Step(time.Hour)
	if err := usable(); err == nil {
		t.Fatal("fresh again once its stamp is reached, though unchanged")
	}
	writeSummary(t, client, clk.Now())
	if err := usable(); err != nil {
		t.Fatalf("a new write: %v", err)
	}
}

// The rule by which a reader dates what it reads (observe), case by case.
func TestObserveDatesAVersionWithinWhatTheReaderSaw(t *testing.T) {
	type read struct {
		at    time.Duration // reader's clock, from t0
		data  string
		stamp time.Duration // writer's stamp, from t0
		want  time.Duration // seen at, from t0; -1: never (stale)
	}
	for _, tc := range []struct {
		name  string
		reads []read
	}{
		{"first read: dated by its stamp", []read{{at: 30 * time.Second, data: "a", stamp: 10 * time.Second, want: 10 * time.Second}}},
		{"first read of a long dead summary: stale at once, as by its stamp", []read{{at: 10 * time.Minute, data: "a", stamp: 0, want: 0}}},
		{"first read stamped a little ahead: now", []read{{at: 0, data: "a", stamp: 3 * time.Second, want: 0}}},
		{"first read stamped far ahead: never", []read{{at: 0, data: "a", stamp: time.Hour, want: -1}}},
		{"far ahead and unchanged: still never", []read{{at: 0, data: "a", stamp: time.Hour, want: -1}, {at: 30 * time.Second, data: "a", stamp: time.Hour, want: -1}}},
		{"far ahead, then a change: after the last read", []read{{at: 0, data: "a", stamp: time.Hour, want: -1}, {at: 2 * time.Second, data: "b", stamp: time.Hour, want: 0}}},
		{"unchanged: dated when first seen", []read{{at: 0, data: "a", stamp: 0, want: 0}, {at: 50 * time.Second, data: "a", stamp: 0, want: 0}}},
		{"a change between sparse reads: its stamp", []read{{at: 0, data: "a", stamp: 0, want: 0}, {at: 50 * time.Second, data: "b", stamp: 10 * time.Second, want: 10 * time.Second}}},
		{"writer's clock behind: after the last read", []read{{at: 0, data: "a", stamp: -10 * time.Minute, want: -10 * time.Minute}, {at: 2 * time.Second, data: "b", stamp: -10 * time.Minute, want: 0}}},
		{"writer's clock ahead: when read", []read{{at: 0, data: "a", stamp: 0, want: 0}, {at: 20 * time.Second, data: "b", stamp: 22 * time.Second, want: 20 * time.Second}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := testingclock.NewFakeClock(t0)
			var o Observer
			for i, r := range tc.reads {
				clk.SetTime(t0.Add(r.at))
				got := o.observe(r.data, t0.Add(r.stamp), clk.Now())
				want := t0.Add(r.want)
				if r.want == -1 {
					want = time.Time{}
				}
				if !got.Equal(want) {
					t.Errorf("read %d at %v of %s stamped %v: seen at %v, want %v", i, r.at, r.data, r.stamp, got.Sub(t0), r.want)
				}
			}
		})
	}
}
