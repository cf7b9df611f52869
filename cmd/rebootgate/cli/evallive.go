package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"

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
	if o.PrometheusURL != "" || o.AlertmanagerURL != "" {
		g, err := alerts.New(alerts.Config{
			Prometheus:   alerts.Endpoint{URL: o.PrometheusURL},
			Alertmanager: alerts.Endpoint{URL: o.AlertmanagerURL},
		})
		if err != nil {
			return nil, nil, badInput("%w", err)
		}
		g.Fill(ctx, f)
	}
	var modules []policy.Module
	for _, ns := range o.PolicyNamespaces {
		list, err := client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: source.PolicyLabel + "=" + source.PolicyLabelValue})
		if err != nil {
			return nil, nil, fmt.Errorf("listing policy ConfigMaps in %s: %w", ns, err)
		}
		for _, cm := range list.Items {
			keys := make([]string, 0, len(cm.Data))
			for k := range cm.Data {
				if strings.HasSuffix(k, ".rego") && !strings.HasSuffix(k, "_test.rego") {
					keys = append(keys, k)
				}
			}
			sort.Strings(keys)
			for _, k := range keys {
				modules = append(modules, policy.Module{Name: ns + "/" + cm.Name + "/" + k, Source: cm.Data[k]})
			}
		}
	}
	return f, modules, nil
}
