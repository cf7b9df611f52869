package notify

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// request is what the test webhook received.
type request struct {
	method, path, contentType, body string
}

// webhook is an httptest server on 127.0.0.1 recording requests; handle, when set,
// replaces the 200 reply.
func webhook(t *testing.T, handle func(w http.ResponseWriter, r *http.Request)) (addr string, got <-chan request) {
	t.Helper()
	ch := make(chan request, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ch <- request{r.Method, r.URL.Path, r.Header.Get("Content-Type"), string(body)}
		if handle != nil {
			handle(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.Listener.Addr().String(), "127.0.0.1:") {
		t.Fatalf("test server not on loopback: %s", srv.Listener.Addr())
	}
	return srv.Listener.Addr().String(), ch
}

func receive(t *testing.T, ch <-chan request) request {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook received nothing")
		return request{}
	}
}

func TestNotifyThroughGenericWebhook(t *testing.T) {
	addr, got := webhook(t, nil)
	log, logs := testLogger()
	n, err := New(Config{
		URLs: []string{
			"generic://" + addr + "/hooks/rebootgate?disabletls=yes", // the service URL form
			"generic+http://" + addr + "/hooks/other",                // the shortcut form
			"  ",
		},
		Templates: Templates{Reboot: "Rebooting {{.Node}} in {{.Pool}}: {{.Decision | reasons 0}}"},
		Logger:    log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ev := Event{Kind: KindReboot, Node: "worker-3", Pool: "workers", Decision: blockedDecision("first", "second")}
	if err := n.Notify(context.Background(), ev); err != nil {
		t.Fatalf("Notify: %v\nlogs:\n%s", err, logs)
	}
	paths := map[string]bool{}
	for range 2 {
		r := receive(t, got)
		if r.method != http.MethodPost {
			t.Errorf("method %s", r.method)
		}
		if want := "Rebooting worker-3 in workers: first; second"; !strings.Contains(r.body, want) {
			t.Errorf("body %q does not contain %q", r.body, want)
		}
		paths[r.path] = true
	}
	if !paths["/hooks/rebootgate"] || !paths["/hooks/other"] {
		t.Errorf("paths %v", paths)
	}

	// kured's printf form, end to end.
	n, err = New(Config{URLs: []string{"generic://" + addr + "/k?disabletls=yes"}, Templates: Templates{Drain: "Draining node %s"}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(context.Background(), Event{Kind: KindDrain, Node: "worker-4"}); err != nil {
		t.Fatal(err)
	}
	if r := receive(t, got); r.body != "Draining node worker-4" {
		t.Errorf("body %q", r.body)
	}
}

func TestNotifyFailureIsLoggedWithoutSecrets(t *testing.T) {
	addr, got := webhook(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	log, logs := testLogger()
	n, err := New(Config{URLs: []string{"generic://" + addr + "/hooks/S3CR3T?disabletls=yes&token=T0K3N"}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	err = n.Notify(context.Background(), Event{Kind: KindUncordon, Node: "worker-5"})
	if err == nil {
		t.Fatal("a 500 reply was not an error")
	}
	receive(t, got)
	if !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "generic://"+addr) {
		t.Errorf("error %q should name the status and the URL's host", err)
	}
	out := logs.String()
	if !strings.Contains(out, "notification failed") || !strings.Contains(out, "worker-5") {
		t.Errorf("failure not logged:\n%s", out)
	}
	for _, secret := range []string{"S3CR3T", "T0K3N"} {
		if strings.Contains(out, secret) || strings.Contains(err.Error(), secret) {
			t.Errorf("%s leaked:\nerr: %v\nlogs:\n%s", secret, err, out)
		}
	}
}

func TestNotifyUnreachableWithoutSecrets(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now: connection refused
	log, logs := testLogger()
	n, err := New(Config{URLs: []string{"generic://" + addr + "/hooks/S3CR3T?disabletls=yes&token=T0K3N"}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	err = n.Notify(context.Background(), Event{Kind: KindDrain, Node: "worker-8"})
	if err == nil {
		t.Fatal("no error")
	}
	for _, secret := range []string{"S3CR3T", "T0K3N"} {
		if strings.Contains(logs.String(), secret) || strings.Contains(err.Error(), secret) {
			t.Errorf("%s leaked:\nerr: %v\nlogs:\n%s", secret, err, logs)
		}
	}
	if !strings.Contains(err.Error(), "http://"+addr+"/…") {
		t.Errorf("error %q should show the redacted target", err)
	}
}

func TestNotifyIsBounded(t *testing.T) {
	release := make(chan struct{})
	addr, got := webhook(t, func(http.ResponseWriter, *http.Request) { <-release })
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	log, logs := testLogger()
	n, err := New(Config{URLs: []string{"generic://" + addr + "/slow?disabletls=yes"}, Timeout: 100 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ev := Event{Kind: KindDrain, Node: "worker-6"}

	start := time.Now()
	err = n.Notify(context.Background(), ev)
	if err == nil || !strings.Contains(err.Error(), "gave up waiting") {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Notify took %s with a 100ms timeout", el)
	}
	receive(t, got)

	// The caller's context bounds it too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.Notify(ctx, ev); err == nil {
		t.Error("a cancelled context did not stop Notify")
	}

	// The hanging sends hold the URL's slots; once all are taken, messages are dropped
	// at once rather than piling up goroutines.
	for range maxInFlight {
		_ = n.Notify(context.Background(), ev)
	}
	start = time.Now()
	err = n.Notify(context.Background(), ev)
	if !errors.Is(err, errBusy) {
		t.Errorf("err = %v, want errBusy", err)
	}
	if el := time.Since(start); el > 50*time.Millisecond {
		t.Errorf("a dropped message took %s", el)
	}
	if !strings.Contains(logs.String(), "notification failed") {
		t.Errorf("timeouts not logged:\n%s", logs)
	}
}

func TestNoURLIsNop(t *testing.T) {
	n, err := New(Config{URLs: []string{"", " "}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := n.(Nop); !ok {
		t.Fatalf("New without URLs = %T, want Nop", n)
	}
	if err := n.Notify(context.Background(), Event{Kind: KindDrain, Node: "x"}); err != nil {
		t.Fatal(err)
	}
}

func TestBadURLs(t *testing.T) {
	for _, tc := range []struct {
		url    string
		want   string
		secret string
	}{
		{"no-scheme-at-all", "URL #1 (no scheme)", "no-scheme-at-all"},
		{"telegram://NOTAVALIDTOKEN@telegram?chats=@chan", "URL #1 (telegram://telegram/…)", "NOTAVALIDTOKEN"},
		{"nosuchservice://host/path", "unknown service", ""},
		{"slack://hook:NOTATOKEN@webhook", "URL #1 (slack://webhook)", "NOTATOKEN"},
		{"generic+https://example.invalid/x?disabletls=maybe&key=S3CR3T", "URL #1 (generic+https://example.invalid/…)", "S3CR3T"},
		{"generic://example.invalid/x?disabletls=maybe&key=S3CR3T", "URL #1 (generic://example.invalid/…)", "S3CR3T"},
		{"http://[::1", "not a URL", ""},
	} {
		_, err := New(Config{URLs: []string{tc.url}})
		if err == nil {
			t.Errorf("%s: accepted", tc.url)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.url, err, tc.want)
		}
		if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
			t.Errorf("%s: error %q leaks the secret", tc.url, err)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"slack://hook:T0-B0-X0@webhook":                            "slack://webhook",
		"https://hooks.slack.com/services/T/B/X":                   "https://hooks.slack.com/…",
		`Post "http://127.0.0.1:80/a?b=c": dial tcp 127.0.0.1:80:`: `Post "http://127.0.0.1:80/…": dial tcp 127.0.0.1:80:`,
		"smtp://user:pw@mail.example.com:587/?to=a@b.c":            "smtp://mail.example.com:587/…",
		"see https://example.com/x.":                               "see https://example.com/….",
		"teams://example.com":                                      "teams://example.com",
		"no url here":                                              "no url here",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
