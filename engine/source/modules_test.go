package source

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/rebootgate/rebootgate/engine/policy"
)

// TestListModulesAsTheSourceCompilesThem: `eval` and `plan` read the policy ConfigMaps
// with ListModules, the agents and the summarizer through a Source's informers; both
// must give the same modules in the same order (sorted by name, whatever the order of
// the namespaces given), without unlabelled ConfigMaps, non-.rego keys and Rego unit
// tests. The CLI's former copy listed in the order of --policy-namespace.
func TestListModulesAsTheSourceCompilesThem(t *testing.T) {
	labelled := map[string]string{PolicyLabel: PolicyLabelValue}
	cm := func(ns, name string, labels, data map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Data: data}
	}
	client := fake.NewClientset(
		cm("zz", "freeze", labelled, map[string]string{"b.rego": "package rebootgate\n", "a.rego": "package rebootgate\n", "a_test.rego": "package rebootgate\n", "README": "x"}),
		cm("aa", "backup", labelled, map[string]string{"backup.rego": "package rebootgate\n"}),
		cm("aa", "other", nil, map[string]string{"other.rego": "package rebootgate\n"}),
	)
	namespaces := []string{"zz", "aa"}
	got, err := ListModules(t.Context(), client, namespaces)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"aa/backup/backup.rego", "zz/freeze/a.rego", "zz/freeze/b.rego"}
	if names := moduleNames(got); !reflect.DeepEqual(names, want) {
		t.Errorf("ListModules = %v, want %v", names, want)
	}

	src, err := New(Config{Client: client, NodeName: "n1", Namespaces: namespaces, Recorder: record.NewFakeRecorder(10)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for _, f := range src.factories {
		f.Start(ctx.Done())
	}
	if !cache.WaitForCacheSync(ctx.Done(), src.synced...) {
		t.Fatal("informers did not sync")
	}
	if fromSource := src.collectPolicies().modules; !reflect.DeepEqual(fromSource, got) {
		t.Errorf("a Source compiles %v, ListModules gives %v", moduleNames(fromSource), moduleNames(got))
	}
}

// TestListModulesNamesTheNamespace: a list that fails says in which namespace.
func TestListModulesNamesTheNamespace(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("list", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("forbidden")
	})
	_, err := ListModules(t.Context(), client, []string{"team-a"})
	if err == nil || !strings.Contains(err.Error(), "listing policy ConfigMaps in team-a: forbidden") {
		t.Errorf("err = %v, want it to name namespace team-a", err)
	}
}

func moduleNames(modules []policy.Module) []string {
	var out []string
	for _, m := range modules {
		out = append(out, m.Name)
	}
	return out
}
