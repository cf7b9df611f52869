package detect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/utils/clock"
)

// Reasons, in the CamelCase form of a Node condition reason (the RebootRequired
// condition uses them as they are).
const (
	// ReasonSentinelPresent: the sentinel file exists.
	ReasonSentinelPresent = "SentinelFilePresent"
	// ReasonSentinelAbsent: the sentinel file does not exist.
	ReasonSentinelAbsent = "SentinelFileAbsent"
	// ReasonSentinelFileError: the sentinel file could not be checked (e.g. permission
	// denied on its directory).
	ReasonSentinelFileError = "SentinelFileError"
	// ReasonCommandNeeded: the sentinel command exited 0.
	ReasonCommandNeeded = "SentinelCommandExit0"
	// ReasonCommandNotNeeded: the sentinel command exited 1.
	ReasonCommandNotNeeded = "SentinelCommandExit1"
	// ReasonCommandExitCode: the sentinel command exited with another code, or was
	// killed by a signal.
	ReasonCommandExitCode = "SentinelCommandUnexpectedExit"
	// ReasonCommandTimeout: the sentinel command did not finish within its timeout.
	ReasonCommandTimeout = "SentinelCommandTimeout"
	// ReasonCommandError: the sentinel command could not be run at all (not found,
	// not executable, nsenter failed).
	ReasonCommandError = "SentinelCommandError"
)

// Defaults.
const (
	// DefaultSentinelPath is kured's --reboot-sentinel default.
	DefaultSentinelPath = "/var/run/reboot-required"
	// DefaultFallbackPeriod is how often a FileSentinel checks the file even without
	// fsnotify events.
	DefaultFallbackPeriod = 5 * time.Minute
	// DegradedPeriod is the file's check period while inotify is unavailable (busy
	// hosts run out of fs.inotify.max_user_instances): one stat, so a short poll
	// keeps a needed reboot from going unnoticed for the whole fallback period.
	DegradedPeriod = 15 * time.Second
	// DefaultCommandPeriod is how often a CommandSentinel runs its command.
	DefaultCommandPeriod = time.Minute
	// DefaultCommandTimeout bounds one run of a sentinel command.
	DefaultCommandTimeout = 30 * time.Second
)

// State is one observation of whether a reboot is needed.
type State struct {
	// Needed is true when the sentinel says a reboot is needed. It is always false
	// when Err is set.
	Needed bool
	// Reason is a CamelCase reason, one of the Reason* constants.
	Reason string
	// Err is set when the detector could not tell: the agent must report it and must
	// not treat it as "reboot needed". Match *CommandError with errors.As.
	Err error
	// Since is when this state was first observed (by the detector's clock).
	Since time.Time
}

// Same reports whether two states are the same for notification purposes: same
// Needed, same Reason and both with or both without an error. The error text and Since
// are ignored, so that a command failing with a slightly different message each run
// (a timestamp on stderr, another exit code) is not a new state every period.
func (s State) Same(o State) bool {
	return s.Needed == o.Needed && s.Reason == o.Reason && (s.Err == nil) == (o.Err == nil)
}

// String is a short human form, for logs.
func (s State) String() string {
	switch {
	case s.Err != nil:
		return fmt.Sprintf("unknown (%s: %v)", s.Reason, s.Err)
	case s.Needed:
		return fmt.Sprintf("reboot needed (%s)", s.Reason)
	default:
		return fmt.Sprintf("reboot not needed (%s)", s.Reason)
	}
}

// LogValue renders the state as slog attributes.
func (s State) LogValue() slog.Value {
	attrs := []slog.Attr{slog.Bool("needed", s.Needed), slog.String("reason", s.Reason)}
	if s.Err != nil {
		attrs = append(attrs, slog.String("error", s.Err.Error()))
	}
	if !s.Since.IsZero() {
		attrs = append(attrs, slog.Time("since", s.Since))
	}
	return slog.GroupValue(attrs...)
}

// Detector tells whether a reboot is needed.
type Detector interface {
	// Check observes once; Since is the time of the observation.
	Check(ctx context.Context) State
	// Run observes until ctx is done. It sends the first state, then each change
	// (by State.Same), never the same state twice in a row. Sends block, and give up
	// when ctx is done. Run returns nil when ctx is done and an error only for an
	// invalid configuration, before sending anything.
	Run(ctx context.Context, changes chan<- State) error
}

// Degrader is a detector that can run without change notifications, by polling
// alone (FileSentinel without inotify).
type Degrader interface {
	// Degraded reports whether detection currently runs by polling alone.
	Degraded() bool
}

// Options are the settings shared by FromKured's detectors.
type Options struct {
	// Period is the command's period or the file's fallback period; zero means the
	// detector's default.
	Period time.Duration
	// Timeout bounds one command run; zero means DefaultCommandTimeout.
	Timeout time.Duration
	// NoNsenter runs the command directly instead of through nsenter (for agents that
	// already run in the host's mount namespace, and for tests).
	NoNsenter bool
	Clock     clock.WithTicker
	Logger    *slog.Logger
}

// FromKured builds the detector that kured's flags describe: the command when
// sentinelCommand is set (split shell-style, run through nsenter), else the file
// sentinelPath (DefaultSentinelPath when empty).
func FromKured(sentinelPath, sentinelCommand string, opts Options) (Detector, error) {
	if sentinelCommand != "" {
		argv, err := SplitCommand(sentinelCommand)
		if err != nil {
			return nil, fmt.Errorf("reboot sentinel command: %w", err)
		}
		return &CommandSentinel{
			Command: argv,
			Nsenter: !opts.NoNsenter,
			Period:  opts.Period,
			Timeout: opts.Timeout,
			Clock:   opts.Clock,
			Logger:  opts.Logger,
		}, nil
	}
	if sentinelPath == "" {
		sentinelPath = DefaultSentinelPath
	}
	return &FileSentinel{Path: sentinelPath, FallbackPeriod: opts.Period, Clock: opts.Clock, Logger: opts.Logger}, nil
}

// emitter sends states on a channel, dropping repeats.
type emitter struct {
	changes chan<- State
	last    State
	sent    bool
	log     *slog.Logger
}

// emit sends s unless it is the same as the last state sent; it returns false when ctx
// is done before the send.
func (e *emitter) emit(ctx context.Context, s State) bool {
	if e.sent && e.last.Same(s) {
		return true
	}
	select {
	case e.changes <- s:
		if e.sent {
			e.log.Info("reboot sentinel state changed", "from", e.last, "to", s)
		} else {
			e.log.Info("reboot sentinel state", "state", s)
		}
		e.last, e.sent = s, true
		return true
	case <-ctx.Done():
		return false
	}
}

var errNilChannel = errors.New("changes channel is nil")

func orLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}

func orClock(c clock.WithTicker) clock.WithTicker {
	if c == nil {
		return clock.RealClock{}
	}
	return c
}
