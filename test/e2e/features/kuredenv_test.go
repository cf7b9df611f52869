package features

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// TestKuredEnv configures the agent as kured's DaemonSet would, through KURED_*
// variables and no config file: node, sentinel, reboot command, period, lock TTL,
// metrics address, a daily window opening 15 s ahead and a blocking pod selector,
// which wins over the same flag given on the command line (the env wins, as in kured).
// KURED_DS_NAMESPACE names only kured's lock DaemonSet, never where the agent's Leases
// go; POD_NAMESPACE does (the drop-in relies on the default, namespace rebootgate,
// which parallel tests cannot share). Both nodes are blocked until the window opens;
// then the free node reboots and the one running a matching pod stays up, blocked by it.
func TestKuredEnv(t *testing.T) {
	e := newEnv(t)
	free, busy := e.node(nil), e.node(nil)
	pod := testbed.NewPod(e.ns, "blocker", busy, map[string]string{"app": "blocker"})
	if _, err := e.bed.Client.CoreV1().Pods(e.ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.bed.WaitPodsRunning(context.Background(), e.ns, "app=blocker", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	open := time.Now().UTC().Add(15 * time.Second).Truncate(time.Second)
	sim := e.simulate([]string{free, busy},
		[]string{binary, "agent", "--nsenter=false", "--lock-jitter", "100ms", "--blocking-pod-selector", "app=nothing"},
		"KURED_NODE_ID="+testbed.PhNode,
		"POD_NAMESPACE="+e.ns,
		"KURED_DS_NAMESPACE=kube-system",
		"KURED_REBOOT_SENTINEL="+testbed.PhSentinel,
		"KURED_REBOOT_COMMAND="+testbed.PhRebootHook,
		"KURED_PERIOD=2s",
		"KURED_LOCK_TTL=30s",
		"KURED_METRICS_HOST=127.0.0.1",
		"KURED_METRICS_PORT="+testbed.PhPort,
		"KURED_REBOOT_DAYS=su,mo,tu,we,th,fr,sa",
		"KURED_START_TIME="+open.Format("15:04:05"),
		"KURED_END_TIME="+open.Add(time.Hour).Format("15:04:05"),
		"KURED_TIME_ZONE=UTC",
		"KURED_BLOCKING_POD_SELECTOR=app=blocker",
	)
	e.required(sim, free, busy)
	for _, n := range []string{free, busy} {
		d := e.waitDecision(n, time.Minute, "blocked until the window opens", func(d nodestate.Decision) bool { return !d.Allowed })
		if d.NextAllowed != open.Format(time.RFC3339) || !strings.Contains(reasons(d.Reasons), "outside every reboot window") {
			t.Errorf("%s: blocked with %q, next allowed %q; want outside the window until %s", n, reasons(d.Reasons), d.NextAllowed, open.Format(time.RFC3339))
		}
	}
	if time.Now().After(open) {
		t.Fatalf("the blocked decisions came after the opening %s: the test's lead is too short", open.Format(time.RFC3339))
	}
	e.rebootedOnce(sim, free, open, time.Until(open)+time.Minute)
	d := e.waitDecision(busy, time.Minute, "blocked by the pod", func(d nodestate.Decision) bool {
		return strings.Contains(reasons(d.Reasons), `pod `+e.ns+`/blocker matches blocking selector "app=blocker"`)
	})
	if d.Allowed || d.Pool != "default" {
		t.Errorf("%s: decision %+v, want blocked in the flags' pool default", busy, d)
	}
	e.holds(sim, 4*time.Second, "the node running the blocking pod stays up", busy)
}
