package alerts

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/rebootgate/rebootgate/engine/facts"
)

var t0 = time.Date(2026, 11, 21, 3, 0, 0, 0, time.UTC)

// promAlerts is a realistic answer of Prometheus to /api/v1/query?query=ALERTS.
const promAlerts = `{
  "status": "success",
  "data": {
    "resultType": "vector",
    "result": [
      {"metric": {"__name__": "ALERTS", "alertname": "KubeNodeNotReady", "alertstate": "firing", "node": "node-1", "namespace": "monitoring", "severity": "warning"}, "value": [1763694000.123, "1"]},
      {"metric": {"__name__": "ALERTS", "alertname": "Watchdog", "alertstate": "firing", "severity": "none"}, "value": [1763694000.123, "1"]},
      {"metric": {"__name__": "ALERTS", "alertname": "TargetDown", "alertstate": "pending", "job": "kubelet", "namespace": "kube-system", "severity": "warning"}, "value": [1763694000.123, "1"]}
    ]
  }
}`

// amAlerts is a realistic Alertmanager /api/v2/alerts answer: the labels carry the
// external labels Prometheus adds (prometheus, cluster).
const amAlerts = `[
  {
    "annotations": {"summary": "An alert that should always be firing to certify that Alertmanager is working properly."},
    "endsAt": "2026-11-21T03:04:00.000Z",
    "fingerprint": "e1b1f5d3ab5fd1e3",
    "receivers": [{"name": "null"}],
    "startsAt": "2026-11-20T11:00:00.000Z",
    "status": {"inhibitedBy": [], "silencedBy": ["2f0a8c1e-3c4b-4b7e-9d61-0c8a5e7d9b11"], "state": "suppressed"},
    "updatedAt": "2026-11-21T03:00:00.000Z",
    "generatorURL": "http://prometheus-k8s-0:9090/graph?g0.expr=vector%281%29",
    "labels": {"alertname": "Watchdog", "severity": "none", "prometheus": "monitoring/k8s", "cluster": "prod-1"}
  },
  {
    "annotations": {"description": "node-1 has been unready for more than 15 minutes."},
    "endsAt": "2026-11-21T03:04:00.000Z",
    "fingerprint": "9a2c4e6f8b0d1f3a",
    "receivers": [{"name": "pager"}],
    "startsAt": "2026-11-21T02:30:00.000Z",
    "status": {"inhibitedBy": [], "silencedBy": [], "state": "active"},
    "updatedAt": "2026-11-21T03:00:00.000Z",
    "labels": {"alertname": "KubeNodeNotReady", "node": "node-1", "namespace": "monitoring", "severity": "warning", "prometheus": "monitoring/k8s", "cluster": "prod-1"}
  },
  {
    "annotations": {},
    "endsAt": "2026-11-21T03:04:00.000Z",
    "fingerprint": "1b3d5f7a9c0e2f4b",
    "receivers": [{"name": "pager"}],
    "startsAt": "2026-11-21T02:50:00.000Z",
    "status": {"inhibitedBy": ["9a2c4e6f8b0d1f3a"], "silencedBy": [], "state": "suppressed"},
    "updatedAt": "2026-11-21T03:00:00.000Z",
    "labels": {"alertname": "KubeletDown", "severity": "critical", "prometheus": "monitoring/k8s", "cluster": "prod-1"}
  },
  {
    "annotations": {},
    "endsAt": "2026-11-21T03:04:00.000Z",
    "fingerprint": "4c6e8a0b2d4f6a8c",
    "receivers": [{"name": "pager"}],
    "startsAt": "2026-11-21T02:55:00.000Z",
    "status": {"inhibitedBy": [], "silencedBy": [], "state": "active"},
    "updatedAt": "2026-11-21T03:00:00.000Z",
    "labels": {"alertname": "EtcdHighFsyncDurations", "severity": "warning", "prometheus": "monitoring/other", "cluster": "prod-1"}
  }
]`

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeServer serves a fixed answer on loopback and records the requests.
type fakeServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests []*http.Request
	status   int
	body     string
	block    chan struct{} // when set, handlers wait for it (or the client to give up)
}

func newFake(t *testing.T, body string) *fakeServer {
	t.Helper()
	f := &fakeServer{status: http.StatusOK, body: body}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.Clone(context.Background()))
	status, body, block := f.status, f.body, f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (f *fakeServer) set(status int, body string) {
	f.mu.Lock()
	f.status, f.body = status, body
	f.mu.Unlock()
}

func (f *fakeServer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

func (f *fakeServer) last() *http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[len(f.requests)-1]
}

func mustNew(t *testing.T, cfg Config) *Gatherer {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = discardLogger()
	}
	if cfg.Clock == nil {
		cfg.Clock = clocktesting.NewFakeClock(t0)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestPrometheus(t *testing.T) {
	srv := newFake(t, promAlerts)
	// A path prefix on the URL is kept (Prometheus behind --web.route-prefix).
	g := mustNew(t, Config{Prometheus: Endpoint{URL: srv.URL + "/prometheus/"}})
	got, err := g.Alerts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []facts.Alert{
		{Name: "KubeNodeNotReady", State: "firing", Labels: map[string]string{"alertname": "KubeNodeNotReady", "node": "node-1", "namespace": "monitoring", "severity": "warning"}, Source: facts.SourcePrometheus},
		{Name: "TargetDown", State: "pending", Labels: map[string]string{"alertname": "TargetDown", "job": "kubelet", "namespace": "kube-system", "severity": "warning"}, Source: facts.SourcePrometheus},
		{Name: "Watchdog", State: "firing", Labels: map[string]string{"alertname": "Watchdog", "severity": "none"}, Source: facts.SourcePrometheus},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	r := srv.last()
	if r.Method != http.MethodGet || r.URL.Path != "/prometheus/api/v1/query" || r.URL.Query().Get("query") != "ALERTS" {
		t.Errorf("request %s %s", r.Method, r.URL)
	}
	if r.Header.Get("Authorization") != "" {
		t.Errorf("Authorization sent without a token file: %q", r.Header.Get("Authorization"))
	}
	if ua := r.Header.Get("User-Agent"); ua != "rebootgate" {
		t.Errorf("User-Agent %q", ua)
	}
}

func TestAlertmanager(t *testing.T) {
	srv := newFake(t, amAlerts)
	g := mustNew(t, Config{Alertmanager: Endpoint{URL: srv.URL}})
	got, err := g.Alerts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	silenced := map[string]bool{}
	for _, a := range got {
		if a.Source != facts.SourceAlertmanager || a.State != "firing" {
			t.Errorf("alert %+v: want source alertmanager, state firing", a)
		}
		silenced[a.Name] = a.Silenced
	}
	want := map[string]bool{"Watchdog": true, "KubeletDown": true, "KubeNodeNotReady": false, "EtcdHighFsyncDurations": false}
	if !reflect.DeepEqual(silenced, want) {
		t.Errorf("silenced = %v, want %v", silenced, want)
	}
	r := srv.last()
	q := r.URL.Query()
	if r.URL.Path != "/api/v2/alerts" || q.Get("active") != "true" || q.Get("silenced") != "true" || q.Get("inhibited") != "true" || q.Get("unprocessed") != "true" {
		t.Errorf("request %s", r.URL)
	}
}

func TestBothMerged(t *testing.T) {
	prom := newFake(t, promAlerts)
	am := newFake(t, amAlerts)
	g := mustNew(t, Config{Prometheus: Endpoint{URL: prom.URL}, Alertmanager: Endpoint{URL: am.URL}})
	got, err := g.Alerts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		name, state, source string
		silenced            bool
	}
	var rows []row
	for _, a := range got {
		rows = append(rows, row{a.Name, a.State, a.Source, a.Silenced})
	}
	want := []row{
		// Only Alertmanager has it (another Prometheus): as Alertmanager says.
		{"EtcdHighFsyncDurations", "firing", facts.SourceAlertmanager, false},
		// Both have it, not silenced.
		{"KubeNodeNotReady", "firing", facts.SourcePrometheus, false},
		// Only Alertmanager has it, inhibited.
		{"KubeletDown", "firing", facts.SourceAlertmanager, true},
		// Pending: only Prometheus knows it.
		{"TargetDown", "pending", facts.SourcePrometheus, false},
		// Both have it (Alertmanager with external labels), silenced there.
		{"Watchdog", "firing", facts.SourcePrometheus, true},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("got  %+v\nwant %+v", rows, want)
	}
	if prom.count() != 1 || am.count() != 1 {
		t.Errorf("requests: prometheus %d, alertmanager %d", prom.count(), am.count())
	}
}

func TestMerge(t *testing.T) {
	p := func(name, state string, labels ...string) facts.Alert {
		return facts.Alert{Name: name, State: state, Labels: lbls(name, labels...), Source: facts.SourcePrometheus}
	}
	a := func(name string, silenced bool, labels ...string) facts.Alert {
		return facts.Alert{Name: name, State: "firing", Labels: lbls(name, labels...), Silenced: silenced, Source: facts.SourceAlertmanager}
	}
	tests := []struct {
		name     string
		prom, am []facts.Alert
		want     []facts.Alert
	}{
		{"empty", nil, nil, []facts.Alert{}},
		{"prometheus only", []facts.Alert{p("B", "firing"), p("A", "pending")}, nil,
			[]facts.Alert{p("A", "pending"), p("B", "firing")}},
		{"alertmanager only", nil, []facts.Alert{a("A", true)}, []facts.Alert{a("A", true)}},
		{"exact labels, silenced", []facts.Alert{p("A", "firing", "x", "1")}, []facts.Alert{a("A", true, "x", "1")},
			[]facts.Alert{withSilenced(p("A", "firing", "x", "1"))}},
		{"external labels on alertmanager's side", []facts.Alert{p("A", "firing", "x", "1")}, []facts.Alert{a("A", true, "x", "1", "cluster", "c")},
			[]facts.Alert{withSilenced(p("A", "firing", "x", "1"))}},
		{"different label value: two alerts", []facts.Alert{p("A", "firing", "x", "1")}, []facts.Alert{a("A", true, "x", "2")},
			[]facts.Alert{p("A", "firing", "x", "1"), a("A", true, "x", "2")}},
		{"label missing on alertmanager's side: two alerts", []facts.Alert{p("A", "firing", "x", "1")}, []facts.Alert{a("A", true)},
			[]facts.Alert{a("A", true), p("A", "firing", "x", "1")}},
		{"same name, other alert", []facts.Alert{p("A", "firing")}, []facts.Alert{a("B", true)},
			[]facts.Alert{p("A", "firing"), a("B", true)}},
		{"two matches, one not silenced: not silenced", []facts.Alert{p("A", "firing", "x", "1")},
			[]facts.Alert{a("A", true, "x", "1", "cluster", "c1"), a("A", false, "x", "1", "cluster", "c2")},
			[]facts.Alert{p("A", "firing", "x", "1")}},
		{"two matches, both silenced", []facts.Alert{p("A", "firing", "x", "1")},
			[]facts.Alert{a("A", true, "x", "1", "cluster", "c1"), a("A", true, "x", "1", "cluster", "c2")},
			[]facts.Alert{withSilenced(p("A", "firing", "x", "1"))}},
		{"one alertmanager alert matches two prometheus series", []facts.Alert{p("A", "firing", "x", "1"), p("A", "pending")},
			[]facts.Alert{a("A", true, "x", "1")},
			[]facts.Alert{withSilenced(p("A", "firing", "x", "1")), withSilenced(p("A", "pending"))}},
		{"sorted by name, state, labels, source", []facts.Alert{p("A", "firing", "x", "2"), p("A", "firing", "x", "1")},
			[]facts.Alert{a("A", false, "x", "3")},
			[]facts.Alert{p("A", "firing", "x", "1"), p("A", "firing", "x", "2"), a("A", false, "x", "3")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Merge(tt.prom, tt.am); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func lbls(name string, kv ...string) map[string]string {
	m := map[string]string{"alertname": name}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func withSilenced(a facts.Alert) facts.Alert { a.Silenced = true; return a }

func TestErrors(t *testing.T) {
	tests := []struct {
		name   string
		am     bool
		status int
		body   string
		want   []string
	}{
		{"prometheus 500", false, 500, "internal error", []string{"500 Internal Server Error", "internal error"}},
		{"prometheus 400 with an error document", false, 400, `{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\""}`,
			[]string{"400 Bad Request", `invalid parameter "query"`}},
		{"prometheus 200 with status error", false, 200, `{"status":"error","errorType":"execution","error":"query timed out"}`, []string{"query timed out"}},
		{"prometheus bad JSON", false, 200, `{"status":"success","data":`, []string{"parsing the response"}},
		{"prometheus answer is alertmanager's", false, 200, amAlerts, []string{"want a JSON object"}},
		{"prometheus empty body", false, 200, "", []string{"want a JSON object", "(empty body)"}},
		{"prometheus HTML", false, 200, "<html>login</html>", []string{"want a JSON object", "<html>login</html>"}},
		{"prometheus matrix", false, 200, `{"status":"success","data":{"resultType":"matrix","result":[]}}`, []string{"matrix"}},
		{"alertmanager 503", true, 503, `{"code":503,"message":"not ready"}`, []string{"503 Service Unavailable", "not ready"}},
		{"alertmanager bad JSON", true, 200, `[{"labels":`, []string{"parsing the response"}},
		{"alertmanager answer is prometheus's", true, 200, promAlerts, []string{"want a JSON array"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFake(t, tt.body)
			srv.set(tt.status, tt.body)
			cfg := Config{Prometheus: Endpoint{URL: srv.URL}}
			prefix := "alerts: prometheus " + srv.URL + "/api/v1/query?query=ALERTS: "
			if tt.am {
				cfg = Config{Alertmanager: Endpoint{URL: srv.URL}}
				prefix = "alerts: alertmanager " + srv.URL + "/api/v2/alerts?"
			}
			got, err := mustNew(t, cfg).Alerts(context.Background())
			if err == nil {
				t.Fatalf("got %v, want an error", got)
			}
			if got != nil {
				t.Errorf("alerts %v returned with the error", got)
			}
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	srv := newFake(t, promAlerts)
	srv.block = make(chan struct{}) // never answers; the handler returns when the client gives up
	g := mustNew(t, Config{Prometheus: Endpoint{URL: srv.URL}, Timeout: 100 * time.Millisecond})
	began := time.Now()
	_, err := g.Alerts(context.Background())
	var uerr *url.Error
	if err == nil || !errors.As(err, &uerr) || !uerr.Timeout() {
		t.Fatalf("got %v, want a timeout *url.Error", err)
	}
	if !strings.Contains(err.Error(), srv.URL) {
		t.Errorf("error %q does not name the URL", err)
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close() // nothing listens there any more (loopback)
	_, err := mustNew(t, Config{Alertmanager: Endpoint{URL: addr}}).Alerts(context.Background())
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("got %v, want an error naming %s", err, addr)
	}
}

func TestOneSourceFailingFailsAll(t *testing.T) {
	prom := newFake(t, promAlerts)
	am := newFake(t, "")
	am.set(500, "boom")
	got, err := mustNew(t, Config{Prometheus: Endpoint{URL: prom.URL}, Alertmanager: Endpoint{URL: am.URL}}).Alerts(context.Background())
	if err == nil || got != nil || !strings.Contains(err.Error(), "alertmanager "+am.URL) {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestBearerToken(t *testing.T) {
	srv := newFake(t, promAlerts)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := mustNew(t, Config{Prometheus: Endpoint{URL: srv.URL, BearerTokenFile: tokenFile}})
	if _, err := g.Alerts(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := srv.last().Header.Get("Authorization"); got != "Bearer s3cr3t" {
		t.Errorf("Authorization %q", got)
	}
	// Rotated: the next request reads the file again.
	if err := os.WriteFile(tokenFile, []byte("rotated"), 0o600); err != nil {
		t.Fatal(err)
	}
	g.Invalidate()
	if _, err := g.Alerts(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := srv.last().Header.Get("Authorization"); got != "Bearer rotated" {
		t.Errorf("Authorization after rotation %q", got)
	}
	// Empty or missing: an error, and no request without credentials.
	for name, setup := range map[string]func(){
		"empty":   func() { _ = os.WriteFile(tokenFile, []byte(" \n"), 0o600) },
		"missing": func() { _ = os.Remove(tokenFile) },
	} {
		setup()
		g.Invalidate()
		n := srv.count()
		if _, err := g.Alerts(context.Background()); err == nil || !strings.Contains(err.Error(), "token") {
			t.Errorf("%s token file: got %v", name, err)
		}
		if srv.count() != n {
			t.Errorf("%s token file: a request was sent", name)
		}
	}
}

func TestTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, promAlerts)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the expected handshake failure
	srv.StartTLS()
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	pemData := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemData, 0o600); err != nil {
		t.Fatal(err)
	}

	if _, err := mustNew(t, Config{Prometheus: Endpoint{URL: srv.URL, CAFile: caFile}}).Alerts(context.Background()); err != nil {
		t.Errorf("with the CA file: %v", err)
	}
	if _, err := mustNew(t, Config{Prometheus: Endpoint{URL: srv.URL}}).Alerts(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without the CA: got %v, want a certificate error", err)
	}
	if _, err := mustNew(t, Config{Prometheus: Endpoint{URL: srv.URL, InsecureSkipVerify: true}}).Alerts(context.Background()); err != nil {
		t.Errorf("insecureSkipVerify: %v", err)
	}

	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{notPEM, filepath.Join(dir, "missing.pem")} {
		if _, err := New(Config{Prometheus: Endpoint{URL: srv.URL, CAFile: f}}); err == nil || !strings.Contains(err.Error(), "CA file") {
			t.Errorf("CA file %s: got %v", f, err)
		}
	}
}

func TestNewErrors(t *testing.T) {
	for _, u := range []string{"ftp://127.0.0.1/", "127.0.0.1:9090", "http://", "http://127.0.0.1:9090/?x=1", "http://127.0.0.1:9090/#f", "http://[::1"} {
		if _, err := New(Config{Alertmanager: Endpoint{URL: u}}); err == nil || !strings.HasPrefix(err.Error(), "alerts: alertmanager: ") {
			t.Errorf("URL %q: got %v", u, err)
		}
	}
	// Credentials in the URL are not shown.
	if _, err := New(Config{Prometheus: Endpoint{URL: "ftp://user:pw@127.0.0.1/"}}); err == nil || strings.Contains(err.Error(), "pw") {
		t.Errorf("got %v", err)
	}
}

func TestDisabled(t *testing.T) {
	g := mustNew(t, Config{})
	if g.Enabled() {
		t.Error("Enabled with no URL")
	}
	got, err := g.Alerts(context.Background())
	if got != nil || err != nil {
		t.Errorf("got %v, %v", got, err)
	}
}

func TestFill(t *testing.T) {
	srv := newFake(t, "")
	srv.set(500, "boom")
	var f facts.Facts
	mustNew(t, Config{Prometheus: Endpoint{URL: srv.URL}}).Fill(context.Background(), &f)
	if f.AlertsErr == nil || f.Alerts != nil {
		t.Errorf("got %v, %v", f.Alerts, f.AlertsErr)
	}
	srv.set(200, promAlerts)
	f = facts.Facts{}
	mustNew(t, Config{Prometheus: Endpoint{URL: srv.URL}}).Fill(context.Background(), &f)
	if f.AlertsErr != nil || len(f.Alerts) != 3 {
		t.Errorf("got %v, %v", f.Alerts, f.AlertsErr)
	}
}

func TestCacheTTL(t *testing.T) {
	srv := newFake(t, promAlerts)
	fc := clocktesting.NewFakeClock(t0)
	g := mustNew(t, Config{Prometheus: Endpoint{URL: srv.URL}, Clock: fc})
	ctx := context.Background()
	first, err := g.Alerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first[0].Name = "Mutated" // the caller's copy: the cache is not affected
	fc.Step(DefaultCacheTTL - time.Millisecond)
	again, err := g.Alerts(ctx)
	if err != nil || srv.count() != 1 {
		t.Fatalf("within the TTL: %d requests, %v", srv.count(), err)
	}
	if again[0].Name != "KubeNodeNotReady" {
		t.Errorf("cache was modified through a returned slice: %v", again[0].Name)
	}
	fc.Step(time.Millisecond)
	if _, err := g.Alerts(ctx); err != nil || srv.count() != 2 {
		t.Fatalf("after the TTL: %d requests, %v", srv.count(), err)
	}

	// Errors are cached too (a failing Prometheus is not hammered), and expire.
	srv.set(500, "down")
	fc.Step(DefaultCacheTTL)
	if _, err := g.Alerts(ctx); err == nil || srv.count() != 3 {
		t.Fatalf("error: %d requests, %v", srv.count(), err)
	}
	srv.set(200, promAlerts)
	if _, err := g.Alerts(ctx); err == nil || srv.count() != 3 {
		t.Fatalf("cached error: %d requests, %v", srv.count(), err)
	}
	fc.Step(DefaultCacheTTL)
	if _, err := g.Alerts(ctx); err != nil || srv.count() != 4 {
		t.Fatalf("recovered: %d requests, %v", srv.count(), err)
	}

	// Invalidate forces a request.
	g.Invalidate()
	if _, err := g.Alerts(ctx); err != nil || srv.count() != 5 {
		t.Fatalf("invalidated: %d requests, %v", srv.count(), err)
	}
}

func TestCacheCustomAndDisabled(t *testing.T) {
	srv := newFake(t, promAlerts)
	fc := clocktesting.NewFakeClock(t0)
	g := mustNew(t, Config{Prometheus: Endpoint{URL: srv.URL}, Clock: fc, CacheTTL: time.Minute})
	for range 3 {
		if _, err := g.Alerts(context.Background()); err != nil {
			t.Fatal(err)
		}
		fc.Step(20 * time.Second)
	}
	if srv.count() != 1 {
		t.Errorf("TTL 1m, calls at 0s, 20s, 40s: %d requests, want 1", srv.count())
	}

	off := mustNew(t, Config{Prometheus: Endpoint{URL: srv.URL}, Clock: fc, CacheTTL: -1})
	for range 3 {
		if _, err := off.Alerts(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if srv.count() != 4 {
		t.Errorf("cache disabled: %d requests, want 1+3", srv.count())
	}
}

func TestConcurrentCallersShareOneRequest(t *testing.T) {
	srv := newFake(t, promAlerts)
	release := make(chan struct{})
	srv.block = release
	g := mustNew(t, Config{Prometheus: Endpoint{URL: srv.URL}, CacheTTL: -1})
	const n = 20
	var wg sync.WaitGroup
	var failures atomic.Int32
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := g.Alerts(context.Background()); err != nil || len(got) != 3 {
				failures.Add(1)
			}
		}()
	}
	eventually(t, "the request", func() bool { return srv.count() == 1 })
	close(release)
	wg.Wait()
	if failures.Load() != 0 {
		t.Errorf("%d callers failed", failures.Load())
	}
	if srv.count() != 1 {
		t.Errorf("%d requests for %d concurrent callers, want 1", srv.count(), n)
	}
}

func TestCallerGivesUp(t *testing.T) {
	srv := newFake(t, promAlerts)
	release := make(chan struct{})
	srv.block = release
	fc := clocktesting.NewFakeClock(t0)
	g := mustNew(t, Config{Prometheus: Endpoint{URL: srv.URL}, Clock: fc})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := g.Alerts(ctx)
		done <- err
	}()
	eventually(t, "the request", func() bool { return srv.count() == 1 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Alerts did not return after cancel")
	}
	// The request goes on and fills the cache for the next caller.
	close(release)
	eventually(t, "the cache", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.cached != nil
	})
	if got, err := g.Alerts(context.Background()); err != nil || len(got) != 3 || srv.count() != 1 {
		t.Errorf("after: %d alerts, %d requests, %v", len(got), srv.count(), err)
	}
}

// eventually polls cond until it holds, or fails after a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
