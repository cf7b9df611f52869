package detect

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/utils/clock"
)

// FileSentinel reports a reboot as needed while the file at Path exists (kured's
// --reboot-sentinel). Any kind of entry counts, as in kured.
type FileSentinel struct {
	// Path of the sentinel file. Required.
	Path string
	// FallbackPeriod is how often the file is checked even without an fsnotify event;
	// zero means DefaultFallbackPeriod.
	FallbackPeriod time.Duration
	// Clock defaults to the real clock.
	Clock clock.WithTicker
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	// degraded is set while the file is only polled (no inotify instance).
	degraded atomic.Bool
	// noWatch disables fsnotify, for tests of the fallback.
	noWatch bool
	// newWatcher makes the fsnotify watcher; nil means fsnotify.NewWatcher (tests
	// make it fail as exhausted inotify instances do).
	newWatcher func() (*fsnotify.Watcher, error)
}

var _ Detector = (*FileSentinel)(nil)

// Check stats the file once.
func (f *FileSentinel) Check(_ context.Context) State {
	return f.stat(orClock(f.Clock).Now())
}

func (f *FileSentinel) stat(now time.Time) State {
	_, err := os.Stat(f.Path)
	switch {
	case err == nil:
		return State{Needed: true, Reason: ReasonSentinelPresent, Since: now}
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return State{Reason: ReasonSentinelAbsent, Since: now}
	default:
		return State{Reason: ReasonSentinelFileError, Err: fmt.Errorf("check reboot sentinel file: %w", err), Since: now}
	}
}

// Degraded reports whether the file is only polled, every DegradedPeriod, because no
// inotify instance could be had.
func (f *FileSentinel) Degraded() bool { return f.degraded.Load() }

// Run watches the file until ctx is done. See Detector.
func (f *FileSentinel) Run(ctx context.Context, changes chan<- State) error {
	if f.Path == "" {
		return errors.New("reboot sentinel file: path is empty")
	}
	if changes == nil {
		return errNilChannel
	}
	clk := orClock(f.Clock)
	log := orLogger(f.Logger).With("sentinel", f.Path)
	period := f.FallbackPeriod
	if period <= 0 {
		period = DefaultFallbackPeriod
	}
	path := filepath.Clean(f.Path)
	w := &dirWatch{dir: filepath.Dir(path), log: log}
	if !f.noWatch {
		newWatcher := f.newWatcher
		if newWatcher == nil {
			newWatcher = fsnotify.NewWatcher
		}
		fw, err := newWatcher()
		if err != nil {
			// Typically inotify instances exhausted (fs.inotify.max_user_instances):
			// a short poll stands in for the events.
			period = min(period, DegradedPeriod)
			f.degraded.Store(true)
			log.Warn("cannot watch the reboot sentinel, checking it periodically instead", "period", period, "error", err)
		} else {
			w.w = fw
			defer func() { _ = fw.Close() }()
		}
	}
	// Watch first, then stat: a change between the two is seen by the stat or
	// produces an event, never neither.
	w.arm(true)
	e := &emitter{changes: changes, log: log}
	if !e.emit(ctx, f.stat(clk.Now())) {
		return nil
	}
	ticker := clk.NewTicker(period)
	defer ticker.Stop()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w.w != nil {
		events, errs = w.w.Events, w.w.Errors
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C():
			// Also retries a watch that could not be set up.
			w.arm(false)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if !w.relevant(ev.Name, path) {
				continue
			}
			log.Debug("reboot sentinel event", "event", ev.String())
			// The watched directory itself went away or appeared: move the watch.
			w.arm(ev.Name != path)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// Usually an event queue overflow: events were lost, so look again.
			log.Warn("reboot sentinel watch error, checking the file", "error", err)
			w.arm(true)
		}
		if !e.emit(ctx, f.stat(clk.Now())) {
			return nil
		}
	}
}

// dirWatch keeps one fsnotify watch on the sentinel's directory, or, while that does
// not exist, on its nearest existing ancestor, so that the directory's creation is
// seen and the watch moves down to it.
type dirWatch struct {
	w       *fsnotify.Watcher // nil: no fsnotify, fallback only
	dir     string            // the sentinel's directory
	watched string            // the directory watched now, "" if none
	log     *slog.Logger
}

// arm points the watch at the nearest existing directory of dir's ancestry. force
// re-adds it even when it is the same path (it may have been removed and recreated:
// the old inotify watch died with the old inode).
func (d *dirWatch) arm(force bool) {
	if d.w == nil {
		return
	}
	// A directory can vanish between the walk and the Add (a whole tree being
	// removed): walk again, a bounded number of times.
	for range 8 {
		target := d.nearestDir()
		if target == d.watched && !force {
			return
		}
		if d.watched != "" {
			// Fails harmlessly when the watch already died with its directory.
			_ = d.w.Remove(d.watched)
			d.watched = ""
		}
		if target == "" {
			return
		}
		err := d.w.Add(target)
		if err == nil {
			d.watched = target
			if target == d.dir {
				return
			}
			// A directory on the way down may have appeared between the walk and the
			// Add, with its event sent to no watch: look again. Any later creation
			// sends an event to this watch.
			if d.nearestDir() != target {
				force = true
				continue
			}
			d.log.Info("reboot sentinel's directory does not exist, watching an ancestor until it appears", "dir", d.dir, "watching", target)
			return
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			d.log.Warn("cannot watch the reboot sentinel's directory, relying on the periodic check", "dir", target, "error", err)
			return
		}
		force = true
	}
	d.log.Warn("reboot sentinel's directory keeps changing, relying on the periodic check until the next event", "dir", d.dir)
}

// nearestDir is the sentinel's directory or, when it does not exist, its nearest
// existing ancestor ("" if none).
func (d *dirWatch) nearestDir() string {
	target := d.dir
	for {
		if fi, err := os.Stat(target); err == nil && fi.IsDir() {
			return target
		}
		parent := filepath.Dir(target)
		if parent == target {
			return ""
		}
		target = parent
	}
}

// relevant reports whether an event about name can change the sentinel's state or the
// watch: the file itself, the watched directory, or a directory on the way down to the
// sentinel's directory. Other files in the directory (busy: /run) are ignored.
func (d *dirWatch) relevant(name, path string) bool {
	name = filepath.Clean(name)
	if name == path || name == d.watched || name == d.dir {
		return true
	}
	return strings.HasPrefix(d.dir, name+string(filepath.Separator))
}
