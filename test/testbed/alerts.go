package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Alerts: every alert made by FireAlert is one Prometheus alerting rule in its
// own file under RulesDir, `max(testbed_alert{testbed_alert="NAME"}) > 0`. The
// test process serves the testbed_alert gauge on a loopback /metrics endpoint
// that Prometheus scrapes every second (registered through TargetsDir), so
// FireAlert and ClearAlert only flip a value: Prometheus raises the alert at
// its next evaluation, resolves it when the value drops to 0, and tells
// Alertmanager both. (Rewriting or deleting a rule would not resolve the alert
// in Alertmanager; it would linger there until its endsAt.)

// AlertLabel is set ("true") on every alert made by FireAlert.
const AlertLabel = "testbed"

// AlertMetric is the gauge behind the bed's alerts; label testbed_alert names the alert.
const AlertMetric = "testbed_alert"

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

type ruleFile struct {
	Groups []ruleGroup `json:"groups"`
}

type ruleGroup struct {
	Name  string `json:"name"`
	Rules []rule `json:"rules"`
}

type rule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// AlertOptions tune FireAlert.
type AlertOptions struct {
	// Labels are added to the alert (alertname is the name).
	Labels map[string]string
	// For keeps the alert pending this long before it fires (default 0:
	// firing at the first evaluation).
	For time.Duration
}

// alertServer serves the testbed_alert gauge for this process's alerts.
type alertServer struct {
	mu     sync.Mutex
	values map[string]float64
	rules  map[string]string // alert name -> rule file content
	srv    *http.Server
	target string // file_sd target name
}

func (a *alertServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	names := make([]string, 0, len(a.values))
	for n := range a.values {
		names = append(names, n)
	}
	sort.Strings(names)
	var sb strings.Builder
	sb.WriteString("# HELP testbed_alert 1 while the test bed alert named by label testbed_alert fires.\n# TYPE testbed_alert gauge\n")
	for _, n := range names {
		fmt.Fprintf(&sb, "%s{testbed_alert=%s} %g\n", AlertMetric, strconv.Quote(n), a.values[n])
	}
	a.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = io.WriteString(w, sb.String())
}

// alerts starts this process's alert endpoint on first use.
func (b *Bed) alerts() (*alertServer, error) {
	b.rulesMu.Lock()
	defer b.rulesMu.Unlock()
	if b.alertSrv != nil {
		return b.alertSrv, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("alert endpoint: %w", err)
	}
	a := &alertServer{values: map[string]float64{}, rules: map[string]string{}, target: fmt.Sprintf("alerts-%d", os.Getpid())}
	mux := http.NewServeMux()
	mux.Handle("/metrics", a)
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = a.srv.Serve(ln) }()
	if err := b.RegisterScrapeTarget(a.target, ln.Addr().String(), map[string]string{"source": "testbed-alerts"}); err != nil {
		_ = a.srv.Close()
		return nil, err
	}
	b.alertSrv = a
	return a, nil
}

// Close stops this process's alert endpoint (its alerts resolve) and
// unregisters it from Prometheus. The bed keeps running.
func (b *Bed) Close() error {
	b.rulesMu.Lock()
	a := b.alertSrv
	b.alertSrv = nil
	b.rulesMu.Unlock()
	if a == nil {
		return nil
	}
	err := b.UnregisterScrapeTarget(a.target)
	return errors.Join(err, a.srv.Close())
}

func (b *Bed) rulePath(name string) string {
	return filepath.Join(b.RulesDir, "alert-"+unsafeFileChars.ReplaceAllString(name, "_")+".yml")
}

// ensureRule writes the alert's rule file and reloads Prometheus if it changed.
func (b *Bed) ensureRule(ctx context.Context, a *alertServer, name string, opts AlertOptions) error {
	labels := map[string]string{AlertLabel: "true"}
	for k, v := range opts.Labels {
		labels[k] = v
	}
	r := rule{
		Alert:       name,
		Expr:        fmt.Sprintf("max(%s{testbed_alert=%s}) > 0", AlertMetric, strconv.Quote(name)),
		Labels:      labels,
		Annotations: map[string]string{"summary": "test bed alert " + name},
	}
	if opts.For > 0 {
		r.For = fmt.Sprintf("%dms", opts.For.Milliseconds())
	}
	// JSON is YAML; Prometheus reads it as a rule file.
	data, err := json.MarshalIndent(ruleFile{Groups: []ruleGroup{{Name: "testbed-" + name, Rules: []rule{r}}}}, "", "  ")
	if err != nil {
		return fmt.Errorf("alert %s: %w", name, err)
	}
	a.mu.Lock()
	same := a.rules[name] == string(data)
	a.mu.Unlock()
	path := b.rulePath(name)
	if same {
		if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
			return nil
		}
	}
	if err := os.WriteFile(path+".tmp", data, 0o644); err != nil {
		return fmt.Errorf("alert %s: %w", name, err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("alert %s: %w", name, err)
	}
	if err := b.ReloadPrometheus(ctx); err != nil {
		return err
	}
	a.mu.Lock()
	a.rules[name] = string(data)
	a.mu.Unlock()
	return nil
}

// ReloadPrometheus makes Prometheus re-read its configuration and rule files.
func (b *Bed) ReloadPrometheus(ctx context.Context) error {
	if _, err := b.httpDo(ctx, http.MethodPost, b.PrometheusURL+"/-/reload", nil); err != nil {
		return fmt.Errorf("reload Prometheus: %w", err)
	}
	return nil
}

// FireAlert makes Prometheus raise the alert name (with opts.Labels) from its
// next scrape and evaluation on (about 1-3 s), until ClearAlert. It does not
// wait; see WaitPrometheusAlert and WaitAlertmanagerAlert. The alert lives as
// long as this process serves it (Close or exit resolves it).
func (b *Bed) FireAlert(ctx context.Context, name string, opts AlertOptions) error {
	a, err := b.alerts()
	if err != nil {
		return err
	}
	if err := b.ensureRule(ctx, a, name, opts); err != nil {
		return err
	}
	a.mu.Lock()
	a.values[name] = 1
	a.mu.Unlock()
	return nil
}

// ClearAlert stops the alert: Prometheus resolves it at its next scrape and
// evaluation and sends the resolution to Alertmanager.
func (b *Bed) ClearAlert(ctx context.Context, name string) error {
	a, err := b.alerts()
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.values[name]; ok {
		a.values[name] = 0
	}
	return nil
}

// RemoveAlert clears the alert and deletes its rule. Wait for the alert to
// resolve first if Alertmanager should see it resolved.
func (b *Bed) RemoveAlert(ctx context.Context, name string) error {
	a, err := b.alerts()
	if err != nil {
		return err
	}
	a.mu.Lock()
	delete(a.values, name)
	delete(a.rules, name)
	a.mu.Unlock()
	if err := os.Remove(b.rulePath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove alert %s: %w", name, err)
	}
	return b.ReloadPrometheus(ctx)
}

// PromAlert is an alert as Prometheus's /api/v1/alerts reports it.
type PromAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	// State is "pending" or "firing".
	State    string    `json:"state"`
	ActiveAt time.Time `json:"activeAt"`
	Value    string    `json:"value"`
}

// PrometheusAlerts lists the alerts Prometheus currently holds.
func (b *Bed) PrometheusAlerts(ctx context.Context) ([]PromAlert, error) {
	data, err := b.httpDo(ctx, http.MethodGet, b.PrometheusURL+"/api/v1/alerts", nil)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Status string `json:"status"`
		Data   struct {
			Alerts []PromAlert `json:"alerts"`
		} `json:"data"`
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, fmt.Errorf("decode Prometheus alerts: %w", err)
	}
	return resp.Data.Alerts, nil
}

// WaitPrometheusAlert waits until Prometheus reports the alert name in state
// ("pending" or "firing"), or, with state "", until it has no such alert.
func (b *Bed) WaitPrometheusAlert(ctx context.Context, name, state string, timeout time.Duration) error {
	what := fmt.Sprintf("Prometheus alert %s %s", name, state)
	if state == "" {
		what = fmt.Sprintf("Prometheus alert %s gone", name)
	}
	return Poll(ctx, timeout, what, func(ctx context.Context) (bool, error) {
		alerts, err := b.PrometheusAlerts(ctx)
		if err != nil {
			return false, err
		}
		for _, a := range alerts {
			if a.Labels["alertname"] == name {
				return a.State == state, nil
			}
		}
		return state == "", nil
	})
}

// QueryPrometheus runs an instant query and returns the vector's samples as
// label sets with their values (as Prometheus formats them).
func (b *Bed) QueryPrometheus(ctx context.Context, query string) ([]Sample, error) {
	data, err := b.httpDo(ctx, http.MethodGet, b.PrometheusURL+"/api/v1/query?query="+url.QueryEscape(query), nil)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Data struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, fmt.Errorf("decode query %q: %w", query, err)
	}
	if resp.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q: result type %q, want vector", query, resp.Data.ResultType)
	}
	out := make([]Sample, 0, len(resp.Data.Result))
	for _, r := range resp.Data.Result {
		v, _ := r.Value[1].(string)
		out = append(out, Sample{Labels: r.Metric, Value: v})
	}
	return out, nil
}

// Sample is one element of an instant vector.
type Sample struct {
	Labels map[string]string
	Value  string
}

// AMAlert is an alert as Alertmanager's /api/v2/alerts reports it.
type AMAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Fingerprint string            `json:"fingerprint"`
	Status      struct {
		// State is "unprocessed", "active" or "suppressed".
		State       string   `json:"state"`
		SilencedBy  []string `json:"silencedBy"`
		InhibitedBy []string `json:"inhibitedBy"`
	} `json:"status"`
}

// Silenced reports whether a silence suppresses the alert.
func (a *AMAlert) Silenced() bool { return len(a.Status.SilencedBy) > 0 }

// AlertmanagerAlerts lists Alertmanager's current (unresolved) alerts,
// silenced ones included.
func (b *Bed) AlertmanagerAlerts(ctx context.Context) ([]AMAlert, error) {
	data, err := b.httpDo(ctx, http.MethodGet, b.AlertmanagerURL+"/api/v2/alerts", nil)
	if err != nil {
		return nil, err
	}
	var alerts []AMAlert
	if err := json.Unmarshal(data, &alerts); err != nil {
		return nil, fmt.Errorf("decode Alertmanager alerts: %w", err)
	}
	return alerts, nil
}

// WaitAlertmanagerAlert waits until Alertmanager holds an alert named name for
// which cond holds (cond nil: any), and returns it. To wait for an alert to be
// gone use WaitAlertmanagerAlertGone.
func (b *Bed) WaitAlertmanagerAlert(ctx context.Context, name string, timeout time.Duration, cond func(*AMAlert) bool) (*AMAlert, error) {
	var got *AMAlert
	err := Poll(ctx, timeout, "Alertmanager alert "+name, func(ctx context.Context) (bool, error) {
		alerts, err := b.AlertmanagerAlerts(ctx)
		if err != nil {
			return false, err
		}
		for i := range alerts {
			if alerts[i].Labels["alertname"] == name && (cond == nil || cond(&alerts[i])) {
				got = &alerts[i]
				return true, nil
			}
		}
		return false, nil
	})
	return got, err
}

// WaitAlertmanagerAlertGone waits until Alertmanager no longer lists the alert.
func (b *Bed) WaitAlertmanagerAlertGone(ctx context.Context, name string, timeout time.Duration) error {
	return Poll(ctx, timeout, "Alertmanager alert "+name+" gone", func(ctx context.Context) (bool, error) {
		alerts, err := b.AlertmanagerAlerts(ctx)
		if err != nil {
			return false, err
		}
		for _, a := range alerts {
			if a.Labels["alertname"] == name {
				return false, nil
			}
		}
		return true, nil
	})
}

// Silence creates an Alertmanager silence matching every given label exactly
// (e.g. {"alertname": "X"}), active from now for d, and returns its ID.
func (b *Bed) Silence(ctx context.Context, matchers map[string]string, d time.Duration, comment string) (string, error) {
	type matcher struct {
		Name    string `json:"name"`
		Value   string `json:"value"`
		IsRegex bool   `json:"isRegex"`
		IsEqual bool   `json:"isEqual"`
	}
	if len(matchers) == 0 {
		return "", errors.New("silence: at least one matcher is required")
	}
	body := struct {
		Matchers  []matcher `json:"matchers"`
		StartsAt  time.Time `json:"startsAt"`
		EndsAt    time.Time `json:"endsAt"`
		CreatedBy string    `json:"createdBy"`
		Comment   string    `json:"comment"`
	}{StartsAt: time.Now().UTC(), EndsAt: time.Now().Add(d).UTC(), CreatedBy: "rebootgate-testbed", Comment: comment}
	for k, v := range matchers {
		body.Matchers = append(body.Matchers, matcher{Name: k, Value: v, IsEqual: true})
	}
	if body.Comment == "" {
		body.Comment = "test bed silence"
	}
	data, err := json.Marshal(body)
	if err != nil {
		return "", fmt.Errorf("silence: %w", err)
	}
	out, err := b.httpDo(ctx, http.MethodPost, b.AlertmanagerURL+"/api/v2/silences", data)
	if err != nil {
		return "", fmt.Errorf("create silence: %w", err)
	}
	var resp struct {
		SilenceID string `json:"silenceID"`
	}
	if err := json.Unmarshal(out, &resp); err != nil || resp.SilenceID == "" {
		return "", fmt.Errorf("create silence: unexpected answer %q: %w", out, err)
	}
	return resp.SilenceID, nil
}

// ExpireSilence ends a silence now.
func (b *Bed) ExpireSilence(ctx context.Context, id string) error {
	if _, err := b.httpDo(ctx, http.MethodDelete, b.AlertmanagerURL+"/api/v2/silence/"+url.PathEscape(id), nil); err != nil {
		return fmt.Errorf("expire silence %s: %w", id, err)
	}
	return nil
}

// RegisterScrapeTarget makes Prometheus scrape http://addr/metrics (addr must
// be a loopback host:port) as job "testbed" with the given labels, until
// UnregisterScrapeTarget(name). Prometheus picks the file up within 5s.
func (b *Bed) RegisterScrapeTarget(name, addr string, labels map[string]string) error {
	if b.TargetsDir == "" {
		return errors.New("register scrape target: bed has no targets dir")
	}
	data, err := json.Marshal([]map[string]any{{"targets": []string{addr}, "labels": labels}})
	if err != nil {
		return fmt.Errorf("register scrape target %s: %w", name, err)
	}
	path := filepath.Join(b.TargetsDir, unsafeFileChars.ReplaceAllString(name, "_")+".json")
	if err := os.WriteFile(path+".tmp", data, 0o644); err != nil {
		return fmt.Errorf("register scrape target %s: %w", name, err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("register scrape target %s: %w", name, err)
	}
	return nil
}

// UnregisterScrapeTarget removes a target added by RegisterScrapeTarget.
func (b *Bed) UnregisterScrapeTarget(name string) error {
	path := filepath.Join(b.TargetsDir, unsafeFileChars.ReplaceAllString(name, "_")+".json")
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unregister scrape target %s: %w", name, err)
	}
	return nil
}
