package testbed

import (
	"context"
	"crypto/rand"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// Labels and annotations the bed puts on its nodes.
const (
	// ManagedLabel marks nodes created by `make testbed-up` (value "true").
	ManagedLabel = "testbed.rebootgate.io/managed"
	// PoolLabel is the AKS node pool label: "system" or "user".
	PoolLabel = "agentpool"
	// ZoneLabel is the well-known zone label (eastus-1..3 on the bed).
	ZoneLabel = "topology.kubernetes.io/zone"
	// NodeImageLabel is AKS's node image version label.
	NodeImageLabel = "kubernetes.azure.com/node-image-version"
	// HostnameLabel is the well-known hostname label (= node name).
	HostnameLabel = "kubernetes.io/hostname"
	// KwokAnnotation makes the bed's kwok controller simulate the node's kubelet.
	KwokAnnotation = "kwok.x-k8s.io/node"
	// PoweredOffAnnotation ("true") makes kwok hold the node NotReady
	// (hack/testbed/kwok.yaml); the node simulator sets it during reboots.
	PoweredOffAnnotation = "testbed.rebootgate.io/powered-off"

	// DefaultNodeImage and DefaultKernel are what new bed nodes report.
	DefaultNodeImage = "AKSUbuntu-2204gen2containerd-202509.23.0"
	DefaultKernel    = "5.15.0-1092-azure"
	// PauseImage is the image of built pods; kwok never pulls it.
	PauseImage = "registry.k8s.io/pause:3.10"
)

// NewUUID returns a random RFC 4122 version 4 UUID, the shape of a boot ID.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// NewNode builds a kwok-simulated Node shaped like the bed's own (AKS labels,
// capacity, node info with a fresh boot ID) in the given pool and zone. It is
// not labelled ManagedLabel, so `make testbed-up` leaves it alone; delete it
// when done (CreateNode does that at test cleanup).
func NewNode(name, pool, zone string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{KwokAnnotation: "fake", "node.alpha.kubernetes.io/ttl": "0"},
			Labels: map[string]string{
				"type":                             "kwok",
				PoolLabel:                          pool,
				"kubernetes.azure.com/agentpool":   pool,
				"kubernetes.azure.com/mode":        pool,
				"kubernetes.azure.com/os-sku":      "Ubuntu",
				NodeImageLabel:                     DefaultNodeImage,
				"kubernetes.io/arch":               "amd64",
				"kubernetes.io/os":                 "linux",
				HostnameLabel:                      name,
				"node.kubernetes.io/instance-type": "Standard_D4ds_v5",
				"topology.kubernetes.io/region":    "eastus",
				ZoneLabel:                          zone,
			},
		},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("3860m"),
				corev1.ResourceMemory: resource.MustParse("12880Mi"),
				corev1.ResourcePods:   resource.MustParse("110"),
			},
			Capacity: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("4"),
				corev1.ResourceMemory: resource.MustParse("16364Mi"),
				corev1.ResourcePods:   resource.MustParse("110"),
			},
			NodeInfo: corev1.NodeSystemInfo{
				Architecture:            "amd64",
				BootID:                  NewUUID(),
				MachineID:               strings.ReplaceAll(NewUUID(), "-", ""),
				SystemUUID:              NewUUID(),
				ContainerRuntimeVersion: "containerd://1.7.28-1",
				KernelVersion:           DefaultKernel,
				KubeletVersion:          "v1.36.3",
				KubeProxyVersion:        "v1.36.3",
				OperatingSystem:         "linux",
				OSImage:                 "Ubuntu 22.04.5 LTS",
			},
		},
	}
}

// CreateNode creates node, deletes it at test cleanup, and waits until kwok
// reports it Ready.
func (b *Bed) CreateNode(t testing.TB, node *corev1.Node) *corev1.Node {
	t.Helper()
	ctx := context.Background()
	if _, err := b.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create node %s: %v", node.Name, err)
	}
	t.Cleanup(func() {
		err := b.Client.CoreV1().Nodes().Delete(context.Background(), node.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete node %s: %v", node.Name, err)
		}
	})
	n, err := b.WaitNode(ctx, node.Name, time.Minute, "Ready", NodeReady)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Nodes lists the nodes created by `make testbed-up`, sorted by name.
func (b *Bed) Nodes(ctx context.Context) ([]corev1.Node, error) {
	list, err := b.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: ManagedLabel + "=true"})
	if err != nil {
		return nil, fmt.Errorf("list bed nodes: %w", err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items, nil
}

// NodeNames is Nodes' names, optionally only those in pool ("" = all).
func (b *Bed) NodeNames(ctx context.Context, pool string) ([]string, error) {
	nodes, err := b.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range nodes {
		if pool == "" || n.Labels[PoolLabel] == pool {
			names = append(names, n.Name)
		}
	}
	return names, nil
}

// NodeReady reports whether the node's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// NodeNotReady reports whether the node's Ready condition exists and is not True.
func NodeNotReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status != corev1.ConditionTrue
		}
	}
	return false
}

// WaitNode polls the node until cond holds and returns it.
func (b *Bed) WaitNode(ctx context.Context, name string, timeout time.Duration, what string, cond func(*corev1.Node) bool) (*corev1.Node, error) {
	return waitNode(ctx, b.Client, name, timeout, what, cond)
}

func waitNode(ctx context.Context, client kubernetes.Interface, name string, timeout time.Duration, what string, cond func(*corev1.Node) bool) (*corev1.Node, error) {
	var got *corev1.Node
	err := Poll(ctx, timeout, "node "+name+" "+what, func(ctx context.Context) (bool, error) {
		n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		got = n
		return cond(n), nil
	})
	return got, err
}

// WaitNodesReady waits until every named node (default: all bed nodes) is Ready.
func (b *Bed) WaitNodesReady(ctx context.Context, timeout time.Duration, names ...string) error {
	return Poll(ctx, timeout, "nodes Ready", func(ctx context.Context) (bool, error) {
		want := names
		if len(want) == 0 {
			var err error
			if want, err = b.NodeNames(ctx, ""); err != nil {
				return false, err
			}
			if len(want) == 0 {
				return false, fmt.Errorf("the bed has no nodes")
			}
		}
		for _, name := range want {
			n, err := b.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if !NodeReady(n) {
				return false, nil
			}
		}
		return true, nil
	})
}

// Namespace creates a fresh namespace for the test and deletes it at cleanup.
func (b *Bed) Namespace(t testing.TB) string {
	t.Helper()
	name := "e2e-" + strings.ToLower(NewUUID()[:8])
	ctx := context.Background()
	_, err := b.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		err := b.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	// Pods need the namespace's default ServiceAccount, made by the controller manager.
	err = Poll(ctx, time.Minute, "default ServiceAccount in "+name, func(ctx context.Context) (bool, error) {
		_, err := b.Client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

func podSpec(labels map[string]string) corev1.PodTemplateSpec {
	var zero int64
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{
			Containers:                    []corev1.Container{{Name: "app", Image: PauseImage}},
			TerminationGracePeriodSeconds: &zero,
		},
	}
}

// NewPod builds a pod bound directly to node (spec.nodeName, bypassing the
// scheduler). An empty node leaves it to the scheduler.
func NewPod(namespace, name, node string, labels map[string]string) *corev1.Pod {
	tpl := podSpec(labels)
	tpl.Spec.NodeName = node
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Spec:       tpl.Spec,
	}
}

// NewDeployment builds a Deployment whose pods carry labels (also its
// selector). With nodes given, a required node affinity restricts its pods to
// those nodes (by kubernetes.io/hostname); the scheduler places them.
func NewDeployment(namespace, name string, replicas int32, labels map[string]string, nodes ...string) *appsv1.Deployment {
	tpl := podSpec(labels)
	if len(nodes) > 0 {
		tpl.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{
						Key: HostnameLabel, Operator: corev1.NodeSelectorOpIn, Values: append([]string(nil), nodes...),
					}},
				}},
			},
		}}
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: tpl,
		},
	}
}

// NewPDB builds a PodDisruptionBudget over pods with the given labels.
// minAvailable may be a count or a percentage (intstr.FromString("50%")); set
// Spec.MaxUnavailable instead by clearing MinAvailable on the result.
func NewPDB(namespace, name string, selector map[string]string, minAvailable intstr.IntOrString) *policyv1.PodDisruptionBudget {
	return &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: &minAvailable,
			Selector:     &metav1.LabelSelector{MatchLabels: selector},
		},
	}
}

// PodRunning reports whether the pod is Running and Ready.
func PodRunning(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// WaitPodsRunning waits until exactly n pods match selector in namespace and
// all are Running and Ready, and returns them.
func (b *Bed) WaitPodsRunning(ctx context.Context, namespace, selector string, n int, timeout time.Duration) ([]corev1.Pod, error) {
	var pods []corev1.Pod
	err := Poll(ctx, timeout, fmt.Sprintf("%d running pods %q in %s", n, selector, namespace), func(ctx context.Context) (bool, error) {
		list, err := b.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, err
		}
		pods = list.Items
		if len(pods) != n {
			return false, nil
		}
		for i := range pods {
			if !PodRunning(&pods[i]) {
				return false, nil
			}
		}
		return true, nil
	})
	return pods, err
}

// WaitDeploymentAvailable waits until all replicas of the Deployment are
// updated and available.
func (b *Bed) WaitDeploymentAvailable(ctx context.Context, namespace, name string, timeout time.Duration) error {
	return Poll(ctx, timeout, "deployment "+namespace+"/"+name+" available", func(ctx context.Context) (bool, error) {
		d, err := b.Client.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		s := d.Status
		return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.AvailableReplicas == want && s.Replicas == want, nil
	})
}

// WaitPDB waits until the disruption controller has processed the PDB and
// counts expectedPods pods, so that evictions are judged on fresh status.
func (b *Bed) WaitPDB(ctx context.Context, namespace, name string, expectedPods int32, timeout time.Duration) (*policyv1.PodDisruptionBudget, error) {
	var got *policyv1.PodDisruptionBudget
	err := Poll(ctx, timeout, "PDB "+namespace+"/"+name+" observed", func(ctx context.Context) (bool, error) {
		p, err := b.Client.PolicyV1().PodDisruptionBudgets(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		got = p
		return p.Status.ObservedGeneration >= p.Generation && p.Status.ExpectedPods == expectedPods &&
			p.Status.CurrentHealthy == expectedPods, nil
	})
	return got, err
}

// Evict asks the API to evict a pod through the eviction subresource. A PDB
// that would be violated makes it fail with 429 (see EvictionBlocked).
func (b *Bed) Evict(ctx context.Context, namespace, pod string) error {
	err := b.Client.CoreV1().Pods(namespace).EvictV1(ctx, &policyv1.Eviction{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: pod},
	})
	if err != nil {
		return fmt.Errorf("evict %s/%s: %w", namespace, pod, err)
	}
	return nil
}

// EvictionBlocked reports whether an eviction error means a PDB refused it.
func EvictionBlocked(err error) bool { return apierrors.IsTooManyRequests(err) }

// NewDaemonSet builds a DaemonSet (pods on every node, as kwok runs them) whose
// pods carry labels, e.g. the kured DaemonSet that holds kured's lock annotation.
func NewDaemonSet(namespace, name string, labels map[string]string) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podSpec(labels),
		},
	}
}
