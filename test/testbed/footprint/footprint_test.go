// Package footprint measures idle agents on the test bed (`make bench-footprint`):
// their resident memory, total and private, the time from start to ready, the
// binary's size and its initialisers' cost, and that an idle agent makes no API
// request but its watches. It runs only when REBOOTGATE_BENCH_FOOTPRINT is set.
package footprint

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rebootgate/rebootgate/test/testbed"
)

const envBench = "REBOOTGATE_BENCH_FOOTPRINT"

var binary string

func TestMain(m *testing.M) {
	if os.Getenv(envBench) == "" {
		fmt.Fprintf(os.Stderr, "footprint: %s is not set, skipping (run `make bench-footprint`)\n", envBench)
		os.Exit(0)
	}
	var cleanup func()
	var err error
	if binary, cleanup, err = build(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := testbed.Main(m)
	cleanup()
	os.Exit(code)
}

// build is the binary under test: $REBOOTGATE_BIN, or the release build of the
// working tree (the flags of `make build-static`, which the image ships).
func build() (string, func(), error) {
	if p := os.Getenv(testbed.EnvBinary); p != "" {
		abs, err := filepath.Abs(p)
		return abs, func() {}, err
	}
	return testbed.BuildReleaseBinary()
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

type agent struct {
	node  string
	log   string
	cmd   *exec.Cmd
	port  int
	ready time.Duration
}

func (a *agent) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", a.port, path) }

// TestIdleFootprint starts AGENTS idle agents (no reboot needed) on the bed one
// after another, each on its own Node, timing each from its start to /readyz
// answering 200; then, 5 s after the last one is ready, over a WINDOW, it checks
// that they make no API request other than their long-lived watches, and reads
// their memory at its end. It fails when an idle agent makes any other request or
// when the medians miss the targets (maxTotalMiB, maxPrivateMiB, maxReady).
func TestIdleFootprint(t *testing.T) {
	n := envInt("AGENTS", 5)
	window := 60 * time.Second
	if d, err := time.ParseDuration(os.Getenv("WINDOW")); err == nil && d > 0 {
		window = d
	}
	const settle = 5 * time.Second
	bed := testbed.Shared(t)
	ns := bed.Namespace(t)
	id := testbed.NewUUID()[:6]
	ctx := context.Background()

	fi, err := os.Stat(binary)
	if err != nil {
		t.Fatal(err)
	}
	initMs, initBytes := initCost(t, 5)

	agents := make([]*agent, n)
	for i := range agents {
		name := fmt.Sprintf("fp-%s-%d", id, i)
		bed.CreateNode(t, testbed.NewNode(name, "user", fmt.Sprintf("eastus-%d", i%3+1)))
		agents[i] = start(t, bed, ns, name)
	}
	// The last agent's first decision and its report (the RebootRequired condition,
	// a PATCH) come just after it is ready: start-up, not idling.
	time.Sleep(settle)
	before := make([]testbed.APIRequests, n)
	for i, a := range agents {
		if before[i], err = testbed.ReadAPIRequests(ctx, a.url("/metrics")); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(window)
	var totals, privates, files, readies, nonWatch, watch []float64
	for i, a := range agents {
		now, err := testbed.ReadAPIRequests(ctx, a.url("/metrics"))
		if err != nil {
			t.Fatal(err)
		}
		mem, err := testbed.ReadProcMem(a.cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("%s ready-after=%.2fs (file %.1fMiB, of it in 2 MiB pages %.1fMiB)\n", mem, a.ready.Seconds(), testbed.MiB(mem.File), testbed.MiB(mem.FilePMD))
		totals, privates, files = append(totals, testbed.MiB(mem.Total)), append(privates, testbed.MiB(mem.Private)), append(files, testbed.MiB(mem.File))
		readies = append(readies, a.ready.Seconds())
		made := now.Since(before[i])
		nonWatch, watch = append(nonWatch, made.NonWatch()), append(watch, made.Watch())
		if made.NonWatch() != 0 {
			log, _ := os.ReadFile(a.log)
			t.Errorf("agent on %s made API requests other than watches while idle over %s: %v; want none. Its log:\n%s", a.node, window, made, log)
		}
	}
	fmt.Printf("footprint agents=%d idle-rss=%.1fMiB idle-private=%.1fMiB idle-file=%.1fMiB ready-after=%.2fs (medians; max ready-after %.2fs) api-requests-in-%s non-watch=%.0f watch=%.0f (max)\n",
		n, median(totals), median(privates), median(files), median(readies), slices.Max(readies), window, slices.Max(nonWatch), slices.Max(watch))
	fmt.Printf("binary=%.1fMiB init=%.1fms init-heap=%.1fMiB (median of 5 starts, GODEBUG=inittrace=1)\n",
		testbed.MiB(uint64(fi.Size())), initMs, testbed.MiB(uint64(initBytes)))
	if m := median(totals); m > maxTotalMiB {
		t.Errorf("idle RSS %.1f MiB (median), want at most %.1f MiB", m, maxTotalMiB)
	}
	if m := median(privates); m > maxPrivateMiB {
		t.Errorf("idle private memory %.1f MiB (median), want at most %.1f MiB", m, maxPrivateMiB)
	}
	if m := median(readies); m > maxReady.Seconds() {
		t.Errorf("start to ready %.2f s (median), want at most %s", m, maxReady)
	}
}

// The targets of issue 12: an idle agent's RSS no more than kured's (measured on this
// bed), its private part, and the time from start to ready.
const (
	maxTotalMiB   = 37.5
	maxPrivateMiB = 12.0
	maxReady      = time.Second
)

// start runs an idle agent for node and waits until it is ready.
func start(t *testing.T, bed *testbed.Bed, ns, node string) *agent {
	t.Helper()
	dir := t.TempDir()
	a := &agent{node: node, port: freePort(t)}
	a.cmd = exec.Command(binary, "agent", "--node-id", node, "--namespace", ns, "--kubeconfig", bed.Kubeconfig,
		"--reboot-sentinel", filepath.Join(dir, "reboot-required"), "--nsenter=false",
		"--metrics-host", "127.0.0.1", "--metrics-port", strconv.Itoa(a.port))
	a.log = filepath.Join(dir, "agent.log")
	logf, err := os.Create(a.log)
	if err != nil {
		t.Fatal(err)
	}
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	began := time.Now()
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		_ = a.cmd.Wait()
		logf.Close()
	})
	if a.ready, err = testbed.WaitReady(context.Background(), a.url("/readyz"), began, time.Minute); err != nil {
		log, _ := os.ReadFile(logf.Name())
		t.Fatalf("agent on %s: %v\n%s", node, err, log)
	}
	return a
}

// initCost runs `rebootgate version` runs times with GODEBUG=inittrace=1 and returns
// the medians of the package initialisers' total clock time (ms) and heap (bytes).
func initCost(t *testing.T, runs int) (ms float64, heap float64) {
	t.Helper()
	var mss, heaps []float64
	for range runs {
		cmd := exec.Command(binary, "version")
		var stderr bytes.Buffer
		cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("rebootgate version: %v\n%s", err, stderr.String())
		}
		m, h, err := sumInitTrace(stderr.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		mss, heaps = append(mss, m), append(heaps, h)
	}
	return median(mss), median(heaps)
}

// sumInitTrace adds up inittrace lines such as
// "init net/netip @11 ms, 0.097 ms clock, 744 bytes, 18 allocs".
func sumInitTrace(trace []byte) (ms, heap float64, err error) {
	sc := bufio.NewScanner(bytes.NewReader(trace))
	lines := 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 11 || f[0] != "init" || f[5] != "ms" || f[8] != "bytes," {
			continue
		}
		clock, err1 := strconv.ParseFloat(f[4], 64)
		bytes, err2 := strconv.ParseFloat(f[7], 64)
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("inittrace: cannot read %q", sc.Text())
		}
		ms, heap, lines = ms+clock, heap+bytes, lines+1
	}
	if lines == 0 {
		return 0, 0, fmt.Errorf("inittrace: no init lines in %q", trace)
	}
	return ms, heap, nil
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
