package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/rebootgate/rebootgate/engine/lock"
	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// TestDryRunSwitchMidRebootIsNotStranded (issue 18, 6; I3): an agent restarted with
// --dry-run on a node in the middle of its reboot does not leave it cordoned with its
// slot held: before the reboot request (Draining) it undoes the reboot without asking
// for one; after it (Verifying) it finishes the reboot. Either way the node ends
// uncordoned, idle and without a slot.
func TestDryRunSwitchMidRebootIsNotStranded(t *testing.T) {
	for _, tc := range []struct {
		phase    nodestate.Phase
		finished bool // a finished reboot records its duration
	}{
		{nodestate.PhaseDraining, false},
		{nodestate.PhaseVerifying, true},
	} {
		t.Run(string(tc.phase), func(t *testing.T) {
			now := time.Now()
			n := verifyingNode(now.Add(-time.Minute))
			n.Annotations[nodestate.AnnotationPhase] = string(tc.phase)
			n.Annotations[nodestate.AnnotationStartedAt] = now.Add(-5 * time.Minute).UTC().Format(time.RFC3339)
			if tc.phase == nodestate.PhaseDraining {
				delete(n.Annotations, nodestate.AnnotationBootIDBefore)
				n.Status.NodeInfo.BootID = "boot-1"
			}
			lease := lock.SlotLeaseName("default", 0)
			client := fake.NewClientset(n, slotLease(lease, "n1", now))
			dir := t.TempDir()
			requested := filepath.Join(dir, "reboot-requested")
			a, err := New(Config{
				NodeName: "n1", Namespace: "rebootgate", SentinelPath: filepath.Join(dir, "reboot-required"), DryRun: true,
				RebootCommand: []string{"touch", requested}, RecheckInterval: 500 * time.Millisecond,
			}, client, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()
			waitFor(t, ctx, "the dry-run agent to leave the node uncordoned, idle and without a slot", func() bool {
				n, err := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
				if err != nil || n.Spec.Unschedulable || nodestate.StateOf(n).Phase != nodestate.PhaseIdle {
					return false
				}
				l, err := client.CoordinationV1().Leases("rebootgate").Get(ctx, lease, metav1.GetOptions{})
				return err == nil && (l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "")
			})
			if got := nodestate.StateOf(mustNode(t, client)).LastDuration; (got > 0) != tc.finished {
				t.Errorf("last reboot's duration recorded: %v, want a finished reboot (one recorded): %v", got, tc.finished)
			}
			if _, err := os.Stat(requested); err == nil {
				t.Error("the dry-run agent asked the host to reboot")
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}
