package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"k8s.io/client-go/tools/leaderelection"

	"github.com/rebootgate/rebootgate/engine/summary"
)

// summarizerHealth is what the summarizer's /healthz and /readyz answer.
type summarizerHealth struct {
	// source is the config and policies in force: an error while none has loaded.
	source func() error
	sum    *summary.Summarizer
	// leading is set once this replica publishes (at once without leader election).
	leading atomic.Bool
	// elector watches the leader's Lease renewal; nil without leader election.
	elector *leaderelection.HealthzAdaptor
	// stall bounds the time between two passes of the publishing loop.
	stall time.Duration
}

// healthz: the leader renews its Lease and its publishing loop makes passes. A
// candidate waiting for the lead has no loop that can be stuck.
func (h *summarizerHealth) healthz() error {
	if h.elector != nil {
		if err := h.elector.Check(nil); err != nil {
			return err
		}
	}
	return h.sum.Alive(h.stall)
}

// readyz: the config and policies have loaded (the policy informer has synced and they
// compile), and once leading, the node informer has synced and a summary was published.
// A candidate is ready to take over as soon as its config is.
func (h *summarizerHealth) readyz() error {
	if err := h.source(); err != nil {
		return fmt.Errorf("no config and policies in force: %w", err)
	}
	if !h.leading.Load() {
		return nil
	}
	return h.sum.Ready()
}

func (h *summarizerHealth) handler() http.Handler {
	mux := http.NewServeMux()
	for path, check := range map[string]func() error{"/healthz": h.healthz, "/readyz": h.readyz} {
		mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) {
			if err := check(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		})
	}
	return mux
}

// serveHealth listens on address (an error if it cannot) and serves the probes until ctx
// is done.
func serveHealth(ctx context.Context, address string, h *summarizerHealth, log *slog.Logger) error {
	l, err := net.Listen("tcp", address)
	if err != nil {
		return fmt.Errorf("--health-address %s: %w", address, err)
	}
	srv := &http.Server{Handler: h.handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health endpoints stopped", "address", address, "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Info("serving /healthz and /readyz", "address", l.Addr().String())
	return nil
}
