package cli

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/policy"
	"github.com/rebootgate/rebootgate/engine/summary"
)

// summarizerTarget is a summarizer in namespace rg with a second policy namespace.
var summarizerTarget = &summarizerOptions{namespace: "rg", policyNamespaces: []string{"rg", "team-a"}, medik8sNamespace: "maint",
	identity: "summarizer-0", interval: time.Second, heartbeat: 5 * time.Second, unhealthyAfter: time.Minute}

// TestSummarizerExitsNamingAMissingPermission: a summarizer whose ServiceAccount may not
// update the summary nor create Events in a policy namespace stops before it runs, with
// one error naming each (verb, resource, name, namespace) and where to grant them, and
// writes nothing.
func TestSummarizerExitsNamingAMissingPermission(t *testing.T) {
	o := *summarizerTarget
	o.leaderElect = true
	checks := o.accessTarget().checks(summarizerPermissions)
	client := reviewer(checks, false, func(a authorizationv1.ResourceAttributes) bool {
		return a.Resource == "configmaps" && a.Name == summary.ConfigMapName && a.Verb == "update" || a.Resource == "events" && a.Namespace == "team-a" && a.Verb == "create"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := o.serve(ctx, client, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatal("the summarizer ran without two of its permissions")
	}
	for _, want := range []string{
		"RBAC: 2 permission(s) missing",
		"update configmaps (core) named rebootgate-node-summary in namespace rg",
		"create events (core) in namespace team-a",
		summarizerRBACHint,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	for _, a := range client.Actions() {
		if r := a.GetResource().Resource; r != "selfsubjectrulesreviews" {
			t.Errorf("a request beyond the check: %s %s", a.GetVerb(), r)
		}
	}
}

// TestSummarizerChecksEveryPermission: the start-up check asks for each permission of
// summarizerPermissions where the flags place it: the summary and the leader Lease in
// --namespace, policy ConfigMaps and Events in each --policy-namespace, medik8s' Leases
// in --medik8s-namespace, nodes cluster-wide.
func TestSummarizerChecksEveryPermission(t *testing.T) {
	var got []string
	for _, c := range summarizerTarget.accessTarget().checks(summarizerPermissions) {
		got = append(got, c.String())
	}
	for _, want := range []string{
		"list nodes (core) cluster-wide",
		"watch leases (coordination.k8s.io) in namespace maint",
		"get configmaps (core) named rebootgate-node-summary in namespace rg",
		"create configmaps (core) in namespace rg",
		"update leases (coordination.k8s.io) named rebootgate-summarizer in namespace rg",
		"create leases (coordination.k8s.io) in namespace rg",
		"watch configmaps (core) in namespace team-a",
		"patch events (core) in namespace team-a",
		"create events (core) in namespace rg",
	} {
		if !strings.Contains(strings.Join(got, "\n")+"\n", want+"\n") {
			t.Errorf("no check %q in %q", want, got)
		}
	}
	if strings.Contains(strings.Join(got, "\n"), "events (core) cluster-wide") {
		t.Errorf("the summarizer asks for Events cluster-wide: %q", got)
	}
}

// TestSummarizerProbes: /readyz fails while no config has loaded, then a candidate is
// ready (it can take over); once leading it is ready only when the summary is
// published. /healthz passes for a candidate and for a leader whose loop runs.
func TestSummarizerProbes(t *testing.T) {
	client := reviewer(nil, false, func(authorizationv1.ResourceAttributes) bool { return false })
	engine, err := decision.New(t.Context(), config.Default(), policy.DefaultModules())
	if err != nil {
		t.Fatal(err)
	}
	var sourceErr error = errors.New("no valid policy has loaded: config.yaml: bad")
	sum, err := summary.New(summary.Config{
		Client: client, Namespace: "rg", Identity: "summarizer-0", Interval: 10 * time.Millisecond, Heartbeat: time.Second,
		Engine: func() (*decision.Engine, error) { return engine, nil }, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	h := &summarizerHealth{source: func() error { return sourceErr }, sum: sum, stall: time.Minute}
	probe := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, strings.TrimSpace(rec.Body.String())
	}
	if code, body := probe("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no config and policies in force: no valid policy has loaded") {
		t.Errorf("readyz without a config: %d %q", code, body)
	}
	if code, body := probe("/healthz"); code != http.StatusOK {
		t.Errorf("healthz of a candidate: %d %q", code, body)
	}
	sourceErr = nil
	if code, body := probe("/readyz"); code != http.StatusOK {
		t.Errorf("readyz of a candidate with its config: %d %q", code, body)
	}
	h.leading.Store(true)
	if code, body := probe("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not publishing") {
		t.Errorf("readyz of a leader that has not started: %d %q", code, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = sum.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for code, _ := probe("/readyz"); code != http.StatusOK; code, _ = probe("/readyz") {
		if time.Now().After(deadline) {
			_, body := probe("/readyz")
			t.Fatalf("the leader is not ready within 10s: %s", body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := client.CoreV1().ConfigMaps("rg").Get(ctx, summary.ConfigMapName, metav1.GetOptions{}); err != nil {
		t.Errorf("ready, but no summary: %v", err)
	}
	if code, body := probe("/healthz"); code != http.StatusOK {
		t.Errorf("healthz of a publishing leader: %d %q", code, body)
	}
}
