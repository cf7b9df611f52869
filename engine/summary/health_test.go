package summary

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/rebootgate/rebootgate/engine/decision"
)

// waitFor polls cond (real time: the informers sync on their own) for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestReadyAndAlive: a summarizer is not ready before Run, nor while Run has synced but
// not yet published; a write that hangs stalls the loop, which Alive reports once it has
// made no pass for longer than the stall bound; once the write goes through it is ready
// and, with the next pass, alive again. Stopped, it is neither publishing nor stuck.
func TestReadyAndAlive(t *testing.T) {
	client := fake.NewClientset()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	client.PrependReactor("create", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		once.Do(func() { close(entered); <-release })
		return false, nil, nil // then the tracker creates it
	})
	if _, err := client.CoreV1().Nodes().Create(context.Background(), readyNode("user-0", "user"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	engine := testEngine(t)
	fc := testingclock.NewFakeClock(time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC))
	s, err := New(Config{
		Client: client, Namespace: ns, Identity: "summarizer-0", Interval: time.Second, Heartbeat: 10 * time.Second, Clock: fc,
		Engine: func() (*decision.Engine, error) { return engine, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	const stall = 30 * time.Second
	if err := s.Ready(); err == nil || !strings.Contains(err.Error(), "not publishing") {
		t.Fatalf("ready before Run: %v", err)
	}
	if err := s.Alive(stall); err != nil {
		t.Fatalf("not running, yet not alive: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "the node informer synced", func() bool {
		err := s.Ready()
		return err != nil && strings.Contains(err.Error(), "no summary published yet")
	})
	if err := s.Alive(stall); err != nil {
		t.Fatalf("synced, not yet a pass: %v", err)
	}

	// The first pass writes; the write hangs.
	waitFor(t, "the loop's ticker", func() bool { return fc.HasWaiters() })
	fc.Step(time.Second)
	<-entered
	fc.Step(stall)
	if err := s.Alive(stall); err != nil {
		t.Errorf("alive %v after its last pass: %v", stall, err)
	}
	fc.Step(time.Second)
	err = s.Alive(stall)
	if err == nil || !strings.Contains(err.Error(), "the publishing loop has made no pass in 31s (more than 30s)") {
		t.Errorf("a loop stuck in a write for 31s: alive = %v", err)
	}
	if err := s.Ready(); err == nil {
		t.Error("ready before the first summary was written")
	}

	close(release)
	waitFor(t, "ready once published", func() bool { return s.Ready() == nil })
	fc.Step(time.Second)
	waitFor(t, "alive with the next pass", func() bool { return s.Alive(stall) == nil })

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(); err == nil || !strings.Contains(err.Error(), "not publishing") {
		t.Errorf("ready after Run ended: %v", err)
	}
}

// TestAliveWhileTheNodeListHangs: a first node list that neither completes nor fails
// keeps the loop from starting; once the bound has passed since Run started, the
// summarizer is not alive, and says why.
func TestAliveWhileTheNodeListHangs(t *testing.T) {
	client := fake.NewClientset()
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	client.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		<-hang
		return true, nil, apierrors.NewServiceUnavailable("the test is over")
	})
	fc := testingclock.NewFakeClock(time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC))
	engine := testEngine(t)
	s, err := New(Config{
		Client: client, Namespace: ns, Identity: "summarizer-0", Clock: fc,
		Engine: func() (*decision.Engine, error) { return engine, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = s.Run(ctx) }()
	waitFor(t, "Run started", func() bool {
		err := s.Ready()
		return err != nil && strings.Contains(err.Error(), "the node informer has not synced yet")
	})
	if err := s.Alive(time.Minute); err != nil {
		t.Errorf("just started: alive = %v", err)
	}
	fc.Step(2 * time.Minute)
	if err := s.Alive(time.Minute); err == nil || !strings.Contains(err.Error(), "the node informer has not synced in 2m0s") {
		t.Errorf("the node list hanging for 2m: alive = %v", err)
	}
}
