package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/engine/notify"
)

// recordingNotifier keeps the notifications sent.
type recordingNotifier struct {
	mu     sync.Mutex
	events []notify.Event
}

func (r *recordingNotifier) Notify(_ context.Context, ev notify.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	return nil
}

func (r *recordingNotifier) kinds(k notify.Kind) []notify.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []notify.Event
	for _, ev := range r.events {
		if ev.Kind == k {
			out = append(out, ev)
		}
	}
	return out
}

// TestConfigThatDoesNotLoadStopsNewRebootsOnly (issue 18, item 5): a config update that
// does not load may have been a restriction, so an agent that needs a reboot claims no
// slot until a valid config loads, and says why: the decision (source config, the file
// and field), the RebootPolicyLoaded condition on its Node, and one notification. Fixed,
// the reboot goes ahead. Broken again while the node is rebooting, the reboot in
// progress still finishes: verified, uncordoned, slot released.
func TestConfigThatDoesNotLoadStopsNewRebootsOnly(t *testing.T) {
	const good = "apiVersion: rebootgate.io/v1alpha1\nkind: RebootGateConfig\npools:\n- name: user\n  concurrency: 1\n"
	const bad = "apiVersion: rebootgate.io/v1alpha1\nkind: RebootGateConfig\npools:\n- name: user\n  concurrency: 1\n  colour: blue\n"
	dir := t.TempDir()
	configPath := filepath.Join(dir, "config.yaml")
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(configPath+".tmp", []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(configPath+".tmp", configPath); err != nil {
			t.Fatal(err)
		}
	}
	write(good)
	sentinel, requested := filepath.Join(dir, "reboot-required"), filepath.Join(dir, "reboot-requested")
	client := fake.NewClientset(fakeNode("n1", "boot-1"))
	a, err := New(Config{
		NodeName: "n1", Namespace: "rebootgate", ConfigPath: configPath, SentinelPath: sentinel,
		RebootCommand: []string{"touch", requested}, RecheckInterval: 200 * time.Millisecond, LockJitter: -1,
		RebootTimeout: time.Minute, ReadyTimeout: time.Minute,
	}, client, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	notes := &recordingNotifier{}
	a.notifier = notes
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	defer func() {
		stop()
		<-done
	}()
	node := func() *corev1.Node {
		n, err := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	policyCond := func() *corev1.NodeCondition {
		n := node()
		for i := range n.Status.Conditions {
			if n.Status.Conditions[i].Type == nodestate.ConditionPolicyLoaded {
				return &n.Status.Conditions[i]
			}
		}
		return nil
	}
	waitFor(t, ctx, "RebootPolicyLoaded True", func() bool {
		c := policyCond()
		return c != nil && c.Status == corev1.ConditionTrue && c.Reason == "PolicyLoaded"
	})

	write(bad)
	wantErr := "config " + configPath + ": pools[0].colour"
	waitFor(t, ctx, "RebootPolicyLoaded False naming the file and field", func() bool {
		c := policyCond()
		return c != nil && c.Status == corev1.ConditionFalse && c.Reason == "ConfigError" && strings.Contains(c.Message, wantErr)
	})
	if err := os.WriteFile(sentinel, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "a decision denied by the config naming the error", func() bool {
		d := node().Annotations[nodestate.AnnotationDecision]
		return strings.Contains(d, `"allowed":false`) && strings.Contains(d, `"source":"config"`) && strings.Contains(d, wantErr)
	})
	// Positive evidence first (the denial above); then a few more denied re-decisions,
	// each of which would have claimed the free slot under the old, last good config.
	blocked := a.metrics.GateDecisions.WithLabelValues("n1", "", "blocked")
	count := func() float64 {
		var m dto.Metric
		if err := blocked.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	seen := count()
	waitFor(t, ctx, "three more denied decisions", func() bool { return count() >= seen+3 })
	if held, _ := slotHolders(ctx, client); held != "" {
		t.Fatalf("slot %s claimed under a config that does not load", held)
	}
	if n := node(); n.Spec.Unschedulable {
		t.Fatal("cordoned under a config that does not load")
	}
	if got := notes.kinds(notify.KindLoadError); len(got) != 1 || !strings.Contains(got[0].Detail, wantErr) {
		t.Fatalf("load-error notifications = %+v; want one naming %q", got, wantErr)
	}

	write(good)
	waitFor(t, ctx, "the reboot command once the config loads", func() bool { _, err := os.Stat(requested); return err == nil })
	write(bad)
	waitFor(t, ctx, "RebootPolicyLoaded False again", func() bool {
		c := policyCond()
		return c != nil && c.Status == corev1.ConditionFalse
	})
	// The host reboots under the broken config: new boot ID, sentinel gone.
	n := node()
	n.Status.NodeInfo.BootID += "-next"
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(sentinel); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the reboot in progress to finish: uncordoned, idle, slot released", func() bool {
		n := node()
		if n.Spec.Unschedulable || nodestate.StateOf(n).Phase != nodestate.PhaseIdle || n.Annotations[nodestate.AnnotationLastReboot] == "" {
			return false
		}
		held, count := slotHolders(ctx, client)
		return held == "" && count > 0
	})
}
