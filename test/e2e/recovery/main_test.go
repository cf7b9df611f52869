// Package recovery injects faults into the middle of a node's reboot on the test bed —
// API writes denied, the agent killed and restarted under a broken config, drains that
// cannot finish, reboots that never happen, a sentinel that survives the reboot, a node
// that goes NotReady while it soaks — and checks that the real agent recovers: the node
// ends uncordoned with its slot released, failures back off and end in a hold, and the
// agent says so (Events, metrics, /healthz). Issue 8, findings 5, 6, 7 and 9.
//
// Each test has its own node, namespace, pool and admission policy, so they run in
// parallel.
//
// It runs only under `make test-e2e` (REBOOTGATE_E2E set). REBOOTGATE_BIN runs it
// against a prebuilt binary (e.g. an older commit's, to see the tests fail there);
// RECOVERY_DROP_UNKNOWN_FLAGS=1 then leaves out the flags that binary does not know
// (--max-failures, --failure-backoff), so that what fails is the behaviour, not the
// command line.
package recovery

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"

	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// binary is the rebootgate binary under test.
var binary string

func TestMain(m *testing.M) { os.Exit(testbed.MainWithBinary(m, &binary)) }

// envDropUnknownFlags leaves out flags the binary under test does not know.
const envDropUnknownFlags = "RECOVERY_DROP_UNKNOWN_FLAGS"

// env is one test's world: one fresh node in its own pool, a namespace for its slot
// Leases, a config file, and (once started) the simulator running the agent.
type env struct {
	t    *testing.T
	bed  *testbed.Bed
	ns   string
	id   string
	node string
	dir  string
	cfg  string // config file path
	sim  *testbed.Simulator
}

func newEnv(t *testing.T) *env {
	bed := testbed.Shared(t)
	e := &env{t: t, bed: bed, ns: bed.Namespace(t), id: strings.ToLower(testbed.NewUUID()[:6]), dir: t.TempDir()}
	e.node = "rec-" + e.id
	n := testbed.NewNode(e.node, "user", "eastus-1")
	n.Labels["e2e-run"] = e.id
	bed.CreateNode(t, n)
	e.cfg = filepath.Join(e.dir, "config.yaml")
	e.writeConfig("")
	return e
}

// writeConfig writes a config whose one pool (concurrency 1) holds this test's node;
// poolExtra is YAML appended to the pool (indent 2).
func (e *env) writeConfig(poolExtra string) {
	doc := fmt.Sprintf(`apiVersion: rebootgate.io/v1alpha1
kind: RebootGateConfig
pools:
- name: rec
  selector: 'node.labels[?"e2e-run"] == optional.of("%s")'
  concurrency: 1
%s`, e.id, poolExtra)
	if err := os.WriteFile(e.cfg, []byte(doc), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// args is the agent's command line: short timeouts for the bed, metrics on the node's
// {port}, then extra (later flags win).
func (e *env) args(extra ...string) []string {
	args := []string{
		binary, "agent",
		"--node-id", testbed.PhNode,
		"--namespace", e.ns,
		"--kubeconfig", testbed.PhKubeconfig,
		"--config", e.cfg,
		"--reboot-sentinel", testbed.PhSentinel,
		"--reboot-command", testbed.PhRebootHook,
		"--nsenter=false",
		"--metrics-host", "127.0.0.1",
		"--metrics-port", testbed.PhPort,
		"--lock-ttl", "30s",
		"--lock-jitter", "100ms",
		"--recheck-interval", "2s",
		"--sentinel-period", "1s",
		"--reboot-timeout", "20s",
		"--ready-timeout", "1m",
		"--loop-backoff", "2m",
		"--drain-timeout", "30s",
		"--drain-retry-delay", "1s",
		"--failure-backoff", "2s",
		"--log-level", "debug",
	}
	return e.filterFlags(append(args, extra...))
}

var (
	helpOnce  sync.Once
	helpFlags map[string]bool
	helpErr   error
)

// knownFlags lists the flags `rebootgate agent --help` documents.
func knownFlags() (map[string]bool, error) {
	helpOnce.Do(func() {
		out, err := exec.Command(binary, "agent", "--help").CombinedOutput()
		if err != nil {
			helpErr = fmt.Errorf("%s agent --help: %w\n%s", binary, err, out)
			return
		}
		helpFlags = map[string]bool{}
		for _, m := range regexp.MustCompile(`--([a-z0-9][a-z0-9-]*)`).FindAllStringSubmatch(string(out), -1) {
			helpFlags[m[1]] = true
		}
	})
	return helpFlags, helpErr
}

// ifKnown returns the flag and its value when the binary has the flag, else nothing:
// for tuning that only speeds a test up (a shorter bound than the default).
func (e *env) ifKnown(flag, value string) []string {
	known, err := knownFlags()
	if err != nil {
		e.t.Fatal(err)
	}
	if !known[strings.TrimPrefix(flag, "--")] {
		return nil
	}
	return []string{flag, value}
}

// filterFlags fails the test on a flag the binary does not know — the contract's flags
// are part of what is tested — unless RECOVERY_DROP_UNKNOWN_FLAGS is set, which leaves
// them out (with their values) to run the behaviour checks against an older binary.
func (e *env) filterFlags(args []string) []string {
	known, err := knownFlags()
	if err != nil {
		e.t.Fatal(err)
	}
	out := args[:2:2]
	for i := 2; i < len(args); i++ {
		a := args[i]
		name, _, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || known[name] {
			out = append(out, a)
			continue
		}
		if os.Getenv(envDropUnknownFlags) == "" {
			e.t.Fatalf("the agent under test (%s) has no flag --%s", binary, name)
		}
		e.t.Logf("%s: leaving out --%s, unknown to %s", envDropUnknownFlags, name, binary)
		if !hasValue && i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
			i++
		}
	}
	return out
}

// start runs the agent on the node under the simulator (FlipReady: NotReady while
// down). cfg.Command defaults to e.args().
func (e *env) start(cfg testbed.SimConfig) *testbed.Simulator {
	e.t.Helper()
	if cfg.Command == nil {
		cfg.Command = e.args()
	}
	cfg.Nodes = []string{e.node}
	if cfg.RebootDelay == 0 {
		cfg.RebootDelay = time.Second
	}
	cfg.FlipReady = true
	e.sim = e.bed.StartSimulator(e.t, cfg)
	e.t.Cleanup(func() {
		if e.t.Failed() {
			if data, err := os.ReadFile(e.sim.LogPath(e.node)); err == nil {
				e.t.Logf("--- agent log of %s (last 6 KiB) ---\n%s", e.node, tail(string(data), 6144))
			}
		}
	})
	return e.sim
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

func (e *env) requireReboot() {
	e.t.Helper()
	if err := e.sim.SetRebootRequired(e.node, true); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) get() *corev1.Node {
	e.t.Helper()
	n, err := e.bed.Client.CoreV1().Nodes().Get(context.Background(), e.node, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) waitNode(timeout time.Duration, what string, cond func(*corev1.Node) bool) *corev1.Node {
	e.t.Helper()
	n, err := e.bed.WaitNode(context.Background(), e.node, timeout, what, cond)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func phaseOf(n *corev1.Node) string { return n.Annotations[nodestate.AnnotationPhase] }

// heldLeases names the Leases of the test's namespace that this node holds.
func (e *env) heldLeases(ctx context.Context) ([]string, error) {
	list, err := e.bed.Client.CoordinationV1().Leases(e.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var held []string
	for _, l := range list.Items {
		if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == e.node {
			held = append(held, l.Name)
		}
	}
	return held, nil
}

// settled reports whether the node is out of the pipeline: schedulable, no phase
// annotation, no slot Lease held.
func (e *env) settled(ctx context.Context) (bool, string, error) {
	n, err := e.bed.Client.CoreV1().Nodes().Get(ctx, e.node, metav1.GetOptions{})
	if err != nil {
		return false, "", err
	}
	held, err := e.heldLeases(ctx)
	if err != nil {
		return false, "", err
	}
	state := fmt.Sprintf("unschedulable=%v phase=%q leases held=%v", n.Spec.Unschedulable, phaseOf(n), held)
	return !n.Spec.Unschedulable && phaseOf(n) == "" && len(held) == 0, state, nil
}

// waitSettled waits until the node is uncordoned, idle and holds no slot.
func (e *env) waitSettled(timeout time.Duration, why string) {
	e.t.Helper()
	var last string
	err := testbed.Poll(context.Background(), timeout, e.node+" uncordoned, idle and holding no slot "+why, func(ctx context.Context) (bool, error) {
		ok, state, err := e.settled(ctx)
		if err == nil {
			last = state
		}
		return ok, err
	})
	if err != nil {
		e.t.Fatalf("%v; last seen: %s", err, last)
	}
}

// events lists the node's Events with reason, oldest first.
func (e *env) events(ctx context.Context, reason string) ([]corev1.Event, error) {
	sel := fields.Set{"involvedObject.name": e.node, "reason": reason}.AsSelector().String()
	list, err := e.bed.Client.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(list.Items, func(a, b corev1.Event) int { return eventTime(a).Compare(eventTime(b)) })
	return list.Items, nil
}

func eventTime(ev corev1.Event) time.Time {
	for _, t := range []time.Time{ev.EventTime.Time, ev.LastTimestamp.Time, ev.FirstTimestamp.Time, ev.CreationTimestamp.Time} {
		if !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}

// waitEvent waits for an Event with reason on the node and returns it.
func (e *env) waitEvent(reason string, timeout time.Duration) corev1.Event {
	e.t.Helper()
	var got corev1.Event
	err := testbed.Poll(context.Background(), timeout, "a "+reason+" Event on "+e.node, func(ctx context.Context) (bool, error) {
		evs, err := e.events(ctx, reason)
		if err != nil || len(evs) == 0 {
			return false, err
		}
		got = evs[len(evs)-1]
		return true, nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return got
}

// agentLog is the node's agent log so far (every start).
func (e *env) agentLog() string {
	data, _ := os.ReadFile(e.sim.LogPath(e.node))
	return string(data)
}

// waitLog waits until the agent log holds what.
func (e *env) waitLog(what string, timeout time.Duration) {
	e.t.Helper()
	err := testbed.Poll(context.Background(), timeout, fmt.Sprintf("%q in the agent log of %s", what, e.node), func(context.Context) (bool, error) {
		return strings.Contains(e.agentLog(), what), nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// endpoint GETs a path of the agent's metrics server: status code and body.
func (e *env) endpoint(ctx context.Context, path string) (int, string, error) {
	url := fmt.Sprintf("http://127.0.0.1:%d%s", e.sim.Port(e.node), path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, string(body), err
}

// metric sums the samples of the agent's /metrics named name that carry every label
// in labels (others may be present; e.g. every reason of a counter); ok=false when
// there is none.
func (e *env) metric(ctx context.Context, name string, labels map[string]string) (sum float64, ok bool, err error) {
	code, body, err := e.endpoint(ctx, "/metrics")
	if err != nil {
		return 0, false, err
	}
	if code != http.StatusOK {
		return 0, false, fmt.Errorf("/metrics: HTTP %d", code)
	}
	for _, line := range strings.Split(body, "\n") {
		rest, found := strings.CutPrefix(line, name)
		if !found || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		match := true
		for k, v := range labels {
			match = match && strings.Contains(rest, k+`="`+v+`"`)
		}
		fields := strings.Fields(rest)
		if !match || len(fields) == 0 {
			continue
		}
		f, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return 0, false, fmt.Errorf("metric %q: %w", line, err)
		}
		sum, ok = sum+f, true
	}
	return sum, ok, nil
}

// patchAnnotations merge-patches the node's annotations (nil deletes).
func (e *env) patchAnnotations(ctx context.Context, ann map[string]*string, dryRun bool) error {
	parts := make([]string, 0, len(ann))
	for k, v := range ann {
		val := "null"
		if v != nil {
			val = strconv.Quote(*v)
		}
		parts = append(parts, strconv.Quote(k)+":"+val)
	}
	patch := `{"metadata":{"annotations":{` + strings.Join(parts, ",") + `}}}`
	opts := metav1.PatchOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err := e.bed.Client.CoreV1().Nodes().Patch(ctx, e.node, types.MergePatchType, []byte(patch), opts)
	return err
}

func ptr[T any](v T) *T { return &v }

// record starts recording the node's cordons, phase and hold annotation.
func (e *env) record() *testbed.NodeRecorder {
	e.t.Helper()
	return e.bed.RecordNode(e.t, e.node, nodestate.AnnotationPhase, nodestate.AnnotationHold)
}

// denyFinish installs a ValidatingAdmissionPolicy, bound with action Deny, that
// refuses every update of the node that removes its phase annotation (the patch that
// finishes a reboot: uncordon and clear the state) or the canary annotation the test
// uses to see the policy in force. It returns once a dry-run removal of the canary is
// denied, and a function that deletes the policy and returns once the same dry run is
// allowed again.
func (e *env) denyFinish(message string) (clear func()) {
	e.t.Helper()
	ctx := context.Background()
	name := "e2e-deny-finish-" + e.id
	const canary = "e2e.rebootgate.io/admission-canary"
	removes := func(key string) string {
		return fmt.Sprintf(`!(has(oldObject.metadata.annotations) && %[1]q in oldObject.metadata.annotations) || (has(object.metadata.annotations) && %[1]q in object.metadata.annotations)`, key)
	}
	fail := admissionv1.Fail
	policy := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				ResourceNames: []string{e.node},
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Update},
					Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"nodes"}},
				},
			}}},
			Validations: []admissionv1.Validation{
				{Expression: removes(nodestate.AnnotationPhase), Message: message},
				{Expression: removes(canary), Message: message + " (canary)"},
			},
		},
	}
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: name, ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny}},
	}
	adm := e.bed.Client.AdmissionregistrationV1()
	remove := func() {
		for _, err := range []error{
			adm.ValidatingAdmissionPolicyBindings().Delete(context.Background(), name, metav1.DeleteOptions{}),
			adm.ValidatingAdmissionPolicies().Delete(context.Background(), name, metav1.DeleteOptions{}),
		} {
			if err != nil && !apierrors.IsNotFound(err) {
				e.t.Errorf("removing the admission policy %s: %v", name, err)
			}
		}
	}
	e.t.Cleanup(remove)
	if err := e.patchAnnotations(ctx, map[string]*string{canary: ptr("1")}, false); err != nil {
		e.t.Fatal(err)
	}
	if _, err := adm.ValidatingAdmissionPolicies().Create(ctx, policy, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := adm.ValidatingAdmissionPolicyBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	dryRemoveCanary := func(ctx context.Context) error {
		return e.patchAnnotations(ctx, map[string]*string{canary: nil}, true)
	}
	if err := testbed.Poll(ctx, time.Minute, "the admission policy in force", func(ctx context.Context) (bool, error) {
		err := dryRemoveCanary(ctx)
		return err != nil && strings.Contains(err.Error(), message), nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return func() {
		e.t.Helper()
		remove()
		if err := testbed.Poll(ctx, time.Minute, "the admission policy gone", func(ctx context.Context) (bool, error) {
			return dryRemoveCanary(ctx) == nil, nil
		}); err != nil {
			e.t.Fatal(err)
		}
	}
}
