package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/rebootgate/rebootgate/test/testbed"
)

// lastCheck runs finding 8's scene: one node of a pool takes the slot, is cordoned and
// drained (its pod is gone) and waits its --reboot-delay of delay; restrict is then
// applied, and must be reached by the check the agent makes last, right before its
// reboot request. After the delay has passed, and once the agent has undone its
// preparation (uncordoned, slot released), no reboot may have been requested.
func lastCheck(t *testing.T, delay time.Duration, rest string, extra []string, restrict func(f *fleet, node string)) {
	f := newFleet(t, 1, 1, rest)
	n := f.nodes[0]
	work := f.workload(n)
	sim := f.simulate(time.Second, f.agentCommand(append([]string{"--reboot-delay", delay.String()}, extra...)...))
	f.setRequired(sim, n)
	drained := f.waitDrained(n, work, time.Minute)
	restrict(f, n)
	if rebootRequested(sim, n) {
		t.Fatalf("%s asked for its reboot before the restriction was in place: the test's premise failed", n)
	}
	f.waitNode(n, delay+time.Minute, "uncordoned", func(n *corev1.Node) bool { return !cordoned(n) })
	f.waitSlotHolder(time.Minute, "released", func(h string) bool { return h == "" })
	f.holdsFor(time.Until(drained.Add(delay+5*time.Second)), "no reboot after the restriction", f.neitherCordonedNorRebooted(sim, n))
	if rebootRequested(sim, n) {
		t.Fatalf("%s rebooted although it was restricted during its --reboot-delay: %s", n, describe(sim))
	}
}

// TestHoldDuringRebootDelayPreventsReboot (finding 8, I5): the hold annotation, put on
// the node during its --reboot-delay, stops the reboot: no reboot request reaches the
// host, the node is uncordoned and its slot released.
func TestHoldDuringRebootDelayPreventsReboot(t *testing.T) {
	t.Parallel()
	lastCheck(t, 10*time.Second, "", nil, func(f *fleet, node string) {
		hold := "e2e: held by an operator during the reboot delay"
		f.annotate(node, annHold, &hold)
	})
}

// TestAlertDuringRebootDelayPreventsReboot (finding 8, I5): an alert that starts firing
// during the node's --reboot-delay stops the reboot, although it was not firing when the
// node took its slot and drained: no reboot request reaches the host, the node is
// uncordoned and its slot released.
func TestAlertDuringRebootDelayPreventsReboot(t *testing.T) {
	t.Parallel()
	const delay = 15 * time.Second
	bed := testbed.Shared(t)
	alert := "E2EFaultsLastCheck" + strings.ToUpper(testbed.NewUUID()[:6])
	t.Cleanup(func() { _ = bed.RemoveAlert(context.Background(), alert) })
	// Only this test's alert counts, whatever else the shared Prometheus holds.
	rest := fmt.Sprintf("blockers:\n  alerts:\n    filterRegexp: \"^%s$\"\n    filterMatchOnly: true\n", alert)
	flags := []string{"--prometheus-url", bed.PrometheusURL, "--alertmanager-url", bed.AlertmanagerURL}
	lastCheck(t, delay, rest, flags, func(f *fleet, node string) {
		ctx := context.Background()
		start := time.Now()
		if err := bed.FireAlert(ctx, alert, testbed.AlertOptions{Labels: map[string]string{"severity": "page"}}); err != nil {
			t.Fatal(err)
		}
		if err := bed.WaitPrometheusAlert(ctx, alert, "firing", delay); err != nil {
			t.Fatal(err)
		}
		if _, err := bed.WaitAlertmanagerAlert(ctx, alert, delay, nil); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > delay-3*time.Second {
			t.Fatalf("the alert took %s to fire, too close to the end of the %s reboot delay: the test's premise failed", took, delay)
		}
	})
}
