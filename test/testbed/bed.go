package testbed

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Environment variables understood by the harness.
const (
	// EnvE2E must be non-empty for Main to run a suite; `make test-e2e` sets it.
	EnvE2E = "REBOOTGATE_E2E"
	// EnvKeep, when non-empty, keeps a bed that Main started running afterwards.
	EnvKeep = "TESTBED_KEEP"
	// EnvState overrides the state directory (default <repo>/_cache/testbed/run),
	// as it does for the hack/testbed scripts.
	EnvState = "TESTBED_STATE"
	// EnvCache overrides the scripts' cache of built binaries (default
	// <repo>/_cache/testbed); without EnvState the state lives in its run/.
	EnvCache = "TESTBED_CACHE"
)

// ModulePath is the Go module whose root holds hack/testbed.
const ModulePath = "github.com/rebootgate/rebootgate"

// Options control Start.
type Options struct {
	// Nodes is the number of simulated nodes when the bed has to be started
	// (default 6). A running bed is reused as it is.
	Nodes int
	// Root is the repository root; default: found from the working directory.
	Root string
	// Log receives the harness's log; default: text on stderr.
	Log *slog.Logger
	// ScriptOutput receives the scripts' progress output; default os.Stderr.
	ScriptOutput io.Writer
}

// Bed is a running test bed.
type Bed struct {
	// Root is the repository root, StateDir the bed's state directory.
	Root, StateDir string
	// Kubeconfig is the absolute path of the bed's kubeconfig.
	Kubeconfig string
	// PrometheusURL and AlertmanagerURL are loopback base URLs.
	PrometheusURL, AlertmanagerURL string
	// RulesDir holds one Prometheus rule file per alert made by FireAlert.
	RulesDir string
	// TargetsDir holds Prometheus file_sd target files (RegisterScrapeTarget).
	TargetsDir string
	// Config is the REST config for the cluster admin; Client a clientset on it.
	Config *rest.Config
	Client kubernetes.Interface
	// HTTP is used for Prometheus and Alertmanager.
	HTTP *http.Client
	Log  *slog.Logger

	startedHere  bool
	scriptOutput io.Writer
	rulesMu      sync.Mutex
	alertSrv     *alertServer
}

// FindRoot returns the directory holding this module's go.mod, searching
// upwards from dir.
func FindRoot(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("find repo root: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module "+ModulePath+"\n")) {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("find repo root: no go.mod for %s above %s", ModulePath, dir)
		}
		d = parent
	}
}

// StateDir returns the state directory the scripts use for the repo at root:
// $TESTBED_STATE, else $TESTBED_CACHE/run, else <root>/_cache/testbed/run (the same
// rule as hack/testbed/lib.sh).
func StateDir(root string) string {
	if s := os.Getenv(EnvState); s != "" {
		return s
	}
	if c := os.Getenv(EnvCache); c != "" {
		return filepath.Join(c, "run")
	}
	return filepath.Join(root, "_cache", "testbed", "run")
}

// Start returns the running bed, starting it with hack/testbed/up.sh when it
// is not running (the first run builds the binaries and takes minutes).
func Start(ctx context.Context, opts Options) (*Bed, error) {
	opts = withDefaults(opts)
	root, err := resolveRoot(opts.Root)
	if err != nil {
		return nil, err
	}
	if b, err := Open(ctx, root, opts.Log); err == nil {
		b.scriptOutput = opts.ScriptOutput
		opts.Log.Info("reusing running test bed", "kubeconfig", b.Kubeconfig)
		return b, nil
	} else {
		opts.Log.Info("starting test bed", "nodes", opts.Nodes, "reason", err)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(root, "hack", "testbed", "up.sh"))
	cmd.Env = append(os.Environ(), "NODES="+strconv.Itoa(opts.Nodes))
	cmd.Stdout = io.Discard
	cmd.Stderr = opts.ScriptOutput
	cmd.Dir = root
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("hack/testbed/up.sh: %w", err)
	}
	b, err := Open(ctx, root, opts.Log)
	if err != nil {
		return nil, fmt.Errorf("test bed started but not usable: %w", err)
	}
	b.startedHere = true
	b.scriptOutput = opts.ScriptOutput
	return b, nil
}

func withDefaults(opts Options) Options {
	if opts.Nodes <= 0 {
		opts.Nodes = 6
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if opts.ScriptOutput == nil {
		opts.ScriptOutput = os.Stderr
	}
	return opts
}

func resolveRoot(root string) (string, error) {
	if root != "" {
		return filepath.Abs(root)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repo root: %w", err)
	}
	return FindRoot(wd)
}

// Open connects to a running bed without starting anything. It fails when
// the bed is not running or not healthy.
func Open(ctx context.Context, root string, log *slog.Logger) (*Bed, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	state := StateDir(root)
	env, err := readEnvFile(filepath.Join(state, "env"))
	if err != nil {
		return nil, fmt.Errorf("test bed not running: %w", err)
	}
	b := &Bed{
		Root:            root,
		StateDir:        state,
		Kubeconfig:      env["KUBECONFIG"],
		PrometheusURL:   env["PROMETHEUS_URL"],
		AlertmanagerURL: env["ALERTMANAGER_URL"],
		RulesDir:        env["PROMETHEUS_RULES_DIR"],
		TargetsDir:      env["PROMETHEUS_TARGETS_DIR"],
		HTTP:            &http.Client{Timeout: 10 * time.Second},
		Log:             log,
		scriptOutput:    os.Stderr,
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", b.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", b.Kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	cfg.UserAgent = "rebootgate-testbed"
	b.Config = cfg
	if b.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	if err := b.Healthy(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// Healthy reports whether the apiserver, Prometheus and Alertmanager answer.
func (b *Bed) Healthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := b.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
		return fmt.Errorf("kube-apiserver not ready: %w", err)
	}
	for _, u := range []string{b.PrometheusURL + "/-/ready", b.AlertmanagerURL + "/-/ready"} {
		if _, err := b.httpDo(ctx, http.MethodGet, u, nil); err != nil {
			return fmt.Errorf("not ready: %w", err)
		}
	}
	return nil
}

// StartedHere reports whether Start started the bed (rather than reusing it).
func (b *Bed) StartedHere() bool { return b.startedHere }

// Stop runs hack/testbed/down.sh: it stops every process of the bed and
// removes its state, whoever started it.
func (b *Bed) Stop(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, filepath.Join(b.Root, "hack", "testbed", "down.sh"))
	cmd.Stdout = b.scriptOutput
	cmd.Stderr = b.scriptOutput
	cmd.Dir = b.Root
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("hack/testbed/down.sh: %w", err)
	}
	return nil
}

func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			env[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	for _, k := range []string{"KUBECONFIG", "PROMETHEUS_URL", "ALERTMANAGER_URL", "PROMETHEUS_RULES_DIR"} {
		if env[k] == "" {
			return nil, fmt.Errorf("%s: %s missing", path, k)
		}
	}
	return env, nil
}

var (
	sharedMu sync.Mutex
	shared   *Bed
)

// Main is the body of an e2e suite's TestMain. It returns 0 without running
// anything unless REBOOTGATE_E2E is set; otherwise it starts or reuses the bed,
// runs the tests, and stops the bed if it started it (unless TESTBED_KEEP is
// set). Use Shared in tests to get the bed.
func Main(m *testing.M) int {
	if os.Getenv(EnvE2E) == "" {
		fmt.Fprintf(os.Stderr, "testbed: %s is not set, skipping this e2e suite (run `make test-e2e`)\n", EnvE2E)
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	b, err := Start(ctx, Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "testbed: %v\n", err)
		return 1
	}
	sharedMu.Lock()
	shared = b
	sharedMu.Unlock()
	code := m.Run()
	if err := b.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "testbed: %v\n", err)
	}
	if b.StartedHere() && os.Getenv(EnvKeep) == "" {
		stopCtx, stopCancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer stopCancel()
		if err := b.Stop(stopCtx); err != nil {
			fmt.Fprintf(os.Stderr, "testbed: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Shared returns the bed Main started or reused; it fails the test when the
// suite's TestMain does not call Main.
func Shared(t testing.TB) *Bed {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil {
		t.Fatal("testbed: no bed; call testbed.Main from TestMain")
	}
	return shared
}

// httpDo sends a request with an optional JSON body and returns the response
// body; non-2xx statuses are errors.
func (b *Bed) httpDo(ctx context.Context, method, url string, body []byte) ([]byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read body: %w", method, url, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %w", method, url, &HTTPError{Status: resp.StatusCode, Body: strings.TrimSpace(string(data))})
	}
	return data, nil
}

// HTTPError is a non-2xx answer from Prometheus or Alertmanager.
type HTTPError struct {
	Status int
	Body   string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body) }

// IsHTTPStatus reports whether err wraps an HTTPError with the given status.
func IsHTTPStatus(err error, status int) bool {
	var he *HTTPError
	return errors.As(err, &he) && he.Status == status
}
