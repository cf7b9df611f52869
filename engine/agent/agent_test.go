package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/rebootgate/rebootgate/engine/pipeline"
)

// TestAgentRebootsWithFakeAPI runs the whole agent loop against a fake API: the
// sentinel appears, the agent decides, takes a slot, cordons, drains, runs the reboot
// command; the test plays the host and changes the boot ID; the agent verifies,
// uncordons and releases.
func TestAgentRebootsWithFakeAPI(t *testing.T) {
	dir := t.TempDir()
	sentinel := filepath.Join(dir, "reboot-required")
	requested := filepath.Join(dir, "reboot-requested")
	client := fake.NewClientset(&corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"agentpool": "user"}},
		Status: corev1.NodeStatus{
			NodeInfo:   corev1.NodeSystemInfo{BootID: "boot-1"},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	})
	a, err := New(Config{
		NodeName: "n1", Namespace: "rebootgate", SentinelPath: sentinel,
		RebootCommand: []string{"touch", requested}, RecheckInterval: 500 * time.Millisecond,
		LockJitter: -1, RebootTimeout: time.Minute, ReadyTimeout: time.Minute,
	}, client, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	if err := os.WriteFile(sentinel, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the reboot command", func() bool { _, err := os.Stat(requested); return err == nil })
	n, err := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !n.Spec.Unschedulable || pipeline.StateOf(n).Phase != pipeline.PhaseRebooting {
		t.Fatalf("at the reboot: unschedulable=%v phase=%q", n.Spec.Unschedulable, pipeline.StateOf(n).Phase)
	}
	// The host reboots: new boot ID, sentinel gone.
	n.Status.NodeInfo.BootID = "boot-2"
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(sentinel); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "uncordon and slot release", func() bool {
		n, err := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		if err != nil || n.Spec.Unschedulable || pipeline.StateOf(n).Phase != pipeline.PhaseIdle {
			return false
		}
		leases, err := client.CoordinationV1().Leases("rebootgate").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		for _, l := range leases.Items {
			if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
				return false
			}
		}
		return len(leases.Items) > 0
	})
	n, _ = client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	if !strings.Contains(n.Annotations[AnnotationDecision], `"allowed":true`) || n.Annotations[pipeline.AnnotationLastReboot] == "" {
		t.Errorf("annotations = %v", n.Annotations)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
