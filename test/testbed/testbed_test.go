package testbed

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestNewUUID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a, b := NewUUID(), NewUUID()
	if !re.MatchString(a) || a == b {
		t.Fatalf("NewUUID: %q, %q", a, b)
	}
}

func TestPollTimeoutKeepsLastError(t *testing.T) {
	boom := errors.New("boom")
	err := Poll(context.Background(), 250*time.Millisecond, "thing", func(context.Context) (bool, error) { return false, boom })
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, boom) || !strings.Contains(err.Error(), "waiting for thing") {
		t.Fatalf("Poll: %v", err)
	}
	calls := 0
	err = Poll(context.Background(), time.Minute, "permanent", func(context.Context) (bool, error) {
		calls++
		return false, Permanent(boom)
	})
	if !errors.Is(err, boom) || errors.Is(err, ErrTimeout) || calls != 1 {
		t.Fatalf("Poll permanent: %v after %d calls", err, calls)
	}
	calls = 0
	err = Poll(context.Background(), time.Minute, "third time", func(context.Context) (bool, error) {
		calls++
		return calls == 3, nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Poll: %v after %d calls", err, calls)
	}
}

func TestHookScriptRecordsRequest(t *testing.T) {
	dir := t.TempDir()
	hook := filepath.Join(dir, "reboot-hook")
	req := filepath.Join(dir, "it's requests")
	if err := os.WriteFile(hook, []byte(hookScript("n1", req)), 0o755); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if out, err := exec.Command(hook, "--reason", "a b").CombinedOutput(); err != nil {
			t.Fatalf("hook: %v: %s", err, out)
		}
	}
	data, err := os.ReadFile(req)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "--reason a b\n--reason a b\n" {
		t.Fatalf("requests file %q", data)
	}
}

func TestHookScriptRecordsTime(t *testing.T) {
	dir := t.TempDir()
	hook := filepath.Join(dir, "reboot-hook")
	req := filepath.Join(dir, "requests")
	if err := os.WriteFile(hook, []byte(hookScript("n1", req)), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, ok := firstHookTime(req); ok {
		t.Fatal("a time before the hook ran")
	}
	before := time.Now()
	if out, err := exec.Command(hook).CombinedOutput(); err != nil {
		t.Fatalf("hook: %v: %s", err, out)
	}
	after := time.Now()
	time.Sleep(20 * time.Millisecond)
	if out, err := exec.Command(hook).CombinedOutput(); err != nil {
		t.Fatalf("hook: %v: %s", err, out)
	}
	at, ok := firstHookTime(req)
	if !ok || at.Before(before.Truncate(time.Millisecond)) || at.After(after) {
		t.Fatalf("first hook time %v (ok=%v), want the first call, between %v and %v", at, ok, before, after)
	}
}

func TestSubstitute(t *testing.T) {
	s := &Simulator{bed: &Bed{Kubeconfig: "/k"}}
	n := &simNode{name: "aks-user-1", sentinel: "/d/s", hook: "/d/h", dir: "/d", bootID: "b1"}
	got := s.substitute(n, "--node={node} --sentinel={sentinel} --reboot-command={reboot-hook} {dir} {kubeconfig} {boot-id}")
	want := "--node=aks-user-1 --sentinel=/d/s --reboot-command=/d/h /d /k b1"
	if got != want {
		t.Fatalf("substitute: %q, want %q", got, want)
	}
}

func TestPrefixWriter(t *testing.T) {
	var buf bytes.Buffer
	w := &prefixWriter{prefix: "n1: ", w: &buf}
	for _, s := range []string{"a\nb", "c\n", "d\n\ne"} {
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if want := "n1: a\nn1: bc\nn1: d\nn1: \nn1: e"; buf.String() != want {
		t.Fatalf("got %q, want %q", buf.String(), want)
	}
}

func TestReadEnvFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(p, []byte("KUBECONFIG=/a/kubeconfig\nPROMETHEUS_URL=http://127.0.0.1:1\nALERTMANAGER_URL=http://127.0.0.1:2\nPROMETHEUS_RULES_DIR=/r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env, err := readEnvFile(p)
	if err != nil || env["KUBECONFIG"] != "/a/kubeconfig" || env["PROMETHEUS_URL"] != "http://127.0.0.1:1" {
		t.Fatalf("readEnvFile: %v %v", env, err)
	}
	if err := os.WriteFile(p, []byte("KUBECONFIG=/a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readEnvFile(p); err == nil {
		t.Fatal("readEnvFile accepted an incomplete file")
	}
}

func TestNewNodeShape(t *testing.T) {
	n := NewNode("aks-user-x", "user", "eastus-2")
	if n.Annotations[KwokAnnotation] != "fake" || n.Labels[PoolLabel] != "user" || n.Labels[ZoneLabel] != "eastus-2" ||
		n.Labels[HostnameLabel] != "aks-user-x" || n.Status.NodeInfo.KernelVersion != DefaultKernel || n.Status.NodeInfo.BootID == "" {
		t.Fatalf("NewNode: %+v", n)
	}
	if _, managed := n.Labels[ManagedLabel]; managed {
		t.Fatal("test-made nodes must not carry the managed label")
	}
	d := NewDeployment("ns", "web", 3, map[string]string{"app": "web"}, "a", "b")
	terms := d.Spec.Template.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 || terms[0].MatchExpressions[0].Key != HostnameLabel || len(terms[0].MatchExpressions[0].Values) != 2 {
		t.Fatalf("NewDeployment affinity: %+v", terms)
	}
	if p := NewPod("ns", "p", "node-1", nil); p.Spec.NodeName != "node-1" {
		t.Fatalf("NewPod nodeName %q", p.Spec.NodeName)
	}
}

func TestMainSkipsWithoutE2E(t *testing.T) {
	if os.Getenv(EnvE2E) != "" {
		t.Skip("e2e enabled")
	}
	// Main must not touch the bed without the opt-in (m is unused then).
	if code := Main(nil); code != 0 {
		t.Fatalf("Main without %s: %d", EnvE2E, code)
	}
}

func TestMostDown(t *testing.T) {
	at := func(s int) time.Time { return time.Unix(int64(s), 0) }
	downs := []DownInterval{
		{Node: "a", From: at(0), To: at(10)},
		{Node: "b", From: at(10), To: at(20)}, // starts as a comes back: not overlapping
		{Node: "c", From: at(15)},             // still down
	}
	if n, nodes := MostDown(downs); n != 2 || strings.Join(nodes, ",") != "b,c" {
		t.Fatalf("MostDown = %d %v, want 2 [b c]", n, nodes)
	}
	if n, _ := MostDown(downs[:2]); n != 1 {
		t.Fatalf("MostDown of back-to-back reboots = %d, want 1", n)
	}
	if n, _ := MostDown(nil); n != 0 {
		t.Fatalf("MostDown(nil) = %d", n)
	}
}

// The Go harness finds the bed where the scripts put it, for every combination of
// TESTBED_STATE and TESTBED_CACHE: both read hack/testbed/lib.sh's rule.
func TestStateDirAgreesWithScripts(t *testing.T) {
	root, err := FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	for _, env := range []map[string]string{
		{},
		{EnvCache: filepath.Join(tmp, "cache")},
		{EnvState: filepath.Join(tmp, "state")},
		{EnvCache: filepath.Join(tmp, "cache"), EnvState: filepath.Join(tmp, "state")},
	} {
		t.Setenv(EnvCache, env[EnvCache])
		t.Setenv(EnvState, env[EnvState])
		cmd := exec.Command("bash", "-c", `[ -n "$TESTBED_CACHE" ] || unset TESTBED_CACHE; [ -n "$TESTBED_STATE" ] || unset TESTBED_STATE; source hack/testbed/lib.sh && printf %s "$TESTBED_STATE"`)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v: %v", env, err)
		}
		if got := StateDir(root); got != string(out) {
			t.Errorf("%v: the harness looks in %s, the scripts use %s", env, got, out)
		}
	}
}
