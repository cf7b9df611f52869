package detect

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestCommandSentinelExitCodes(t *testing.T) {
	tests := []struct {
		name     string
		command  []string
		needed   bool
		reason   string
		wantErr  bool
		exitCode int
		errText  string
	}{
		{"exit 0 is needed", []string{"sh", "-c", "exit 0"}, true, ReasonCommandNeeded, false, 0, ""},
		{"exit 1 is not needed", []string{"sh", "-c", "exit 1"}, false, ReasonCommandNotNeeded, false, 0, ""},
		{"exit 2 is an error", []string{"sh", "-c", "echo broken >&2; exit 2"}, false, ReasonCommandExitCode, true, 2, "exit code 2"},
		{"exit 127 is an error", []string{"sh", "-c", "exit 127"}, false, ReasonCommandExitCode, true, 127, "exit code 127"},
		{"signal is an error", []string{"sh", "-c", "kill -9 $$"}, false, ReasonCommandExitCode, true, -1, "signal: killed"},
		{"not found is an error", []string{"/nonexistent/rebootgate-sentinel"}, false, ReasonCommandError, true, -1, "no such file"},
		{"not in PATH is an error", []string{"rebootgate-no-such-command"}, false, ReasonCommandError, true, -1, "executable file not found"},
		{"empty is an error", nil, false, ReasonCommandError, true, -1, "command is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := clocktesting.NewFakeClock(t0)
			c := &CommandSentinel{Command: tt.command, Clock: fc}
			s := c.Check(context.Background())
			if s.Needed != tt.needed || s.Reason != tt.reason || (s.Err != nil) != tt.wantErr {
				t.Fatalf("got %v, want needed=%v reason=%s err=%v", s, tt.needed, tt.reason, tt.wantErr)
			}
			if !s.Since.Equal(t0) {
				t.Errorf("Since = %v, want %v", s.Since, t0)
			}
			if !tt.wantErr {
				return
			}
			var ce *CommandError
			if !errors.As(s.Err, &ce) {
				t.Fatalf("error %v is not a *CommandError", s.Err)
			}
			if ce.ExitCode != tt.exitCode {
				t.Errorf("ExitCode = %d, want %d", ce.ExitCode, tt.exitCode)
			}
			if !strings.Contains(strings.ToLower(s.Err.Error()), tt.errText) {
				t.Errorf("error %q does not contain %q", s.Err, tt.errText)
			}
		})
	}
}

func TestCommandErrorStderr(t *testing.T) {
	s := (&CommandSentinel{Command: []string{"sh", "-c", "echo 'apt: lock held' >&2; exit 3"}}).Check(context.Background())
	var ce *CommandError
	if !errors.As(s.Err, &ce) || ce.Stderr != "apt: lock held" || !strings.Contains(s.Err.Error(), "stderr: apt: lock held") {
		t.Fatalf("got %v", s.Err)
	}
	if want := `reboot sentinel command "sh -c echo 'apt: lock held' >&2; exit 3": exit code 3`; !strings.HasPrefix(s.Err.Error(), want) {
		t.Errorf("error %q, want prefix %q", s.Err, want)
	}
}

func TestCommandSentinelTimeoutFakeClock(t *testing.T) {
	fc := clocktesting.NewFakeClock(t0)
	c := &CommandSentinel{Command: []string{"sh", "-c", "sleep 60"}, Timeout: 10 * time.Second, Clock: fc}
	done := make(chan State, 1)
	go func() { done <- c.Check(context.Background()) }()
	eventually(t, "the timeout timer", fc.HasWaiters)
	fc.Step(10 * time.Second)
	var s State
	select {
	case s = <-done:
	case <-time.After(waitFor):
		t.Fatal("the command was not killed at the timeout")
	}
	var ce *CommandError
	if s.Needed || s.Reason != ReasonCommandTimeout || !errors.As(s.Err, &ce) || !ce.TimedOut || !errors.Is(s.Err, context.DeadlineExceeded) {
		t.Fatalf("got %v", s)
	}
	if !strings.Contains(s.Err.Error(), "timed out") {
		t.Errorf("error %q", s.Err)
	}
}

func TestCommandSentinelTimeoutRealClock(t *testing.T) {
	// The real clock path, with a short timeout: the sleep's process group is killed.
	began := time.Now()
	s := (&CommandSentinel{Command: []string{"sh", "-c", "sleep 60; exit 0"}, Timeout: 50 * time.Millisecond}).Check(context.Background())
	if s.Reason != ReasonCommandTimeout || s.Err == nil || s.Needed {
		t.Fatalf("got %v", s)
	}
	if d := time.Since(began); d > waitFor {
		t.Errorf("took %v", d)
	}
}

func TestCommandSentinelCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := (&CommandSentinel{Command: []string{"sh", "-c", "exit 0"}}).Check(ctx)
	if s.Needed || s.Err == nil {
		t.Fatalf("canceled: got %v, want an error", s)
	}
}

func TestCommandSentinelNsenter(t *testing.T) {
	c := &CommandSentinel{Command: []string{"test", "-f", "/var/run/reboot-required"}, Nsenter: true}
	want := []string{"nsenter", "-m/proc/1/ns/mnt", "--", "test", "-f", "/var/run/reboot-required"}
	if got := c.argv(); !reflect.DeepEqual(got, want) {
		t.Errorf("argv = %q, want %q", got, want)
	}

	dir := t.TempDir()
	// A stand-in for nsenter that runs what follows "--", as nsenter does once in the
	// namespace.
	passthrough := filepath.Join(dir, "nsenter-ok")
	writeScript(t, passthrough, `while [ "$1" != "--" ]; do shift; done; shift; exec "$@"`)
	for code, want := range map[string]State{
		"0": {Needed: true, Reason: ReasonCommandNeeded},
		"1": {Reason: ReasonCommandNotNeeded},
	} {
		s := (&CommandSentinel{Command: []string{"sh", "-c", "exit " + code}, Nsenter: true, NsenterPath: passthrough}).Check(context.Background())
		if !s.Same(want) {
			t.Errorf("exit %s through nsenter: got %v, want %v", code, s, want)
		}
	}

	// util-linux nsenter exits 1 when it cannot enter the namespace: an error, not
	// "not needed".
	failing := filepath.Join(dir, "nsenter-fail")
	writeScript(t, failing, `echo "nsenter: reassociate to namespace 'ns/mnt' failed: Operation not permitted" >&2; exit 1`)
	s := (&CommandSentinel{Command: []string{"true"}, Nsenter: true, NsenterPath: failing}).Check(context.Background())
	if s.Needed || s.Err == nil || s.Reason != ReasonCommandError || !strings.Contains(s.Err.Error(), "Operation not permitted") || !strings.Contains(s.Err.Error(), "could not enter the host mount namespace") {
		t.Fatalf("nsenter failure: got %v", s)
	}

	// nsenter not installed.
	s = (&CommandSentinel{Command: []string{"true"}, Nsenter: true, NsenterPath: filepath.Join(dir, "missing")}).Check(context.Background())
	if s.Needed || s.Err == nil || s.Reason != ReasonCommandError {
		t.Fatalf("nsenter missing: got %v", s)
	}
}

func writeScript(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestCommandSentinelRun(t *testing.T) {
	dir := t.TempDir()
	codeFile := filepath.Join(dir, "code")
	runs := filepath.Join(dir, "runs")
	setCode := func(code string) {
		t.Helper()
		if err := os.WriteFile(codeFile, []byte(code), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	countRuns := func() int {
		data, _ := os.ReadFile(runs)
		return strings.Count(string(data), "\n")
	}
	setCode("1")
	fc := clocktesting.NewFakeClock(t0)
	period := 10 * time.Minute
	c := &CommandSentinel{
		Command: []string{"sh", "-c", `code=$(cat "$2"); echo run >> "$1"; exit "$code"`, "sentinel", runs, codeFile},
		Period:  period,
		Clock:   fc,
		Logger:  discardLogger(),
	}
	ch, _ := start(t, c)
	expect(t, ch, false, ReasonCommandNotNeeded, false)

	// tick runs the command once more and waits until it has run. The command counts
	// its run after reading the code, so a count of n means run n saw the code.
	n := 1
	tick := func() {
		t.Helper()
		eventually(t, "the command to finish", func() bool { return countRuns() == n && fc.Waiters() == 1 })
		fc.Step(period)
		n++
		eventually(t, fmt.Sprintf("run %d (runs %d, waiters %d)", n, countRuns(), fc.Waiters()), func() bool { return countRuns() == n })
	}

	tick() // still 1: no duplicate
	setCode("0")
	tick()
	s := expect(t, ch, true, ReasonCommandNeeded, false)
	if !s.Since.Equal(t0.Add(2 * period)) {
		t.Errorf("Since = %v, want %v", s.Since, t0.Add(2*period))
	}
	setCode("2")
	tick()
	s = expect(t, ch, false, ReasonCommandExitCode, true)
	var ce *CommandError
	if !errors.As(s.Err, &ce) || ce.ExitCode != 2 {
		t.Fatalf("got %v", s.Err)
	}
	setCode("3") // another unexpected code: the same error state, not sent again
	tick()
	setCode("1")
	tick()
	expect(t, ch, false, ReasonCommandNotNeeded, false)
}

func TestCommandSentinelRunErrors(t *testing.T) {
	if err := (&CommandSentinel{}).Run(context.Background(), make(chan State)); err == nil {
		t.Error("empty command: want an error")
	}
	if err := (&CommandSentinel{Command: []string{"true"}}).Run(context.Background(), nil); err == nil {
		t.Error("nil channel: want an error")
	}
}

func TestFromKured(t *testing.T) {
	d, err := FromKured("", "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := d.(*FileSentinel); !ok || f.Path != DefaultSentinelPath {
		t.Errorf("default: got %#v", d)
	}
	d, err = FromKured("/sentinel/reboot-required", `sh -c "test -f /var/run/reboot-required"`, Options{Period: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c, ok := d.(*CommandSentinel)
	if !ok || !c.Nsenter || c.Period != time.Hour || !reflect.DeepEqual(c.Command, []string{"sh", "-c", "test -f /var/run/reboot-required"}) {
		t.Errorf("command: got %#v", d)
	}
	if _, err := FromKured("", `sh -c 'unterminated`, Options{}); err == nil || !strings.Contains(err.Error(), "unterminated single quote") {
		t.Errorf("bad command: got %v", err)
	}
}

func TestStateSame(t *testing.T) {
	a := State{Reason: ReasonCommandExitCode, Err: errors.New("exit code 2"), Since: t0}
	b := State{Reason: ReasonCommandExitCode, Err: errors.New("exit code 3"), Since: t0.Add(time.Hour)}
	if !a.Same(b) {
		t.Error("same reason, different error text: want Same")
	}
	if a.Same(State{Reason: ReasonCommandTimeout, Err: errors.New("x")}) {
		t.Error("different reason: want not Same")
	}
	if (State{Needed: true, Reason: ReasonSentinelPresent}).Same(State{Reason: ReasonSentinelPresent}) {
		t.Error("different Needed: want not Same")
	}
}
