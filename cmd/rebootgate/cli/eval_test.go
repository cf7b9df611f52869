package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/summary"
)

func run(args ...string) (code int, stdout, stderr string) {
	return runArgv(append([]string{"/usr/local/bin/rebootgate"}, args...)...)
}

// runArgv runs a whole argv, the program name first, as main does.
func runArgv(argv ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = MainArgv(argv, &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const cfgHeader = "apiVersion: rebootgate.io/v1alpha1\nkind: RebootGateConfig\n"

func TestEvalJSONContract(t *testing.T) {
	cfg := writeFile(t, "c.yaml", cfgHeader+`pools:
- name: nightly
  windows:
  - days: mon,tue
    startTime: 9pm
    endTime: 5am
    timeZone: America/Los_Angeles
`)
	code, out, errOut := run("eval", "--config", cfg, "--node", "testdata/node.yaml", "--alerts", "testdata/alerts-am.json",
		"--at", "2019-04-04T00:49:00-07:00", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var d struct {
		Allowed bool   `json:"allowed"`
		Pool    string `json:"pool"`
		Reasons []struct {
			Source  string `json:"source"`
			Message string `json:"message"`
		} `json:"reasons"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if d.Allowed || d.Pool != "nightly" || len(d.Reasons) != 2 {
		t.Fatalf("decision = %+v", d)
	}
	// Thursday 00:49 is inside the 9pm-5am hours but Thursday is not a reboot day;
	// the silenced alert does not block, the active one does, named in its own reason.
	if !strings.HasPrefix(d.Reasons[0].Message, "alert DiskFull is firing") || !strings.HasPrefix(d.Reasons[1].Message, "outside every reboot window") {
		t.Errorf("reasons = %+v", d.Reasons)
	}
}

func TestEvalAllowedWithoutConfig(t *testing.T) {
	code, out, _ := run("eval", "--node", "testdata/node.yaml", "--pods", "testdata/pod.yaml", "-o", "json")
	if code != 0 || !strings.Contains(out, `"allowed": true`) || !strings.Contains(out, `"reasons": []`) || !strings.Contains(out, `"pool": "default"`) {
		t.Fatalf("exit %d: %s", code, out)
	}
	code, out, _ = run("eval", "--node", "testdata/node.yaml")
	if code != 0 || !strings.Contains(out, "ALLOWED") || !strings.Contains(out, "yes") {
		t.Fatalf("table: exit %d: %s", code, out)
	}
	code, out, _ = run("eval", "--node", "testdata/node.yaml", "-o", "input")
	if code != 0 || !strings.Contains(out, `"family": "AKSUbuntu"`) {
		t.Fatalf("input: exit %d: %s", code, out)
	}
}

// TestEvalSlotKey: eval shows the node's slot key (table and JSON), and a node whose
// key cannot be computed is denied with the pool, the expression and the error.
func TestEvalSlotKey(t *testing.T) {
	cfg := writeFile(t, "c.yaml", cfgHeader+"pools:\n- name: user\n  slotKey: 'node.labels[\"kubernetes.azure.com/node-image-version\"].split(\"-\")[0]'\n")
	code, out, errOut := run("eval", "--config", cfg, "--node", "testdata/node.yaml")
	if code != 0 || !strings.Contains(out, "SLOT KEY") || !strings.Contains(out, "AKSUbuntu") {
		t.Fatalf("table: exit %d: %s%s", code, out, errOut)
	}
	code, out, _ = run("eval", "--config", cfg, "--node", "testdata/node.yaml", "-o", "json")
	if code != 0 || !strings.Contains(out, `"slotKey": "AKSUbuntu"`) || !strings.Contains(out, `"allowed": true`) {
		t.Fatalf("json: exit %d: %s", code, out)
	}
	cfg = writeFile(t, "z.yaml", cfgHeader+"pools:\n- name: user\n  slotKey: topology.kubernetes.io/zone\n")
	code, out, _ = run("eval", "--config", cfg, "--node", "testdata/node.yaml", "-o", "json")
	var d struct {
		Allowed bool    `json:"allowed"`
		SlotKey *string `json:"slotKey"`
		Reasons []struct{ Source, Message string }
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("exit %d: %v: %s", code, err, out)
	}
	want := `pool "user": slot key node.labels["topology.kubernetes.io/zone"] cannot be computed for node n1: no such key: topology.kubernetes.io/zone`
	if d.Allowed || d.SlotKey != nil || len(d.Reasons) != 1 || d.Reasons[0].Source != "slotKey" || !strings.HasPrefix(d.Reasons[0].Message, want) {
		t.Errorf("decision = %+v, want denied by slotKey: %s", d, want)
	}
}

func TestEvalBadInputExits2WithOneLine(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badRego := write("bad.rego", "package rebootgate\n\ndeny contains msg if {\n  msg := nope(1)\n}\n")
	for name, tc := range map[string]struct {
		args []string
		want []string
	}{
		"bad yaml":      {[]string{"--config", write("y.yaml", "pools: [")}, []string{"y.yaml"}},
		"unknown key":   {[]string{"--config", write("k.yaml", cfgHeader+"poolz: []\n")}, []string{"k.yaml", "poolz: unknown field"}},
		"bad day":       {[]string{"--config", write("d.yaml", cfgHeader+"pools:\n- name: a\n  windows:\n  - days: funday\n")}, []string{"d.yaml", "pools[0].windows[0].days", "funday"}},
		"bad time":      {[]string{"--config", write("t.yaml", cfgHeader+"pools:\n- name: a\n  windows:\n  - startTime: 5:00pm\n")}, []string{"t.yaml", `pools[0].windows[0].startTime: "5:00pm" is not a time`}},
		"bad zone":      {[]string{"--config", write("z.yaml", cfgHeader+"pools:\n- name: a\n  windows:\n  - timeZone: Nowhere/City\n")}, []string{"z.yaml", "timeZone", "Nowhere/City"}},
		"bad cron":      {[]string{"--config", write("c.yaml", cfgHeader+"pools:\n- name: a\n  windows:\n  - schedule: '0 25 * * *'\n    duration: 1h\n")}, []string{"c.yaml", "pools[0].windows[0].schedule"}},
		"bad cel":       {[]string{"--config", write("e.yaml", cfgHeader+"pools:\n- name: a\n  conditions:\n  - name: x\n    expression: 'node.nme == \"a\"'\n")}, []string{"e.yaml", "pools[0].conditions[0].expression", `condition "x"`}},
		"bad slot key":  {[]string{"--config", write("s.yaml", cfgHeader+"pools:\n- name: a\n  slotKey: 'node.labels[\"zone\"'\n")}, []string{"s.yaml", "pools[0].slotKey", `pool "a"`}},
		"rego error":    {[]string{"--policy", badRego}, []string{"bad.rego:4"}},
		"not a node":    {[]string{"--node", "testdata/pod.yaml"}, []string{"testdata/pod.yaml", `kind: "Pod" is not a Node`}},
		"missing node":  {[]string{"--node", filepath.Join(dir, "none.yaml")}, []string{"--node", "none.yaml"}},
		"bad pods":      {[]string{"--pods", "testdata/node.yaml"}, []string{"testdata/node.yaml", "is not a Pod"}},
		"bad alerts":    {[]string{"--alerts", "testdata/node.yaml"}, []string{"testdata/node.yaml"}},
		"bad at":        {[]string{"--at", "tomorrow"}, []string{"--at", "tomorrow"}},
		"bad output":    {[]string{"-o", "xml"}, []string{"-o", "xml"}},
		"unknown flag":  {[]string{"--frobnicate"}, []string{"frobnicate"}},
		"node required": {[]string{"--node", ""}, []string{"--node"}},
	} {
		t.Run(name, func(t *testing.T) {
			args := []string{"eval", "--node", "testdata/node.yaml"}
			code, _, errOut := run(append(args, tc.args...)...)
			if code != ExitBadInput {
				t.Fatalf("exit %d, want 2; stderr %q", code, errOut)
			}
			if strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("error is not one line: %q", errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q lacks %q", errOut, w)
				}
			}
		})
	}
}

func TestPolicyTest(t *testing.T) {
	dir := t.TempDir()
	must := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	must("p.rego", "package custom\n\nallow if input.x == 1\n")
	must("p_test.rego", "package custom_test\n\nimport data.custom\n\ntest_allow if custom.allow with input as {\"x\": 1}\n\ntest_deny if not custom.allow with input as {\"x\": 2}\n")
	code, out, errOut := run("policy", "test", "-v", dir)
	if code != 0 || !strings.Contains(out, "PASS: 2/2") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	must("q_test.rego", "package custom_test\n\nimport data.custom\n\ntest_wrong if custom.allow with input as {\"x\": 3}\n")
	code, out, _ = run("policy", "test", dir)
	if code != ExitBadInput || !strings.Contains(out, "FAIL: 1/3") {
		t.Fatalf("a failing test: exit %d\n%s", code, out)
	}
}

func TestPolicyTestDefaultGate(t *testing.T) {
	dir := t.TempDir()
	src := "package rebootgate_test\n\nimport data.rebootgate\n\n" +
		"test_hold if {\n\tsome msg in rebootgate.deny with input as object.union(base, {\"node\": object.union(base.node, {\"annotations\": {\"rebootgate.io/hold\": \"x\"}})})\n\tstartswith(msg, \"node is on hold\")\n}\n\n" +
		"base := {\"node\": {\"annotations\": {}, \"labels\": {}, \"image\": {\"parsed\": false}}, \"params\": {\"windows\": [], \"blackouts\": [], \"podSelectors\": [], \"alerts\": {\"filterRegexp\": \"\"}, \"nodeImage\": {\"families\": [], \"minDate\": \"\"}, \"holdAnnotation\": \"rebootgate.io/hold\"}, \"pods\": [], \"alerts\": [], \"errors\": {\"alerts\": \"\"}, \"time\": {\"ns\": 0}, \"schedule\": {\"windows\": [], \"nextAllowed\": \"\"}}\n"
	if err := os.WriteFile(filepath.Join(dir, "hold_test.rego"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run("policy", "test", "--default-gate", dir)
	if code != 0 || !strings.Contains(out, "PASS: 1/1") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
}

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the command's output")

// golden compares out with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, out string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if out != string(want) {
		t.Errorf("output differs from %s (go test -run %s -update rewrites it):\n%s", path, t.Name(), out)
	}
}

// Offline, --node's Node (name and status.addresses) scopes the --alerts: an alert whose
// node labels name another node does not block it, one naming it (here its InternalIP
// as instance) does, and one without node labels blocks every node. nodeLabels: [] is
// kured's every-alert-blocks-every-node.
func TestEvalNodeScopedAlerts(t *testing.T) {
	args := []string{"eval", "--node", "testdata/node-scoped.yaml", "--alerts", "testdata/alerts-scoped.json", "--at", "2026-11-24T12:00:00Z"}
	code, out, errOut := run(args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	golden(t, "eval-node-scoped.golden", out)

	reasons := func(extra ...string) []string {
		t.Helper()
		_, msgs := evalReasons(t, append(append(append([]string{}, args...), extra...), "-o", "json")...)
		return msgs
	}
	kured := writeFile(t, "kured.yaml", cfgHeader+"blockers:\n  alerts:\n    nodeLabels: []\n")
	if got, want := reasons("--config", kured), []string{
		"alert EtcdHighFsyncDurations is firing", "alert KubeNodeNotReady is firing", "alert NodeFilesystemAlmostFull is firing",
	}; !slices.Equal(got, want) {
		t.Errorf("nodeLabels []: reasons = %q, want %q", got, want)
	}
	nodeOnly := writeFile(t, "node.yaml", cfgHeader+"blockers:\n  alerts:\n    nodeLabels: [node]\n")
	if got, want := reasons("--config", nodeOnly), []string{
		"alert EtcdHighFsyncDurations is firing", "alert NodeFilesystemAlmostFull is firing",
	}; !slices.Equal(got, want) {
		t.Errorf("nodeLabels [node]: reasons = %q, want %q", got, want)
	}
	// aks-user-1 learns from --node-summary's node index that 10.224.0.4 is aks-user-0;
	// without it, that instance cannot be resolved and blocks it too (fail closed).
	other := writeFile(t, "n.yaml", "apiVersion: v1\nkind: Node\nmetadata: {name: aks-user-1}\nstatus:\n  addresses: [{type: InternalIP, address: 10.224.0.5}]\n")
	args[2] = other
	if got, want := reasons("--node-summary", "testdata/node-summary.yaml"), []string{
		"alert EtcdHighFsyncDurations is firing", "alert KubeNodeNotReady is firing on this node (node=aks-user-1)",
	}; !slices.Equal(got, want) {
		t.Errorf("aks-user-1: reasons = %q, want %q", got, want)
	}
	if got, want := reasons(), []string{
		"alert EtcdHighFsyncDurations is firing", "alert KubeNodeNotReady is firing on this node (node=aks-user-1)",
		"alert NodeFilesystemAlmostFull is firing (instance=10.224.0.4:9100 is not this node's name or address, and which node it names is unknown without the node index (no node summary was read), so it blocks every node)",
	}; !slices.Equal(got, want) {
		t.Errorf("aks-user-1 without --node-summary: reasons = %q, want %q", got, want)
	}
}

// kured's alert sample with a config file's default nodeLabels: two firing alerts whose
// instance is a pod's address block every node, as they do in kured — offline without
// --node-summary (no index: fail closed), and with it (the address is no node's). A
// node index that knows the address as another node's lets them through.
func TestEvalPodInstanceAlertsBlock(t *testing.T) {
	cfg := writeFile(t, "c.yaml", cfgHeader+"blockers:\n  alerts: {}\n")
	args := []string{"eval", "--config", cfg, "--node", "testdata/node-scoped.yaml", "--alerts", "testdata/alerts-kured-sample.json", "--at", "2026-11-24T12:00:00Z", "-o", "json"}
	decide := func(extra ...string) (bool, []string) {
		t.Helper()
		return evalReasons(t, append(append([]string{}, args...), extra...)...)
	}
	for name, tc := range map[string]struct {
		extra []string
		why   string
	}{
		"without --node-summary": {nil, "is not this node's name or address, and which node it names is unknown without the node index (no node summary was read), so it blocks every node)"},
		"summary without index":  {[]string{"--node-summary", "testdata/node-summary.json"}, "is not this node's name or address, and which node it names is unknown without the node index (the node summary by rebootgate-summarizer-7d9f-abcde names no node index: its summarizer predates it), so it blocks every node)"},
		"with --node-summary":    {[]string{"--node-summary", "testdata/node-summary.yaml"}, "names no node of the cluster (no node has that name or address), so it blocks every node)"},
	} {
		allowed, msgs := decide(tc.extra...)
		want := []string{"alert PodCrashing-dev is firing (instance=1.2.3.4:8080 " + tc.why, "alert PodRestart-dev is firing (instance=1.2.3.4:1234 " + tc.why}
		if allowed || !slices.Equal(msgs, want) {
			t.Errorf("%s: allowed %v, reasons %q; want %q", name, allowed, msgs, want)
		}
	}
	nodes := summaryNodes()
	nodes[9].Status.Addresses[0].Address = "1.2.3.4"
	podIsNode := writeFile(t, "summary.yaml", summaryList(t, nodes))
	if allowed, msgs := decide("--node-summary", podIsNode); !allowed {
		t.Errorf("1.2.3.4 is aks-user-9's address, yet aks-user-0 is blocked: %q", msgs)
	}
	// A shard the summary does not name (the index changed between the two reads):
	// fail closed, saying so.
	stale := strings.Replace(summaryList(t, summaryNodes()), "10.224.0.13", "10.224.0.99", 1)
	if allowed, msgs := decide("--node-summary", writeFile(t, "stale.yaml", stale)); allowed || len(msgs) != 2 || !strings.Contains(msgs[0], "node index shard 0 of 1 read has hash ") {
		t.Errorf("a shard of another hash: allowed %v, %q", allowed, msgs)
	}
}

// summaryNodes are the nodes of testdata/node-summary.json: aks-user-0 to 9, InternalIPs
// 10.224.0.4 to 13.
func summaryNodes() []*corev1.Node {
	nodes := make([]*corev1.Node, 10)
	for i := range nodes {
		nodes[i] = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("aks-user-", i)},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprint("10.224.0.", 4+i)}}}}
	}
	return nodes
}

// summaryList is what `kubectl get cm -l 'app.kubernetes.io/component in
// (node-summary,node-index)' -o yaml` prints for testdata/node-summary.json published
// with the node index of nodes.
func summaryList(t *testing.T, nodes []*corev1.Node) string {
	t.Helper()
	data, err := os.ReadFile("testdata/node-summary.json")
	if err != nil {
		t.Fatal(err)
	}
	var sum disruption.Summary
	if err := json.Unmarshal(data, &sum); err != nil {
		t.Fatal(err)
	}
	_, shardData, ref, err := disruption.BuildIndex(nodes, 0)
	if err != nil {
		t.Fatal(err)
	}
	sum.NodeIndex = ref
	enc, err := json.Marshal(sum)
	if err != nil {
		t.Fatal(err)
	}
	list := corev1.ConfigMapList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "List"}}
	cm := func(name, component, key string, data []byte) corev1.ConfigMap {
		return corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "rebootgate", Labels: map[string]string{"app.kubernetes.io/name": "rebootgate", "app.kubernetes.io/component": component}},
			Data:       map[string]string{key: string(data)}}
	}
	for i, d := range shardData {
		list.Items = append(list.Items, cm(summary.IndexConfigMapName(i), "node-index", summary.IndexDataKey, d))
	}
	list.Items = append(list.Items, cm(summary.ConfigMapName, "node-summary", summary.DataKey, enc))
	out, err := yaml.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// testdata/node-summary.yaml is the summary with the node index of its nodes, as
// kubectl prints them.
func TestNodeSummaryListIsCurrent(t *testing.T) {
	golden(t, "node-summary.yaml", summaryList(t, summaryNodes()))
}

// evalReasons runs eval with args (-o json among them) and returns whether it allowed
// the reboot and the reasons' messages; any exit but 0 fails the test.
func evalReasons(t *testing.T, args ...string) (allowed bool, msgs []string) {
	t.Helper()
	code, out, errOut := run(args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var d struct {
		Allowed bool                       `json:"allowed"`
		Reasons []struct{ Message string } `json:"reasons"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, r := range d.Reasons {
		msgs = append(msgs, r.Message)
	}
	return d.Allowed, msgs
}

func TestEvalNodeSummaryOffline(t *testing.T) {
	cfg := writeFile(t, "c.yaml", cfgHeader+`pools:
- name: user
  concurrency: 2
  budget:
    countOthers: true
`)
	args := []string{"eval", "--config", cfg, "--node", "testdata/node.yaml", "--at", "2026-12-24T10:00:00Z", "-o", "json"}
	code, out, errOut := run(args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, `the disruption budget of pool user cannot be checked, so no reboot starts: no node summary was read`) {
		t.Errorf("without --node-summary the budget does not fail closed:\n%s", out)
	}
	// The summary file is taken as observed at --at (three weeks after it was written).
	code, out, errOut = run(append(args, "--node-summary", "testdata/node-summary.json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := `the disruption budget of pool user is used up: it allows 2 unavailable node(s) and 2 are unavailable for other reasons: aks-user-3 (taint karpenter.sh/disrupted), aks-user-7 (cordoned)`
	if !strings.Contains(out, want) || strings.Contains(out, "stale") {
		t.Errorf("decision lacks %q:\n%s", want, out)
	}
	code, _, errOut = run(append(args, "--node-summary", "testdata/node.yaml")...)
	if code != ExitBadInput || !strings.Contains(errOut, "testdata/node.yaml: not a node summary") {
		t.Errorf("a node file as summary: exit %d, %q", code, errOut)
	}
}
