package summary

import (
	"context"
	"fmt"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/rebootgate/rebootgate/engine/disruption"
)

// MaintenanceHeld names the nodes whose medik8s node-maintenance Lease (node-<name>)
// among leases is held at now (Holds); other Leases are ignored.
func MaintenanceHeld(leases []*coordinationv1.Lease, now time.Time) map[string]bool {
	held := map[string]bool{}
	for _, l := range leases {
		if name, ok := strings.CutPrefix(l.Name, disruption.Medik8sLeasePrefix); ok && Holds(l, now) {
			held[name] = true
		}
	}
	return held
}

// ListMaintenance lists the medik8s Leases of namespace once and names the nodes they
// hold at now, as the summarizer reads them: for one-shot readers (`rebootgate plan`).
func ListMaintenance(ctx context.Context, client kubernetes.Interface, namespace string, now time.Time) (map[string]bool, error) {
	list, err := client.CoordinationV1().Leases(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing medik8s maintenance Leases in %s: %w", namespace, err)
	}
	leases := make([]*coordinationv1.Lease, len(list.Items))
	for i := range list.Items {
		leases[i] = &list.Items[i]
	}
	return MaintenanceHeld(leases, now), nil
}
