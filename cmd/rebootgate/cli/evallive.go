package cli

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/rebootgate/rebootgate/engine/alerts"
	"github.com/rebootgate/rebootgate/engine/facts"
	"github.com/rebootgate/rebootgate/engine/policy"
	"github.com/rebootgate/rebootgate/engine/source"
)

// gatherLive reads the same facts the agent uses from a cluster: the Node, the pods
// bound to it, alerts when URLs are given, and policy ConfigMaps.
func (o *evalOptions) gatherLive(ctx context.Context) (*facts.Facts, []policy.Module, error) {
	client, err := newClient(o.Kubeconfig, "rebootgate-eval")
	if err != nil {
		return nil, nil, badInput("%w", err)
	}
	node, err := client.CoreV1().Nodes().Get(ctx, o.NodeName, metav1.GetOptions{})
	if err != nil {
		return nil, nil, badInput("--node-name %s: %w", o.NodeName, err)
	}
	pods, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", o.NodeName).String(),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("listing pods on %s: %w", o.NodeName, err)
	}
	f := &facts.Facts{Node: node, Pods: pods.Items}
	if err := fillAlerts(ctx, o.PrometheusURL, o.AlertmanagerURL, f); err != nil {
		return nil, nil, err
	}
	modules, err := source.ListModules(ctx, client, o.PolicyNamespaces)
	if err != nil {
		return nil, nil, err
	}
	return f, modules, nil
}

// fillAlerts reads the alerts into f when a URL is given, as the agent does (an
// unreachable source sets f.AlertsErr, which the gate treats as blocking).
func fillAlerts(ctx context.Context, prometheusURL, alertmanagerURL string, f *facts.Facts) error {
	if prometheusURL == "" && alertmanagerURL == "" {
		return nil
	}
	g, err := alerts.New(alerts.Config{
		Prometheus:   alerts.Endpoint{URL: prometheusURL},
		Alertmanager: alerts.Endpoint{URL: alertmanagerURL},
	})
	if err != nil {
		return badInput("%w", err)
	}
	g.Fill(ctx, f)
	return nil
}
