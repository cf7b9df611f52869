package testbed

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ServiceAccountKubeconfig creates the ServiceAccount namespace/name if
// missing, requests a token for it valid for ttl, and writes a kubeconfig that
// authenticates as it (so agents run with the RBAC a Helm chart grants, not as
// admin). It returns the kubeconfig's path, under dir. The token is bound to no
// object, so it carries no node claim (see PodTokenKubeconfig).
func (b *Bed) ServiceAccountKubeconfig(ctx context.Context, namespace, name, dir string, ttl time.Duration) (string, error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if _, err := b.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("service account %s/%s: %w", namespace, name, err)
	}
	return b.tokenKubeconfig(ctx, namespace, name, nil, dir, namespace+"-"+name, ttl)
}

// PodTokenKubeconfig requests a token of the pod's ServiceAccount bound to the pod
// (a TokenRequest whose boundObjectRef is the Pod, as the kubelet's projected token
// is), valid for ttl, and writes a kubeconfig that authenticates with it. The API
// server puts the pod's node into such a token (user extra
// authentication.kubernetes.io/node-name), and the token dies with the pod. It
// returns the kubeconfig's path, under dir.
func (b *Bed) PodTokenKubeconfig(ctx context.Context, pod *corev1.Pod, dir string, ttl time.Duration) (string, error) {
	ref := &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	sa := cmp.Or(pod.Spec.ServiceAccountName, "default")
	return b.tokenKubeconfig(ctx, pod.Namespace, sa, ref, dir, pod.Namespace+"-"+pod.Name, ttl)
}

// tokenKubeconfig requests a token of ServiceAccount namespace/name (bound to ref
// when set) and writes a kubeconfig with it as user, to dir/kubeconfig-<user>.
func (b *Bed) tokenKubeconfig(ctx context.Context, namespace, name string, ref *authenticationv1.BoundObjectReference, dir, user string, ttl time.Duration) (string, error) {
	secs := int64(ttl.Seconds())
	tok, err := b.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs, BoundObjectRef: ref},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s/%s: %w", namespace, name, err)
	}
	admin, err := clientcmd.LoadFromFile(b.Kubeconfig)
	if err != nil {
		return "", fmt.Errorf("load %s: %w", b.Kubeconfig, err)
	}
	cur := admin.Contexts[admin.CurrentContext]
	if cur == nil || admin.Clusters[cur.Cluster] == nil {
		return "", fmt.Errorf("%s: no current cluster", b.Kubeconfig)
	}
	cluster := admin.Clusters[cur.Cluster].DeepCopy()
	if len(cluster.CertificateAuthorityData) == 0 && cluster.CertificateAuthority != "" {
		if cluster.CertificateAuthorityData, err = os.ReadFile(cluster.CertificateAuthority); err != nil {
			return "", fmt.Errorf("read CA: %w", err)
		}
		cluster.CertificateAuthority = ""
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["testbed"] = cluster
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	cfg.Contexts[user] = &clientcmdapi.Context{Cluster: "testbed", AuthInfo: user, Namespace: namespace}
	cfg.CurrentContext = user
	path := filepath.Join(dir, "kubeconfig-"+user)
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, nil
}

// WaitAccess waits until the user of kubeconfig may do attrs (or, with allowed false,
// may not), asking as that user with SelfSubjectAccessReviews: a changed Role or binding
// takes effect shortly after it is written, so a test waits before it relies on it.
func WaitAccess(ctx context.Context, kubeconfig string, attrs authorizationv1.ResourceAttributes, allowed bool, timeout time.Duration) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("load %s: %w", kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("client for %s: %w", kubeconfig, err)
	}
	what := fmt.Sprintf("%s %s (%q) named %q in namespace %q: allowed=%v", attrs.Verb, attrs.Resource, attrs.Group, attrs.Name, attrs.Namespace, allowed)
	return Poll(ctx, timeout, what, func(ctx context.Context) (bool, error) {
		r, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs},
		}, metav1.CreateOptions{})
		return err == nil && r.Status.Allowed == allowed, err
	})
}
