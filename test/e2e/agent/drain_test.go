package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/rebootgate/rebootgate/test/testbed"
)

// TestDrainDelayAndTimeoutWithForceReboot: kured's --drain-delay waits after the
// cordon, --drain-timeout bounds the whole drain (all attempts), and with
// --force-reboot a drain that a PodDisruptionBudget blocks for ever ends in a reboot
// at the timeout, as in kured.
func TestDrainDelayAndTimeoutWithForceReboot(t *testing.T) {
	c := newCluster(t, map[string]int{"user": 1})
	node := c.nodes["user"][0]
	ctx := context.Background()
	// One replica and minAvailable 1: every eviction is refused.
	labels := map[string]string{"app": "pinned-" + c.id}
	if _, err := c.bed.Client.AppsV1().Deployments(c.ns).Create(ctx, testbed.NewDeployment(c.ns, "pinned", 1, labels, node), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.bed.WaitDeploymentAvailable(ctx, c.ns, "pinned", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := c.bed.Client.PolicyV1().PodDisruptionBudgets(c.ns).Create(ctx, testbed.NewPDB(c.ns, "pinned", labels, intstr.FromInt32(1)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.bed.WaitPDB(ctx, c.ns, "pinned", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	rec := c.bed.RecordNode(t, node)
	pools := `- name: user
  selector: 'node.labels[?"e2e-run"] == optional.of("` + c.id + `")'
  concurrency: 1
`
	const delay, timeout = 4 * time.Second, 10 * time.Second
	sim := c.simulate(testbed.SimConfig{Command: c.agentCommand(c.writeConfig(pools, ""),
		"--drain-delay", delay.String(), "--drain-timeout", timeout.String(), "--drain-attempts", "3", "--drain-retry-delay", "1s", "--force-reboot")})
	if err := sim.SetRebootRequired(node, true); err != nil {
		t.Fatal(err)
	}
	reboots, err := sim.WaitForReboots(ctx, 1, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	cordon, ok := rec.FirstSince(time.Time{}, func(tr testbed.NodeTransition) bool { return tr.Unschedulable })
	if !ok {
		t.Fatal("the node rebooted without being seen cordoned")
	}
	took := reboots[0].HookAt.Sub(cordon.At)
	// At least the delay and the timeout; well under three attempts of the timeout
	// each, which is what a per-attempt timeout would have taken.
	if took < delay+timeout-time.Second || took > delay+2*timeout {
		t.Errorf("reboot requested %v after the cordon; want about --drain-delay %v + --drain-timeout %v", took, delay, timeout)
	}
	if n := logCount(sim, node, fmt.Sprintf("the drain timed out after %v", timeout)); n == 0 {
		t.Error("the agent's log does not say the drain timed out")
	}
	if n := logCount(sim, node, "rebooting anyway (force reboot)"); n == 0 {
		t.Error("the agent's log does not say it rebooted anyway")
	}
}
