package nodeops

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
)

// Rebooter asks the host to reboot. On a real host the agent is killed by the reboot
// soon after Reboot returns.
type Rebooter interface {
	Reboot(ctx context.Context) error
	// String names the method for logs and events.
	String() string
}

// CommandRebooter runs a command, by default `systemctl reboot` in the host's mount
// namespace (kured's --reboot-method=command).
type CommandRebooter struct {
	Command []string
	// Nsenter runs the command as `nsenter -m/proc/1/ns/mnt -- CMD`, which needs
	// hostPID and privileges; without it the command runs in the agent's namespace.
	Nsenter bool
}

// Reboot runs the command and returns its error with its output.
func (r *CommandRebooter) Reboot(ctx context.Context) error {
	if len(r.Command) == 0 {
		return fmt.Errorf("reboot command: is empty")
	}
	argv := r.argv()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("reboot command %q: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (r *CommandRebooter) argv() []string {
	if !r.Nsenter {
		return r.Command
	}
	return append([]string{"nsenter", "-m/proc/1/ns/mnt", "--"}, r.Command...)
}

func (r *CommandRebooter) String() string { return "command " + strings.Join(r.argv(), " ") }

// SignalRebooter sends a signal to PID 1 (kured's --reboot-method=signal); systemd
// reboots on SIGRTMIN+5 (39). It needs hostPID and CAP_KILL only.
type SignalRebooter struct {
	Signal syscall.Signal
	PID    int
}

// Reboot sends the signal.
func (r *SignalRebooter) Reboot(context.Context) error {
	pid := r.PID
	if pid == 0 {
		pid = 1
	}
	if err := syscall.Kill(pid, r.Signal); err != nil {
		if errors.Is(err, syscall.EPERM) {
			// The kernel lets a process signal another of its own user, or with CAP_KILL;
			// the host's init is root's, and a non-root container loses its capabilities.
			return fmt.Errorf("sending signal %d to PID %d: %w: the agent must run as root (uid 0) with hostPID, or hold CAP_KILL, to signal the host's init", r.Signal, pid, err)
		}
		return fmt.Errorf("sending signal %d to PID %d: %w", r.Signal, pid, err)
	}
	return nil
}

func (r *SignalRebooter) String() string { return fmt.Sprintf("signal %d to PID 1", r.Signal) }
