package facts

import (
	"fmt"

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
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(data, &tm); err != nil {
		return nil, fmt.Errorf("not YAML or JSON: %w", err)
	}
	switch tm.Kind {
	case "Pod":
		var pod corev1.Pod
		if err := yaml.Unmarshal(data, &pod); err != nil {
			return nil, fmt.Errorf("pod: %w", err)
		}
		return []corev1.Pod{pod}, nil
	case "PodList", "List":
		var list struct {
			Items []struct {
				metav1.TypeMeta `json:",inline"`
			} `json:"items"`
		}
		if err := yaml.Unmarshal(data, &list); err != nil {
			return nil, fmt.Errorf("list: %w", err)
		}
		for i, it := range list.Items {
			// A PodList's items may omit their kind; a generic List's must say Pod.
			if it.Kind != "Pod" && !(tm.Kind == "PodList" && it.Kind == "") {
				return nil, fmt.Errorf("items[%d].kind: %q is not a Pod", i, it.Kind)
			}
		}
		var pods corev1.PodList
		if err := yaml.Unmarshal(data, &pods); err != nil {
			return nil, fmt.Errorf("list: %w", err)
		}
		return pods.Items, nil
	default:
		return nil, fmt.Errorf("kind: %q is not a Pod, PodList or List (want the output of kubectl get pods -o yaml)", tm.Kind)
	}
}
