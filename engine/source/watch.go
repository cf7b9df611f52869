package source

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/fsnotify/fsnotify"
)

// configWatch watches the config file's directory. A mounted ConfigMap's file is a
// symlink through `..data`, which the kubelet replaces atomically: watching the file
// itself would follow the old inode and miss every update after the first. Any event in
// the directory asks for a reload, which compares the content and is cheap when
// nothing changed.
type configWatch struct {
	dir      string
	log      *slog.Logger
	onChange func()

	mu       sync.Mutex
	watcher  *fsnotify.Watcher // nil until run starts, or when fsnotify is unavailable
	watching bool              // dir is added to watcher

	// degraded is set when no inotify instance could be had: polling alone.
	degraded atomic.Bool
	// newWatcher makes the watcher; nil means fsnotify.NewWatcher (tests fail it).
	newWatcher func() (*fsnotify.Watcher, error)
}

func newConfigWatch(path string, log *slog.Logger, onChange func()) *configWatch {
	return &configWatch{dir: filepath.Dir(path), log: log, onChange: onChange}
}

// run delivers the directory's events until ctx is done. Without fsnotify the periodic
// re-read is all there is, so a failure here is logged, not fatal.
func (w *configWatch) run(ctx context.Context) {
	newWatcher := w.newWatcher
	if newWatcher == nil {
		newWatcher = fsnotify.NewWatcher
	}
	watcher, err := newWatcher()
	if err != nil {
		w.degraded.Store(true)
		w.log.Warn("cannot watch the config file; re-reading it periodically instead", "dir", w.dir, "every", DegradedConfigPollInterval, "error", err)
		w.onChange() // the Run loop switches to the short poll
		return
	}
	defer watcher.Close()
	w.mu.Lock()
	w.watcher = watcher
	w.mu.Unlock()
	w.ensure()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-watcher.Events:
			if !ok {
				return
			}
			if ev.Name == w.dir && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				// The directory itself went (a remount): the next poll adds it again.
				w.mu.Lock()
				w.watching = false
				w.mu.Unlock()
			}
			w.onChange()
		case err, ok := <-watcher.Errors:
			if !ok {
				return
			}
			// An overflow loses events; reloading catches up on all of them.
			w.log.Warn("config watch error", "dir", w.dir, "error", err)
			w.onChange()
		}
	}
}

// ensure adds the directory to the watch if it is not watched yet; a directory that
// does not exist yet is tried again on the next poll.
func (w *configWatch) ensure() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.watcher == nil || w.watching {
		return
	}
	if err := w.watcher.Add(w.dir); err != nil {
		w.log.Warn("cannot watch the config directory yet; relying on the periodic re-read", "dir", w.dir, "error", err)
		return
	}
	w.watching = true
	// Anything written before the watch started would otherwise wait for the poll.
	w.onChange()
}
