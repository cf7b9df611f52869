package alerts

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/rebootgate/rebootgate/engine/facts"
)

// Defaults.
const (
	// DefaultTimeout bounds one HTTP request, connection and body included.
	DefaultTimeout = 10 * time.Second
	// DefaultCacheTTL is how long an answer (or an error) is reused.
	DefaultCacheTTL = 15 * time.Second
	// maxBody bounds a response; a cluster with more alerts than this has bigger
	// problems than a reboot.
	maxBody = 32 << 20
)

// API paths, appended to the endpoint URL (which may carry a path prefix, e.g.
// http://monitoring/prometheus).
const (
	prometheusPath   = "/api/v1/query"
	alertmanagerPath = "/api/v2/alerts"
)

// Endpoint is one Prometheus or Alertmanager server.
type Endpoint struct {
	// URL is the server's base URL, http or https, e.g.
	// http://prometheus-operated.monitoring:9090; a path prefix is kept. Empty: the
	// source is not used.
	URL string
	// BearerTokenFile, if set, is read before each request (so rotated tokens, e.g. a
	// projected service account token, are picked up) and sent as
	// "Authorization: Bearer <token>". An unreadable or empty file is an error.
	BearerTokenFile string
	// CAFile is a PEM bundle that verifies the server's certificate instead of the
	// system roots. It is read once, by New.
	CAFile string
	// InsecureSkipVerify disables TLS certificate verification. Anyone on the path can
	// then impersonate the server and, by hiding alerts, allow reboots: use it only for
	// tests or a trusted network, prefer CAFile.
	InsecureSkipVerify bool
}

// Config configures a Gatherer.
type Config struct {
	// Prometheus is queried for ALERTS (firing and pending).
	Prometheus Endpoint
	// Alertmanager is asked for its alerts and their silenced/inhibited status.
	Alertmanager Endpoint
	// Timeout bounds each request; zero means DefaultTimeout.
	Timeout time.Duration
	// CacheTTL is how long an answer is reused; zero means DefaultCacheTTL, negative
	// disables the cache (concurrent callers still share one request).
	CacheTTL time.Duration
	// Clock is used for the cache; it defaults to the real clock.
	Clock clock.PassiveClock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// UserAgent defaults to "rebootgate".
	UserAgent string
}

// Gatherer reads alerts. It is safe for concurrent use.
type Gatherer struct {
	sources []*source
	ttl     time.Duration
	clock   clock.PassiveClock
	log     *slog.Logger

	mu       sync.Mutex
	cached   *result // last answer, nil before the first
	inflight *call   // request under way, shared by callers
}

type result struct {
	alerts []facts.Alert
	err    error
	at     time.Time
}

type call struct {
	done chan struct{}
	res  result
}

// source is one configured server.
type source struct {
	kind      string // facts.SourcePrometheus or facts.SourceAlertmanager
	url       string // full request URL
	shown     string // URL for messages, without credentials
	tokenFile string
	client    *http.Client
	userAgent string
}

// New checks the configuration, reads CA files and returns a Gatherer. With no URL
// configured, the Gatherer is disabled and returns no alerts.
func New(cfg Config) (*Gatherer, error) {
	g := &Gatherer{ttl: cfg.CacheTTL, clock: cfg.Clock, log: cfg.Logger}
	if g.ttl == 0 {
		g.ttl = DefaultCacheTTL
	}
	if g.clock == nil {
		g.clock = clock.RealClock{}
	}
	if g.log == nil {
		g.log = slog.Default()
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ua := cfg.UserAgent
	if ua == "" {
		ua = "rebootgate"
	}
	for _, e := range []struct {
		kind, path string
		query      url.Values
		ep         Endpoint
	}{
		{facts.SourcePrometheus, prometheusPath, url.Values{"query": {"ALERTS"}}, cfg.Prometheus},
		{facts.SourceAlertmanager, alertmanagerPath, url.Values{
			"active": {"true"}, "silenced": {"true"}, "inhibited": {"true"}, "unprocessed": {"true"},
		}, cfg.Alertmanager},
	} {
		if e.ep.URL == "" {
			continue
		}
		s, err := newSource(e.kind, e.path, e.query, e.ep, timeout, ua)
		if err != nil {
			return nil, fmt.Errorf("alerts: %s: %w", e.kind, err)
		}
		g.sources = append(g.sources, s)
	}
	return g, nil
}

func newSource(kind, path string, query url.Values, ep Endpoint, timeout time.Duration, ua string) (*source, error) {
	u, err := url.Parse(ep.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("url %q: scheme must be http or https", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("url %q: no host", u.Redacted())
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("url %q: must not have a query or fragment", u.Redacted())
	}
	u = u.JoinPath(path)
	u.RawQuery = query.Encode()

	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: ep.InsecureSkipVerify} //nolint:gosec // documented opt-in
	if ep.CAFile != "" {
		pem, err := os.ReadFile(ep.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate found", ep.CAFile)
		}
		tlsConfig.RootCAs = pool
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig
	transport.TLSHandshakeTimeout = timeout
	transport.ResponseHeaderTimeout = timeout
	// Queries are rare (only when a decision needs alerts): do not keep thousands of
	// agents' idle connections open on the server for long.
	transport.MaxIdleConnsPerHost = 1
	transport.IdleConnTimeout = 30 * time.Second
	return &source{
		kind:      kind,
		url:       u.String(),
		shown:     u.Redacted(),
		tokenFile: ep.BearerTokenFile,
		client:    &http.Client{Transport: transport, Timeout: timeout},
		userAgent: ua,
	}, nil
}

// Enabled reports whether any source is configured.
func (g *Gatherer) Enabled() bool { return len(g.sources) > 0 }

// Alerts returns the alerts of every configured source, merged (see Merge), from the
// cache when it is fresh. Any source failing makes the whole answer an error: the
// caller must fail closed. The returned slice is the caller's; do not modify the label
// maps, which are shared with the cache.
func (g *Gatherer) Alerts(ctx context.Context) ([]facts.Alert, error) {
	if len(g.sources) == 0 {
		return nil, nil
	}
	g.mu.Lock()
	if r := g.cached; r != nil && g.ttl > 0 && g.clock.Since(r.at) < g.ttl {
		g.mu.Unlock()
		return clone(r.alerts), r.err
	}
	c := g.inflight
	if c == nil {
		c = &call{done: make(chan struct{})}
		g.inflight = c
		// The request outlives a caller that gives up, so that the others (and the
		// cache) still get its answer; the timeout bounds it.
		go g.fetch(context.WithoutCancel(ctx), c)
	}
	g.mu.Unlock()
	select {
	case <-c.done:
		return clone(c.res.alerts), c.res.err
	case <-ctx.Done():
		return nil, fmt.Errorf("alerts: %w", ctx.Err())
	}
}

// Fill sets f.Alerts and f.AlertsErr.
func (g *Gatherer) Fill(ctx context.Context, f *facts.Facts) {
	f.Alerts, f.AlertsErr = g.Alerts(ctx)
}

// Invalidate drops the cached answer, so that the next call asks the servers (e.g.
// right before a reboot, to re-check with fresh data).
func (g *Gatherer) Invalidate() {
	g.mu.Lock()
	g.cached = nil
	g.mu.Unlock()
}

func (g *Gatherer) fetch(ctx context.Context, c *call) {
	results := make([][]facts.Alert, len(g.sources))
	errs := make([]error, len(g.sources))
	var wg sync.WaitGroup
	for i, s := range g.sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.get(ctx)
		}()
	}
	wg.Wait()
	res := result{at: g.clock.Now(), err: errors.Join(errs...)}
	if res.err == nil {
		var prom, am []facts.Alert
		for i, s := range g.sources {
			if s.kind == facts.SourcePrometheus {
				prom = results[i]
			} else {
				am = results[i]
			}
		}
		res.alerts = Merge(prom, am)
		g.log.Debug("alerts gathered", "alerts", len(res.alerts))
	} else {
		g.log.Warn("cannot read alerts", "error", res.err)
	}
	c.res = res
	g.mu.Lock()
	g.cached = &res
	g.inflight = nil
	g.mu.Unlock()
	close(c.done)
}

// get performs one request and parses the answer.
func (s *source) get(ctx context.Context) ([]facts.Alert, error) {
	alerts, err := s.do(ctx)
	if err != nil {
		return nil, fmt.Errorf("alerts: %s %s: %w", s.kind, s.shown, err)
	}
	return alerts, nil
}

func (s *source) do(ctx context.Context) ([]facts.Alert, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", s.userAgent)
	if s.tokenFile != "" {
		data, err := os.ReadFile(s.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("bearer token: %w", err)
		}
		token := strings.TrimSpace(string(data))
		if token == "" {
			return nil, fmt.Errorf("bearer token file %s is empty", s.tokenFile)
		}
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err // *url.Error: names the method and URL too
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading the response: %w", err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("response larger than %d bytes", maxBody)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s: %s", resp.Status, errorMessage(body))
	}
	trimmed := bytes.TrimSpace(body)
	want := byte('{')
	what := "a JSON object (a Prometheus /api/v1/query response)"
	if s.kind == facts.SourceAlertmanager {
		want, what = '[', "a JSON array (an Alertmanager /api/v2/alerts response)"
	}
	if len(trimmed) == 0 || trimmed[0] != want {
		return nil, fmt.Errorf("unexpected response, want %s: %s", what, snippet(trimmed))
	}
	alerts, err := facts.ParseAlerts(trimmed)
	if err != nil {
		return nil, fmt.Errorf("parsing the response: %w", err)
	}
	return alerts, nil
}

// errorMessage extracts the error of a Prometheus or Alertmanager error body, or a
// snippet of the body.
func errorMessage(body []byte) string {
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil {
		if e.Error != "" {
			return e.Error
		}
		if e.Message != "" {
			return e.Message
		}
	}
	return snippet(bytes.TrimSpace(body))
}

func snippet(b []byte) string {
	const n = 200
	s := strings.ToValidUTF8(string(b), "?")
	if r := []rune(s); len(r) > n {
		s = string(r[:n]) + "…"
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}

func clone(alerts []facts.Alert) []facts.Alert {
	if alerts == nil {
		return nil
	}
	return append([]facts.Alert(nil), alerts...)
}
