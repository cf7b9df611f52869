package decision

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/facts"
	"github.com/rebootgate/rebootgate/engine/policy"
	"github.com/rebootgate/rebootgate/policies"
)

const header = "apiVersion: rebootgate.io/v1alpha1\nkind: RebootGateConfig\n"

func newEngine(t testing.TB, cfgYAML string, extra ...policy.Module) *Engine {
	t.Helper()
	cfg := config.Default()
	if cfgYAML != "" {
		var err error
		if cfg, err = config.Parse([]byte(header + cfgYAML)); err != nil {
			t.Fatal(err)
		}
	}
	e, err := New(context.Background(), cfg, append(policy.DefaultModules(), extra...))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func testNode(name string, labels map[string]string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			NodeInfo:   corev1.NodeSystemInfo{BootID: "b1", KernelVersion: "6.8.0-1021-azure"},
		},
	}
}

var at = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC) // a Tuesday

func sources(d Decision) []string {
	var out []string
	for _, r := range d.Reasons {
		out = append(out, r.Source+": "+r.Message)
	}
	return out
}

func TestDefaultConfigAllowsAnyTime(t *testing.T) {
	e := newEngine(t, "")
	d := e.Decide(context.Background(), &facts.Facts{Node: testNode("n1", nil)}, at)
	if !d.Allowed || d.Pool != "default" || len(d.Reasons) != 0 || d.Node != "n1" {
		t.Fatalf("decision = %+v", d)
	}
	if d.NextAllowed != at.Format(time.RFC3339) {
		t.Errorf("nextAllowed = %q, want now", d.NextAllowed)
	}
}

func TestPoolSelection(t *testing.T) {
	e := newEngine(t, `
pools:
- name: system
  selector: 'node.labels[?"agentpool"] == optional.of("system")'
- name: strict
  selector: 'node.labels["tier"] == "db"'
- name: rest
  selector: 'node.name.startsWith("user-")'
`)
	for _, tc := range []struct {
		node   *corev1.Node
		pool   string
		reason string
	}{
		{testNode("sys-1", map[string]string{"agentpool": "system"}), "system", ""},
		{testNode("user-1", map[string]string{"tier": "web"}), "rest", ""},
		// The strict selector fails on a node without the label: the search stops there
		// rather than falling through to a later pool.
		{testNode("user-2", nil), "", "pool: pools[1] (strict) selector failed"},
		{testNode("other", map[string]string{"tier": "web"}), "", "pool: no pool selects node other"},
	} {
		d := e.Decide(context.Background(), &facts.Facts{Node: tc.node}, at)
		if d.Pool != tc.pool {
			t.Errorf("%s: pool = %q, want %q", tc.node.Name, d.Pool, tc.pool)
		}
		if tc.reason == "" != d.Allowed {
			t.Errorf("%s: allowed = %v, reasons %v", tc.node.Name, d.Allowed, sources(d))
		}
		if tc.reason != "" && (len(d.Reasons) != 1 || !strings.HasPrefix(sources(d)[0], tc.reason)) {
			t.Errorf("%s: reasons = %v, want %q", tc.node.Name, sources(d), tc.reason)
		}
	}
}

func TestConditions(t *testing.T) {
	e := newEngine(t, `
pools:
- name: p
  conditions:
  - name: ubuntu
    expression: 'node.nodeInfo.kernelVersion.endsWith("-azure")'
  - name: few-pods
    expression: 'size(pods) < 2'
    messageExpression: '"node runs " + string(size(pods)) + " pods in pool " + pool.name'
  - name: no-critical
    expression: '!alerts.exists(a, a.labels[?"severity"] == optional.of("critical"))'
    message: a critical alert is firing
  - name: quiet-hours
    expression: 'now.getHours() >= 9'
`)
	f := &facts.Facts{
		Node:   testNode("n1", nil),
		Pods:   []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, {ObjectMeta: metav1.ObjectMeta{Name: "b"}}},
		Alerts: []facts.Alert{{Name: "DiskFull", State: "firing", Labels: map[string]string{"severity": "critical"}, Silenced: true}},
	}
	d := e.Decide(context.Background(), f, at)
	want := []string{
		"condition/few-pods: node runs 2 pods in pool p",
		"condition/no-critical: a critical alert is firing",
	}
	if got := sources(d); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("reasons = %q, want %q", got, want)
	}
	if len(d.Conditions) != 4 || !d.Conditions[0].Result || d.Conditions[1].Result || !d.Conditions[3].Result {
		t.Errorf("conditions = %+v", d.Conditions)
	}
}

func TestPolicyReasonsAndCustomModules(t *testing.T) {
	custom := policy.Module{Name: "zone.rego", Source: `package rebootgate

deny contains "zone c is frozen" if input.node.labels["topology.kubernetes.io/zone"] == "c"

deny contains {"msg": sprintf("custom says %s", [input.params.custom.word])} if input.params.custom.word != ""
`}
	e := newEngine(t, `
custom: {word: hello}
pools:
- name: p
  windows:
  - days: sat
blockers:
  alerts:
    firingOnly: true
`, custom)
	f := &facts.Facts{
		Node:      testNode("n1", map[string]string{"topology.kubernetes.io/zone": "c"}),
		Alerts:    []facts.Alert{{Name: "Pending", State: "pending"}, {Name: "Firing", State: "firing"}},
		AlertsErr: errors.New("connection refused"),
	}
	d := e.Decide(context.Background(), f, at)
	want := []string{
		"policy: alert Firing is firing",
		"policy: alerts could not be checked: connection refused",
		"policy: custom says hello",
		"policy: outside every reboot window (next allowed 2026-11-28T00:00:00Z)",
		"policy: zone c is frozen",
	}
	if got := sources(d); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("reasons =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestCronWindowState(t *testing.T) {
	e := newEngine(t, `
pools:
- name: p
  windows:
  - schedule: "0 9 * * tue"
    duration: 2h
    timeZone: UTC
`)
	ev := e.Evaluate(context.Background(), &facts.Facts{Node: testNode("n1", nil)}, at)
	if !ev.Decision.Allowed {
		t.Fatalf("reasons %v", sources(ev.Decision))
	}
	s := ev.Input.String()
	for _, want := range []string{`"active": true`, `"openedAt": "2026-11-24T09:00:00Z"`, `"closesAt": "2026-11-24T11:00:00Z"`} {
		if !strings.Contains(s, want) {
			t.Errorf("input lacks %s:\n%s", want, s)
		}
	}
}

func TestNewReportsBadCELWithPoolAndCondition(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"pools:\n- name: p\n  selector: 'node.lables[\"a\"] == \"b\"'\n", `pools[0].selector: pool "p"`},
		{"pools:\n- name: p\n  selector: 'node.name'\n", `must evaluate to bool`},
		{"pools:\n- name: p\n  conditions:\n  - name: c1\n    expression: 'pods.size() >'\n", `pools[0].conditions[0].expression: pool "p" condition "c1"`},
		{"pools:\n- name: p\n  conditions:\n  - name: c1\n    expression: 'true'\n    messageExpression: '1'\n", `pools[0].conditions[0].messageExpression`},
		{"pools:\n- name: p\n  selector: 'pods.size() > 0'\n", `undeclared reference to 'pods'`},
	} {
		cfg, err := config.Parse([]byte(header + tc.yaml))
		if err != nil {
			t.Fatal(err)
		}
		_, err = New(context.Background(), cfg, policy.DefaultModules())
		var list config.ErrorList
		if !errors.As(err, &list) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error %v, want a one-line ErrorList containing %q", tc.yaml, err, tc.want)
		}
	}
}

func TestNewReportsRegoErrorsWithFileAndLine(t *testing.T) {
	bad := policy.Module{Name: "cm/broken.rego", Source: "package rebootgate\n\ndeny contains msg if {\n\tmsg := undefined_function(1)\n}\n"}
	_, err := New(context.Background(), config.Default(), append(policy.DefaultModules(), bad))
	var ce *policy.CompileError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "cm/broken.rego:4:") {
		t.Fatalf("error = %v, want a CompileError at cm/broken.rego:4", err)
	}
	syntax := policy.Module{Name: "x.rego", Source: "package rebootgate\ndeny contains msg if {"}
	if _, err := New(context.Background(), config.Default(), []policy.Module{syntax}); !errors.As(err, &ce) || !strings.Contains(err.Error(), "x.rego:") {
		t.Fatalf("error = %v, want a parse error in x.rego", err)
	}
}

// TestInputMatchesSchema checks the document Go builds against the JSON Schema the
// policies are type-checked with, so the two cannot drift apart.
func TestInputMatchesSchema(t *testing.T) {
	e := newEngine(t, `
custom: {team: sre}
pools:
- name: p
  windows:
  - days: [mon, fri]
  - days: "mon,tue"
    startTime: 9pm
    endTime: 5am
    timeZone: America/Los_Angeles
  - schedule: "0 2 8-14 * *"
    days: tue
    duration: 4h
  blackouts:
  - name: xmas
    start: "2026-12-24T00:00:00+01:00"
    end: "2026-12-27T00:00:00+01:00"
  conditions:
  - name: c
    expression: "false"
  nodeImage: {families: [AKSUbuntu], minDate: "2025-01-01"}
blockers:
  pods: {selectors: ["app in (a,b),!c,d,e!=f,g>3"]}
  alerts: {filterRegexp: "^W", filterMatchOnly: true, firingOnly: true, blockSilenced: true}
`)
	f := benchFacts(3, 3)
	f.Node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}}
	f.AlertsErr = errors.New("timeout")
	ev := e.Evaluate(context.Background(), f, at)
	var schema map[string]any
	if err := json.Unmarshal(policies.InputSchema(), &schema); err != nil {
		t.Fatal(err)
	}
	rs, err := rego.New(
		rego.Query("[ok, errs] := json.match_schema(input, data.schema)"),
		rego.Store(inmem.NewFromObject(map[string]any{"schema": schema})),
		rego.ParsedInput(ev.Input),
	).Eval(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Bindings["ok"] != true {
		t.Fatalf("input does not match policies/input.schema.json: %v\ninput: %s", rs, ev.Input)
	}
}

func TestHealthCheck(t *testing.T) {
	e := newEngine(t, `
pools:
- name: p
  healthGate:
  - name: pool-ready
    expression: 'poolNodes.all(n, n.ready)'
    messageExpression: '"not Ready: " + poolNodes.filter(n, !n.ready).map(n, n.name).join(", ")'
  - name: no-page
    expression: '!alerts.exists(a, a.labels[?"severity"] == optional.of("page"))'
    message: a paging alert fires
`)
	self := testNode("n1", nil)
	down := testNode("n2", nil)
	down.Status.Conditions[0].Status = corev1.ConditionFalse
	if ok, why := e.HealthCheck(&facts.Facts{Node: self}, []*corev1.Node{self, down}, at); ok || why != "not Ready: n2" {
		t.Errorf("with a NotReady node: ok=%v why=%q", ok, why)
	}
	alerts := []facts.Alert{{Name: "X", State: "firing", Labels: map[string]string{"severity": "page"}}}
	if ok, why := e.HealthCheck(&facts.Facts{Node: self, Alerts: alerts}, []*corev1.Node{self}, at); ok || why != "a paging alert fires" {
		t.Errorf("with a paging alert: ok=%v why=%q", ok, why)
	}
	if ok, why := e.HealthCheck(&facts.Facts{Node: self}, []*corev1.Node{self}, at); !ok {
		t.Errorf("healthy: ok=%v why=%q", ok, why)
	}
	if ok, _ := newEngine(t, "").HealthCheck(&facts.Facts{Node: self}, nil, at); !ok {
		t.Error("a pool without a health gate must pass")
	}
}

// An alert whose node labels name a node blocks only that node, by name or as an
// instance naming one of its addresses (known from the node summary's index); an alert without node labels blocks every node;
// nodeLabels [] is kured's every-alert-blocks-every-node. CEL sees the addresses too.
func TestNodeScopedAlerts(t *testing.T) {
	withIP := func(name, ip string) *corev1.Node {
		n := testNode(name, nil)
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}}
		return n
	}
	n1, n2 := withIP("n1", "10.0.0.1"), withIP("n2", "10.0.0.2")
	// The summarizer's node index tells n1 that 10.0.0.2 is n2's.
	sum, index := summarizeWithIndex(t, newEngine(t, ""), n1, n2)
	alerts := []facts.Alert{
		{Name: "KubeletDown", State: "firing", Labels: map[string]string{"alertname": "KubeletDown", "node": "n1"}},
		{Name: "NodeFilesystemFull", State: "firing", Labels: map[string]string{"alertname": "NodeFilesystemFull", "instance": "10.0.0.2:9100"}},
		{Name: "Watchdog", State: "firing", Labels: map[string]string{"alertname": "Watchdog", "severity": "none"}},
	}
	for _, tc := range []struct {
		name, cfg string
		node      *corev1.Node
		want      []string
	}{
		{"n1 default", "", n1, []string{
			"policy: alert KubeletDown is firing on this node (node=n1)",
			"policy: alert Watchdog is firing",
		}},
		{"n2 default", "", n2, []string{
			"policy: alert NodeFilesystemFull is firing on this node (instance=10.0.0.2:9100)",
			"policy: alert Watchdog is firing",
		}},
		{"n1 node label only", "blockers: {alerts: {nodeLabels: [node]}}", n1, []string{
			"policy: alert KubeletDown is firing on this node (node=n1)",
			"policy: alert NodeFilesystemFull is firing",
			"policy: alert Watchdog is firing",
		}},
		{"n2 kured", "blockers: {alerts: {nodeLabels: []}}", n2, []string{
			"policy: alert KubeletDown is firing",
			"policy: alert NodeFilesystemFull is firing",
			"policy: alert Watchdog is firing",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, tc.cfg)
			d := e.Decide(context.Background(), &facts.Facts{Node: tc.node, Alerts: alerts, Summary: sum, SummarySeenAt: at, NodeIndex: index}, at)
			if got := sources(d); strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("reasons =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
	// Once the node's own alert clears, only the others remain: n1 reboots while n2's
	// alert still fires.
	e := newEngine(t, "")
	if d := e.Decide(context.Background(), &facts.Facts{Node: n1, Alerts: alerts[1:2], Summary: sum, SummarySeenAt: at, NodeIndex: index}, at); !d.Allowed {
		t.Errorf("n1 with only n2's alert: %v", sources(d))
	}
	cel := newEngine(t, `
pools:
- name: p
  conditions:
  - name: has-ip
    expression: 'node.addresses.exists(a, a.type == "InternalIP" && a.address.startsWith("10."))'
`)
	if d := cel.Decide(context.Background(), &facts.Facts{Node: n1}, at); !d.Allowed {
		t.Errorf("CEL on node.addresses: %v", sources(d))
	}
	if d := cel.Decide(context.Background(), &facts.Facts{Node: testNode("n3", nil)}, at); d.Allowed {
		t.Error("CEL on node.addresses: a node without addresses passed")
	}
}

// kured's own alert sample: two firing alerts whose instance is a pod's address. kured
// blocks every node on them; so must the default config, whatever the node summary:
// with a fresh index they name no node, and without one (none read, stale, incomplete,
// unreadable, or written without an index) they cannot be resolved. Only an index that
// knows the address as another node's lets them through, and then they block that node.
func TestPodInstanceAlertsBlockEveryNode(t *testing.T) {
	self := testNode("n1", nil)
	self.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}}
	other := testNode("n2", nil)
	other.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.2"}}
	sample, err := facts.ParseAlerts([]byte(`{"status":"success","data":{"resultType":"vector","result":[
		{"metric":{"__name__":"ALERTS","alertname":"PodCrashing-dev","alertstate":"firing","instance":"1.2.3.4:8080","job":"kube-state-metrics","namespace":"dev","severity":"critical"},"value":[1622472933.973,"1"]},
		{"metric":{"__name__":"ALERTS","alertname":"PodRestart-dev","alertstate":"firing","instance":"1.2.3.4:1234","job":"kube-state-metrics","namespace":"qa","severity":"warning"},"value":[1622472933.973,"1"]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, "blockers: {alerts: {}}")
	if got := e.NodeIndexKeys(self, sample); !slices.Equal(got, []string{"1.2.3.4"}) {
		t.Errorf("NodeIndexKeys = %v: a pod's instance does not ask for the node index", got)
	}
	summarize := func(nodes ...*corev1.Node) facts.Facts {
		s, index := summarizeWithIndex(t, e, nodes...)
		return facts.Facts{Summary: s, SummarySeenAt: at, NodeIndex: index}
	}
	stale := summarize(self, other)
	stale.SummarySeenAt = at.Add(-2 * MaxSummaryAge)
	incomplete := summarize(self, other)
	incomplete.Summary.Errors = []string{"nodes cannot be watched: forbidden"}
	old := summarize(self, other)
	old.Summary.NodeIndex, old.NodeIndex = nil, nil
	failed := summarize(self, other)
	failed.Summary.NodeIndex, failed.Summary.NodeIndexError = nil, "writing it failed: configmaps is forbidden"
	unread := summarize(self, other)
	unread.NodeIndex, unread.NodeIndexErr = nil, errors.New(`configmaps "rebootgate-node-index-0" not found`)
	// The shard read is of the index before other joined: the summary names another hash.
	changed := summarize(self, other)
	_, changed.NodeIndex = summarizeWithIndex(t, e, self)
	podIsNode := testNode("n3", nil)
	podIsNode.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "1.2.3.4"}}

	for name, tc := range map[string]struct {
		f    facts.Facts
		want string // in each reason; "" = allowed
	}{
		"no summary read":       {facts.Facts{}, "which node it names is unknown without the node index (no node summary was read), so it blocks every node"},
		"summary unreadable":    {facts.Facts{SummaryErr: errors.New("configmaps is forbidden")}, "without the node index (configmaps is forbidden)"},
		"stale summary":         {stale, "without the node index (the node summary is stale"},
		"incomplete summary":    {incomplete, "without the node index (the node summary is incomplete"},
		"summary without index": {old, "without the node index (the node summary by summarizer-0 names no node index: its summarizer predates it)"},
		"index not written":     {failed, "without the node index (the node summary by summarizer-0 names no node index: writing it failed: configmaps is forbidden)"},
		"shard unreadable":      {unread, `without the node index (node index shard 0 of 1: configmaps "rebootgate-node-index-0" not found)`},
		"shard of another hash": {changed, "without the node index (node index shard 0 of 1 read has hash "},
		"fresh index":           {summarize(self, other), "names no node of the cluster (no node has that name or address), so it blocks every node"},
		"the address is n3's":   {summarize(self, other, podIsNode), ""},
	} {
		t.Run(name, func(t *testing.T) {
			f := tc.f
			f.Node, f.Alerts = self, sample
			d := e.Decide(context.Background(), &f, at)
			if tc.want == "" {
				if !d.Allowed {
					t.Errorf("blocked by another node's alerts: %v", sources(d))
				}
				return
			}
			if d.Allowed || len(d.Reasons) != 2 {
				t.Fatalf("allowed=%v reasons %v; want both alerts to block", d.Allowed, sources(d))
			}
			for i, alert := range []string{"PodCrashing-dev is firing (instance=1.2.3.4:8080 ", "PodRestart-dev is firing (instance=1.2.3.4:1234 "} {
				if r := d.Reasons[i]; r.Source != SourcePolicy || !strings.Contains(r.Message, "alert "+alert) || !strings.Contains(r.Message, tc.want) {
					t.Errorf("reason %d = %s: %s; want alert %s…%s", i, r.Source, r.Message, alert, tc.want)
				}
			}
		})
	}
	// The node whose address it is is blocked by both, as by its own alerts.
	d := e.Decide(context.Background(), &facts.Facts{Node: podIsNode, Alerts: sample}, at)
	if got := strings.Join(sources(d), "|"); got != "policy: alert PodCrashing-dev is firing on this node (instance=1.2.3.4:8080)|policy: alert PodRestart-dev is firing on this node (instance=1.2.3.4:1234)" {
		t.Errorf("n3 = %s", got)
	}
}

// summarizeWithIndex is the summarizer's summary of nodes and its node index.
func summarizeWithIndex(t *testing.T, e *Engine, nodes ...*corev1.Node) (*disruption.Summary, []*disruption.IndexShard) {
	t.Helper()
	s := disruption.Summarize(nodes, nil, e.Membership(at), at, "summarizer-0")
	shards, _, ref, err := disruption.BuildIndex(nodes, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.NodeIndex = ref
	return s, shards
}

// NodeIndexKeys asks for the index only for a configured node label that does not
// name the node itself; kured's nodeLabels [] never does.
func TestNodeIndexKeysFollowNodeLabels(t *testing.T) {
	n := testNode("n1", nil)
	host := newEngine(t, "blockers: {alerts: {nodeLabels: [host]}}")
	kured := newEngine(t, "blockers: {alerts: {nodeLabels: []}}")
	for _, tc := range []struct {
		e      *Engine
		labels map[string]string
		want   bool
	}{
		{host, map[string]string{"host": "n2"}, true},
		{host, map[string]string{"host": "n1"}, false},
		{host, map[string]string{"instance": "1.2.3.4:80"}, false},
		{kured, map[string]string{"instance": "1.2.3.4:80"}, false},
	} {
		if got := tc.e.NodeIndexKeys(n, []facts.Alert{{Name: "A", Labels: tc.labels}}); (len(got) > 0) != tc.want {
			t.Errorf("labels %v: NodeIndexKeys = %v, want some: %v", tc.labels, got, tc.want)
		}
	}
}
