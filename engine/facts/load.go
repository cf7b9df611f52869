package facts

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// ParseNode reads a Node as printed by `kubectl get node X -o yaml` (or -o json).
func ParseNode(data []byte) (*corev1.Node, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(data, &tm); err != nil {
		return nil, fmt.Errorf("not YAML or JSON: %w", err)
	}
	if tm.Kind != "Node" {
		return nil, fmt.Errorf("kind: %q is not a Node (want the output of kubectl get node NAME -o yaml)", tm.Kind)
	}
	if tm.APIVersion != "v1" {
		return nil, fmt.Errorf("apiVersion: %q is not v1", tm.APIVersion)
	}
	var node corev1.Node
	if err := yaml.Unmarshal(data, &node); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if node.Name == "" {
		return nil, fmt.Errorf("metadata.name: is empty")
	}
	return &node, nil
}

// ParsePods reads pods from a PodList, a v1 List of Pods (`kubectl get pods -o yaml`),
// or a single Pod.
func ParsePods(data []byte) ([]corev1.Pod, error) {
	return parseObjects[corev1.Pod, corev1.PodList](data, "Pod", "pods", func(l *corev1.PodList) []corev1.Pod { return l.Items })
}

// ParseNodes reads nodes from a NodeList, a v1 List of Nodes (`kubectl get nodes -o
// yaml`), or a single Node.
func ParseNodes(data []byte) ([]corev1.Node, error) {
	nodes, err := parseObjects[corev1.Node, corev1.NodeList](data, "Node", "nodes", func(l *corev1.NodeList) []corev1.Node { return l.Items })
	if err != nil {
		return nil, err
	}
	for i := range nodes {
		if nodes[i].Name == "" {
			return nil, fmt.Errorf("items[%d].metadata.name: is empty", i)
		}
	}
	return nodes, nil
}

// parseObjects reads objects of one kind from a <kind>List, a v1 List of them, or a
// single one; resource names them in messages (kubectl get <resource> -o yaml).
func parseObjects[T, L any](data []byte, kind, resource string, items func(*L) []T) ([]T, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(data, &tm); err != nil {
		return nil, fmt.Errorf("not YAML or JSON: %w", err)
	}
	lower := strings.ToLower(kind)
	switch tm.Kind {
	case kind:
		var obj T
		if err := yaml.Unmarshal(data, &obj); err != nil {
			return nil, fmt.Errorf("%s: %w", lower, err)
		}
		return []T{obj}, nil
	case kind + "List", "List":
		var list struct {
			Items []struct {
				metav1.TypeMeta `json:",inline"`
			} `json:"items"`
		}
		if err := yaml.Unmarshal(data, &list); err != nil {
			return nil, fmt.Errorf("list: %w", err)
		}
		for i, it := range list.Items {
			// A <kind>List's items may omit their kind; a generic List's must say it.
			if it.Kind != kind && !(tm.Kind == kind+"List" && it.Kind == "") {
				return nil, fmt.Errorf("items[%d].kind: %q is not a %s", i, it.Kind, kind)
			}
		}
		var l L
		if err := yaml.Unmarshal(data, &l); err != nil {
			return nil, fmt.Errorf("list: %w", err)
		}
		return items(&l), nil
	default:
		return nil, fmt.Errorf("kind: %q is not a %s, %sList or List (want the output of kubectl get %s -o yaml)", tm.Kind, kind, kind, resource)
	}
}

// ParseConfigMaps reads ConfigMaps from a ConfigMapList, a v1 List of ConfigMaps
// (`kubectl get cm -o yaml`), or a single ConfigMap.
func ParseConfigMaps(data []byte) ([]corev1.ConfigMap, error) {
	return parseObjects[corev1.ConfigMap, corev1.ConfigMapList](data, "ConfigMap", "configmaps", func(l *corev1.ConfigMapList) []corev1.ConfigMap { return l.Items })
}
