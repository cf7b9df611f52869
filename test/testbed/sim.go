package testbed

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Placeholders substituted, per node, in SimConfig.Command and SimConfig.Env.
const (
	PhNode       = "{node}"        // node name
	PhSentinel   = "{sentinel}"    // the node's reboot-required sentinel file (absent at start)
	PhRebootHook = "{reboot-hook}" // executable the agent runs to reboot the node
	PhDir        = "{dir}"         // the node's private directory (also the working directory)
	PhKubeconfig = "{kubeconfig}"  // the bed's admin kubeconfig
	PhBootID     = "{boot-id}"     // the node's boot ID at this start
	PhPort       = "{port}"        // a free loopback port, fixed per node (e.g. for /metrics)
)

// Environment variables set for every agent process (besides SimConfig.Env).
const (
	EnvSimNode     = "TESTBED_SIM_NODE"
	EnvSimSentinel = "TESTBED_SIM_SENTINEL"
	EnvSimHook     = "TESTBED_SIM_REBOOT_HOOK"
	EnvSimDir      = "TESTBED_SIM_DIR"
)

// SimConfig configures a node Simulator.
//
// The reboot hook contract: each node gets an executable shell script
// ({reboot-hook}, $TESTBED_SIM_REBOOT_HOOK) that the agent runs as its reboot
// command, with any arguments. The hook appends a line to
// {dir}/reboot-requests and exits 0 at once, as `systemctl reboot` does; the
// simulator notices within PollInterval and then, like a host going down and
// coming back:
//
//  1. waits ShutdownDelay, then stops the agent: SIGTERM to its process group,
//     SIGKILL after ShutdownGrace;
//  2. if FlipReady, marks the Node NotReady (kwok holds it NotReady while the
//     Node has the PoweredOffAnnotation) and waits until it is;
//  3. removes the sentinel file;
//  4. waits RebootDelay ("powered off");
//  5. sets a new status.nodeInfo.bootID on the Node, and if FlipReady lets it
//     become Ready again, waiting until the API shows both;
//  6. discards reboot requests made while down and starts the agent again
//     (with HoldNotReady, right after the new boot ID, before step 5's Ready).
//
// Each completed reboot is recorded (Reboots, WaitForReboots). The host counts
// as down from the hook's first call (timed by the hook itself) until it is back
// in service: Ready (with FlipReady) and its agent started again (DownIntervals).
type SimConfig struct {
	// Command is the agent's argv, with the Ph* placeholders. Required.
	Command []string
	// Env adds KEY=VALUE entries (placeholders substituted) to the agent's
	// environment, which otherwise is the test's environment plus
	// KUBECONFIG=<bed kubeconfig> and the TESTBED_SIM_* variables.
	Env []string
	// Nodes to simulate; default: every node of the bed (Bed.Nodes).
	Nodes []string
	// Dir holds one directory per node; default: a new directory under the
	// bed's state directory.
	Dir string
	// RebootDelay is how long a node stays down; default 2s. SetRebootDelay
	// overrides it for one node.
	RebootDelay time.Duration
	// ShutdownDelay is the time between the hook's call and the agent being
	// stopped (a real reboot is not instantaneous); default 0.
	ShutdownDelay time.Duration
	// ShutdownGrace is the time between SIGTERM and SIGKILL; default 5s.
	ShutdownGrace time.Duration
	// FlipReady turns the Node's Ready condition False while it is down.
	FlipReady bool
	// RestartOnExit restarts an agent that exits by itself (as a DaemonSet
	// would) after one second; default: it stays stopped until the next reboot.
	RestartOnExit bool
	// Output, if set, receives every agent's output, each line prefixed with
	// the node name. It is always written to {dir}/agent.log as well.
	Output io.Writer
	// Log receives the simulator's own log; default: the bed's.
	Log *slog.Logger
	// APITimeout bounds each API step of a simulated reboot (marking the Node
	// NotReady, the new boot ID, waiting for the API to show them). Default:
	// 30s per wait and 5 quick attempts per patch. Set it longer when the
	// apiserver may be unavailable for a while (fault injection): patches are
	// then retried until it passes.
	APITimeout time.Duration
}

// Reboot is one completed simulated reboot.
type Reboot struct {
	Node string
	// HookAt is when the hook was first called (the hook's own clock reading),
	// RequestedAt when the simulator saw the request, DownAt when the agent
	// had stopped, UpAt when the agent was started again.
	HookAt, RequestedAt, DownAt, UpAt time.Time
	// NotReadyAt is when the API showed the Node NotReady (FlipReady only).
	NotReadyAt           time.Time
	OldBootID, NewBootID string
	// Args are the arguments the agent passed to the hook (first call).
	Args string
}

// DownInterval is the time a simulated host was down: from the reboot hook's
// first call until the node was back with a new boot ID, Ready (with FlipReady)
// and its agent started again (before Ready, with HoldNotReady).
type DownInterval struct {
	Node string
	// From is the hook's call; To is zero while the host is still down (or
	// when its reboot was cut short by an error or Stop).
	From, To time.Time
}

// NodeState is a snapshot of one simulated node.
type NodeState struct {
	Name string
	// Running reports whether the agent process runs; PID is its pid (0 if not).
	Running bool
	PID     int
	// Starts counts agent starts, Exits agent exits not caused by the simulator.
	Starts, Exits int
	// Rebooting is true from the hook's call until the agent is started again.
	Rebooting bool
	BootID    string
}

// Simulator runs one agent process per simulated node and simulates node
// reboots when an agent runs its reboot hook. See SimConfig.
type Simulator struct {
	bed *Bed
	// client is the bed's admin client, counting its requests in requests.
	client   kubernetes.Interface
	requests requestCounts
	cfg      SimConfig
	id       string
	log      *slog.Logger
	stop     context.CancelFunc
	done     sync.WaitGroup

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every state change
	nodes   map[string]*simNode
	reboots []Reboot
	down    []DownInterval
	errs    []error
}

type simNode struct {
	name, dir, sentinel, hook, requests, logPath, pidFile string
	port                                                  int

	// guarded by Simulator.mu
	rebootDelay time.Duration // 0: SimConfig.RebootDelay

	// guarded by Simulator.mu
	cmd       *exec.Cmd
	exited    chan struct{} // closed when the current process has exited
	handled   bool          // watch has accounted for the current exit
	starts    int
	exits     int
	rebooting bool
	bootID    string
	stopping  bool
	// heldDown keeps the node powered off after RebootDelay until HoldDown(false).
	heldDown bool
	// heldNotReady keeps the node NotReady once booted, its agent running, until
	// HoldNotReady(false).
	heldNotReady bool
}

// NewSimulator prepares a simulator on the bed: a directory, a sentinel path
// and a reboot hook per node. Start runs the agents.
func (b *Bed) NewSimulator(ctx context.Context, cfg SimConfig) (*Simulator, error) {
	if len(cfg.Command) == 0 {
		return nil, errors.New("simulator: Command is required")
	}
	if cfg.RebootDelay == 0 {
		cfg.RebootDelay = 2 * time.Second
	}
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = b.Log
	}
	if len(cfg.Nodes) == 0 {
		names, err := b.NodeNames(ctx, "")
		if err != nil {
			return nil, fmt.Errorf("simulator: %w", err)
		}
		cfg.Nodes = names
	}
	if len(cfg.Nodes) == 0 {
		return nil, errors.New("simulator: no nodes")
	}
	s := &Simulator{bed: b, cfg: cfg, id: NewUUID()[:8], log: cfg.Log, changed: make(chan struct{}), nodes: map[string]*simNode{}}
	// The simulator plays the kubelet; its requests are counted apart so that a
	// benchmark can tell them from the agents' (APIRequests).
	rc := rest.CopyConfig(b.Config)
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingTransport{rt, &s.requests} })
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("simulator: client: %w", err)
	}
	s.client = client
	if s.cfg.Dir == "" {
		s.cfg.Dir = filepath.Join(b.StateDir, "sim", s.id)
	}
	pidDir := filepath.Join(b.StateDir, "sim")
	for _, name := range cfg.Nodes {
		if _, dup := s.nodes[name]; dup {
			return nil, fmt.Errorf("simulator: node %s listed twice", name)
		}
		node, err := b.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("simulator: node %s: %w", name, err)
		}
		dir := filepath.Join(s.cfg.Dir, name)
		n := &simNode{
			name: name, dir: dir,
			sentinel: filepath.Join(dir, "reboot-required"),
			hook:     filepath.Join(dir, "reboot-hook"),
			requests: filepath.Join(dir, "reboot-requests"),
			logPath:  filepath.Join(dir, "agent.log"),
			pidFile:  filepath.Join(pidDir, s.id+"-"+name+".pid"),
			bootID:   node.Status.NodeInfo.BootID,
		}
		if n.port, err = freePort(); err != nil {
			return nil, fmt.Errorf("simulator: node %s: %w", name, err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("simulator: %w", err)
		}
		if err := os.MkdirAll(pidDir, 0o755); err != nil {
			return nil, fmt.Errorf("simulator: %w", err)
		}
		if err := os.WriteFile(n.hook, []byte(hookScript(name, n.requests)), 0o755); err != nil {
			return nil, fmt.Errorf("simulator: write hook: %w", err)
		}
		_ = os.Remove(n.sentinel)
		_ = os.Remove(n.requests)
		_ = os.Remove(hookTimesPath(n.requests))
		s.nodes[name] = n
	}
	return s, nil
}

// hookScript is the reboot hook of one node: it records the time and the
// request and returns at once, like `systemctl reboot`.
func hookScript(node, requests string) string {
	return fmt.Sprintf(`#!/bin/sh
# Reboot hook of simulated node %[1]s (rebootgate test bed): asks the node
# simulator to reboot this node. It returns at once, like systemctl reboot; the
# simulator then stops the agent, "reboots" the node and starts the agent again.
# The time goes first: the host is down from this moment.
date +%%s.%%N >> %[3]s
printf '%%s\n' "$*" >> %[2]s
exit 0
`, node, shellQuote(requests), shellQuote(hookTimesPath(requests)))
}

// hookTimesPath is where the hook appends the time of each call.
func hookTimesPath(requests string) string { return requests + ".at" }

// firstHookTime reads the first time the hook recorded (Unix seconds with a
// fraction), or returns ok=false.
func firstHookTime(requests string) (time.Time, bool) {
	data, err := os.ReadFile(hookTimesPath(requests))
	if err != nil {
		return time.Time{}, false
	}
	sec, frac, _ := strings.Cut(strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[0]), ".")
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	frac = (frac + "000000000")[:9]
	ns, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(s, ns), true
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// StartSimulator is NewSimulator + Start for a test; it stops the simulator at
// cleanup and fails the test if the simulator hit errors.
func (b *Bed) StartSimulator(t interface {
	Helper()
	Cleanup(func())
	Fatalf(string, ...any)
	Errorf(string, ...any)
}, cfg SimConfig) *Simulator {
	t.Helper()
	ctx := context.Background()
	s, err := b.NewSimulator(ctx, cfg)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Errorf("%v", err)
		}
	})
	return s
}

// Start launches every node's agent and the reboot watchers. It returns once
// all agents have been started.
func (s *Simulator) Start(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = cancel
	for _, name := range s.cfg.Nodes {
		n := s.nodes[name]
		if err := s.startAgent(n); err != nil {
			cancel()
			_ = s.Stop(ctx)
			return err
		}
	}
	for _, name := range s.cfg.Nodes {
		n := s.nodes[name]
		s.done.Add(1)
		go func() {
			defer s.done.Done()
			s.watch(runCtx, n)
		}()
	}
	return nil
}

// Stop stops every agent (SIGTERM, then SIGKILL after ShutdownGrace) and the
// watchers. It returns the errors the simulator met while running, if any.
func (s *Simulator) Stop(ctx context.Context) error {
	if s.stop != nil {
		s.stop()
	}
	s.done.Wait()
	for _, name := range s.cfg.Nodes {
		s.stopAgent(s.nodes[name])
	}
	return s.Err()
}

// Err returns the errors met so far (nil if none), joined.
func (s *Simulator) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.errs...)
}

// Nodes returns the simulated node names.
func (s *Simulator) Nodes() []string { return slices.Clone(s.cfg.Nodes) }

// Sentinel returns the node's sentinel path; Hook its reboot hook; Dir its directory.
func (s *Simulator) Sentinel(node string) string { return s.node(node).sentinel }

// Hook returns the node's reboot hook path.
func (s *Simulator) Hook(node string) string { return s.node(node).hook }

// Dir returns the node's private directory.
func (s *Simulator) Dir(node string) string { return s.node(node).dir }

// LogPath returns the node's agent log file.
func (s *Simulator) LogPath(node string) string { return s.node(node).logPath }

func (s *Simulator) node(name string) *simNode {
	n, ok := s.nodes[name]
	if !ok {
		panic(fmt.Sprintf("testbed: node %q is not simulated", name))
	}
	return n
}

// SetRebootRequired creates (true) or removes (false) the node's sentinel.
func (s *Simulator) SetRebootRequired(node string, required bool) error {
	p := s.node(node).sentinel
	if required {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			return fmt.Errorf("set reboot required on %s: %w", node, err)
		}
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("clear reboot required on %s: %w", node, err)
	}
	return nil
}

// RebootRequired reports whether the node's sentinel exists.
func (s *Simulator) RebootRequired(node string) bool {
	_, err := os.Stat(s.node(node).sentinel)
	return err == nil
}

// State returns a snapshot of a node.
func (s *Simulator) State(node string) NodeState {
	n := s.node(node)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := NodeState{Name: n.name, Starts: n.starts, Exits: n.exits, Rebooting: n.rebooting, BootID: n.bootID}
	if n.cmd != nil && n.exited != nil {
		select {
		case <-n.exited:
		default:
			st.Running, st.PID = true, n.cmd.Process.Pid
		}
	}
	return st
}

// DownIntervals returns every time a host went down, in the order they began,
// including hosts still down (To zero).
func (s *Simulator) DownIntervals() []DownInterval {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.down)
}

// SetRebootDelay sets how long node stays down on its next reboots (0: back
// to SimConfig.RebootDelay).
func (s *Simulator) SetRebootDelay(node string, d time.Duration) {
	n := s.node(node)
	s.mu.Lock()
	n.rebootDelay = d
	s.mu.Unlock()
}

// KillAgent sends sig to the process group of node's agent, as a crash or an
// OOM kill would, unless the node is rebooting or its agent is not running.
// It returns the agent's pid; ok is false when nothing was signalled. With
// RestartOnExit the agent is started again a second after it exits.
func (s *Simulator) KillAgent(node string, sig syscall.Signal) (pid int, ok bool, err error) {
	n := s.node(node)
	s.mu.Lock()
	defer s.mu.Unlock()
	if n.rebooting || n.stopping || n.cmd == nil || n.exited == nil {
		return 0, false, nil
	}
	select {
	case <-n.exited:
		return 0, false, nil
	default:
	}
	pid = n.cmd.Process.Pid
	if err := syscall.Kill(-pid, sig); err != nil {
		return pid, false, fmt.Errorf("kill agent of %s (pid %d): %w", node, pid, err)
	}
	return pid, true, nil
}

// Reboots returns the completed reboots, in order.
func (s *Simulator) Reboots() []Reboot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reboots)
}

// WaitForReboots waits until at least n reboots have completed (agent started
// again) and returns them all.
func (s *Simulator) WaitForReboots(ctx context.Context, n int, timeout time.Duration) ([]Reboot, error) {
	return s.waitFor(ctx, timeout, fmt.Sprintf("%d simulated reboots", n), func() bool { return len(s.reboots) >= n })
}

// WaitForRebootStarted waits until the node's agent has run its reboot hook
// and the simulated reboot has begun (or completed since).
func (s *Simulator) WaitForRebootStarted(ctx context.Context, node string, timeout time.Duration) error {
	n := s.node(node)
	_, err := s.waitFor(ctx, timeout, "reboot of "+node+" to start", func() bool {
		if n.rebooting {
			return true
		}
		for _, r := range s.reboots {
			if r.Node == node {
				return true
			}
		}
		return false
	})
	return err
}

// waitFor waits on state changes (no polling) until cond, called with s.mu
// held, is true.
func (s *Simulator) waitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool) ([]Reboot, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		if cond() {
			r := slices.Clone(s.reboots)
			s.mu.Unlock()
			return r, nil
		}
		ch := s.changed
		errs := errors.Join(s.errs...)
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return s.Reboots(), fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-timer.C:
			if errs != nil {
				return s.Reboots(), fmt.Errorf("waiting for %s: %w after %s (simulator errors: %w)", what, ErrTimeout, timeout, errs)
			}
			return s.Reboots(), fmt.Errorf("waiting for %s: %w after %s", what, ErrTimeout, timeout)
		}
	}
}

// notifyLocked wakes waiters; s.mu must be held.
func (s *Simulator) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Simulator) fail(err error) {
	s.log.Error("node simulator", "err", err)
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *Simulator) substitute(n *simNode, v string) string {
	return strings.NewReplacer(
		PhNode, n.name, PhSentinel, n.sentinel, PhRebootHook, n.hook, PhDir, n.dir,
		PhKubeconfig, s.bed.Kubeconfig, PhBootID, n.bootID, PhPort, strconv.Itoa(n.port),
	).Replace(v)
}

// Port is the node's {port}.
func (s *Simulator) Port(node string) int { return s.node(node).port }

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Simulator) startAgent(n *simNode) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	argv := make([]string, len(s.cfg.Command))
	for i, a := range s.cfg.Command {
		argv[i] = s.substitute(n, a)
	}
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("simulator: %s: %w", n.name, err)
	}
	fmt.Fprintf(logf, "=== testbed: start %d of agent on %s, boot ID %s, %s\n", n.starts+1, n.name, n.bootID, time.Now().UTC().Format(time.RFC3339Nano))
	var out io.Writer = logf
	if s.cfg.Output != nil {
		out = io.MultiWriter(logf, &prefixWriter{prefix: n.name + ": ", w: s.cfg.Output})
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = n.dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(),
		"KUBECONFIG="+s.bed.Kubeconfig,
		EnvSimNode+"="+n.name, EnvSimSentinel+"="+n.sentinel, EnvSimHook+"="+n.hook, EnvSimDir+"="+n.dir)
	for _, e := range s.cfg.Env {
		cmd.Env = append(cmd.Env, s.substitute(n, e))
	}
	// Own process group so that stopping kills the agent's children too;
	// Pdeathsig so agents do not outlive a crashed test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("simulator: start agent on %s: %w", n.name, err)
	}
	// down.sh kills process groups recorded here if a test binary dies.
	_ = os.WriteFile(n.pidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	n.cmd, n.exited, n.stopping, n.handled = cmd, exited, false, false
	n.starts++
	s.log.Info("agent started", "node", n.name, "pid", cmd.Process.Pid, "start", n.starts)
	s.notifyLocked()
	return nil
}

// stopAgent terminates the agent's process group and waits for it to exit.
func (s *Simulator) stopAgent(n *simNode) {
	s.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.stopping = true
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
	default:
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(s.cfg.ShutdownGrace)
		select {
		case <-exited:
		case <-t.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-exited
		}
		t.Stop()
	}
	// Children that ignored SIGTERM may survive their group leader.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = os.Remove(n.pidFile)
	s.mu.Lock()
	s.notifyLocked()
	s.mu.Unlock()
}

// watch is the per-node loop: reboot requests and unexpected exits.
func (s *Simulator) watch(ctx context.Context, n *simNode) {
	ticker := time.NewTicker(PollInterval / 2)
	defer ticker.Stop()
	for {
		s.mu.Lock()
		exited := n.exited
		if n.handled {
			exited = nil // blocks: nothing more to account for
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-exited:
			s.mu.Lock()
			n.handled = true
			stopping := n.stopping
			if !stopping {
				n.exits++
			}
			s.notifyLocked()
			s.mu.Unlock()
			if stopping {
				continue
			}
			s.log.Warn("agent exited by itself", "node", n.name, "state", n.cmd.ProcessState.String())
			if s.cfg.RestartOnExit {
				if !sleepCtx(ctx, time.Second) {
					return
				}
				if err := s.startAgent(n); err != nil {
					s.fail(err)
				}
			}
		case <-ticker.C:
			data, err := os.ReadFile(n.requests)
			if err != nil || len(data) == 0 {
				continue
			}
			if err := s.reboot(ctx, n, strings.SplitN(string(data), "\n", 2)[0]); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.fail(fmt.Errorf("simulated reboot of %s: %w", n.name, err))
			}
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// reboot simulates one reboot of n (see SimConfig).
func (s *Simulator) reboot(ctx context.Context, n *simNode, args string) error {
	ev := Reboot{Node: n.name, RequestedAt: time.Now(), Args: args}
	ev.HookAt = ev.RequestedAt
	if at, ok := firstHookTime(n.requests); ok && at.Before(ev.HookAt) {
		ev.HookAt = at
	}
	s.mu.Lock()
	n.rebooting = true
	ev.OldBootID = n.bootID
	delay := cmp.Or(n.rebootDelay, s.cfg.RebootDelay)
	downIdx := len(s.down)
	s.down = append(s.down, DownInterval{Node: n.name, From: ev.HookAt})
	s.notifyLocked()
	s.mu.Unlock()
	s.log.Info("simulated reboot requested", "node", n.name, "args", args)
	defer func() {
		s.mu.Lock()
		n.rebooting = false
		s.notifyLocked()
		s.mu.Unlock()
	}()

	if s.cfg.ShutdownDelay > 0 && !sleepCtx(ctx, s.cfg.ShutdownDelay) {
		return ctx.Err()
	}
	s.stopAgent(n)
	ev.DownAt = time.Now()
	poweredOff := false
	nodes := s.client.CoreV1().Nodes()
	if s.cfg.FlipReady {
		if err := s.patchNode(ctx, n.name, false, map[string]any{"metadata": map[string]any{"annotations": map[string]any{PoweredOffAnnotation: "true"}}}); err != nil {
			return err
		}
		poweredOff = true
		// A reboot cut short (Stop, errors) must not leave the node NotReady.
		defer func() {
			if poweredOff {
				cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = s.patchNode(cctx, n.name, false, map[string]any{"metadata": map[string]any{"annotations": map[string]any{PoweredOffAnnotation: nil}}})
			}
		}()
		if _, err := waitNode(ctx, s.client, n.name, s.apiWait(), "NotReady", NodeNotReady); err != nil {
			return err
		}
		ev.NotReadyAt = time.Now()
	}
	if err := os.Remove(n.sentinel); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove sentinel: %w", err)
	}
	if !sleepCtx(ctx, delay) {
		return ctx.Err()
	}
	if err := s.waitReleased(ctx, n); err != nil { // HoldDown
		return err
	}
	newBoot := NewUUID()
	if err := s.patchNode(ctx, n.name, true, map[string]any{"status": map[string]any{"nodeInfo": map[string]any{"bootID": newBoot}}}); err != nil {
		return err
	}
	s.mu.Lock()
	early := s.cfg.FlipReady && n.heldNotReady
	s.mu.Unlock()
	if early {
		// Booted, not Ready: the agent (a hostNetwork DaemonSet pod) runs, the
		// host is not back in service.
		if err := s.startAgentAfterBoot(n, newBoot, &ev); err != nil {
			return err
		}
		if err := s.waitReadyReleased(ctx, n); err != nil {
			return err
		}
	}
	if s.cfg.FlipReady {
		if err := s.patchNode(ctx, n.name, false, map[string]any{"metadata": map[string]any{"annotations": map[string]any{PoweredOffAnnotation: nil}}}); err != nil {
			return err
		}
		poweredOff = false
	}
	// Back up when the API shows the new boot ID (and Ready); re-assert the
	// boot ID if anything wrote an old status over it.
	err := Poll(ctx, s.apiWait(), "node "+n.name+" back with boot ID "+newBoot, func(ctx context.Context) (bool, error) {
		node, err := nodes.Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if node.Status.NodeInfo.BootID != newBoot {
			s.log.Warn("boot ID overwritten, patching again", "node", n.name, "have", node.Status.NodeInfo.BootID)
			return false, s.patchNode(ctx, n.name, true, map[string]any{"status": map[string]any{"nodeInfo": map[string]any{"bootID": newBoot}}})
		}
		return !s.cfg.FlipReady || NodeReady(node), nil
	})
	if err != nil {
		return err
	}
	if !early {
		if err := s.startAgentAfterBoot(n, newBoot, &ev); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.down[downIdx].To = time.Now() // back in service: Ready (with FlipReady) and its agent running
	s.reboots = append(s.reboots, ev)
	s.notifyLocked()
	s.mu.Unlock()
	s.log.Info("simulated reboot done", "node", n.name, "bootID", newBoot, "down", ev.UpAt.Sub(ev.DownAt).Round(time.Millisecond))
	return nil
}

// startAgentAfterBoot records the new boot ID, discards the reboot requests made
// while the host was going down (they died with it) and starts the agent.
func (s *Simulator) startAgentAfterBoot(n *simNode, newBoot string, ev *Reboot) error {
	s.mu.Lock()
	n.bootID = newBoot
	s.mu.Unlock()
	ev.NewBootID = newBoot
	for _, p := range []string{n.requests, hookTimesPath(n.requests)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("clear reboot requests: %w", err)
		}
	}
	if err := s.startAgent(n); err != nil {
		return err
	}
	ev.UpAt = time.Now()
	return nil
}

// apiWait is how long one wait of a simulated reboot on the API may take.
func (s *Simulator) apiWait() time.Duration { return cmp.Or(s.cfg.APITimeout, 30*time.Second) }

// patchNode merge-patches the node (or its status subresource), retrying for
// APITimeout (default: 5 attempts).
func (s *Simulator) patchNode(ctx context.Context, name string, status bool, patch map[string]any) error {
	data, err := json.Marshal(patch)
	if err != nil {
		return fmt.Errorf("patch node %s: %w", name, err)
	}
	var sub []string
	if status {
		sub = []string{"status"}
	}
	var last error
	deadline := time.Now().Add(s.cfg.APITimeout)
	for try := 1; ; try++ {
		if _, last = s.client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, data, metav1.PatchOptions{}, sub...); last == nil {
			return nil
		}
		if (s.cfg.APITimeout == 0 && try >= 5) || (s.cfg.APITimeout > 0 && time.Now().After(deadline)) {
			break
		}
		if !sleepCtx(ctx, 200*time.Millisecond) {
			break
		}
	}
	return fmt.Errorf("patch node %s: %w", name, last)
}

// prefixWriter prefixes each line written through it.
type prefixWriter struct {
	mu     sync.Mutex
	prefix string
	w      io.Writer
	mid    bool
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var sb strings.Builder
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line == "" {
			continue
		}
		if !p.mid {
			sb.WriteString(p.prefix)
		}
		sb.WriteString(line)
		p.mid = !strings.HasSuffix(line, "\n")
	}
	if _, err := io.WriteString(p.w, sb.String()); err != nil {
		return 0, err
	}
	return len(b), nil
}

// requestCounts counts requests by HTTP method.
type requestCounts struct {
	mu sync.Mutex
	by map[string]int
}

type countingTransport struct {
	next   http.RoundTripper
	counts *requestCounts
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.counts.mu.Lock()
	if c.counts.by == nil {
		c.counts.by = map[string]int{}
	}
	c.counts.by[r.Method]++
	c.counts.mu.Unlock()
	return c.next.RoundTrip(r)
}

// APIRequests returns the requests the simulator itself (the kubelet's part of a
// reboot: power-off mark, boot ID, waits) has made so far, by HTTP method.
func (s *Simulator) APIRequests() map[string]int {
	s.requests.mu.Lock()
	defer s.requests.mu.Unlock()
	return maps.Clone(s.requests.by)
}
