package agent

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/rebootgate/rebootgate/engine/detect"
	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// pollingSentinel is a sentinel detector that could not get an inotify instance.
type pollingSentinel struct{ detect.Detector }

func (pollingSentinel) Degraded() bool { return true }

// TestDegradedDetectionInTheStatus: an agent whose sentinel is only polled says so on
// /healthz (still healthy) and in the RebootRequired condition's message.
func TestDegradedDetectionInTheStatus(t *testing.T) {
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	a, err := New(Config{NodeName: "n1", Namespace: "rebootgate", SentinelPath: t.TempDir() + "/reboot-required"}, client, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	a.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "ok\n" {
		t.Fatalf("watched sentinel: /healthz %d %q, want 200 ok", rec.Code, rec.Body.String())
	}
	a.detector = pollingSentinel{a.detector}
	rec = httptest.NewRecorder()
	a.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	want := "detection degraded (no inotify instance): polling the sentinel every 15s"
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), want) {
		t.Errorf("polled sentinel: /healthz %d %q, want 200 and %q", rec.Code, rec.Body.String(), want)
	}
	if err := a.patchCondition(context.Background(), detect.State{Needed: true, Reason: detect.ReasonSentinelPresent}); err != nil {
		t.Fatal(err)
	}
	n, err := client.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range n.Status.Conditions {
		if c.Type == nodestate.ConditionRebootRequired && !strings.Contains(c.Message, want) {
			t.Errorf("condition message %q lacks %q", c.Message, want)
		}
	}
	if len(n.Status.Conditions) == 0 {
		t.Error("no RebootRequired condition written")
	}
}
