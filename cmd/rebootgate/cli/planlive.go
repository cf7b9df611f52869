package cli

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/facts"
	"github.com/rebootgate/rebootgate/engine/source"
)

// gatherLive reads the nodes, the pods (one list of all, for blocking-pod rules), the
// alerts (with URLs) and the policy ConfigMaps from the cluster.
func (o *planOptions) gatherLive(ctx context.Context) (*planInputs, error) {
	client, err := newClient(o.Kubeconfig, "rebootgate-plan")
	if err != nil {
		return nil, badInput("%w", err)
	}
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	pods, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	in := &planInputs{nodes: nodes.Items, pods: pods.Items, client: client}
	var f facts.Facts
	if err := fillAlerts(ctx, o.PrometheusURL, o.AlertmanagerURL, &f); err != nil {
		return nil, err
	}
	in.alerts, in.alertsErr = f.Alerts, f.AlertsErr
	if in.live, err = source.ListModules(ctx, client, o.PolicyNamespaces); err != nil {
		return nil, err
	}
	return in, nil
}
