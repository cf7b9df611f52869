package runtime

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Roles: the test binary re-executes itself as the stand-in host's init or as the pod
// launcher, chosen by EnvRole.
const (
	EnvRole     = "REBOOTGATE_RUNTIME_ROLE"
	RoleStandIn = "standin"
	RolePod     = "pod"

	envStandInDir  = "REBOOTGATE_STANDIN_DIR"
	envStandInRun  = "REBOOTGATE_STANDIN_RUN"
	envStandInHook = "REBOOTGATE_STANDIN_HOOK"
	envPlan        = "REBOOTGATE_POD_PLAN"
)

// RebootSignal is SIGRTMIN+5, which systemd takes as "reboot".
const RebootSignal = syscall.Signal(39)

// MainRole runs the role EnvRole names and returns its exit code; ok is false when the
// process has no role (it is the test binary itself).
func MainRole() (code int, ok bool) {
	switch os.Getenv(EnvRole) {
	case RoleStandIn:
		if err := standIn(); err != nil {
			fmt.Fprintln(os.Stderr, "stand-in host:", err)
			return 1, true
		}
		return 0, true
	case RolePod:
		if err := podMain(); err != nil {
			fmt.Fprintln(os.Stderr, "pod launcher:", err)
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// fakeSystemctl is the stand-in host's /usr/bin/systemctl: it records each call with the
// mount namespace it runs in and hands `reboot` over to the node simulator's hook.
func fakeSystemctl(calls, hook string) string {
	return fmt.Sprintf(`#!/bin/sh
# systemctl of the stand-in host (test/runtime): records the call, and "reboot" asks the
# node simulator to reboot this node, returning at once as systemctl reboot does.
printf '%%s %%s %%s\n' "$(date +%%s.%%N)" "$(readlink /proc/self/ns/mnt)" "$*" >> %[1]s
case "$1" in reboot) exec %[2]s systemctl "$@" ;; esac
exit 0
`, shellQuote(calls), shellQuote(hook))
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// standIn is PID 1 of the stand-in host (run under `unshare --pid --fork --mount-proc`).
// In its own mount namespace it puts the node's simulator directory on /run (so the
// host's /var/run/reboot-required is the simulator's sentinel) and its fake systemctl on
// /usr/bin/systemctl. As init it reaps orphans and, on SIGRTMIN+5, records a reboot in
// DIR/reboots and runs the simulator's reboot hook. SIGTERM ends it, and with it every
// process in its PID namespace.
func standIn() error {
	dir, run, hook := os.Getenv(envStandInDir), os.Getenv(envStandInRun), os.Getenv(envStandInHook)
	if dir == "" || run == "" || hook == "" {
		return errors.New("needs " + envStandInDir + ", " + envStandInRun + " and " + envStandInHook)
	}
	if os.Getpid() != 1 {
		return fmt.Errorf("must be PID 1 of its PID namespace, is %d", os.Getpid())
	}
	// Signals first: a reboot signal must never find init without a handler.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, RebootSignal, syscall.SIGTERM, syscall.SIGCHLD)
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	if err := unix.Mount(run, "/run", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s on /run: %w", run, err)
	}
	systemctl := filepath.Join(dir, "systemctl")
	if err := os.WriteFile(systemctl, []byte(fakeSystemctl(filepath.Join(dir, "systemctl-calls"), hook)), 0o755); err != nil {
		return err
	}
	if err := unix.Mount(systemctl, "/usr/bin/systemctl", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind the fake systemctl on /usr/bin/systemctl (the stand-in needs that file to exist): %w", err)
	}
	mnt, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "ready"), []byte(mnt+"\n"), 0o644); err != nil {
		return err
	}
	for sig := range sigs {
		switch sig {
		case syscall.SIGTERM:
			return nil
		case syscall.SIGCHLD:
			for {
				var ws unix.WaitStatus
				pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		case RebootSignal:
			line := fmt.Sprintf("%d.%09d signal %d\n", time.Now().Unix(), time.Now().Nanosecond(), RebootSignal)
			if err := appendFile(filepath.Join(dir, "reboots"), line); err != nil {
				return err
			}
			// Reaped by the SIGCHLD loop, not Wait.
			cmd := exec.Command(hook, "signal", strconv.Itoa(int(RebootSignal)))
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Start(); err != nil {
				return fmt.Errorf("reboot hook: %w", err)
			}
		}
	}
	return nil
}

func appendFile(path, line string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// StandIn is a running stand-in host.
type StandIn struct {
	// Dir holds its records: reboots (one line per reboot signal), systemctl-calls (the
	// fake systemctl's calls: time, mount namespace, arguments), ready (its mount
	// namespace).
	Dir string
	// PID is its pid in this (the test's) PID namespace; MountNS its mount namespace.
	PID     int
	MountNS string
	cmd     *exec.Cmd
}

// StartStandIn starts the stand-in host: `unshare --pid --fork --mount-proc` running this
// test binary as init (RoleStandIn). run goes on the host's /run, hook is run on a reboot.
func StartStandIn(ctx context.Context, dir, run, hook string) (*StandIn, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cmd := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "--", self)
	cmd.Env = append(os.Environ(), EnvRole+"="+RoleStandIn, envStandInDir+"="+dir, envStandInRun+"="+run, envStandInHook+"="+hook)
	logf, err := os.Create(filepath.Join(dir, "standin.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("unshare: %w", err)
	}
	go func() { _ = cmd.Wait(); logf.Close() }()
	s := &StandIn{Dir: dir, cmd: cmd}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "ready")); err == nil {
			s.MountNS = strings.TrimSpace(string(data))
			break
		}
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "standin.log"))
			s.Stop()
			return nil, fmt.Errorf("stand-in host did not start: %s", log)
		}
		select {
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("finding the stand-in's pid: %w", err)
	}
	if s.PID, err = strconv.Atoi(strings.TrimSpace(string(children))); err != nil {
		s.Stop()
		return nil, fmt.Errorf("finding the stand-in's pid in %q: %w", children, err)
	}
	return s, nil
}

// Stop ends the stand-in host and every process in its PID namespace.
func (s *StandIn) Stop() {
	if s.PID > 0 {
		_ = syscall.Kill(s.PID, syscall.SIGTERM)
	}
	done := make(chan struct{})
	go func() {
		for s.cmd.ProcessState == nil && processExists(s.cmd.Process.Pid) {
			time.Sleep(50 * time.Millisecond)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
	}
}

func processExists(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie counts as gone.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// Reboots returns the reboot signals the stand-in host received.
func (s *StandIn) Reboots() []string { return readLines(filepath.Join(s.Dir, "reboots")) }

// SystemctlCalls returns the fake systemctl's calls: "time mount-namespace args".
func (s *StandIn) SystemctlCalls() []string {
	return readLines(filepath.Join(s.Dir, "systemctl-calls"))
}

func readLines(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// HostPath resolves a hostPath volume's path as the stand-in host sees it to the same
// folder as this (the launcher's, the "kubelet's") mount namespace sees it, which runc can
// bind from: a bind mount's source must be in the caller's mount namespace. Symlinks are
// followed inside the stand-in's root, then the stand-in's mount that holds the path is
// found in its mountinfo and mapped to a mount of the same file system here.
func (s *StandIn) HostPath(p string) (string, error) {
	root := fmt.Sprintf("/proc/%d/root", s.PID)
	parts := strings.Split(strings.Trim(filepath.Clean(p), "/"), "/")
	cur := "/"
	for hops := 0; len(parts) > 0; {
		next := filepath.Join(cur, parts[0])
		parts = parts[1:]
		fi, err := os.Lstat(root + next)
		if err != nil {
			return "", fmt.Errorf("hostPath %s in the stand-in host: %w", p, err)
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("hostPath %s: too many symlinks", p)
		}
		target, err := os.Readlink(root + next)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(cur, target)
		}
		parts = append(strings.Split(strings.Trim(filepath.Clean(target), "/"), "/"), parts...)
		cur = "/"
	}
	theirs, err := mountInfo(fmt.Sprintf("/proc/%d/mountinfo", s.PID))
	if err != nil {
		return "", err
	}
	ours, err := mountInfo("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	m, ok := covering(theirs, cur)
	if !ok {
		return "", fmt.Errorf("hostPath %s: no mount holds %s in the stand-in host", p, cur)
	}
	// The path inside m's file system, then a mount of that file system here whose root
	// holds it (the longest mount point wins, as a path lookup would).
	inFS := filepath.Join(m.root, strings.TrimPrefix(cur, m.point))
	best, found := mount{}, false
	for _, o := range ours {
		if o.dev != m.dev || !within(inFS, o.root) {
			continue
		}
		if !found || len(o.point) > len(best.point) {
			best, found = o, true
		}
	}
	if !found {
		return "", fmt.Errorf("hostPath %s: the stand-in's %s (device %s, %s) is not mounted here", p, cur, m.dev, inFS)
	}
	return filepath.Join(best.point, strings.TrimPrefix(inFS, best.root)), nil
}

type mount struct{ dev, root, point string }

func mountInfo(path string) ([]mount, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []mount
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		out = append(out, mount{dev: f[2], root: unescapeMount(f[3]), point: unescapeMount(f[4])})
	}
	return out, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func within(p, dir string) bool {
	return dir == "/" || p == dir || strings.HasPrefix(p, dir+"/")
}

// covering is the mount that holds p: the last one mounted on the longest mount point
// above it.
func covering(ms []mount, p string) (mount, bool) {
	best, found := mount{}, false
	for _, m := range ms {
		if within(p, m.point) && (!found || len(m.point) >= len(best.point)) {
			best, found = m, true
		}
	}
	return best, found
}
