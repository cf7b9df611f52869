package policy

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// allowedInput is a complete input document on which the default gate allows the reboot
// (no windows: any time). closedWindow replaces its windows with one that never opens.
const allowedInput = `{
	"node": {"name": "node-1", "labels": {}, "annotations": {}, "taints": [], "unschedulable": false, "ready": true,
		"nodeInfo": {}, "conditions": [],
		"image": {"label": "kubernetes.azure.com/node-image-version", "value": "", "parsed": false, "error": "",
			"family": "", "sku": "", "os": "", "generation": "", "arch": "", "runtime": "", "build": "", "date": "", "patch": 0}},
	"pool": {"name": "default", "concurrency": "1", "conditions": []},
	"pods": [], "alerts": [], "errors": {"alerts": ""},
	"time": {"rfc3339": "2026-11-23T10:00:00Z", "ns": 1795428000000000000},
	"schedule": {"windows": [], "nextAllowed": ""},
	"params": {"windows": [], "blackouts": [], "podSelectors": [],
		"alerts": {"filterRegexp": "", "filterMatchOnly": false, "firingOnly": false, "blockSilenced": false},
		"nodeImage": {"families": [], "minDate": ""}, "holdAnnotation": "rebootgate.io/hold", "custom": {}}
}`

const closedWindow = `{"kind": "daily", "days": [], "startSeconds": 0, "endSeconds": 86399, "timeZone": "UTC"}`

// testInput is allowedInput, with a window that never opens if closed.
func testInput(t *testing.T, closed bool) ast.Value {
	t.Helper()
	src := allowedInput
	if closed {
		src = strings.Replace(src, `"params": {"windows": []`, `"params": {"windows": [`+closedWindow+`]`, 1)
	}
	v, err := ast.ValueFromReader(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func withDefaultGate(custom ...Module) []Module { return append(DefaultModules(), custom...) }

// compileError compiles and returns the *CompileError it must fail with.
func compileError(t *testing.T, modules []Module) *CompileError {
	t.Helper()
	g, err := Compile(t.Context(), modules)
	var ce *CompileError
	if !errors.As(err, &ce) {
		t.Fatalf("Compile = %v, %v; want a *CompileError", g, err)
	}
	if g != nil {
		t.Fatalf("a failed Compile returned a gate")
	}
	return ce
}

// deny compiles the modules and evaluates the deny set on in.
func deny(t *testing.T, modules []Module, in ast.Value) []string {
	t.Helper()
	g, err := Compile(t.Context(), modules)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := g.Deny(t.Context(), in, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// The finding: a one-line ConfigMap redefining in_window opened every window. It is
// rejected, naming the module, line and rule, and the window stays closed.
func TestOverridingInWindowIsRejectedAndTheWindowStaysClosed(t *testing.T) {
	open := Module{Name: "rebootgate/open/open.rego", Source: "package rebootgate\n\nin_window if true\n"}
	ce := compileError(t, withDefaultGate(open))
	if len(ce.Errors) != 1 || ce.Errors[0].Code != IsolationErr {
		t.Fatalf("errors = %v, want one %s", ce.Errors, IsolationErr)
	}
	for _, want := range []string{"rebootgate/open/open.rego:3: ", "rule in_window: ", "data.rebootgate.in_window belongs to the default gate"} {
		if !strings.Contains(ce.Error(), want) {
			t.Errorf("error %q does not contain %q", ce.Error(), want)
		}
	}
	// What stays in force is the gate without the module: the window is closed.
	if got := deny(t, DefaultModules(), testInput(t, true)); !slices.Equal(got, []string{"outside every reboot window"}) {
		t.Errorf("default gate, closed window: deny = %q", got)
	}
}

func TestOperatorModulesMayOnlyAddToDeny(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"helper in package rebootgate", "package rebootgate\n\nbackup_phases := {\"Running\"}\n",
			"rule backup_phases: an operator's module in package rebootgate may only add to deny"},
		{"function overriding a default-gate function", "package rebootgate\n\ndaily_open(_, _) := true\n",
			"rule daily_open: data.rebootgate.daily_open belongs to the default gate"},
		{"default deny", "package rebootgate\n\ndefault deny := set()\n", "rule deny: an operator's module may only add to data.rebootgate.deny"},
		{"complete deny", "package rebootgate\n\ndeny := set()\n", "rule deny: an operator's module may only add to data.rebootgate.deny"},
		{"boolean deny", "package rebootgate\n\ndeny if false\n", "rule deny: an operator's module may only add to data.rebootgate.deny"},
		{"deny as an object", "package rebootgate\n\ndeny[x] contains \"y\" if x := \"a\"\n", "rule deny[x]: an operator's module may only add"},
		{"deny as a function", "package rebootgate\n\ndeny(x) := x\n", "rule deny: an operator's module may only add"},
		{"sub-package under a default-gate rule", "package rebootgate.in_window\n\nx := true\n",
			"rule x: data.rebootgate.in_window belongs to the default gate"},
		{"sub-package under deny", "package rebootgate.deny\n\nx := \"open\"\n", "rule x: data.rebootgate.deny belongs to the default gate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ce := compileError(t, withDefaultGate(Module{Name: "ns/cm/custom.rego", Source: tc.src}))
			if ce.Errors[0].Code != IsolationErr || !strings.Contains(ce.Error(), "ns/cm/custom.rego:3: ") || !strings.Contains(ce.Error(), tc.want) {
				t.Errorf("error %q, want %s at ns/cm/custom.rego:3 containing %q", ce.Error(), IsolationErr, tc.want)
			}
		})
	}
}

// An operator's deny rules join the default gate's, and helpers in a package of their own
// (even one named in_window) work.
func TestCustomDenyModuleStillWorks(t *testing.T) {
	helpers := Module{Name: "ns/cm/helpers.rego", Source: `package rebootgate.custom.backup

running_phases := {"Running", "Pending"}

in_window if false
`}
	backup := Module{Name: "ns/cm/backup.rego", Source: `package rebootgate

import data.rebootgate.custom.backup

deny contains msg if {
	some pod in input.pods
	pod.phase in backup.running_phases
	msg := sprintf("backup pod %s is %s", [pod.name, pod.phase])
}

deny contains {"msg": "frozen"} if input.params.custom.freeze
`}
	modules := withDefaultGate(helpers, backup)
	if got := deny(t, modules, testInput(t, false)); len(got) != 0 {
		t.Errorf("no backup pods, open window: deny = %q", got)
	}
	in := testInput(t, true).(ast.Object)
	in.Insert(ast.StringTerm("pods"), ast.MustParseTerm(`[{"namespace": "b", "name": "nightly", "labels": {}, "phase": "Running", "ownerKind": "Job", "ownerName": "n"}]`))
	params := in.Get(ast.StringTerm("params")).Value.(ast.Object)
	params.Insert(ast.StringTerm("custom"), ast.MustParseTerm(`{"freeze": true}`))
	want := []string{"backup pod nightly is Running", "frozen", "outside every reboot window"}
	if got := deny(t, modules, in); !slices.Equal(got, want) {
		t.Errorf("deny = %q, want %q", got, want)
	}
}

// The default gate is recognised by its rules, wherever it was loaded from.
func TestDefaultGateFromDiskIsNotAnOperatorModule(t *testing.T) {
	mods, err := LoadPaths([]string{"../../policies"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Compile(t.Context(), mods); err != nil {
		t.Fatalf("policies/ from disk: %v", err)
	}
}

func TestNetworkBuiltinsRejected(t *testing.T) {
	for _, tc := range []struct{ builtin, call string }{
		{"http.send", `http.send({"method": "get", "url": "http://example.com"}).status_code == 200`},
		{"net.lookup_ip_addr", `"10.0.0.1" in net.lookup_ip_addr("example.com")`},
		{"opa.runtime", `opa.runtime().env.HOME != ""`},
		{"json.match_schema", `json.match_schema({}, {"$ref": "file:///etc/passwd"})[0]`},
		{"json.verify_schema", `json.verify_schema({"$ref": "http://example.com/s.json"})[0]`},
	} {
		t.Run(tc.builtin, func(t *testing.T) {
			src := "package rebootgate\n\ndeny contains \"x\" if {\n\t" + tc.call + "\n}\n"
			ce := compileError(t, withDefaultGate(Module{Name: "ns/cm/net.rego", Source: src}))
			want := "ns/cm/net.rego:4: " + IsolationErr + ": " + tc.builtin + " is not available to rebootgate policies"
			if !strings.Contains(ce.Error(), want) {
				t.Errorf("error %q does not contain %q", ce.Error(), want)
			}
			// The compiler's capabilities refuse it too, without the friendlier check.
			mod := ast.MustParseModuleWithOpts(src, ast.ParserOptions{RegoVersion: ast.RegoV1})
			c := ast.NewCompiler().WithCapabilities(capabilities())
			if c.Compile(map[string]*ast.Module{"net.rego": mod}); !c.Failed() || !strings.Contains(c.Errors.Error(), "undefined function "+tc.builtin) {
				t.Errorf("compiler with the capabilities: %v, want undefined function %s", c.Errors, tc.builtin)
			}
		})
	}
	if caps := capabilities(); caps.AllowNet == nil || len(caps.AllowNet) != 0 {
		t.Errorf("AllowNet = %#v, want empty (no host)", caps.AllowNet)
	}
}

// slowModule's deny rule takes minutes to evaluate.
var slowModule = Module{Name: "ns/cm/slow.rego", Source: `package rebootgate

deny contains "never reached" if {
	count([1 | some i in numbers.range(1, 30000); some j in numbers.range(1, 30000); i == j + 1]) < 0
}
`}

func TestSlowModuleIsDeniedWithTimeoutReason(t *testing.T) {
	g, err := Compile(t.Context(), withDefaultGate(slowModule))
	if err != nil {
		t.Fatal(err)
	}
	if g.EvalTimeout() != time.Second {
		t.Errorf("default EvalTimeout = %s, want 1s", g.EvalTimeout())
	}
	start := time.Now()
	msgs, err := g.Deny(t.Context(), testInput(t, false), time.Now())
	elapsed := time.Since(start)
	var te *EvalTimeoutError
	if !errors.As(err, &te) || msgs != nil {
		t.Fatalf("Deny = %q, %v; want no messages and an *EvalTimeoutError", msgs, err)
	}
	if want := "evaluating data.rebootgate.deny: policy evaluation exceeded 1s"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if elapsed > 5*time.Second {
		t.Errorf("Deny took %s with a 1s timeout", elapsed)
	}
}

func TestEvalTimeoutIsConfigurable(t *testing.T) {
	g, err := Compile(t.Context(), withDefaultGate(slowModule), WithEvalTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.Deny(t.Context(), testInput(t, false), time.Now())
	if err == nil || !strings.HasSuffix(err.Error(), "policy evaluation exceeded 50ms") {
		t.Errorf("Deny error = %v, want policy evaluation exceeded 50ms", err)
	}
	// The caller's own cancellation is not reported as the policy's timeout.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = g.Deny(ctx, testInput(t, false), time.Now())
	var te *EvalTimeoutError
	if err == nil || errors.As(err, &te) {
		t.Errorf("Deny with a cancelled context = %v, want an error that is not a timeout", err)
	}
}

// `policy test` applies the agent's isolation to the modules it loads, and still
// accepts the default gate from disk with the shipped example.
func TestRunTestsAppliesIsolation(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("open.rego", "package rebootgate\n\nin_window if true\n")
	write("open_test.rego", "package rebootgate_test\n\ntest_ok if true\n")
	var out bytes.Buffer
	_, err := RunTests(t.Context(), TestOptions{Paths: []string{dir}, DefaultGate: true, Output: &out})
	var ce *CompileError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "open.rego:3: "+IsolationErr+": rule in_window") {
		t.Errorf("RunTests = %v, want an isolation error for open.rego:3", err)
	}

	write("open.rego", "package rebootgate\n\ndeny contains \"x\" if http.send({}).status_code == 1\n")
	if _, err := RunTests(t.Context(), TestOptions{Paths: []string{dir}, Output: &out}); err == nil || !strings.Contains(err.Error(), "http.send is not available") {
		t.Errorf("RunTests with http.send = %v, want it rejected", err)
	}

	out.Reset()
	sum, err := RunTests(t.Context(), TestOptions{Paths: []string{"../../policies", "../../examples/backup-job"}, Output: &out})
	if err != nil || sum.Failed+sum.Errored != 0 || sum.Passed == 0 {
		t.Errorf("policies + examples/backup-job: %+v, %v\n%s", sum, err, out.String())
	}
}
