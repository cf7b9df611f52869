package cli

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/rebootgate/rebootgate/engine/agent"
	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// TestFrontEndsAgreeOnBackoffs: one node state — rebooted ten minutes ago (its loop
// back-off recorded by an agent with --loop-backoff 3h, or by an older agent that
// recorded none), or backing off after a failure — gets the same answer from the
// agent's decision (run on a fake API), from eval and from plan: denied with the same
// reasons, and forecast to start exactly when the back-off ends.
func TestFrontEndsAgreeOnBackoffs(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	for _, tc := range []struct {
		name  string
		ann   map[string]string
		until time.Time
		want  []string // reasons' sources
	}{
		{"loop back-off recorded", map[string]string{
			nodestate.AnnotationLastReboot: ts(-10 * time.Minute), nodestate.AnnotationLoopBackoffUntil: ts(170 * time.Minute),
		}, now.Add(170 * time.Minute), []string{decision.SourceLoopBackoff}},
		{"loop back-off of an older agent", map[string]string{
			nodestate.AnnotationLastReboot: ts(-10 * time.Minute),
		}, now.Add(50 * time.Minute), []string{decision.SourceLoopBackoff}},
		{"failure back-off", map[string]string{
			nodestate.AnnotationLastReboot: ts(-3 * time.Hour), nodestate.AnnotationLoopBackoffUntil: ts(-2 * time.Hour),
			nodestate.AnnotationFailures: "1", nodestate.AnnotationRetryAfter: ts(5 * time.Minute),
		}, now.Add(5 * time.Minute), []string{decision.SourceFailureBackoff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := &corev1.Node{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
				ObjectMeta: metav1.ObjectMeta{Name: "n1", Annotations: tc.ann},
				Status: corev1.NodeStatus{
					NodeInfo:   corev1.NodeSystemInfo{BootID: "boot-1"},
					Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
				},
			}
			agentSaid := agentDecision(t, node.DeepCopy())

			data, err := json.Marshal(node)
			if err != nil {
				t.Fatal(err)
			}
			nodeFile := writeFile(t, "node.json", string(data))
			code, out, errOut := run("eval", "--node", nodeFile, "--at", now.Format(time.RFC3339), "-o", "json")
			if code != 0 {
				t.Fatalf("eval: exit %d: %s", code, errOut)
			}
			var evalSaid decision.Decision
			if err := json.Unmarshal([]byte(out), &evalSaid); err != nil {
				t.Fatal(err)
			}
			if agentSaid.Allowed || evalSaid.Allowed || !reflect.DeepEqual(agentSaid.Reasons, evalSaid.Reasons) {
				t.Errorf("agent: allowed=%v %v\neval:  allowed=%v %v\nwant both denied for the same reasons", agentSaid.Allowed, agentSaid.Reasons, evalSaid.Allowed, evalSaid.Reasons)
			}
			var sources []string
			for _, r := range evalSaid.Reasons {
				sources = append(sources, r.Source)
			}
			if !reflect.DeepEqual(sources, tc.want) {
				t.Errorf("eval's reasons' sources = %v, want %v", sources, tc.want)
			}

			code, out, errOut = run("plan", "--nodes", nodeFile, "--need", "n1", "--at", now.Format(time.RFC3339), "--duration", "10m", "-o", "json")
			if code != 0 {
				t.Fatalf("plan: exit %d: %s", code, errOut)
			}
			var forecast struct {
				Nodes []struct {
					Node  string     `json:"node"`
					Start *time.Time `json:"start"`
				} `json:"nodes"`
				Never []json.RawMessage `json:"never"`
			}
			if err := json.Unmarshal([]byte(out), &forecast); err != nil {
				t.Fatal(err)
			}
			if len(forecast.Nodes) != 1 || len(forecast.Never) != 0 || forecast.Nodes[0].Start == nil || !forecast.Nodes[0].Start.Equal(tc.until) {
				t.Errorf("plan: %s\nwant n1 scheduled to start at %s, when its back-off ends", out, tc.until.Format(time.RFC3339))
			}
		})
	}
}

// agentDecision runs a real agent (default config, reboot required) on node over a
// fake API until it has reported its decision, and returns it.
func agentDecision(t *testing.T, node *corev1.Node) nodestate.Decision {
	t.Helper()
	dir := t.TempDir()
	sentinel := filepath.Join(dir, "reboot-required")
	if err := os.WriteFile(sentinel, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset(node)
	a, err := agent.New(agent.Config{
		NodeName: node.Name, Namespace: "rebootgate", SentinelPath: sentinel,
		RebootCommand: []string{"touch", filepath.Join(dir, "reboot-requested")}, RecheckInterval: time.Hour, LockJitter: -1,
	}, client, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	for {
		n, err := client.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		if err == nil {
			if d, found, err := nodestate.DecisionOf(n); err != nil {
				t.Fatal(err)
			} else if found {
				return d
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("timed out waiting for the agent's decision")
		case <-time.After(20 * time.Millisecond):
		}
	}
}
