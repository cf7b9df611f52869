package detect

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"
)

// waitFor bounds every real wait in these tests; fsnotify events arrive in
// milliseconds, the deadline only matters when something is broken.
const waitFor = 10 * time.Second

func discardLogger() *slog.Logger {
	if os.Getenv("DETECT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// next receives one state or fails after the deadline.
func next(t *testing.T, ch <-chan State) State {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(waitFor):
		t.Fatal("timed out waiting for a state")
		return State{}
	}
}

// expect receives one state and checks its Needed, Reason and error presence.
func expect(t *testing.T, ch <-chan State, needed bool, reason string, wantErr bool) State {
	t.Helper()
	s := next(t, ch)
	if s.Needed != needed || s.Reason != reason || (s.Err != nil) != wantErr {
		t.Fatalf("got state %v, want needed=%v reason=%s err=%v", s, needed, reason, wantErr)
	}
	return s
}

// start runs d in the background; the returned stop cancels it and checks that Run
// returned nil.
func start(t *testing.T, d Detector) (<-chan State, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan State)
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, ch) }()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(waitFor):
			t.Error("Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return ch, stop
}
