package testbed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ServiceAccountKubeconfig creates the ServiceAccount namespace/name if
// missing, requests a token for it valid for ttl, and writes a kubeconfig that
// authenticates as it (so agents run with the RBAC a Helm chart grants, not as
// admin). It returns the kubeconfig's path, under dir.
func (b *Bed) ServiceAccountKubeconfig(ctx context.Context, namespace, name, dir string, ttl time.Duration) (string, error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if _, err := b.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("service account %s/%s: %w", namespace, name, err)
	}
	secs := int64(ttl.Seconds())
	tok, err := b.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs},
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
	user := namespace + "-" + name
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
