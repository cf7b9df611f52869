package kureddropin

import (
	"context"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/rebootgate/rebootgate/engine/summary"
)

// TestDropinTokenRefusedInKubeSystem: with exactly rbac.yaml applied (kured's RBAC and
// rebootgate's delta), the manifest's ServiceAccount token — the one on every node — is
// refused by the bed's real apiserver on what would take over kube-system: the
// kube-scheduler and kube-controller-manager leader Leases (create, update, patch,
// delete) and the coredns and aws-auth ConfigMaps (patch, update); and on any ConfigMap
// write in its own namespace. The same token may do what the agent does: its Leases and
// the node summary in rebootgate, kured's DaemonSet in kube-system (read, and kured's
// update). Every write is a dry run, so a grant that is too broad shows as an answer
// other than Forbidden and changes nothing on the bed.
func TestDropinTokenRefusedInKubeSystem(t *testing.T) {
	d := load(t)
	ctx := context.Background()
	d.applyRBAC(true)
	kubeconfig := d.tokenKubeconfig()
	d.waitAccess(kubeconfig, leasesCreate, true)
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	agent, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dry := []string{metav1.DryRunAll}
	lease := func(ns, name string) *coordinationv1.Lease {
		holder := "stolen-by-a-node"
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder}}
	}
	// The object as it is on the bed when it exists (an update needs its resourceVersion
	// to get past a conflict, were it allowed), else a new one.
	current := func(ns, name string) *coordinationv1.Lease {
		l, err := d.bed.Client.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return lease(ns, name)
		}
		holder := "stolen-by-a-node"
		l.Spec.HolderIdentity = &holder
		return l
	}
	stealPatch := []byte(`{"spec":{"holderIdentity":"stolen-by-a-node"}}`)
	cmPatch := []byte(`{"data":{"Corefile":". { forward . 203.0.113.1 }"}}`)
	leases := agent.CoordinationV1().Leases(namespace)
	configMaps := agent.CoreV1().ConfigMaps(namespace)
	refused := []struct {
		what string
		do   func() error
	}{
		{"create Lease kube-system/kube-scheduler", func() error {
			_, err := leases.Create(ctx, lease(namespace, "kube-scheduler"), metav1.CreateOptions{DryRun: dry})
			return err
		}},
		{"update Lease kube-system/kube-scheduler", func() error {
			_, err := leases.Update(ctx, current(namespace, "kube-scheduler"), metav1.UpdateOptions{DryRun: dry})
			return err
		}},
		{"patch Lease kube-system/kube-scheduler", func() error {
			_, err := leases.Patch(ctx, "kube-scheduler", types.MergePatchType, stealPatch, metav1.PatchOptions{DryRun: dry})
			return err
		}},
		{"update Lease kube-system/kube-controller-manager", func() error {
			_, err := leases.Update(ctx, current(namespace, "kube-controller-manager"), metav1.UpdateOptions{DryRun: dry})
			return err
		}},
		{"delete Lease kube-system/kube-controller-manager", func() error {
			return leases.Delete(ctx, "kube-controller-manager", metav1.DeleteOptions{DryRun: dry})
		}},
		{"patch ConfigMap kube-system/coredns", func() error {
			_, err := configMaps.Patch(ctx, "coredns", types.MergePatchType, cmPatch, metav1.PatchOptions{DryRun: dry})
			return err
		}},
		{"update ConfigMap kube-system/coredns", func() error {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "coredns"}}
			_, err := configMaps.Update(ctx, cm, metav1.UpdateOptions{DryRun: dry})
			return err
		}},
		{"patch ConfigMap kube-system/aws-auth", func() error {
			_, err := configMaps.Patch(ctx, "aws-auth", types.MergePatchType, []byte(`{"data":{"mapRoles":""}}`), metav1.PatchOptions{DryRun: dry})
			return err
		}},
		{"patch a policy ConfigMap in " + agentNamespace, func() error {
			_, err := agent.CoreV1().ConfigMaps(agentNamespace).Patch(ctx, "rebootgate-policies", types.MergePatchType,
				[]byte(`{"data":{"deny.rego":""}}`), metav1.PatchOptions{DryRun: dry})
			return err
		}},
		{"forge the node summary in " + agentNamespace, func() error {
			_, err := agent.CoreV1().ConfigMaps(agentNamespace).Patch(ctx, summary.ConfigMapName, types.MergePatchType,
				[]byte(`{"data":{"summary.json":"{}"}}`), metav1.PatchOptions{DryRun: dry})
			return err
		}},
	}
	for _, r := range refused {
		if err := r.do(); !apierrors.IsForbidden(err) {
			t.Errorf("%s as the drop-in's agent: %v, want Forbidden", r.what, errOrNil(err))
		}
	}

	// What the agent does is allowed (an answer other than Forbidden: NotFound is an
	// authorised request for an object the bed does not have).
	allowed := []struct {
		what string
		do   func() error
	}{
		{"create a slot Lease in " + agentNamespace, func() error {
			_, err := agent.CoordinationV1().Leases(agentNamespace).Create(ctx, lease(agentNamespace, "rebootgate-default-0"), metav1.CreateOptions{DryRun: dry})
			return err
		}},
		{"delete a queue ticket in " + agentNamespace, func() error {
			return agent.CoordinationV1().Leases(agentNamespace).Delete(ctx, "rebootgate-default-q-0", metav1.DeleteOptions{DryRun: dry})
		}},
		{"list policy ConfigMaps in " + agentNamespace, func() error {
			_, err := agent.CoreV1().ConfigMaps(agentNamespace).List(ctx, metav1.ListOptions{LabelSelector: "rebootgate.io/policy=rego"})
			return err
		}},
		{"read the node summary", func() error {
			_, err := agent.CoreV1().ConfigMaps(agentNamespace).Get(ctx, summary.ConfigMapName, metav1.GetOptions{ResourceVersion: "0"})
			return err
		}},
		{"watch kured's DaemonSet in kube-system (--kured-lock)", func() error {
			w, err := agent.AppsV1().DaemonSets(namespace).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=kured"})
			if err == nil {
				w.Stop()
			}
			return err
		}},
		{"patch kured's DaemonSet (kured's own grant)", func() error {
			_, err := agent.AppsV1().DaemonSets(namespace).Patch(ctx, "kured", types.MergePatchType,
				[]byte(`{"metadata":{"annotations":{"weave.works/kured-node-lock":""}}}`), metav1.PatchOptions{DryRun: dry})
			return err
		}},
	}
	for _, a := range allowed {
		if err := a.do(); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("%s as the drop-in's agent: %v, want allowed", a.what, err)
		}
	}
}

func errOrNil(err error) string {
	if err == nil {
		return "allowed (no error)"
	}
	return err.Error()
}
