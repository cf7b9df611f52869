package summary

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// progress is what the summarizer's /healthz and /readyz read of Run: whether it runs,
// whether its node informer has synced, when its loop last made a pass, and whether it
// has published since it started.
type progress struct {
	mu        sync.Mutex
	running   bool
	synced    func() bool // the node informer's HasSynced
	published bool
	lastPass  time.Time
}

func (s *Summarizer) started(synced func() bool) {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	s.health.running, s.health.synced, s.health.published = true, synced, false
	s.health.lastPass = s.cfg.Clock.Now()
}

func (s *Summarizer) stopped() {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	s.health.running = false
}

func (s *Summarizer) passed() {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	s.health.lastPass = s.cfg.Clock.Now()
}

func (s *Summarizer) wrote() {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	s.health.published = true
}

// Ready says whether Run has synced its node informer (listed every Node once) and
// published the summary at least once; an error says which is missing. A node list
// that fails makes Run publish a summary that says it is incomplete: not ready. A summarizer that is not running (a
// replica waiting for the lead) is not ready by this measure: its caller decides what
// a candidate's readiness is.
func (s *Summarizer) Ready() error {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	switch {
	case !s.health.running:
		return errors.New("not publishing")
	case !s.health.synced():
		return errors.New("the node informer has not synced yet")
	case !s.health.published:
		return fmt.Errorf("no summary published yet to ConfigMap %s/%s", s.cfg.Namespace, ConfigMapName)
	}
	return nil
}

// Alive says whether Run's loop is alive: it made a pass (every Interval, whether or
// not it writes) within stall. A loop stuck on a request, or a first node list that
// neither completes nor fails within stall of the start, is not. (A list that fails is
// no stall: the loop publishes a summary that says so, and a restart would not help.)
// A summarizer that is not running is alive: there is no loop to be stuck.
func (s *Summarizer) Alive(stall time.Duration) error {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	if !s.health.running {
		return nil
	}
	since := s.cfg.Clock.Since(s.health.lastPass)
	if since <= stall {
		return nil
	}
	if !s.health.synced() {
		return fmt.Errorf("the node informer has not synced in %s", since.Round(time.Second))
	}
	return fmt.Errorf("the publishing loop has made no pass in %s (more than %s)", since.Round(time.Second), stall)
}
