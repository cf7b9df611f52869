package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Plan is what the pod launcher runs: the pod's containers as translated runtime specs,
// and what it must set up around them each time it starts (a "boot" of the node).
type Plan struct {
	Runc, RuncRoot string
	PodName        string
	// Dir is the pod's folder: bundles, overlays, volumes, state.json.
	Dir string
	// APIAddr is the kube-apiserver's loopback address, forwarded into the pod's network
	// namespace at the same address (the ServiceAccount's in-cluster config dials it).
	APIAddr string
	// EmptyDirs are made afresh at each start; Memory ones are a tmpfs.
	EmptyDirs []EmptyDir
	// GracePeriod is terminationGracePeriodSeconds.
	GracePeriod time.Duration
	Containers  []PlanContainer
}

// EmptyDir is one emptyDir volume's host folder.
type EmptyDir struct {
	Path      string
	Memory    bool
	SizeBytes int64
}

// PlanContainer is one container: its spec (root.path and the network namespace's path
// are set at start), its unpacked image (the overlay's lower layer), its named ports and
// where its output goes ("" = the launcher's own output, which the node simulator logs).
type PlanContainer struct {
	Name  string
	Spec  *specs.Spec
	Image string
	Ports map[string]int
	Log   string
	// Liveness and Readiness are its HTTP probes, run on their own timers.
	Liveness, Readiness *ProbePlan
}

// ProbePlan is an HTTP GET probe as the kubelet runs it: after InitialDelay, every
// Period, with Timeout; FailureThreshold failures in a row of a liveness probe restart
// the container (here: the pod, whose launcher then exits and is started again).
type ProbePlan struct {
	Path                          string
	Port                          int
	InitialDelay, Period, Timeout time.Duration
	FailureThreshold              int
}

// ProbeResult is one probe, as the launcher records it in <Dir>/probes.jsonl.
type ProbeResult struct {
	At        time.Time
	Container string
	Kind      string // liveness or readiness
	Status    int    // HTTP status, 0 when the request failed
	Error     string `json:",omitempty"`
}

// ReadProbes reads the probes recorded so far.
func ReadProbes(dir string) []ProbeResult {
	var out []ProbeResult
	for _, line := range readLines(filepath.Join(dir, "probes.jsonl")) {
		var r ProbeResult
		if json.Unmarshal([]byte(line), &r) == nil {
			out = append(out, r)
		}
	}
	return out
}

var probeMu sync.Mutex

// runProbe runs one probe until stop is closed; a liveness probe that fails
// FailureThreshold times in a row closes kill.
func runProbe(ns *netns, dir, container, kind string, p *ProbePlan, stop <-chan struct{}, kill func()) {
	select {
	case <-stop:
		return
	case <-time.After(p.InitialDelay):
	}
	client := &http.Client{
		Timeout: p.Timeout,
		Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
			return ns.dial(fmt.Sprintf("127.0.0.1:%d", p.Port))
		}},
	}
	fails := 0
	tick := time.NewTicker(p.Period)
	defer tick.Stop()
	for {
		r := ProbeResult{At: time.Now(), Container: container, Kind: kind}
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", p.Port, p.Path))
		if err != nil {
			r.Error = err.Error()
		} else {
			r.Status = resp.StatusCode
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if line, err := json.Marshal(r); err == nil {
			probeMu.Lock()
			_ = appendFile(filepath.Join(dir, "probes.jsonl"), string(line)+"\n")
			probeMu.Unlock()
		}
		// The kubelet counts 200-399 as success.
		if r.Status >= 200 && r.Status < 400 {
			fails = 0
		} else if fails++; kind == "liveness" && fails >= p.FailureThreshold {
			kill()
			return
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// State is what a running launcher reports in <Dir>/state.json.
type State struct {
	// PIDs of the containers' processes (in the test's PID namespace).
	PIDs map[string]int
	// Ports maps "container/port-name" to a loopback address in the test's network
	// namespace forwarded to that port in the pod's, as the kubelet's probes and a
	// ServiceMonitor's scrapes reach the pod IP.
	Ports map[string]string
	// Upper maps a container to its overlay's upper folder: whatever the container wrote
	// to its root file system.
	Upper map[string]string
	// NetNS is the pod's network namespace.
	NetNS string
}

// ReadState reads a running launcher's state; ok is false before it has started.
func ReadState(dir string) (State, bool) {
	var s State
	if err := readJSON(filepath.Join(dir, "state.json"), &s); err != nil {
		return s, false
	}
	return s, true
}

// netns is the pod's network namespace, held by one locked OS thread that runs the
// functions that must create sockets in it.
type netns struct {
	path string
	do   chan func()
}

func newNetns() (*netns, error) {
	n := &netns{do: make(chan func())}
	ready := make(chan error)
	go func() {
		// Never unlocked: the thread is in another network namespace and must not be
		// reused; it ends with the process.
		goruntime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- fmt.Errorf("unshare the network namespace: %w", err)
			return
		}
		if err := loopbackUp(); err != nil {
			ready <- err
			return
		}
		n.path = fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		ready <- nil
		for f := range n.do {
			f()
		}
	}()
	return n, <-ready
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}

func (n *netns) listen(addr string) (l net.Listener, err error) {
	done := make(chan struct{})
	n.do <- func() { l, err = net.Listen("tcp", addr); close(done) }
	<-done
	return l, err
}

func (n *netns) dial(addr string) (c net.Conn, err error) {
	done := make(chan struct{})
	n.do <- func() { c, err = net.DialTimeout("tcp", addr, 5*time.Second); close(done) }
	<-done
	return c, err
}

// forward accepts on l and copies each connection to dial().
func forward(l net.Listener, dial func() (net.Conn, error)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := dial()
			if err != nil {
				return
			}
			defer up.Close()
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(up, c); closeWrite(up) }()
			go func() { defer wg.Done(); _, _ = io.Copy(c, up); closeWrite(c) }()
			wg.Wait()
		}()
	}
}

func closeWrite(c net.Conn) {
	if t, ok := c.(*net.TCPConn); ok {
		_ = t.CloseWrite()
	}
}

// podMain runs the pod in the plan (RolePod) until SIGTERM or until a container exits:
// the pod's network namespace with the apiserver forwarded into it, fresh emptyDirs, and
// for each container an overlay root on its image and `runc run --detach`. It then stops
// the containers (SIGTERM, SIGKILL after the grace period, at most 10s) and cleans up.
func podMain() error {
	var plan Plan
	if err := readJSON(os.Getenv(envPlan), &plan); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	_ = os.Remove(filepath.Join(plan.Dir, "state.json"))

	ns, err := newNetns()
	if err != nil {
		return err
	}
	apiL, err := ns.listen(plan.APIAddr)
	if err != nil {
		return fmt.Errorf("apiserver forward in the pod's network namespace: %w", err)
	}
	go forward(apiL, func() (net.Conn, error) { return net.DialTimeout("tcp", plan.APIAddr, 5*time.Second) })

	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	for _, ed := range plan.EmptyDirs {
		_ = unix.Unmount(ed.Path, unix.MNT_DETACH)
		if err := os.RemoveAll(ed.Path); err != nil {
			return err
		}
		if err := os.MkdirAll(ed.Path, 0o777); err != nil {
			return err
		}
		if ed.Memory {
			opts := "mode=0777"
			if ed.SizeBytes > 0 {
				opts += ",size=" + strconv.FormatInt(ed.SizeBytes, 10)
			}
			if err := unix.Mount("tmpfs", ed.Path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
				return fmt.Errorf("emptyDir tmpfs %s: %w", ed.Path, err)
			}
			p := ed.Path
			cleanups = append(cleanups, func() { _ = unix.Unmount(p, unix.MNT_DETACH) })
		}
		if err := os.Chmod(ed.Path, 0o777); err != nil {
			return err
		}
	}

	state := State{PIDs: map[string]int{}, Ports: map[string]string{}, Upper: map[string]string{}, NetNS: ns.path}
	var ids []string
	stopProbes := make(chan struct{})
	endProbes := sync.OnceFunc(func() { close(stopProbes) })
	cleanups = append(cleanups, endProbes)
	cleanups = append(cleanups, func() {
		for _, id := range ids {
			_ = exec.Command(plan.Runc, "--root", plan.RuncRoot, "delete", "--force", id).Run()
		}
	})
	for _, c := range plan.Containers {
		cdir := filepath.Join(plan.Dir, c.Name)
		for _, d := range []string{"merged"} {
			_ = unix.Unmount(filepath.Join(cdir, d), unix.MNT_DETACH)
		}
		if err := os.RemoveAll(cdir); err != nil {
			return err
		}
		upper, work, merged := filepath.Join(cdir, "upper"), filepath.Join(cdir, "work"), filepath.Join(cdir, "merged")
		for _, d := range []string{upper, work, merged} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		if err := unix.Mount("overlay", merged, "overlay", 0,
			fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", c.Image, upper, work)); err != nil {
			return fmt.Errorf("overlay root of %s: %w", c.Name, err)
		}
		cleanups = append(cleanups, func() { _ = unix.Unmount(merged, unix.MNT_DETACH) })
		spec := *c.Spec
		root := *spec.Root
		root.Path = merged
		spec.Root = &root
		linux := *spec.Linux
		linux.Namespaces = append([]specs.LinuxNamespace(nil), linux.Namespaces...)
		for i := range linux.Namespaces {
			if linux.Namespaces[i].Type == specs.NetworkNamespace {
				linux.Namespaces[i].Path = ns.path
			}
		}
		spec.Linux = &linux
		data, err := json.MarshalIndent(&spec, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(cdir, "config.json"), data, 0o644); err != nil {
			return err
		}
		id := plan.PodName + "-" + c.Name
		_ = exec.Command(plan.Runc, "--root", plan.RuncRoot, "delete", "--force", id).Run()
		pidFile := filepath.Join(cdir, "pid")
		cmd := exec.Command(plan.Runc, "--root", plan.RuncRoot, "run", "--detach", "--pid-file", pidFile, "--bundle", cdir, id)
		out := io.Writer(os.Stdout)
		if c.Log != "" {
			f, err := os.OpenFile(c.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return err
			}
			defer f.Close()
			out = f
		}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("runc run %s: %w", id, err)
		}
		ids = append(ids, id)
		pidData, err := os.ReadFile(pidFile)
		if err != nil {
			return err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(pidData)))
		if err != nil {
			return fmt.Errorf("runc pid file of %s: %w", id, err)
		}
		state.PIDs[c.Name], state.Upper[c.Name] = pid, upper
		for name, port := range c.Ports {
			hl, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			cleanups = append(cleanups, func() { hl.Close() })
			target := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			go forward(hl, func() (net.Conn, error) { return ns.dial(target) })
			state.Ports[c.Name+"/"+name] = hl.Addr().String()
		}
		for kind, pp := range map[string]*ProbePlan{"liveness": c.Liveness, "readiness": c.Readiness} {
			if pp == nil {
				continue
			}
			go runProbe(ns, plan.Dir, c.Name, kind, pp, stopProbes, func() {
				_ = exec.Command(plan.Runc, "--root", plan.RuncRoot, "kill", id, "KILL").Run()
			})
		}
	}
	data, err := json.Marshal(state)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(plan.Dir, "state.json.tmp"), data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(plan.Dir, "state.json.tmp"), filepath.Join(plan.Dir, "state.json")); err != nil {
		return err
	}
	cleanups = append(cleanups, func() { _ = os.Remove(filepath.Join(plan.Dir, "state.json")) })

	// Run until told to stop or until a container ends.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var exited string
wait:
	for {
		select {
		case <-sigs:
			break wait
		case <-tick.C:
			for name, pid := range state.PIDs {
				if !processExists(pid) {
					exited = name
					break wait
				}
			}
		}
	}
	endProbes() // a container shutting down is not probed
	grace := min(plan.GracePeriod, 10*time.Second)
	for _, id := range ids {
		_ = exec.Command(plan.Runc, "--root", plan.RuncRoot, "kill", id, "TERM").Run()
	}
	deadline := time.Now().Add(grace)
	for _, pid := range state.PIDs {
		for processExists(pid) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, id := range ids {
		_ = exec.Command(plan.Runc, "--root", plan.RuncRoot, "kill", id, "KILL").Run()
	}
	if exited != "" {
		return errors.New("container " + exited + " exited")
	}
	return nil
}
