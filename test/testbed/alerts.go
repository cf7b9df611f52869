package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// Alerts: every alert made by FireAlert is one Prometheus alerting rule in its
// own file under RulesDir. Firing sets its expression to vector(1), clearing to
// an empty vector; Prometheus is reloaded after each change and evaluates rules
// every second, so an alert fires (and reaches Alertmanager) within a few
// seconds and resolves as quickly. Prometheus also sends resolved alerts to
// Alertmanager, so cleared alerts leave Alertmanager's active list.

// AlertLabel is set ("true") on every alert made by FireAlert.
const AlertLabel = "testbed"

const (
	exprFiring  = "vector(1)"
	exprCleared = "vector(1) < 0"
)

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

func (b *Bed) rulePath(name string) string {
	return filepath.Join(b.RulesDir, "alert-"+unsafeFileChars.ReplaceAllString(name, "_")+".yml")
}

func (b *Bed) writeRule(ctx context.Context, name, expr string, opts AlertOptions) error {
	labels := map[string]string{AlertLabel: "true"}
	for k, v := range opts.Labels {
		labels[k] = v
	}
	r := rule{Alert: name, Expr: expr, Labels: labels,
		Annotations: map[string]string{"summary": "test bed alert " + name}}
	if opts.For > 0 {
		r.For = fmt.Sprintf("%dms", opts.For.Milliseconds())
	}
	// JSON is YAML; Prometheus reads it as a rule file.
	data, err := json.MarshalIndent(ruleFile{Groups: []ruleGroup{{Name: "testbed-" + name, Rules: []rule{r}}}}, "", "  ")
	if err != nil {
		return fmt.Errorf("alert %s: %w", name, err)
	}
	b.rulesMu.Lock()
	defer b.rulesMu.Unlock()
	path := b.rulePath(name)
	if err := os.WriteFile(path+".tmp", data, 0o644); err != nil {
		return fmt.Errorf("alert %s: %w", name, err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("alert %s: %w", name, err)
	}
	return b.ReloadPrometheus(ctx)
}

// ReloadPrometheus makes Prometheus re-read its configuration and rule files.
func (b *Bed) ReloadPrometheus(ctx context.Context) error {
	if _, err := b.httpDo(ctx, http.MethodPost, b.PrometheusURL+"/-/reload", nil); err != nil {
		return fmt.Errorf("reload Prometheus: %w", err)
	}
	return nil
}

// FireAlert makes Prometheus raise the alert name (with opts.Labels) from its
// next rule evaluation on, until ClearAlert. It does not wait; see
// WaitPrometheusAlert and WaitAlertmanagerAlert.
func (b *Bed) FireAlert(ctx context.Context, name string, opts AlertOptions) error {
	return b.writeRule(ctx, name, exprFiring, opts)
}

// ClearAlert makes the alert's expression empty, so Prometheus resolves it
// and tells Alertmanager. The rule stays (empty) until RemoveAlert.
func (b *Bed) ClearAlert(ctx context.Context, name string) error {
	return b.writeRule(ctx, name, exprCleared, AlertOptions{})
}

// RemoveAlert deletes the alert's rule file. Clear it first and wait for it
// to resolve if Alertmanager should see it resolved.
func (b *Bed) RemoveAlert(ctx context.Context, name string) error {
	b.rulesMu.Lock()
	defer b.rulesMu.Unlock()
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
