package runtime

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/summary"
	"github.com/rebootgate/rebootgate/test/chart"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// envRuntime enables the suites that run containers (`make test-runtime` sets it, with
// REBOOTGATE_E2E); `make test-e2e`'s ./test/... then does not run them a second time.
const envRuntime = "REBOOTGATE_RUNTIME"

// imageTag is the tag `make image` gives the images (its VERSION): the chart is rendered
// with it, so the pod's image references name the layouts' images exactly.
var imageTag = envOr("IMAGE_TAG", "dev")

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func TestMain(m *testing.M) {
	if code, ok := MainRole(); ok {
		os.Exit(code)
	}
	if os.Getenv(envRuntime) == "" || os.Getenv(testbed.EnvE2E) == "" {
		fmt.Fprintf(os.Stderr, "runtime: %s and %s not both set, only the translation tests run (use `make test-runtime`)\n", envRuntime, testbed.EnvE2E)
		os.Exit(m.Run())
	}
	os.Exit(testbed.Main(m))
}

// requireRuntime skips without root or runc, except under CI=true, where it fails.
func requireRuntime(t *testing.T) string {
	t.Helper()
	if os.Getenv(envRuntime) == "" || os.Getenv(testbed.EnvE2E) == "" {
		t.Skipf("runs containers on the test bed: use `make test-runtime` (%s and %s)", envRuntime, testbed.EnvE2E)
	}
	miss := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true: "+format, args...)
		}
		t.Skipf(format, args...)
	}
	if os.Geteuid() != 0 {
		miss("runc needs root (uid %d here)", os.Geteuid())
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		miss("runc is not installed (Debian package runc; make test-runtime installs it): %v", err)
	}
	for _, tool := range []string{"unshare", "kubectl"} {
		if _, err := exec.LookPath(tool); err != nil {
			miss("%s is not installed: %v", tool, err)
		}
	}
	return runc
}

// layoutDir is the OCI layout `make image` wrote for an image reference of the chart.
func layoutDir(t *testing.T, root, ref string) string {
	t.Helper()
	name := "rebootgate"
	if strings.HasSuffix(ref, "-nsenter") {
		name = "rebootgate-nsenter"
	}
	dir := filepath.Join(envOr("IMAGE_OUT", filepath.Join(root, "_output", "image")), "oci", name)
	var idx struct {
		Manifests []struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := readJSON(filepath.Join(dir, "index.json"), &idx); err != nil {
		t.Fatalf("image %s: %v (run make image)", ref, err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != ref {
		t.Fatalf("the chart runs %s, but %s holds %v (make image VERSION=%s)", ref, dir, idx.Manifests, imageTag)
	}
	return dir
}

var (
	unpackMu sync.Mutex
	unpacked = map[string]unpackedImage{}
)

type unpackedImage struct {
	dir    string
	cfg    ImageConfig
	labels map[string]string
}

// unpack extracts a layout's image once per test binary, under the bed's state folder.
func unpack(t *testing.T, bed *testbed.Bed, layout string) unpackedImage {
	t.Helper()
	unpackMu.Lock()
	defer unpackMu.Unlock()
	if u, ok := unpacked[layout]; ok {
		return u
	}
	dir := filepath.Join(bed.StateDir, "runtime", "images", fmt.Sprintf("%s-%d", filepath.Base(layout), os.Getpid()))
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, labels, err := Unpack(layout, dir)
	if err != nil {
		t.Fatalf("unpack %s: %v", layout, err)
	}
	u := unpackedImage{dir: dir, cfg: cfg, labels: labels}
	unpacked[layout] = u
	return u
}

// render runs helm template for a release in ns with the image tag of `make image`.
func render(t *testing.T, ns string, set ...string) []chart.Object {
	t.Helper()
	root, err := chart.Root()
	if err != nil {
		t.Fatal(err)
	}
	helm, ok := chart.Helm(root)
	if !ok {
		if os.Getenv(envRuntime) == "" {
			t.Skipf("needs helm (%s; make test-chart builds it)", helm)
		}
		t.Fatalf("needs helm (%s; make test-chart builds it)", helm)
	}
	args := []string{"--set", "image.tag=" + imageTag}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := chart.Template(helm, chart.Dir(root), chart.Release, ns, args...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := chart.Split(out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func daemonSet(t *testing.T, objs []chart.Object) *appsv1.DaemonSet {
	t.Helper()
	for _, o := range objs {
		if o.Kind == "DaemonSet" {
			var ds appsv1.DaemonSet
			if err := yaml.Unmarshal(o.YAML, &ds); err != nil {
				t.Fatal(err)
			}
			return &ds
		}
	}
	t.Fatal("the chart rendered no DaemonSet")
	return nil
}

// pod is one run of the chart's pod on a fresh node with a stand-in host.
type pod struct {
	bed             *testbed.Bed
	ns, node, name  string
	ds              *appsv1.DaemonSet
	standIn         *StandIn
	sim             *testbed.Simulator
	dir             string
	agentLog, logOf func(container string) string
}

// fast are the chart values that make one reboot take seconds on the bed, all passed as
// the chart passes any flag (extraArgs) or as its own values.
var fast = []string{
	"extraArgs.lock-jitter=100ms", "extraArgs.recheck-interval=2s", "extraArgs.sentinel-period=2s",
	"extraArgs.reboot-timeout=30s", "extraArgs.ready-timeout=1m", "extraArgs.drain-timeout=30s",
	"extraArgs.lock-ttl=30s", "sentinelMirror.period=1",
	"livenessProbe.initialDelaySeconds=1", "livenessProbe.periodSeconds=1", "readinessProbe.periodSeconds=1",
}

// startPod renders the chart with set, applies its objects (but the monitoring ones) to a
// fresh namespace, makes a node with a stand-in host and runs the DaemonSet's pod for that
// node under runc as the node simulator's agent.
func startPod(t *testing.T, method string, set ...string) *pod {
	t.Helper()
	runc := requireRuntime(t)
	bed := testbed.Shared(t)
	ctx := context.Background()
	ns := bed.Namespace(t)
	objs := render(t, ns, append(append([]string{"configuration.rebootMethod=" + method}, fast...), set...)...)
	ds := daemonSet(t, objs)

	applyChart(t, bed, objs)

	p := &pod{bed: bed, ns: ns, ds: ds, node: "rt-" + method + "-" + strings.ToLower(testbed.NewUUID()[:6])}
	bed.CreateNode(t, testbed.NewNode(p.node, "user", "eastus-1"))
	// The DaemonSet controller places the chart's pod on the node (kwok "runs" it); the
	// container below is that pod for real, under its name. The DaemonSet's selector
	// leaves out a summarizer replica the scheduler may put on the node too.
	err := testbed.Poll(ctx, time.Minute, "the chart's pod on "+p.node, func(ctx context.Context) (bool, error) {
		pods, err := bed.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{
			FieldSelector: "spec.nodeName=" + p.node, LabelSelector: metav1.FormatLabelSelector(ds.Spec.Selector)})
		if err != nil || len(pods.Items) != 1 {
			return false, err
		}
		p.name = pods.Items[0].Name
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}

	sim, err := bed.NewSimulator(ctx, testbed.SimConfig{
		Nodes:   []string{p.node},
		Command: []string{selfExe(t)},
		Env:     []string{EnvRole + "=" + RolePod, envPlan + "=" + testbed.PhDir + "/pod/plan.json"},
		// The launcher stops its containers within 10s of SIGTERM.
		ShutdownGrace: 15 * time.Second,
		RebootDelay:   time.Second,
		FlipReady:     true,
		RestartOnExit: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	p.sim = sim
	p.dir = filepath.Join(sim.Dir(p.node), "pod")
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p.standIn, err = StartStandIn(ctx, filepath.Join(sim.Dir(p.node), "standin"), sim.Dir(p.node), sim.Hook(p.node))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.standIn.Stop)

	plan := p.plan(t, runc)
	if err := writeJSON(filepath.Join(p.dir, "plan.json"), plan); err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sim.Stop(context.Background()); err != nil {
			t.Errorf("node simulator: %v", err)
		}
		if t.Failed() {
			for _, c := range ds.Spec.Template.Spec.Containers {
				t.Logf("--- %s log (last 6 KiB) ---\n%s", c.Name, tail(p.log(c.Name), 6144))
			}
			t.Logf("--- stand-in host log ---\n%s", tail(string(must(os.ReadFile(filepath.Join(p.standIn.Dir, "standin.log")))), 2048))
		}
	})
	return p
}

// applyChart applies the rendered objects but the monitoring ones (no operator CRDs here).
func applyChart(t *testing.T, bed *testbed.Bed, objs []chart.Object) {
	t.Helper()
	var apply bytes.Buffer
	for _, o := range objs {
		if strings.HasPrefix(o.Kind, "ServiceMonitor") || o.Kind == "PrometheusRule" {
			continue
		}
		apply.WriteString("---\n")
		apply.Write(o.YAML)
	}
	kubectl(t, bed, apply.Bytes(), "apply", "-f", "-")
}

func must[T any](v T, _ error) T { return v }

func selfExe(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return self
}

func writeJSON(path string, v any) error {
	data, err := jsonMarshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func kubectl(t *testing.T, bed *testbed.Bed, stdin []byte, args ...string) string {
	t.Helper()
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", bed.Kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// log is a container's output so far (the agent's is the simulator's log of the node).
func (p *pod) log(container string) string {
	path := filepath.Join(p.dir, container+".log")
	if container == "agent" {
		path = p.sim.LogPath(p.node)
	}
	data, _ := os.ReadFile(path)
	return string(data)
}

// plan translates the DaemonSet's pod for this node into the launcher's plan.
func (p *pod) plan(t *testing.T, runc string) Plan {
	t.Helper()
	return podPlan(t, p.bed, runc, p.ns, p.name, p.node, p.dir, &p.ds.Spec.Template.Spec, p.standIn, nil)
}

// podPlan translates a pod of the chart, named name on node, into the launcher's plan
// in dir. standIn is the node's stand-in host, for host paths and hostPID; nil for a pod
// that uses neither. projected maps ConfigMap volumes to the folders holding their files,
// as the kubelet projects them.
func podPlan(t *testing.T, bed *testbed.Bed, runc, ns, name, node, dir string, spec *corev1.PodSpec, standIn *StandIn, projected map[string]string) Plan {
	t.Helper()
	ctx := context.Background()
	host, port, err := apiserverAddr(bed)
	if err != nil {
		t.Fatal(err)
	}
	plan := Plan{
		Runc: runc, RuncRoot: filepath.Join(bed.StateDir, "runtime", "runc"),
		PodName: name, Dir: dir, APIAddr: host + ":" + port,
	}
	if spec.TerminationGracePeriodSeconds != nil {
		plan.GracePeriod = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	}

	// The kubelet's files and the ServiceAccount's projected token.
	kd := filepath.Join(dir, "kubelet")
	sa := filepath.Join(kd, "serviceaccount")
	if err := os.MkdirAll(sa, 0o755); err != nil {
		t.Fatal(err)
	}
	secs := int64(3600)
	req := authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}
	if node != "" {
		// The agent's pod is on the bed (the DaemonSet's, run by kwok): its token is bound
		// to it, as the kubelet's projected token is, so it names the node that the
		// chart's admission policy confines the agent to.
		pod, err := bed.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the agent's pod %s/%s: %v", ns, name, err)
		}
		req.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tok, err := bed.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, spec.ServiceAccountName,
		&authenticationv1.TokenRequest{Spec: req}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token of the chart's ServiceAccount: %v", err)
	}
	ca := bed.Config.TLSClientConfig.CAData
	if len(ca) == 0 && bed.Config.TLSClientConfig.CAFile != "" {
		if ca, err = os.ReadFile(bed.Config.TLSClientConfig.CAFile); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string][]byte{
		filepath.Join(sa, "token"): []byte(tok.Status.Token), filepath.Join(sa, "ca.crt"): ca,
		filepath.Join(sa, "namespace"): []byte(ns),
		filepath.Join(kd, "hosts"):     []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
		filepath.Join(kd, "hostname"):  []byte(name + "\n"),
		// No cluster DNS on the bed: the agent reaches the apiserver by address.
		filepath.Join(kd, "resolv.conf"): []byte("nameserver 127.0.0.53\noptions ndots:5\n"),
	}
	for path, data := range files {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	vols := map[string]string{}
	for _, v := range spec.Volumes {
		switch {
		case v.HostPath != nil:
			if standIn == nil {
				t.Fatalf("volume %s: a host path without a stand-in host", v.Name)
			}
			hp, err := standIn.HostPath(v.HostPath.Path)
			if err != nil {
				t.Fatal(err)
			}
			if v.HostPath.Type != nil && *v.HostPath.Type == corev1.HostPathDirectory {
				if fi, err := os.Stat(hp); err != nil || !fi.IsDir() {
					t.Fatalf("hostPath %s (type Directory) is not a directory on the stand-in host: %v", v.HostPath.Path, err)
				}
			}
			vols[v.Name] = hp
		case v.EmptyDir != nil:
			ed := EmptyDir{Path: filepath.Join(dir, "volumes", v.Name), Memory: v.EmptyDir.Medium == corev1.StorageMediumMemory}
			if v.EmptyDir.SizeLimit != nil {
				ed.SizeBytes = v.EmptyDir.SizeLimit.Value()
			}
			plan.EmptyDirs = append(plan.EmptyDirs, ed)
			vols[v.Name] = ed.Path
		case v.ConfigMap != nil && projected[v.Name] != "":
			vols[v.Name] = projected[v.Name]
		default:
			t.Fatalf("volume %s: only hostPath, emptyDir and projected ConfigMap volumes are supported here", v.Name)
		}
	}
	for _, c := range spec.Containers {
		img := unpack(t, bed, layoutDir(t, bed.Root, c.Image))
		term := filepath.Join(kd, c.Name+"-termination-log")
		if err := os.WriteFile(term, nil, 0o666); err != nil {
			t.Fatal(err)
		}
		pc := PodContext{
			PodName: name, Namespace: ns, NodeName: node,
			ServiceEnv: []string{
				"KUBERNETES_SERVICE_HOST=" + host, "KUBERNETES_SERVICE_PORT=" + port,
				"KUBERNETES_SERVICE_PORT_HTTPS=" + port, "KUBERNETES_PORT=tcp://" + host + ":" + port,
			},
			Volumes: vols,
			KubeletFiles: map[string]string{
				"/etc/hosts": filepath.Join(kd, "hosts"), "/etc/hostname": filepath.Join(kd, "hostname"),
				"/etc/resolv.conf": filepath.Join(kd, "resolv.conf"), "/dev/termination-log": term,
				"/var/run/secrets/kubernetes.io/serviceaccount": sa,
			},
			CgroupsPath: fmt.Sprintf("/rebootgate-runtime/%s-%s", name, c.Name),
		}
		if standIn != nil {
			pc.PIDNamespace = fmt.Sprintf("/proc/%d/ns/pid", standIn.PID)
		} else if spec.HostPID {
			t.Fatal("hostPID without a stand-in host")
		}
		s, err := Spec(c, spec, img.cfg, img.dir, pc)
		if err != nil {
			t.Fatal(err)
		}
		pcn := PlanContainer{Name: c.Name, Spec: s, Image: img.dir, Ports: map[string]int{}}
		if c.Name != "agent" {
			pcn.Log = filepath.Join(dir, c.Name+".log")
		}
		for _, port := range c.Ports {
			pcn.Ports[port.Name] = int(port.ContainerPort)
		}
		pcn.Liveness, pcn.Readiness = probePlan(t, c, c.LivenessProbe), probePlan(t, c, c.ReadinessProbe)
		plan.Containers = append(plan.Containers, pcn)
	}
	return plan
}

// probePlan is the launcher's form of an HTTP probe of c, its port resolved by name.
func probePlan(t *testing.T, c corev1.Container, p *corev1.Probe) *ProbePlan {
	t.Helper()
	if p == nil {
		return nil
	}
	if p.HTTPGet == nil {
		t.Fatalf("container %s: only HTTP probes are supported here", c.Name)
	}
	port := p.HTTPGet.Port.IntValue()
	for _, cp := range c.Ports {
		if cp.Name == p.HTTPGet.Port.StrVal {
			port = int(cp.ContainerPort)
		}
	}
	if port == 0 {
		t.Fatalf("container %s: probe port %s is not one of its ports", c.Name, p.HTTPGet.Port.String())
	}
	sec := func(v, def int32) time.Duration {
		if v == 0 {
			v = def
		}
		return time.Duration(v) * time.Second
	}
	threshold := int(p.FailureThreshold)
	if threshold == 0 {
		threshold = 3
	}
	return &ProbePlan{
		Path: p.HTTPGet.Path, Port: port, InitialDelay: sec(p.InitialDelaySeconds, 0),
		Period: sec(p.PeriodSeconds, 10), Timeout: sec(p.TimeoutSeconds, 1), FailureThreshold: threshold,
	}
}

// checkProbeRecord checks the probes the launcher ran on the chart's timers: each kind
// succeeded, and liveness never failed often enough in a row to restart the agent.
func (p *pod) checkProbeRecord(t *testing.T) {
	t.Helper()
	agent := container(t, p.ds, "agent")
	threshold := int(agent.LivenessProbe.FailureThreshold)
	// Both kinds get a chance to run on their timers.
	_ = testbed.Poll(context.Background(), 30*time.Second, "a liveness and a readiness success", func(context.Context) (bool, error) {
		seen := map[string]bool{}
		for _, r := range ReadProbes(p.dir) {
			seen[r.Kind] = seen[r.Kind] || (r.Container == "agent" && r.Status == http.StatusOK)
		}
		return seen["liveness"] && seen["readiness"], nil
	})
	ok := map[string]int{}
	run, worst := 0, 0
	for _, r := range ReadProbes(p.dir) {
		if r.Container != "agent" {
			continue
		}
		if r.Status == http.StatusOK {
			ok[r.Kind]++
		}
		if r.Kind == "liveness" {
			if r.Status == http.StatusOK {
				run = 0
			} else {
				run++
				worst = max(worst, run)
			}
		}
	}
	if ok["liveness"] == 0 || ok["readiness"] == 0 {
		t.Errorf("probes on the chart's timers: %d liveness and %d readiness successes, want both", ok["liveness"], ok["readiness"])
	}
	if worst >= threshold {
		t.Errorf("the liveness probe failed %d times in a row (threshold %d): the kubelet would have restarted the agent", worst, threshold)
	}
}

func apiserverAddr(bed *testbed.Bed) (host, port string, err error) {
	cfg, err := clientcmd.LoadFromFile(bed.Kubeconfig)
	if err != nil {
		return "", "", err
	}
	for _, c := range cfg.Clusters {
		u, err := url.Parse(c.Server)
		if err != nil {
			return "", "", err
		}
		return u.Hostname(), u.Port(), nil
	}
	return "", "", fmt.Errorf("%s names no cluster", bed.Kubeconfig)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// waitState waits for the launcher to have started the pod's containers.
func (p *pod) waitState(t *testing.T) State {
	t.Helper()
	var st State
	err := testbed.Poll(context.Background(), time.Minute, "the pod's containers running", func(context.Context) (bool, error) {
		var ok bool
		st, ok = ReadState(p.dir)
		return ok, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// probe GETs a probe's path on the port it names, through the pod's network namespace.
func probe(st State, container string, c corev1.Container, h *corev1.HTTPGetAction) (int, string, error) {
	port := h.Port.String()
	if h.Port.IntValue() == 0 {
		for _, cp := range c.Ports {
			if cp.Name == h.Port.StrVal {
				port = cp.Name
			}
		}
	} else {
		for _, cp := range c.Ports {
			if int(cp.ContainerPort) == h.Port.IntValue() {
				port = cp.Name
			}
		}
	}
	addr, ok := st.Ports[container+"/"+port]
	if !ok {
		return 0, "", fmt.Errorf("port %s of %s is not forwarded (ports %v)", h.Port.String(), container, st.Ports)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addr + h.Path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// procStatus reads fields of /proc/<pid>/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

func capField(t *testing.T, st map[string]string, field string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(st[field], 16, 64)
	if err != nil {
		t.Fatalf("%s %q: %v", field, st[field], err)
	}
	return v
}

func container(t *testing.T, ds *appsv1.DaemonSet, name string) corev1.Container {
	t.Helper()
	for _, c := range ds.Spec.Template.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s in the chart's DaemonSet", name)
	return corev1.Container{}
}

// checkAgentProcess is checkProcess for the agent container.
func (p *pod) checkAgentProcess(t *testing.T, st State, wantUID int, wantCaps []string, wantNoNewPrivs bool) {
	t.Helper()
	checkProcess(t, st, container(t, p.ds, "agent"), wantUID, wantCaps, wantNoNewPrivs)
}

// checkProcess reads container c's process back from /proc and checks its user,
// capabilities, no_new_privs and seccomp are what the chart's securityContext asks for,
// and that its root file system is mounted read-only.
// A process of a non-root user keeps the bounding set but has no effective or permitted
// capabilities after its exec (none are ambient), as under containerd.
func checkProcess(t *testing.T, st State, c corev1.Container, wantUID int, wantCaps []string, wantNoNewPrivs bool) {
	t.Helper()
	pid := st.PIDs[c.Name]
	ps := procStatus(t, pid)
	uids := strings.Fields(ps["Uid"])
	want := strconv.Itoa(wantUID)
	if len(uids) != 4 || slices.ContainsFunc(uids, func(u string) bool { return u != want }) {
		t.Errorf("%s process %d: Uid %q, want %s for real, effective, saved and fs", c.Name, pid, ps["Uid"], want)
	}
	own := procStatus(t, os.Getpid())
	hostBnd := capField(t, own, "CapBnd")
	wantMask := CapMask(wantCaps) & hostBnd
	for _, f := range []string{"CapEff", "CapPrm", "CapBnd"} {
		want := wantMask
		if wantUID != 0 && f != "CapBnd" {
			want = 0
		}
		if got := capField(t, ps, f); got != want {
			t.Errorf("%s process %d: %s %v, want %v", c.Name, pid, f, CapNames(got), CapNames(want))
		}
	}
	if got := capField(t, ps, "CapInh") | capField(t, ps, "CapAmb"); got != 0 {
		t.Errorf("%s process %d: inheritable or ambient capabilities %v, want none", c.Name, pid, CapNames(got))
	}
	if got := ps["NoNewPrivs"] == "1"; got != wantNoNewPrivs {
		t.Errorf("%s process %d: NoNewPrivs %q, want %v", c.Name, pid, ps["NoNewPrivs"], wantNoNewPrivs)
	}
	// Seccomp 2 is a filter (the chart's RuntimeDefault), 0 none (privileged).
	wantSeccomp := "0"
	if sc := c.SecurityContext; sc != nil && sc.SeccompProfile != nil &&
		sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault && (sc.Privileged == nil || !*sc.Privileged) {
		wantSeccomp = "2"
	}
	if ps["Seccomp"] != wantSeccomp {
		t.Errorf("%s process %d: Seccomp %q, want %s for the chart's securityContext", c.Name, pid, ps["Seccomp"], wantSeccomp)
	}
	// The root mount as the process sees it: mount point "/", options with "ro".
	info, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	rootRO := false
	for _, line := range strings.Split(string(info), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == "/" {
			rootRO = slices.Contains(strings.Split(f[5], ","), "ro")
		}
	}
	if !rootRO {
		t.Errorf("%s process %d: its root file system is not mounted read-only:\n%s", c.Name, pid, info)
	}
}

// checkNothingWritten checks that the container wrote nothing to its root file system:
// its overlay's upper folder holds only the (empty) mount points runc made for the
// chart's mounts.
func checkNothingWritten(t *testing.T, st State, c corev1.Container) {
	t.Helper()
	upper := st.Upper[c.Name]
	var written []string
	err := filepath.WalkDir(upper, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == upper {
			return nil
		}
		rel := "/" + strings.TrimPrefix(path, upper+"/")
		if d.IsDir() {
			return nil
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil && fi.Size() == 0 && isMountPoint(rel, c) {
				return nil // an empty file runc made to bind a file on
			}
		}
		written = append(written, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(written) > 0 {
		t.Errorf("container %s wrote to its read-only root file system: %v", c.Name, written)
	}
}

func isMountPoint(p string, c corev1.Container) bool {
	switch p {
	case "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev/termination-log":
		return true
	}
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == p {
			return true
		}
	}
	return false
}

// waitLog waits for a container's log to contain s.
func (p *pod) waitLog(t *testing.T, container, s string, timeout time.Duration) {
	t.Helper()
	err := testbed.Poll(context.Background(), timeout, fmt.Sprintf("%s log to say %q", container, s), func(context.Context) (bool, error) {
		return strings.Contains(p.log(container), s), nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkProbes GETs the chart's liveness and readiness probes and the ServiceMonitor's
// endpoint (port metrics, /metrics) until they answer 200.
func (p *pod) checkProbes(t *testing.T, st State) {
	t.Helper()
	agent := container(t, p.ds, "agent")
	if agent.LivenessProbe == nil || agent.ReadinessProbe == nil || agent.LivenessProbe.HTTPGet == nil || agent.ReadinessProbe.HTTPGet == nil {
		t.Fatal("the chart's agent has no HTTP liveness and readiness probes")
	}
	checks := []struct {
		what string
		h    *corev1.HTTPGetAction
		want string
	}{
		{"liveness probe", agent.LivenessProbe.HTTPGet, ""},
		{"readiness probe", agent.ReadinessProbe.HTTPGet, ""},
		// The ServiceMonitor scrapes the Service's port "metrics" (targetPort metrics) at /metrics.
		{"ServiceMonitor scrape", &corev1.HTTPGetAction{Path: "/metrics", Port: agent.LivenessProbe.HTTPGet.Port}, "rebootgate_reboot_required"},
	}
	for _, c := range checks {
		var code int
		var body string
		// /metrics answers as soon as the agent serves, a moment before its first look
		// at the sentinel sets rebootgate_reboot_required: wait for the series too.
		err := testbed.Poll(context.Background(), time.Minute, fmt.Sprintf("%s %s answering 200 with %q", c.what, c.h.Path, c.want), func(context.Context) (bool, error) {
			var err error
			code, body, err = probe(st, "agent", agent, c.h)
			return err == nil && code == http.StatusOK && strings.Contains(body, c.want), nil
		})
		if err != nil {
			t.Fatalf("%v (last: %d %s)", err, code, tail(body, 1000))
		}
	}
}

// TestSignalMethodRebootsTheHost: the chart's signal mode (root, capabilities drop ALL +
// KILL, no_new_privs, read-only root, the sentinel mirror) in the static image reboots the
// stand-in host by SIGRTMIN+5 to its PID 1.
func TestSignalMethodRebootsTheHost(t *testing.T) {
	p := startPod(t, "signal")
	st := p.waitState(t)
	p.checkProbes(t, st)
	p.checkAgentProcess(t, st, 0, []string{"CAP_KILL"}, true)
	old := p.sim.State(p.node).BootID
	if err := p.sim.SetRebootRequired(p.node, true); err != nil {
		t.Fatal(err)
	}
	// The mirror, not the agent, sees the host's /var/run: the sentinel reaches the agent
	// through the chart's memory emptyDir.
	p.waitLog(t, "sentinel-mirror", "sentinel present", time.Minute)
	reboots, err := p.sim.WaitForReboots(context.Background(), 1, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got := p.standIn.Reboots()
	if len(got) != 1 || !strings.HasSuffix(got[0], fmt.Sprintf("signal %d", RebootSignal)) {
		t.Errorf("the stand-in host recorded %q, want one reboot signal %d", got, RebootSignal)
	}
	if calls := p.standIn.SystemctlCalls(); len(calls) != 0 {
		t.Errorf("systemctl ran in signal mode: %q", calls)
	}
	if reboots[0].OldBootID != old || reboots[0].NewBootID == old {
		t.Errorf("reboot %+v: boot ID not changed from %s", reboots[0], old)
	}
	checkNothingWritten(t, st, container(t, p.ds, "agent"))
	checkNothingWritten(t, st, container(t, p.ds, "sentinel-mirror"))
	p.waitUncordoned(t)
	p.checkAlertMetrics(t)
	p.checkProbeRecord(t)
}

// checkAlertMetrics scrapes the restarted agent's /metrics (after a reboot, so every
// series of a reboot exists) and checks it exports every metric the chart's
// PrometheusRule alerts on, with the node label the alerts group by.
func (p *pod) checkAlertMetrics(t *testing.T) {
	t.Helper()
	var exprs []string
	for _, o := range render(t, p.ns, "metrics.prometheusRule.enabled=true") {
		if o.Kind != "PrometheusRule" {
			continue
		}
		for _, line := range strings.Split(string(o.YAML), "\n") {
			if e, ok := strings.CutPrefix(strings.TrimSpace(line), "expr: "); ok {
				exprs = append(exprs, e)
			}
		}
	}
	var names []string
	for _, e := range exprs {
		names = append(names, metricName.FindAllString(e, -1)...)
	}
	if len(names) == 0 {
		t.Fatal("no metric in the chart's PrometheusRule expressions")
	}
	st := p.waitState(t)
	agent := container(t, p.ds, "agent")
	var body string
	err := testbed.Poll(context.Background(), time.Minute, "/metrics of the restarted agent", func(context.Context) (bool, error) {
		code, b, err := probe(st, "agent", agent, &corev1.HTTPGetAction{Path: "/metrics", Port: agent.LivenessProbe.HTTPGet.Port})
		body = b
		return err == nil && code == http.StatusOK, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !strings.Contains(body, n+"{") || !strings.Contains(body, fmt.Sprintf(`node="%s"`, p.node)) {
			t.Errorf("/metrics has no %s series for node %s (the PrometheusRule alerts on it)", n, p.node)
		}
	}
}

var metricName = regexp.MustCompile(`rebootgate_[a-z_]+`)

// waitUncordoned waits until the rebooted node's agent, started again, has uncordoned it.
func (p *pod) waitUncordoned(t *testing.T) {
	t.Helper()
	if _, err := p.bed.WaitNode(context.Background(), p.node, 2*time.Minute, "uncordoned after its reboot",
		func(n *corev1.Node) bool { return !n.Spec.Unschedulable }); err != nil {
		t.Fatal(err)
	}
}

// TestCommandMethodRebootsTheHost: the chart's default, the command method (privileged,
// hostPID) in the nsenter image: the agent sees the sentinel through the chart's hostPath
// mount of /var/run, enters the stand-in host's mount namespace with nsenter and runs its
// /bin/systemctl reboot there.
func TestCommandMethodRebootsTheHost(t *testing.T) {
	p := startPod(t, "command")
	st := p.waitState(t)
	p.checkProbes(t, st)
	p.checkAgentProcess(t, st, 0, allCaps, false)
	old := p.sim.State(p.node).BootID
	if err := p.sim.SetRebootRequired(p.node, true); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "agent", "reason=SentinelFilePresent", time.Minute)
	reboots, err := p.sim.WaitForReboots(context.Background(), 1, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	calls := p.standIn.SystemctlCalls()
	if len(calls) != 1 {
		t.Fatalf("the stand-in host's systemctl ran %d times, want once: %q", len(calls), calls)
	}
	f := strings.SplitN(calls[0], " ", 3)
	if len(f) != 3 || f[1] != p.standIn.MountNS || f[2] != "reboot" {
		t.Errorf("systemctl call %q: want `reboot` in the stand-in host's mount namespace %s", calls[0], p.standIn.MountNS)
	}
	if got := p.standIn.Reboots(); len(got) != 0 {
		t.Errorf("the stand-in host got reboot signals in command mode: %q", got)
	}
	if reboots[0].NewBootID == old {
		t.Errorf("reboot %+v: boot ID not changed", reboots[0])
	}
	checkNothingWritten(t, st, container(t, p.ds, "agent"))
	p.waitUncordoned(t)
	p.checkProbeRecord(t)
}

// TestSignalMethodWithoutPermissionSaysSo: the signal method run as a non-root user
// (containerSecurityContext.runAsUser) keeps CAP_KILL in the spec, but a non-root process
// loses its capabilities when it execs (no ambient capabilities, as under containerd),
// so the kernel refuses the signal: the host is not rebooted and the agent says why.
func TestSignalMethodWithoutPermissionSaysSo(t *testing.T) {
	p := startPod(t, "signal", "containerSecurityContext.runAsUser=65532")
	st := p.waitState(t)
	p.checkAgentProcess(t, st, 65532, []string{"CAP_KILL"}, true)
	if err := p.sim.SetRebootRequired(p.node, true); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("sending signal %d to PID 1: operation not permitted: the agent must run as root (uid 0) with hostPID, or hold CAP_KILL", RebootSignal)
	p.waitLog(t, "agent", want, 2*time.Minute)
	if got := p.standIn.Reboots(); len(got) != 0 {
		t.Errorf("the stand-in host got %q from an agent without permission", got)
	}
	if got := p.sim.Reboots(); len(got) != 0 {
		t.Errorf("the node rebooted: %+v", got)
	}
}

// TestSignalMethodAsRootNeedsNoCapKill: root may signal root's processes without any
// capability (the kernel's same-user rule), so the chart's CAP_KILL is not what lets the
// signal method reboot: with CAP_AUDIT_WRITE in its place the stand-in host still reboots.
func TestSignalMethodAsRootNeedsNoCapKill(t *testing.T) {
	p := startPod(t, "signal", "containerSecurityContext.capabilities.add={AUDIT_WRITE}")
	st := p.waitState(t)
	p.checkAgentProcess(t, st, 0, []string{"CAP_AUDIT_WRITE"}, true)
	if err := p.sim.SetRebootRequired(p.node, true); err != nil {
		t.Fatal(err)
	}
	if _, err := p.sim.WaitForReboots(context.Background(), 1, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := p.standIn.Reboots(); len(got) != 1 {
		t.Errorf("the stand-in host recorded %q, want one reboot signal", got)
	}
}

// TestSummarizerPodPublishes runs the chart's summarizer pod under runc as the chart
// renders it (the distroless image, uid 65532, no capabilities, no_new_privs, the
// RuntimeDefault seccomp filter, a read-only root, its own ServiceAccount's token, the
// agents' config mount): it is elected, publishes the node summary of every bed node
// without errors, writes nothing to its root file system, and passes the chart's
// readiness and liveness probes.
func TestSummarizerPodPublishes(t *testing.T) {
	runc := requireRuntime(t)
	bed := testbed.Shared(t)
	ctx := context.Background()
	ns := bed.Namespace(t)
	objs := render(t, ns, "config.pools[0].name=all")
	applyChart(t, bed, objs)
	var d appsv1.Deployment
	for _, o := range objs {
		if o.Kind == "Deployment" {
			if err := yaml.Unmarshal(o.YAML, &d); err != nil {
				t.Fatal(err)
			}
		}
	}
	spec := &d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("the chart rendered no summarizer Deployment (%d containers)", len(spec.Containers))
	}
	// The config mount: the rendered ConfigMap's file in a folder, as the kubelet projects it.
	var cfgData string
	for _, o := range objs {
		if o.Kind == "ConfigMap" && strings.HasSuffix(o.Name, "-config") {
			var cm corev1.ConfigMap
			if err := yaml.Unmarshal(o.YAML, &cm); err != nil {
				t.Fatal(err)
			}
			cfgData = cm.Data["config.yaml"]
		}
	}
	name := "summarizer-" + strings.ToLower(testbed.NewUUID()[:6])
	dir := filepath.Join(bed.StateDir, "runtime", name)
	projected := map[string]string{}
	for _, v := range spec.Volumes {
		if v.ConfigMap == nil {
			continue
		}
		projected[v.Name] = filepath.Join(dir, "configmap-"+v.Name)
		if err := os.MkdirAll(projected[v.Name], 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(projected[v.Name], "config.yaml"), []byte(cfgData), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if len(projected) != 1 || cfgData == "" {
		t.Fatalf("the summarizer mounts %d ConfigMaps (config %d bytes), want the config", len(projected), len(cfgData))
	}
	plan := podPlan(t, bed, runc, ns, name, "", dir, spec, nil, projected)
	if err := writeJSON(filepath.Join(dir, "plan.json"), plan); err != nil {
		t.Fatal(err)
	}
	launcher := exec.Command(selfExe(t))
	launcher.Env = append(os.Environ(), EnvRole+"="+RolePod, envPlan+"="+filepath.Join(dir, "plan.json"))
	var out bytes.Buffer
	launcher.Stdout, launcher.Stderr = &out, &out
	if err := launcher.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = launcher.Process.Signal(syscall.SIGTERM)
		_ = launcher.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "summarizer.log"))
			t.Logf("--- launcher ---\n%s\n--- summarizer log (last 6 KiB) ---\n%s", out.String(), tail(string(log), 6144))
		}
	})
	nodes, err := bed.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var last *disruption.Summary
	err = testbed.Poll(ctx, time.Minute, "the summary published by the pod", func(ctx context.Context) (bool, error) {
		s, _, err := summary.NewObserver(bed.Client, ns).Read(ctx, time.Now())
		if err != nil {
			return false, nil
		}
		last = s
		return s.Writer == name && len(s.Errors) == 0 && s.Pools["all"].Nodes == len(nodes.Items), nil
	})
	if err != nil {
		t.Fatalf("%v; last summary %+v", err, last)
	}
	var st State
	if err := testbed.Poll(ctx, time.Minute, "the pod's state", func(context.Context) (bool, error) {
		var ok bool
		st, ok = ReadState(dir)
		return ok, nil
	}); err != nil {
		t.Fatal(err)
	}
	c := spec.Containers[0]
	checkProcess(t, st, c, 65532, nil, true)
	checkNothingWritten(t, st, c)
	// The chart's probes, run by the launcher on their timers against the port the
	// summarizer serves in the pod: ready (elected, synced, published) and alive.
	if c.LivenessProbe == nil || c.ReadinessProbe == nil {
		t.Fatalf("the summarizer container has no liveness or readiness probe")
	}
	err = testbed.Poll(ctx, time.Minute, "a readiness and a liveness success of the summarizer", func(context.Context) (bool, error) {
		seen := map[string]bool{}
		for _, r := range ReadProbes(dir) {
			seen[r.Kind] = seen[r.Kind] || (r.Container == c.Name && r.Status == http.StatusOK)
		}
		return seen["liveness"] && seen["readiness"], nil
	})
	if err != nil {
		t.Errorf("%v; probes %+v", err, ReadProbes(dir))
	}
}
