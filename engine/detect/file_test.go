package detect

import (
	"context"
	"github.com/fsnotify/fsnotify"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

var t0 = time.Date(2026, 11, 21, 3, 0, 0, 0, time.UTC)

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFileSentinelCheck(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "reboot-required")
	fc := clocktesting.NewFakeClock(t0)
	f := &FileSentinel{Path: path, Clock: fc}

	s := f.Check(context.Background())
	if s.Needed || s.Err != nil || s.Reason != ReasonSentinelAbsent || !s.Since.Equal(t0) {
		t.Fatalf("absent: got %v since %v", s, s.Since)
	}
	touch(t, path)
	if s := f.Check(context.Background()); !s.Needed || s.Reason != ReasonSentinelPresent {
		t.Fatalf("present: got %v", s)
	}
	// A directory counts too, as in kured (os.Stat succeeds).
	d := &FileSentinel{Path: dir}
	if s := d.Check(context.Background()); !s.Needed {
		t.Fatalf("directory: got %v", s)
	}
	// A path through a regular file is absent (ENOTDIR), not an error.
	nf := &FileSentinel{Path: filepath.Join(path, "x")}
	if s := nf.Check(context.Background()); s.Needed || s.Err != nil || s.Reason != ReasonSentinelAbsent {
		t.Fatalf("through a file: got %v", s)
	}
}

func TestFileSentinelCheckPermissionError(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root bypasses directory permissions")
	}
	dir := t.TempDir()
	locked := filepath.Join(dir, "locked")
	if err := os.Mkdir(locked, 0o000); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(locked, 0o755) })
	s := (&FileSentinel{Path: filepath.Join(locked, "reboot-required")}).Check(context.Background())
	if s.Needed || s.Err == nil || s.Reason != ReasonSentinelFileError {
		t.Fatalf("got %v, want a SentinelFileError", s)
	}
}

func TestFileSentinelRunCreateRemove(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "reboot-required")
	fc := clocktesting.NewFakeClock(t0)
	ch, _ := start(t, &FileSentinel{Path: path, Clock: fc, Logger: discardLogger()})

	s := expect(t, ch, false, ReasonSentinelAbsent, false)
	if !s.Since.Equal(t0) {
		t.Errorf("Since = %v, want %v", s.Since, t0)
	}
	fc.Step(time.Second) // Since follows the clock; less than the fallback period
	touch(t, path)
	s = expect(t, ch, true, ReasonSentinelPresent, false)
	if !s.Since.Equal(t0.Add(time.Second)) {
		t.Errorf("Since = %v, want %v", s.Since, t0.Add(time.Second))
	}

	// Noise: writes to the sentinel, other files in the directory, and fallback ticks
	// must not produce duplicate states. The next state received must be the removal.
	if err := os.WriteFile(path, []byte("pkgs\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	touch(t, filepath.Join(dir, "other"))
	if err := os.Remove(filepath.Join(dir, "other")); err != nil {
		t.Fatal(err)
	}
	fc.Step(DefaultFallbackPeriod)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, false, ReasonSentinelAbsent, false)

	// Renamed into place, as package managers do.
	tmp := filepath.Join(dir, ".reboot-required.tmp")
	touch(t, tmp)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, true, ReasonSentinelPresent, false)
	if err := os.Rename(path, tmp); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, false, ReasonSentinelAbsent, false)
}

func TestFileSentinelRunInitiallyPresent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "reboot-required")
	touch(t, path)
	ch, _ := start(t, &FileSentinel{Path: path, Clock: clocktesting.NewFakeClock(t0), Logger: discardLogger()})
	expect(t, ch, true, ReasonSentinelPresent, false)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, false, ReasonSentinelAbsent, false)
}

func TestFileSentinelRunMissingDirectory(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a", "b")
	path := filepath.Join(dir, "reboot-required")
	// The fake clock never ticks: only fsnotify can see these changes.
	ch, _ := start(t, &FileSentinel{Path: path, Clock: clocktesting.NewFakeClock(t0), Logger: discardLogger()})
	expect(t, ch, false, ReasonSentinelAbsent, false)

	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	touch(t, path)
	expect(t, ch, true, ReasonSentinelPresent, false)

	// The whole directory goes away: absent; it comes back with the file: present.
	if err := os.RemoveAll(filepath.Join(root, "a")); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, false, ReasonSentinelAbsent, false)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	touch(t, path)
	expect(t, ch, true, ReasonSentinelPresent, false)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, false, ReasonSentinelAbsent, false)
}

func TestFileSentinelRunDirectoryRecreated(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "run")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "reboot-required")
	ch, _ := start(t, &FileSentinel{Path: path, Clock: clocktesting.NewFakeClock(t0), Logger: discardLogger()})
	expect(t, ch, false, ReasonSentinelAbsent, false)
	// Remove and recreate the directory: the watch must follow the new inode.
	for i := 0; i < 3; i++ {
		if err := os.Remove(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	touch(t, path)
	expect(t, ch, true, ReasonSentinelPresent, false)
}

func TestFileSentinelFallback(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "reboot-required")
	fc := clocktesting.NewFakeClock(t0)
	period := 2 * time.Minute
	// noWatch: no fsnotify at all, as on a filesystem that never sends events.
	ch, _ := start(t, &FileSentinel{Path: path, FallbackPeriod: period, Clock: fc, Logger: discardLogger(), noWatch: true})
	expect(t, ch, false, ReasonSentinelAbsent, false)
	eventually(t, "the fallback ticker", fc.HasWaiters)

	touch(t, path)
	fc.Step(period - time.Second)
	select {
	case s := <-ch:
		t.Fatalf("state %v before the fallback period", s)
	default:
	}
	fc.Step(time.Second)
	s := expect(t, ch, true, ReasonSentinelPresent, false)
	if !s.Since.Equal(t0.Add(period)) {
		t.Errorf("Since = %v, want %v", s.Since, t0.Add(period))
	}

	// Unchanged on the next tick: no duplicate; then removed: absent.
	fc.Step(period)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	fc.Step(period)
	expect(t, ch, false, ReasonSentinelAbsent, false)
}

// Without an inotify instance (fs.inotify.max_user_instances used up), the file is
// polled every DegradedPeriod instead of the 5-minute fallback, and says so.
func TestFileSentinelDegradedPoll(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "reboot-required")
	fc := clocktesting.NewFakeClock(t0)
	f := &FileSentinel{Path: path, Clock: fc, Logger: discardLogger(),
		newWatcher: func() (*fsnotify.Watcher, error) { return nil, syscall.EMFILE }}
	ch, _ := start(t, f)
	expect(t, ch, false, ReasonSentinelAbsent, false)
	eventually(t, "the poll ticker", fc.HasWaiters)
	if !f.Degraded() {
		t.Fatal("Degraded() = false without an inotify instance")
	}
	touch(t, path)
	fc.Step(DegradedPeriod)
	expect(t, ch, true, ReasonSentinelPresent, false)

	healthy := &FileSentinel{Path: path, Clock: fc, Logger: discardLogger()}
	ch2, _ := start(t, healthy)
	expect(t, ch2, true, ReasonSentinelPresent, false) // past the watcher's set-up
	if healthy.Degraded() {
		t.Error("Degraded() = true with inotify")
	}
}

func TestFileSentinelRunErrors(t *testing.T) {
	if err := (&FileSentinel{}).Run(context.Background(), make(chan State)); err == nil {
		t.Error("empty path: want an error")
	}
	if err := (&FileSentinel{Path: "/x"}).Run(context.Background(), nil); err == nil {
		t.Error("nil channel: want an error")
	}
}

func TestFileSentinelRunStopsWhileSending(t *testing.T) {
	// Nobody reads the channel: cancel must still end Run.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- (&FileSentinel{Path: filepath.Join(t.TempDir(), "x"), Logger: discardLogger()}).Run(ctx, make(chan State))
	}()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitFor):
		t.Fatal("Run did not return")
	}
}
