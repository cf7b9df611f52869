package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// hookServer records the bodies notifications post to it (shoutrrr's generic://).
type hookServer struct {
	mu     sync.Mutex
	bodies []string
	url    string
}

func newHookServer(t *testing.T) *hookServer {
	h := &hookServer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.bodies = append(h.bodies, string(data))
		h.mu.Unlock()
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	h.url = fmt.Sprintf("generic://%s/hook?disabletls=yes", ln.Addr())
	return h
}

func (h *hookServer) received(sub string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range h.bodies {
		if strings.Contains(b, sub) {
			return true
		}
	}
	return false
}

// TestMetricsAndNotificationsAfterARealRun reads the values — not only the names — of
// the metrics that matter, scraped from the agent during and after a real reboot on
// the bed, checks kured's node annotations, and that the drain, reboot and uncordon
// notifications carry the decision that allowed the reboot.
func TestMetricsAndNotificationsAfterARealRun(t *testing.T) {
	c := newCluster(t, map[string]int{"user": 1})
	node := c.nodes["user"][0]
	hook := newHookServer(t)
	open := time.Now().UTC().Add(30 * time.Second).Truncate(time.Second)
	pools := userPoolOpeningAt(open, 1)
	const tmpl = "{{.Node}} pool={{.Decision.Pool}} allowed={{.Decision.Allowed}}"
	sim := c.simulate(testbed.SimConfig{Command: c.agentCommand(c.writeConfig(pools, ""),
		"--soak", "10s", "--annotate-nodes", "--notify-url", hook.url,
		"--message-template-drain", "drain "+tmpl, "--message-template-reboot", "reboot "+tmpl, "--message-template-uncordon", "uncordon "+tmpl)})
	ctx := context.Background()
	want := func(name string, labels map[string]string, value float64) {
		t.Helper()
		err := testbed.Poll(ctx, 30*time.Second, fmt.Sprintf("%s%v = %v", name, labels, value), func(ctx context.Context) (bool, error) {
			v, found, err := metricValue(ctx, sim, node, name, labels)
			return err == nil && found && v == value, nil
		})
		if err != nil {
			v, found, scrapeErr := metricValue(ctx, sim, node, name, labels)
			t.Errorf("%v; last value %v (found %v, %v)", err, v, found, scrapeErr)
		}
	}

	want("rebootgate_reboot_required", nil, 0)
	want("kured_reboot_required", nil, 0)
	if err := sim.SetRebootRequired(node, true); err != nil {
		t.Fatal(err)
	}
	c.waitNode(node, time.Minute, "blocked by the window", func(n *corev1.Node) bool {
		return strings.Contains(decisionOf(n), "outside every reboot window")
	})
	want("rebootgate_reboot_required", nil, 1)
	want("kured_reboot_required", nil, 1)
	want("rebootgate_gate_decision", map[string]string{"pool": "user"}, 0)
	want("rebootgate_blocked", map[string]string{"pool": "user", "source": "policy"}, 1)

	// The window opens; the soak keeps the rebooted node in Verifying for 10s.
	n := c.waitNode(node, 2*time.Minute, "verifying after its reboot", func(n *corev1.Node) bool {
		return nodestate.StateOf(n).Phase == nodestate.PhaseVerifying
	})
	if n.Annotations[nodestate.AnnotationKuredRebootInProgress] == "" || n.Annotations[nodestate.AnnotationKuredMostRecentRebootNeeded] == "" {
		t.Errorf("kured's annotations missing while rebooting: %v", n.Annotations)
	}
	want("rebootgate_phase", map[string]string{"phase": "Verifying"}, 1)
	want("rebootgate_phase", map[string]string{"phase": "Draining"}, 0)

	n = c.waitNode(node, time.Minute, "finished and uncordoned", func(n *corev1.Node) bool {
		return nodestate.StateOf(n).Phase == nodestate.PhaseIdle && !n.Spec.Unschedulable
	})
	if _, ok := n.Annotations[nodestate.AnnotationKuredRebootInProgress]; ok {
		t.Errorf("%s left after the reboot", nodestate.AnnotationKuredRebootInProgress)
	}
	if at, err := time.Parse(time.RFC3339, n.Annotations[nodestate.AnnotationKuredMostRecentRebootNeeded]); err != nil || at.Before(open.Add(-time.Second)) {
		t.Errorf("%s = %q, want an RFC 3339 time at or after the window opened (%s)", nodestate.AnnotationKuredMostRecentRebootNeeded,
			n.Annotations[nodestate.AnnotationKuredMostRecentRebootNeeded], open)
	}
	want("rebootgate_reboots_total", map[string]string{"pool": "user"}, 1)
	want("rebootgate_reboot_duration_seconds_count", map[string]string{"pool": "user"}, 1)
	want("rebootgate_total_duration_seconds_count", map[string]string{"pool": "user"}, 1)
	want("rebootgate_phase", map[string]string{"phase": "Verifying"}, 0)
	want("kured_reboot_required", nil, 0)
	// The total runs from the cordon, before the reboot, through the 10s soak: the
	// agent restarted by the reboot measured it from the node's annotations.
	if sum, _, err := metricValue(ctx, sim, node, "rebootgate_total_duration_seconds_sum", nil); err != nil || sum < 10 {
		t.Errorf("rebootgate_total_duration_seconds_sum = %v (%v), want at least the 10s soak", sum, err)
	}
	if sum, _, err := metricValue(ctx, sim, node, "rebootgate_reboot_duration_seconds_sum", nil); err != nil || sum <= 0 {
		t.Errorf("rebootgate_reboot_duration_seconds_sum = %v (%v), want > 0", sum, err)
	}
	if _, found, _ := metricValue(ctx, sim, node, "rebootgate_blocked", nil); found {
		t.Error("rebootgate_blocked still has a series after the reboot was allowed")
	}
	for _, step := range []string{"drain", "reboot", "uncordon"} {
		msg := fmt.Sprintf("%s %s pool=user allowed=true", step, node)
		err := testbed.Poll(ctx, 10*time.Second, "notification "+msg, func(context.Context) (bool, error) { return hook.received(msg), nil })
		if err != nil {
			t.Error(err)
		}
	}
}
