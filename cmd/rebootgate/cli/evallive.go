package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

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
	modules, err := policyConfigMaps(ctx, client, o.PolicyNamespaces)
	if err != nil {
		return nil, nil, err
	}
	return f, modules, nil
}

// policyConfigMaps reads the Rego modules of the policy ConfigMaps (label
// rebootgate.io/policy=rego) in the namespaces, as the agent does.
func policyConfigMaps(ctx context.Context, client kubernetes.Interface, namespaces []string) ([]policy.Module, error) {
	var modules []policy.Module
	for _, ns := range namespaces {
		list, err := client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: source.PolicyLabel + "=" + source.PolicyLabelValue})
		if err != nil {
			return nil, fmt.Errorf("listing policy ConfigMaps in %s: %w", ns, err)
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
	return modules, nil
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
