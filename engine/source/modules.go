package source

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/rebootgate/rebootgate/engine/policy"
)

// configMapModules are the policy modules of one policy ConfigMap: each .rego key,
// named namespace/name/key. *_test.rego keys are skipped, as policy.LoadPaths skips
// them: they are Rego unit tests for `rebootgate policy test`, not for decisions.
func configMapModules(cm *corev1.ConfigMap) []policy.Module {
	var out []policy.Module
	for key, src := range cm.Data {
		if !strings.HasSuffix(key, ".rego") || strings.HasSuffix(key, "_test.rego") {
			continue
		}
		out = append(out, policy.Module{Name: cm.Namespace + "/" + cm.Name + "/" + key, Source: src})
	}
	return out
}

// sortModules sorts modules by name, so every reader compiles the same thing.
func sortModules(modules []policy.Module) {
	slices.SortFunc(modules, func(a, b policy.Module) int { return strings.Compare(a.Name, b.Name) })
}

// ListModules reads the policy ConfigMaps (label PolicyLabel=PolicyLabelValue) of
// namespaces from the API server, one list per namespace, and returns their modules as
// a Source compiles them. It is for one-shot readers (`rebootgate eval` and `plan` on a
// live cluster); a long-running process uses a Source, which watches them.
func ListModules(ctx context.Context, client kubernetes.Interface, namespaces []string) ([]policy.Module, error) {
	var modules []policy.Module
	for _, ns := range namespaces {
		list, err := client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: PolicyLabel + "=" + PolicyLabelValue})
		if err != nil {
			return nil, fmt.Errorf("listing policy ConfigMaps in %s: %w", ns, err)
		}
		for i := range list.Items {
			modules = append(modules, configMapModules(&list.Items[i])...)
		}
	}
	sortModules(modules)
	return modules, nil
}
