package source

import (
	"context"
	"errors"
	"fmt"
	"github.com/fsnotify/fsnotify"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/facts"
	"github.com/rebootgate/rebootgate/engine/metrics"
	"github.com/rebootgate/rebootgate/engine/policy"
)

const (
	testNS   = "rebootgate"
	testNode = "node-1"
	header   = "apiVersion: rebootgate.io/v1alpha1\nkind: RebootGateConfig\n"
)

// freezeV1 adds a deny; brokenFreeze fails to parse on line 4.
const (
	freezeV1 = `package rebootgate

deny contains msg if {
	msg := "maintenance freeze v1"
}
`
	freezeV2 = `package rebootgate

deny contains msg if {
	msg := "maintenance freeze v2"
}
`
	brokenFreeze = `package rebootgate

deny contains msg if {
	msg := "unterminated
}
`
)

// waitTimeout bounds every eventually-style wait; the loads take milliseconds.
const waitTimeout = 20 * time.Second

var testTime = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

type harness struct {
	t        *testing.T
	src      *Source
	client   *fake.Clientset
	clock    *testingclock.FakeClock
	recorder *record.FakeRecorder
	metrics  *metrics.Metrics
	ctx      context.Context
}

type harnessOpts struct {
	configPath string
	inline     *config.Resolved
	cmEvents   bool // PolicyEventsOnConfigMaps (the summarizer's)
	objects    []*corev1.ConfigMap
	noInotify  bool // the config file's watcher cannot be made (inotify used up)
}

func start(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	var objs []runtime.Object
	for _, cm := range o.objects {
		objs = append(objs, cm)
	}
	client := fake.NewClientset(objs...)
	clk := testingclock.NewFakeClock(testTime)
	rec := record.NewFakeRecorder(1000)
	rec.IncludeObject = true
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	src, err := New(Config{
		Client:     client,
		Clock:      clk,
		Logger:     slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		NodeName:   testNode,
		Namespaces: []string{testNS},
		ConfigPath: o.configPath,
		Config:     o.inline,
		Recorder:   rec,
		Metrics:    m,

		PolicyEventsOnConfigMaps: o.cmEvents,
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.noInotify {
		src.newWatcher = func() (*fsnotify.Watcher, error) { return nil, syscall.EMFILE }
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		src.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done // Run waits for its watcher, so nothing logs after the test
	})
	return &harness{t: t, src: src, client: client, clock: clk, recorder: rec, metrics: m, ctx: ctx}
}

// testLog sends the Source's log lines to the test's log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

var _ io.Writer = testLog{}

func policyConfigMap(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: testNS, Name: name, UID: types.UID("uid-" + name),
			Labels: map[string]string{PolicyLabel: PolicyLabelValue},
		},
		Data: data,
	}
}

func testFacts() *facts.Facts {
	return &facts.Facts{Node: &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: testNode},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			NodeInfo:   corev1.NodeSystemInfo{BootID: "b1", KernelVersion: "6.8.0-1021-azure"},
		},
	}}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// reasons decides with the Source and returns "source: message" for each reason.
func (h *harness) reasons() []string { return reasonsOf(h.src.Decide(h.ctx, testFacts(), testTime)) }

// lastGoodReasons is reasons under the last good engine (a reboot in progress).
func (h *harness) lastGoodReasons() []string {
	return reasonsOf(h.src.DecideLastGood(h.ctx, testFacts(), testTime))
}

func reasonsOf(d decision.Decision) []string {
	var out []string
	for _, r := range d.Reasons {
		out = append(out, r.Source+": "+r.Message)
	}
	return out
}

func (h *harness) waitReasons(what string, want ...string) {
	h.t.Helper()
	eventually(h.t, what, func() bool { return slices.Equal(h.reasons(), want) })
}

// events drains the events recorded so far.
func (h *harness) events() []string {
	var out []string
	for {
		select {
		case e := <-h.recorder.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// waitEvent waits for an event containing every one of parts and returns it.
func (h *harness) waitEvent(parts ...string) string {
	h.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case e := <-h.recorder.Events:
			if containsAll(e, parts...) {
				return e
			}
			h.t.Logf("other event: %s", e)
		case <-deadline:
			h.t.Fatalf("timed out waiting for an event with %q", parts)
		}
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

func (h *harness) update(cm *corev1.ConfigMap) {
	h.t.Helper()
	cur, err := h.client.CoreV1().ConfigMaps(cm.Namespace).Get(h.ctx, cm.Name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	cur.Data = cm.Data
	if _, err := h.client.CoreV1().ConfigMaps(cm.Namespace).Update(h.ctx, cur, metav1.UpdateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) policyStatus() float64 {
	return metricValue(h.t, h.metrics.PolicyStatus.WithLabelValues(testNode)).GetGauge().GetValue()
}

func (h *harness) loadErrors() float64 {
	return metricValue(h.t, h.metrics.PolicyLoadErrors.WithLabelValues(testNode)).GetCounter().GetValue()
}

func metricValue(t *testing.T, m prometheus.Metric) *dto.Metric {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// waitStatus waits for the Source's load status to have reason and, when loaded is
// false, a message starting with prefix.
func (h *harness) waitStatus(loaded bool, reason, prefix string) {
	h.t.Helper()
	eventually(h.t, fmt.Sprintf("status %v %s %q", loaded, reason, prefix), func() bool {
		st := h.src.Status()
		return st.Loaded == loaded && st.Reason == reason && strings.HasPrefix(st.Message, prefix)
	})
}

// writes lists the requests, other than the test's own creates and updates, that would
// change an object: the source makes none (it used to patch a status annotation onto
// each policy ConfigMap).
func (h *harness) writes() []string {
	var out []string
	for _, a := range h.client.Actions() {
		switch a.GetVerb() {
		case "get", "list", "watch", "create", "update":
		default:
			out = append(out, a.GetVerb()+" "+a.GetResource().Resource)
		}
	}
	return out
}

var (
	deniedFreeze1 = "policy: maintenance freeze v1"
	deniedFreeze2 = "policy: maintenance freeze v2"
)

func TestInitialLoad(t *testing.T) {
	h := start(t, harnessOpts{objects: []*corev1.ConfigMap{
		policyConfigMap("freeze", map[string]string{"freeze.rego": freezeV1, "README.md": "not a module"}),
	}})
	h.waitReasons("the ConfigMap's deny", deniedFreeze1)
	h.waitStatus(true, ReasonLoaded, "")
	if got := h.policyStatus(); got != 1 {
		t.Errorf("PolicyStatus = %v, want 1", got)
	}
	e, err := h.src.Current()
	if err != nil || e == nil {
		t.Fatalf("Current() = %v, %v; want an engine", e, err)
	}
	if e.Config().Pools[0].Name != "default" {
		t.Errorf("config in force has pool %q; want the default config", e.Config().Pools[0].Name)
	}
}

func TestGoodPolicyAddsDeny(t *testing.T) {
	h := start(t, harnessOpts{})
	h.waitReasons("the default gate to allow")
	select {
	case <-h.src.Changed():
	case <-time.After(waitTimeout):
		t.Fatal("no change notification for the first load")
	}
	cm := policyConfigMap("freeze", map[string]string{"freeze.rego": freezeV1})
	if _, err := h.client.CoreV1().ConfigMaps(testNS).Create(h.ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.src.Changed():
	case <-time.After(waitTimeout):
		t.Fatal("no change notification for the new policy")
	}
	h.waitReasons("the new deny", deniedFreeze1)
	if w := h.writes(); len(w) > 0 {
		t.Errorf("the source wrote %q; an agent writes no ConfigMap", w)
	}
}

// A policy update that does not compile may have been a restriction: no new reboot
// may start under the older set. The decision names the error with file:line, the
// status, the event on the agent's Node and the metric say so; the last good set stays
// for the reboots in progress only; the fix puts the new set in force.
func TestBrokenPolicyFailsClosedThenFixed(t *testing.T) {
	h := start(t, harnessOpts{objects: []*corev1.ConfigMap{
		policyConfigMap("freeze", map[string]string{"freeze.rego": freezeV1}),
		policyConfigMap("innocent", map[string]string{"other.rego": "package rebootgate\n"}),
	}})
	h.waitReasons("the first policy", deniedFreeze1)
	h.waitStatus(true, ReasonLoaded, "")
	<-h.src.Changed()
	h.events()

	h.update(policyConfigMap("freeze", map[string]string{"freeze.rego": brokenFreeze}))
	select {
	case <-h.src.Changed():
	case <-time.After(waitTimeout):
		t.Fatal("no change notification for the broken update: agents waiting for a slot would not see it")
	}
	const loadErr = "the latest config or policy update does not load: policy ConfigMaps: rebootgate/freeze/freeze.rego:4: rego_parse_error: "
	eventually(t, "a denial from source config naming file:line", func() bool {
		got := h.reasons()
		return len(got) == 1 && strings.HasPrefix(got[0], "config: "+loadErr)
	})
	e, err := h.src.Current()
	if e != nil || !errors.Is(err, ErrNotLoaded) {
		t.Errorf("Current() = %v, %v; want no engine and ErrNotLoaded", e, err)
	}
	if got := h.lastGoodReasons(); !slices.Equal(got, []string{deniedFreeze1}) {
		t.Errorf("reasons under the last good set = %q, want the last good policy's %q", got, deniedFreeze1)
	}
	h.waitStatus(false, ReasonPolicyError, "policy ConfigMaps: rebootgate/freeze/freeze.rego:4: rego_parse_error: ")
	if st := h.src.Status(); !strings.HasSuffix(st.Message, "; "+Consequence) {
		t.Errorf("status message %q does not end with what it means: %q", st.Message, Consequence)
	}
	ev := h.waitEvent("Warning PolicyError policy ConfigMaps: rebootgate/freeze/freeze.rego:4:", Consequence, "kind=Node")
	t.Logf("event: %s", ev)
	eventually(t, "PolicyStatus 0 and one load error", func() bool { return h.policyStatus() == 0 && h.loadErrors() == 1 })

	h.update(policyConfigMap("freeze", map[string]string{"freeze.rego": freezeV2}))
	h.waitReasons("the fixed policy", deniedFreeze2)
	h.waitStatus(true, ReasonLoaded, "")
	if got := h.policyStatus(); got != 1 {
		t.Errorf("PolicyStatus after the fix = %v, want 1", got)
	}
	for _, e := range h.events() {
		if strings.Contains(e, ReasonPolicyError) {
			t.Errorf("event after the fix: %s", e)
		}
	}
	if w := h.writes(); len(w) > 0 {
		t.Errorf("the source wrote %q; an agent writes no ConfigMap", w)
	}
}

// The summarizer (PolicyEventsOnConfigMaps) puts each error on the ConfigMap at fault,
// once, and nothing on the innocent one.
func TestCompileErrorAttributedToItsConfigMap(t *testing.T) {
	// A type error, found by the compiler after every module parsed.
	const typeError = "package rebootgate\n\ndeny contains msg if {\n\tmsg := 1 + \"x\"\n}\n"
	h := start(t, harnessOpts{cmEvents: true, objects: []*corev1.ConfigMap{
		policyConfigMap("a", map[string]string{"a.rego": freezeV1}),
		policyConfigMap("b", map[string]string{"b1.rego": "package rebootgate\n", "b2.rego": typeError}),
	}})
	h.waitEvent("Warning PolicyError rebootgate/b/b2.rego:4: rego_type_error: plus: invalid argument(s)", "kind=ConfigMap")
	h.clock.Step(DefaultConfigPollInterval) // a reload with nothing changed: no second event
	n := h.src.loads.Load()
	eventually(t, "another load", func() bool { return h.src.loads.Load() > n })
	for _, e := range h.events() {
		if strings.Contains(e, ReasonPolicyError) {
			t.Errorf("another event: %s", e)
		}
	}
}

func TestStatusesAttribution(t *testing.T) {
	set := &policySet{
		owner: map[string]string{"ns/a/a.rego": "ns/a", "ns/b/b.rego": "ns/b"},
		configMaps: map[string]*corev1.ConfigMap{
			"ns/a": {}, "ns/b": {},
		},
	}
	loc := func(file string, row int) *ast.Location { return &ast.Location{File: file, Row: row} }
	err := fmt.Errorf("wrapped: %w", &policy.CompileError{Errors: ast.Errors{
		{Code: "rego_type_error", Message: "in a", Location: loc("ns/a/a.rego", 3)},
		{Code: "rego_type_error", Message: "in the default gate", Location: loc("policies/gate.rego", 12)},
		{Code: "rego_compile_error", Message: "nowhere"},
	}})
	got := statuses(err, set)
	want := map[string]string{
		"ns/a": "ns/a/a.rego:3: rego_type_error: in a; policies/gate.rego:12: rego_type_error: in the default gate; rego_compile_error: nowhere",
		"ns/b": "policies/gate.rego:12: rego_type_error: in the default gate; rego_compile_error: nowhere",
	}
	if !maps.Equal(got, want) {
		t.Errorf("statuses = %q\nwant %q", got, want)
	}
	got = statuses(errors.New("preparing data.rebootgate.deny: boom"), set)
	if got["ns/a"] != "preparing data.rebootgate.deny: boom" || got["ns/b"] != got["ns/a"] {
		t.Errorf("a set error without modules goes to every ConfigMap; got %q", got)
	}
	if got := statuses(nil, set); !maps.Equal(got, map[string]string{"ns/a": "", "ns/b": ""}) {
		t.Errorf("no error: %q", got)
	}
}

func TestNoValidPolicyEver(t *testing.T) {
	h := start(t, harnessOpts{objects: []*corev1.ConfigMap{
		policyConfigMap("freeze", map[string]string{"freeze.rego": brokenFreeze}),
	}})
	eventually(t, "Current to report the compile error", func() bool {
		_, err := h.src.Current()
		return err != nil && strings.Contains(err.Error(), "freeze.rego:4:")
	})
	e, err := h.src.Current()
	if e != nil || !errors.Is(err, ErrNoValidPolicy) {
		t.Fatalf("Current() = %v, %v; want no engine and ErrNoValidPolicy", e, err)
	}
	if !strings.HasPrefix(err.Error(), "no valid policy has loaded: policy ConfigMaps: rebootgate/freeze/freeze.rego:4:") {
		t.Errorf("error = %q", err)
	}
	d := h.src.Decide(h.ctx, testFacts(), testTime)
	if d.Allowed || len(d.Reasons) != 1 || d.Reasons[0].Source != decision.SourceConfig || d.Reasons[0].Message != err.Error() || d.Node != testNode {
		t.Errorf("decision = %+v; want blocked by the config with %q", d, err)
	}
	if _, err := h.src.LastGood(); !errors.Is(err, ErrNoValidPolicy) {
		t.Errorf("LastGood() error = %v, want ErrNoValidPolicy", err)
	}
	h.waitEvent("no config and policy set has loaded yet, so every reboot is blocked")
	if got := h.policyStatus(); got != 0 {
		t.Errorf("PolicyStatus = %v, want 0", got)
	}
}

func TestBeforeFirstLoadEverythingIsBlocked(t *testing.T) {
	src, err := New(Config{Client: fake.NewClientset(), NodeName: testNode, Namespaces: []string{testNS}, Recorder: record.NewFakeRecorder(1)})
	if err != nil {
		t.Fatal(err)
	}
	d := src.Decide(t.Context(), testFacts(), testTime)
	if d.Allowed || len(d.Reasons) != 1 || d.Reasons[0].Source != decision.SourceEngine ||
		!strings.HasPrefix(d.Reasons[0].Message, "no valid policy has loaded: ") {
		t.Errorf("decision before Run = %+v", d)
	}
	if _, err := src.Current(); !errors.Is(err, ErrNoValidPolicy) {
		t.Errorf("Current() error = %v, want ErrNoValidPolicy", err)
	}
}

// kubeletDir lays out a config directory the way the kubelet mounts a ConfigMap:
// config.yaml -> ..data/config.yaml, ..data -> ..<version>. Updates swap ..data
// atomically.
type kubeletDir struct {
	t       *testing.T
	dir     string
	version int
}

func newKubeletDir(t *testing.T, content string) *kubeletDir {
	k := &kubeletDir{t: t, dir: t.TempDir()}
	k.write(content)
	if err := os.Symlink(filepath.Join("..data", "config.yaml"), filepath.Join(k.dir, "config.yaml")); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *kubeletDir) path() string { return filepath.Join(k.dir, "config.yaml") }

func (k *kubeletDir) write(content string) {
	k.t.Helper()
	k.version++
	version := fmt.Sprintf("..2026_11_24_10_00_%02d.%d", k.version, k.version)
	if err := os.Mkdir(filepath.Join(k.dir, version), 0o755); err != nil {
		k.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(k.dir, version, "config.yaml"), []byte(content), 0o644); err != nil {
		k.t.Fatal(err)
	}
	tmp := filepath.Join(k.dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		k.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(k.dir, "..data")); err != nil {
		k.t.Fatal(err)
	}
}

// configWithCondition is a config whose one pool has a condition that is false, so its
// message shows which config is in force.
func configWithCondition(name, expression string) string {
	return header + fmt.Sprintf(`pools:
- name: all
  conditions:
  - name: %s
    expression: %q
    message: %s is in force
`, name, expression, name)
}

func TestConfigFileChangeReloads(t *testing.T) {
	k := newKubeletDir(t, configWithCondition("v1", "false"))
	h := start(t, harnessOpts{configPath: k.path()})
	h.waitReasons("config v1", "condition/v1: v1 is in force")
	k.write(configWithCondition("v2", "false"))
	// The fake clock never fires the poll: only the fsnotify watch can see this.
	h.waitReasons("config v2 via the watch", "condition/v2: v2 is in force")
	e, err := h.src.Current()
	if err != nil || e.Config().Pools[0].Name != "all" {
		t.Fatalf("Current() = %v, %v", e, err)
	}
}

func TestConfigPollFindsLateDirectory(t *testing.T) {
	// The directory does not exist at start: no watch, no config, everything blocked.
	k := &kubeletDir{t: t, dir: filepath.Join(t.TempDir(), "config")}
	h := start(t, harnessOpts{configPath: k.path()})
	ev := h.waitEvent("Warning ConfigError config "+k.path(), "no config and policy set has loaded yet", "kind=Node")
	t.Logf("event: %s", ev)
	eventually(t, "the missing config to block every reboot", func() bool {
		got := h.reasons()
		return len(got) == 1 && strings.HasPrefix(got[0], "config: no valid policy has loaded: config "+k.path()+": ")
	})
	if err := os.Mkdir(k.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	k.write(configWithCondition("late", "false"))
	if err := os.Symlink(filepath.Join("..data", "config.yaml"), k.path()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the poll to load the late config", func() bool {
		h.clock.Step(DefaultConfigPollInterval)
		return slices.Equal(h.reasons(), []string{"condition/late: late is in force"})
	})
	// The poll also started the watch, so later updates need no poll.
	k.write(configWithCondition("watched", "false"))
	h.waitReasons("the update via the watch", "condition/watched: watched is in force")
}

// Without an inotify instance the config file is re-read every
// DegradedConfigPollInterval, not the minute of the fallback poll, and says so.
func TestConfigDegradedPoll(t *testing.T) {
	k := newKubeletDir(t, configWithCondition("v1", "false"))
	h := start(t, harnessOpts{configPath: k.path(), noInotify: true})
	h.waitReasons("config v1", "condition/v1: v1 is in force")
	eventually(t, "the config source to say it is degraded", h.src.ConfigDegraded)
	k.write(configWithCondition("v2", "false"))
	// Fake time advances a second at a time: the short poll must load v2 well before
	// the minute that the normal poll would take.
	for !slices.Equal(h.reasons(), []string{"condition/v2: v2 is in force"}) {
		if h.clock.Since(testTime) >= DefaultConfigPollInterval-15*time.Second {
			t.Fatalf("v2 not loaded %v after it was written; the short poll is every %v", h.clock.Since(testTime), DegradedConfigPollInterval)
		}
		h.clock.Step(time.Second)
		time.Sleep(20 * time.Millisecond)
	}
}

// A config update that does not load blocks every new reboot, naming the file and the
// field; the last good config stays for the reboots in progress; a good one is in force
// at once.
func TestBadConfigFailsClosed(t *testing.T) {
	k := newKubeletDir(t, configWithCondition("v1", "false"))
	h := start(t, harnessOpts{configPath: k.path(), objects: []*corev1.ConfigMap{
		policyConfigMap("freeze", map[string]string{"freeze.rego": freezeV1}),
	}})
	h.waitReasons("config v1", "condition/v1: v1 is in force", deniedFreeze1)

	for i, bad := range []struct{ name, content, want string }{
		{"unknown key", header + "pools:\n- name: all\n  colour: blue\n", "pools[0].colour"},
		{"bad CEL", configWithCondition("v2", "node.nope +"), "pools[0].conditions[0].expression"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			k.write(bad.content)
			ev := h.waitEvent("Warning ConfigError config "+k.path()+": "+bad.want, Consequence, "kind=Node")
			t.Logf("event: %s", ev)
			// The event comes from the load, before the load's end puts its outcome in force.
			want := "config: the latest config or policy update does not load: config " + k.path() + ": " + bad.want
			eventually(t, "one reason starting "+want, func() bool {
				got := h.reasons()
				return len(got) == 1 && strings.HasPrefix(got[0], want)
			})
			if got := h.lastGoodReasons(); !slices.Equal(got, []string{"condition/v1: v1 is in force", deniedFreeze1}) {
				t.Errorf("reasons under the last good set = %q; want config v1's", got)
			}
			h.waitStatus(false, ReasonConfigError, "config "+k.path()+": "+bad.want)
			// The metrics are set at the end of the load that emitted the event.
			eventually(t, "PolicyStatus 0 and one more load error", func() bool {
				return h.policyStatus() == 0 && h.loadErrors() == float64(i+1)
			})
		})
	}
	k.write(configWithCondition("v3", "false"))
	h.waitReasons("config v3", "condition/v3: v3 is in force", deniedFreeze1)
	h.waitStatus(true, ReasonLoaded, "")
	eventually(t, "PolicyStatus 1", func() bool { return h.policyStatus() == 1 })
}

// A good config with a broken policy: no new reboot (the policies are broken), and the
// reboots in progress finish under the new config with the last good policies.
func TestGoodConfigNotHeldBackByBrokenPolicy(t *testing.T) {
	k := newKubeletDir(t, configWithCondition("v1", "false"))
	h := start(t, harnessOpts{configPath: k.path(), objects: []*corev1.ConfigMap{
		policyConfigMap("freeze", map[string]string{"freeze.rego": freezeV1}),
	}})
	h.waitReasons("config v1", "condition/v1: v1 is in force", deniedFreeze1)
	h.update(policyConfigMap("freeze", map[string]string{"freeze.rego": brokenFreeze}))
	h.waitStatus(false, ReasonPolicyError, "policy ConfigMaps: rebootgate/freeze/freeze.rego:4:")
	k.write(configWithCondition("v2", "false"))
	eventually(t, "config v2 with the last good policy for the reboots in progress", func() bool {
		return slices.Equal(h.lastGoodReasons(), []string{"condition/v2: v2 is in force", deniedFreeze1})
	})
	if got := h.reasons(); len(got) != 1 || !strings.HasPrefix(got[0], "config: the latest config or policy update does not load: policy ConfigMaps: rebootgate/freeze/freeze.rego:4:") {
		t.Errorf("reasons for a new reboot = %q; want the policy error", got)
	}
}

func TestOtherNamespacesAndLabels(t *testing.T) {
	unlabelled := policyConfigMap("unlabelled", map[string]string{"x.rego": brokenFreeze})
	unlabelled.Labels = nil
	elsewhere := policyConfigMap("elsewhere", map[string]string{"x.rego": brokenFreeze})
	elsewhere.Namespace = "kube-system"
	tests := policyConfigMap("tests", map[string]string{"x_test.rego": brokenFreeze, "x.rego": freezeV1})
	h := start(t, harnessOpts{objects: []*corev1.ConfigMap{unlabelled, elsewhere, tests}})
	h.waitReasons("only the labelled ConfigMap in the agent's namespace", deniedFreeze1)
	for _, a := range h.client.Actions() {
		if l, ok := a.(k8stesting.ListAction); ok {
			if l.GetNamespace() != testNS || l.GetListRestrictions().Labels.String() != PolicyLabel+"="+PolicyLabelValue {
				t.Errorf("list in %q with selector %q; want %q with %s=%s", l.GetNamespace(), l.GetListRestrictions().Labels, testNS, PolicyLabel, PolicyLabelValue)
			}
		}
	}
}

func TestNewValidates(t *testing.T) {
	good := Config{Client: fake.NewClientset(), NodeName: testNode, Namespaces: []string{testNS}, Recorder: record.NewFakeRecorder(1)}
	for name, mutate := range map[string]func(*Config){
		"no client":         func(c *Config) { c.Client = nil },
		"no node":           func(c *Config) { c.NodeName = "" },
		"no recorder":       func(c *Config) { c.Recorder = nil },
		"no namespaces":     func(c *Config) { c.Namespaces = nil },
		"invalid namespace": func(c *Config) { c.Namespaces = []string{"Not_A_Namespace"} },
	} {
		c := good
		mutate(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := New(good); err != nil {
		t.Error(err)
	}
}

func TestInlineConfigWithoutPath(t *testing.T) {
	cfg, err := config.Parse([]byte("apiVersion: rebootgate.io/v1alpha1\nkind: RebootGateConfig\npools:\n- name: default\n  windows:\n  - days: mon\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, harnessOpts{inline: cfg})
	eventually(t, "a decision from the inline config", func() bool {
		r := h.reasons()
		return len(r) == 1 && strings.Contains(r[0], "outside every reboot window")
	})
}
