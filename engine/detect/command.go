package detect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// CommandSentinel runs a command to tell whether a reboot is needed (kured's
// --reboot-sentinel-command): exit 0 means needed, exit 1 not needed. Anything else (another
// exit code, a signal, a timeout, a command that cannot be started, nsenter failing)
// is an error State that never counts as needed. kured treats those as "not needed"
// with a warning, which hides a broken check forever.
type CommandSentinel struct {
	// Command is the argv; see SplitCommand for kured's string form. Required.
	Command []string
	// Nsenter runs the command as `nsenter -m/proc/1/ns/mnt -- COMMAND`, in the host's
	// mount namespace (the agent runs with hostPID), as kured does.
	Nsenter bool
	// NsenterPath is the nsenter binary; default "nsenter" looked up in PATH.
	NsenterPath string
	// Period between runs; zero means DefaultCommandPeriod. A command cannot be
	// watched, so Run polls.
	Period time.Duration
	// Timeout bounds one run; zero means DefaultCommandTimeout. On timeout the
	// command's whole process group is killed.
	Timeout time.Duration
	// Clock defaults to the real clock; it drives the period and the timeout.
	Clock clock.WithTicker
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

var _ Detector = (*CommandSentinel)(nil)

// CommandError is the Err of a State when the sentinel command did not answer 0 or 1.
type CommandError struct {
	// Argv is what was executed (with nsenter when used).
	Argv []string
	// ExitCode is the exit code, or -1 when the command did not exit normally
	// (signal, timeout, not started).
	ExitCode int
	// TimedOut is set when the command was killed after Timeout.
	TimedOut bool
	// Stderr is the tail of the command's standard error.
	Stderr string
	// Err is the underlying error, if any (start failure, *exec.ExitError).
	Err error
}

func (e *CommandError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "reboot sentinel command %q", strings.Join(e.Argv, " "))
	if e.TimedOut {
		b.WriteString(": timed out")
	}
	var exitErr *exec.ExitError
	switch {
	case e.Err != nil && !errors.As(e.Err, &exitErr):
		fmt.Fprintf(&b, ": %v", e.Err)
	case e.ExitCode >= 0:
		fmt.Fprintf(&b, ": exit code %d (want 0 = reboot needed or 1 = not needed)", e.ExitCode)
	case e.Err != nil:
		fmt.Fprintf(&b, ": %v", e.Err) // e.g. signal: killed
	}
	if e.Stderr != "" {
		fmt.Fprintf(&b, ": stderr: %s", e.Stderr)
	}
	return b.String()
}

func (e *CommandError) Unwrap() error { return e.Err }

// argv is the command line actually executed.
func (c *CommandSentinel) argv() []string {
	if !c.Nsenter {
		return c.Command
	}
	ns := c.NsenterPath
	if ns == "" {
		ns = "nsenter"
	}
	return append([]string{ns, "-m/proc/1/ns/mnt", "--"}, c.Command...)
}

// Check runs the command once.
func (c *CommandSentinel) Check(ctx context.Context) State {
	clk := orClock(c.Clock)
	argv := c.argv()
	if len(c.Command) == 0 || c.Command[0] == "" {
		return State{Reason: ReasonCommandError, Err: &CommandError{Argv: argv, ExitCode: -1, Err: errors.New("command is empty")}, Since: clk.Now()}
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultCommandTimeout
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The timeout runs on the clock (not a context deadline) so tests can drive it.
	var timedOut bool
	var mu sync.Mutex
	timer := clk.NewTimer(timeout)
	stopTimer := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-timer.C():
			mu.Lock()
			timedOut = true
			mu.Unlock()
			cancel()
		case <-stopTimer:
			timer.Stop()
		}
	}()

	cmd := exec.CommandContext(runCtx, argv[0], argv[1:]...)
	stderr := &tailBuffer{max: 2048}
	cmd.Stderr = stderr
	// Stdout is discarded (kured ignores it too). Stdin is /dev/null.
	setProcessGroup(cmd)
	// A grandchild holding stderr open must not keep us waiting after a kill.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	close(stopTimer)
	wg.Wait()
	now := clk.Now()

	mu.Lock()
	to := timedOut
	mu.Unlock()
	cerr := &CommandError{Argv: argv, ExitCode: -1, Stderr: stderr.String(), Err: err}
	var exitErr *exec.ExitError
	switch {
	case to && err != nil:
		cerr.TimedOut = true
		cerr.Err = fmt.Errorf("killed after %v: %w", timeout, context.DeadlineExceeded)
		return State{Reason: ReasonCommandTimeout, Err: cerr, Since: now}
	case ctx.Err() != nil:
		cerr.Err = fmt.Errorf("interrupted: %w", ctx.Err())
		return State{Reason: ReasonCommandError, Err: cerr, Since: now}
	case err == nil:
		return State{Needed: true, Reason: ReasonCommandNeeded, Since: now}
	case errors.As(err, &exitErr):
		code := exitErr.ExitCode() // -1 when killed by a signal
		cerr.ExitCode = code
		if code == 1 {
			// util-linux nsenter exits 1 when it cannot enter the namespace (not
			// hostPID, missing privileges): that is not the command's answer.
			if c.Nsenter && strings.HasPrefix(cerr.Stderr, "nsenter: ") {
				cerr.Err = errors.New("nsenter could not enter the host mount namespace (exit code 1; the agent needs hostPID and privileges)")
				return State{Reason: ReasonCommandError, Err: cerr, Since: now}
			}
			return State{Reason: ReasonCommandNotNeeded, Since: now}
		}
		return State{Reason: ReasonCommandExitCode, Err: cerr, Since: now}
	default:
		return State{Reason: ReasonCommandError, Err: cerr, Since: now}
	}
}

// Run runs the command now and then every Period until ctx is done. See Detector.
func (c *CommandSentinel) Run(ctx context.Context, changes chan<- State) error {
	if len(c.Command) == 0 || c.Command[0] == "" {
		return errors.New("reboot sentinel command: command is empty")
	}
	if changes == nil {
		return errNilChannel
	}
	clk := orClock(c.Clock)
	period := c.Period
	if period <= 0 {
		period = DefaultCommandPeriod
	}
	log := orLogger(c.Logger).With("sentinelCommand", strings.Join(c.Command, " "))
	e := &emitter{changes: changes, log: log}
	ticker := clk.NewTicker(period)
	defer ticker.Stop()
	for {
		s := c.Check(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if s.Err != nil {
			// Every failing run is logged, state changes or not.
			log.Warn("reboot sentinel command failed", "reason", s.Reason, "error", s.Err)
		}
		if !e.emit(ctx, s) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C():
		}
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(strings.ToValidUTF8(string(t.buf), "?"))
}
