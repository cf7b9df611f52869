package input

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/nodeimage"
)

// NodeFrom extracts what policies use from a Node and parses its node-image label.
func NodeFrom(n *corev1.Node, imageLabel string) Node {
	out := Node{
		Name:          n.Name,
		Labels:        n.Labels,
		Annotations:   n.Annotations,
		Taints:        make([]Taint, len(n.Spec.Taints)),
		Unschedulable: n.Spec.Unschedulable,
		NodeInfo: NodeInfo{
			KernelVersion:           n.Status.NodeInfo.KernelVersion,
			OSImage:                 n.Status.NodeInfo.OSImage,
			BootID:                  n.Status.NodeInfo.BootID,
			KubeletVersion:          n.Status.NodeInfo.KubeletVersion,
			ContainerRuntimeVersion: n.Status.NodeInfo.ContainerRuntimeVersion,
			Architecture:            n.Status.NodeInfo.Architecture,
			OperatingSystem:         n.Status.NodeInfo.OperatingSystem,
			MachineID:               n.Status.NodeInfo.MachineID,
			SystemUUID:              n.Status.NodeInfo.SystemUUID,
		},
		Conditions: make([]Condition, len(n.Status.Conditions)),
		Addresses:  make([]Address, len(n.Status.Addresses)),
		Image:      ImageFrom(imageLabel, n.Labels[imageLabel]),
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	for i, t := range n.Spec.Taints {
		out.Taints[i] = Taint{Key: t.Key, Value: t.Value, Effect: string(t.Effect)}
	}
	for i, a := range n.Status.Addresses {
		out.Addresses[i] = Address{Type: string(a.Type), Address: a.Address}
	}
	for i, c := range n.Status.Conditions {
		out.Conditions[i] = Condition{Type: string(c.Type), Status: string(c.Status), Reason: c.Reason, Message: c.Message}
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			out.Ready = true
		}
	}
	return out
}

// ImageFrom parses a node-image label value; an absent or unparseable value is
// reported in the result, not as an error, so policies decide what it means.
func ImageFrom(label, value string) Image {
	img := Image{Label: label, Value: value}
	if value == "" {
		img.Error = "label " + label + " is not set"
		return img
	}
	v, err := nodeimage.Parse(value)
	if err != nil {
		img.Error = err.Error()
		return img
	}
	img.Parsed = true
	img.Family, img.SKU, img.OS = v.Family, v.SKU, v.OS
	img.Generation, img.Arch, img.Runtime = v.Generation, v.Arch, v.Runtime
	img.Build, img.Date, img.Patch = v.Build, v.DateString(), v.Patch
	return img
}

// PodsFrom extracts what policies use from pods.
func PodsFrom(pods []corev1.Pod) []Pod {
	out := make([]Pod, len(pods))
	for i := range pods {
		p := &pods[i]
		out[i] = Pod{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels, Phase: string(p.Status.Phase)}
		if out[i].Labels == nil {
			out[i].Labels = map[string]string{}
		}
		if owner := controllerOf(p.OwnerReferences); owner != nil {
			out[i].OwnerKind, out[i].OwnerName = owner.Kind, owner.Name
		}
	}
	return out
}

// controllerOf returns the managing owner, or the first owner when none is marked.
func controllerOf(refs []metav1.OwnerReference) *metav1.OwnerReference {
	for i := range refs {
		if refs[i].Controller != nil && *refs[i].Controller {
			return &refs[i]
		}
	}
	if len(refs) > 0 {
		return &refs[0]
	}
	return nil
}
