package testbed

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Daemon is one long-running process of the bed, found through its pid file:
// the kube-apiserver that kwokctl started, or Prometheus. Fault-injection tests
// pause, stop and restart them; each method leaves the daemon running again or
// says why not.
type Daemon struct {
	// Name is the binary's name, checked against the process's argv[0] so a
	// reused pid is never signalled.
	Name string
	// PIDFile holds the pid; LogFile receives a restarted daemon's output.
	PIDFile, LogFile string
	// restart starts the daemon again after Stop (nil: re-exec what ran).
	restart func(ctx context.Context) error
}

// cluster is the kwok cluster's name (env TESTBED_CLUSTER, "rebootgate").
func (b *Bed) cluster() string { return cmp.Or(os.Getenv("TESTBED_CLUSTER"), "rebootgate") }

// kwokDir is kwokctl's directory of the bed's cluster.
func (b *Bed) kwokDir() string { return filepath.Join(b.StateDir, "kwok", "clusters", b.cluster()) }

// binDir is where hack/testbed caches the binaries (env TESTBED_CACHE/bin).
func (b *Bed) binDir() string {
	return filepath.Join(cmp.Or(os.Getenv(EnvCache), filepath.Join(b.Root, "_cache", "testbed")), "bin")
}

// APIServer is the bed's kube-apiserver. Starting it again after Stop runs
// `kwokctl start cluster` (StartComponents).
func (b *Bed) APIServer() *Daemon {
	d := &Daemon{
		Name:    "kube-apiserver",
		PIDFile: filepath.Join(b.kwokDir(), "pids", "kube-apiserver.pid"),
		LogFile: filepath.Join(b.kwokDir(), "logs", "kube-apiserver.log"),
	}
	d.restart = func(ctx context.Context) error {
		// kwokctl takes a pid that still answers signal 0 (a zombie not yet
		// reaped) for a running apiserver: try until a new one runs.
		for try := 1; ; try++ {
			err := b.StartComponents(ctx)
			if _, perr := d.PID(); perr == nil {
				return nil
			} else if try == 3 {
				return errors.Join(err, perr)
			}
			time.Sleep(2 * time.Second)
		}
	}
	return d
}

// StartComponents runs `kwokctl start cluster`, which starts the control-plane
// components that are not running and waits until the apiserver serves:
// kube-controller-manager and kube-scheduler exit when they lose their leader
// Lease, as they do while the apiserver is paused or down.
func (b *Bed) StartComponents(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(b.binDir(), "kwokctl"), "--v", "WARN", "start", "cluster", "--name", b.cluster())
	cmd.Env = append(os.Environ(), "KWOK_WORKDIR="+filepath.Join(b.StateDir, "kwok"))
	// Its own session: the components it starts must outlive this test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kwokctl start cluster: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// Prometheus is the bed's Prometheus (hack/testbed/up.sh starts it).
func (b *Bed) Prometheus() *Daemon {
	dir := filepath.Join(b.StateDir, "prometheus")
	return &Daemon{Name: "prometheus", PIDFile: filepath.Join(dir, "pid"), LogFile: filepath.Join(dir, "prometheus.log")}
}

// PID returns the daemon's running pid.
func (d *Daemon) PID() (int, error) {
	data, err := os.ReadFile(d.PIDFile)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", d.Name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("%s: pid file %s: %w", d.Name, d.PIDFile, err)
	}
	argv, err := procArgs(pid)
	if err != nil || len(argv) == 0 || !strings.Contains(filepath.Base(argv[0]), d.Name) {
		return 0, fmt.Errorf("%s: pid %d from %s is not running it", d.Name, pid, d.PIDFile)
	}
	return pid, nil
}

func procArgs(pid int) ([]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimRight(string(data), "\x00"), "\x00"), nil
}

// Pause stops the daemon with SIGSTOP until resume is called. A watchdog
// process sends SIGCONT after at most maxPause even if this test dies first,
// so the bed is never left frozen.
func (d *Daemon) Pause(maxPause time.Duration) (resume func() error, err error) {
	pid, err := d.PID()
	if err != nil {
		return nil, err
	}
	watchdog := exec.Command("sh", "-c", fmt.Sprintf("sleep %d; kill -CONT %d", int(maxPause.Seconds())+1, pid))
	watchdog.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := watchdog.Start(); err != nil {
		return nil, fmt.Errorf("pause %s: watchdog: %w", d.Name, err)
	}
	go func() { _ = watchdog.Wait() }()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		_ = watchdog.Process.Kill()
		return nil, fmt.Errorf("pause %s (pid %d): %w", d.Name, pid, err)
	}
	return func() error {
		err := syscall.Kill(pid, syscall.SIGCONT)
		_ = watchdog.Process.Kill()
		if err != nil {
			return fmt.Errorf("resume %s (pid %d): %w", d.Name, pid, err)
		}
		return nil
	}, nil
}

// Stopped is a daemon Stop ended; Start runs it again.
type Stopped struct {
	d    *Daemon
	argv []string
	env  []string
	dir  string
}

// Stop terminates the daemon (SIGTERM, SIGKILL after 20s) and returns what
// it needs to start again.
func (d *Daemon) Stop(ctx context.Context) (*Stopped, error) {
	pid, err := d.PID()
	if err != nil {
		return nil, err
	}
	st := &Stopped{d: d}
	if st.argv, err = procArgs(pid); err != nil {
		return nil, fmt.Errorf("stop %s: %w", d.Name, err)
	}
	if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err == nil {
		st.env = strings.Split(strings.TrimRight(string(env), "\x00"), "\x00")
	}
	st.dir, _ = os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	_ = syscall.Kill(pid, syscall.SIGCONT) // a paused process cannot handle SIGTERM
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return nil, fmt.Errorf("stop %s (pid %d): %w", d.Name, pid, err)
	}
	gone := func(context.Context) (bool, error) { return !processAlive(pid), nil }
	defer func() {
		// Give a zombie a moment to be reaped: others judge by signal 0.
		_ = Poll(ctx, 5*time.Second, d.Name+" reaped", func(context.Context) (bool, error) {
			return syscall.Kill(pid, 0) != nil, nil
		})
	}()
	if Poll(ctx, 20*time.Second, d.Name+" to exit", gone) != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if err := Poll(ctx, 10*time.Second, d.Name+" to exit after SIGKILL", gone); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// processAlive reports whether pid runs (zombies count as gone).
func processAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	if i := bytes.LastIndexByte(data, ')'); i >= 0 && i+2 < len(data) {
		return data[i+2] != 'Z' && data[i+2] != 'X'
	}
	return true
}

// Start runs the stopped daemon again, detached, and records its pid.
func (s *Stopped) Start(ctx context.Context) error {
	if s.d.restart != nil {
		return s.d.restart(ctx)
	}
	logf, err := os.OpenFile(s.d.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: %w", s.d.Name, err)
	}
	defer logf.Close()
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Env, cmd.Dir = s.env, s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.d.Name, err)
	}
	go func() { _ = cmd.Wait() }() // reaped here while this process lives
	if err := os.WriteFile(s.d.PIDFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return errors.Join(fmt.Errorf("start %s: %w", s.d.Name, err), cmd.Process.Kill())
	}
	return nil
}
