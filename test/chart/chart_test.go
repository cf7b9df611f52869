package chart

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/rebootgate/rebootgate/cmd/rebootgate/cli"
	"github.com/rebootgate/rebootgate/engine/config"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml from helm template")

type env struct {
	root, chart, helm string
}

func setup(t *testing.T) env {
	t.Helper()
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	helm, ok := Helm(root)
	if !ok {
		t.Skipf("no helm at %s and $HELM unset: run `make test-chart`", helm)
	}
	return env{root: root, chart: Dir(root), helm: helm}
}

func (e env) render(t *testing.T, args ...string) []Object {
	t.Helper()
	out, err := Template(e.helm, e.chart, Release, Namespace, args...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Split(out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func valuesFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.values.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.values.yaml (%v)", err)
	}
	return files
}

func caseName(file string) string { return strings.TrimSuffix(filepath.Base(file), ".values.yaml") }

func TestLint(t *testing.T) {
	e := setup(t)
	for _, args := range append([][]string{nil}, func() [][]string {
		var out [][]string
		for _, f := range valuesFiles(t) {
			out = append(out, []string{"-f", f})
		}
		return out
	}()...) {
		cmd := exec.Command(e.helm, append([]string{"lint", "--strict", e.chart}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("helm lint --strict %v: %v\n%s", args, err, out)
		}
	}
}

// TestGolden compares `helm template` with testdata/<case>.golden.yaml.
func TestGolden(t *testing.T) {
	e := setup(t)
	for _, f := range valuesFiles(t) {
		t.Run(caseName(f), func(t *testing.T) {
			got, err := Template(e.helm, e.chart, Release, Namespace, "-f", f)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", caseName(f)+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./test/chart/ -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("helm template -f %s differs from %s (go test ./test/chart/ -update to accept):\n%s", f, golden, lineDiff(string(want), string(got)))
			}
		})
	}
}

// lineDiff shows the first differing lines, enough to see what changed.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 20; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n  - " + wl + "\n  + " + gl + "\n")
			shown++
		}
	}
	return b.String()
}

// expectedRules is the whole grant: any change to the RBAC must change this list too.
// indexConfigMaps are the node index shards' ConfigMaps, which the agents read and the
// summarizer writes: rebootgate-node-index-0 to 15 (engine/disruption.MaxIndexShards).
var indexConfigMaps = func() string {
	names := make([]string, 16)
	for i := range names {
		names[i] = fmt.Sprint("rebootgate-node-index-", i)
	}
	return strings.Join(names, " ")
}()

var (
	expectedClusterRules = []string{
		`"" nodes [get list watch patch]`,
		`"" nodes/status [patch]`,
		`"" pods [get list watch]`,
		`"" pods/eviction [create]`,
		`"apps" daemonsets [get]`,
		`"" events [create patch]`,
	}
	expectedRoleRules = []string{
		`"coordination.k8s.io" leases [get list watch create update delete]`,
		`"" configmaps [list watch]`,
		`"" configmaps [get] named [rebootgate-node-summary ` + indexConfigMaps + `]`,
	}
	expectedPolicyRoleRules = []string{
		`"" configmaps [list watch]`,
	}
	// With configuration.kuredLock, on kured's DaemonSet alone.
	expectedKuredLockRules = []string{
		`"apps" daemonsets [get list watch update] named [kured]`,
	}
	// The summarizer's: medik8s' Leases cluster-wide (summarizer.medik8sLeaseAccess
	// cluster, the default) or by a Role in their namespace (namespace).
	// Events only where it writes them (its namespace and the policy namespaces), never
	// cluster-wide.
	expectedSummarizerClusterRules = []string{
		`"" nodes [list watch]`,
		`"coordination.k8s.io" leases [list watch]`,
	}
	expectedSummarizerRoleRules = []string{
		`"" configmaps [list watch create]`,
		`"" configmaps [get update] named [rebootgate-node-summary ` + indexConfigMaps + `]`,
		`"" events [create patch]`,
		`"coordination.k8s.io" leases [create]`,
		`"coordination.k8s.io" leases [get update] named [rebootgate-summarizer]`,
	}
	expectedSummarizerPolicyRoleRules = []string{
		`"" configmaps [list watch]`,
		`"" events [create patch]`,
	}
	expectedSummarizerMedik8sRules = []string{
		`"coordination.k8s.io" leases [list watch]`,
	}
)

// expectedRules is the whole grant of one rendered ClusterRole or Role, by its kind, name
// and namespace; nil for a role the chart should not render.
func expectedRules(kind, name, namespace string, medik8sByRole bool) []string {
	switch {
	case kind == "ClusterRole" && name == Release:
		return expectedClusterRules
	case kind == "ClusterRole" && name == Release+"-summarizer":
		if medik8sByRole {
			return expectedSummarizerClusterRules[:1]
		}
		return expectedSummarizerClusterRules
	case kind != "Role":
	case name == Release && namespace == Namespace:
		return expectedRoleRules
	case name == Release+"-summarizer" && namespace == Namespace:
		return expectedSummarizerRoleRules
	case name == Release+"-summarizer-medik8s" && medik8sByRole:
		return expectedSummarizerMedik8sRules
	case name == Release+"-kured-lock":
		return expectedKuredLockRules
	case name == Release+"-policies" && namespace != Namespace:
		return expectedPolicyRoleRules
	case name == Release+"-summarizer-policies" && namespace != Namespace:
		return expectedSummarizerPolicyRoleRules
	}
	return nil
}

func ruleStrings(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				rule := `"` + g + `" ` + res + " [" + strings.Join(r.Verbs, " ") + "]"
				if len(r.ResourceNames) > 0 {
					rule += " named [" + strings.Join(r.ResourceNames, " ") + "]"
				}
				out = append(out, rule)
			}
		}
	}
	return out
}

// TestRBACLeastPrivilege: no `*` anywhere in any RBAC object, and exactly the expected
// rules, for every values file and with medik8s' Leases granted by a Role.
func TestRBACLeastPrivilege(t *testing.T) {
	e := setup(t)
	cases := map[string][]string{"medik8s by role": {"--set", "summarizer.medik8sLeaseAccess=namespace"}}
	for _, f := range valuesFiles(t) {
		cases[caseName(f)] = []string{"-f", f}
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			objs := e.render(t, args...)
			medik8sByRole := name == "medik8s by role"
			var roles int
			for _, o := range objs {
				switch o.Kind {
				case "ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding":
				default:
					continue
				}
				if bytes.Contains(o.YAML, []byte("*")) {
					t.Errorf("%s %s contains '*':\n%s", o.Kind, o.Name, o.YAML)
				}
				if o.Kind != "ClusterRole" && o.Kind != "Role" {
					continue
				}
				roles++
				var role rbacv1.ClusterRole // Role has the same rules shape
				if err := yaml.UnmarshalStrict(o.YAML, &role); err != nil {
					t.Fatal(err)
				}
				for _, r := range role.Rules {
					if len(r.NonResourceURLs) > 0 {
						t.Errorf("%s %s: unexpected nonResourceURLs in %+v", o.Kind, o.Name, r)
					}
				}
				got := ruleStrings(role.Rules)
				want := expectedRules(o.Kind, o.Name, o.Namespace, medik8sByRole)
				if want == nil {
					t.Errorf("unexpected %s %s/%s", o.Kind, o.Namespace, o.Name)
					continue
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s %s/%s rules:\n got %q\nwant %q", o.Kind, o.Namespace, o.Name, got, want)
				}
			}
			// The agent's and the summarizer's ClusterRole and Role, and the medik8s Role.
			want := 4
			if medik8sByRole {
				want++
			}
			if roles < want {
				t.Errorf("rendered %d ClusterRoles/Roles, want at least %d", roles, want)
			}
		})
	}
}

func daemonSet(t *testing.T, objs []Object) *appsv1.DaemonSet {
	t.Helper()
	for _, o := range objs {
		if o.Kind == "DaemonSet" {
			var ds appsv1.DaemonSet
			if err := yaml.UnmarshalStrict(o.YAML, &ds); err != nil {
				t.Fatalf("DaemonSet does not decode strictly: %v", err)
			}
			return &ds
		}
	}
	t.Fatal("no DaemonSet rendered")
	return nil
}

func agentContainer(t *testing.T, ds *appsv1.DaemonSet) corev1.Container {
	t.Helper()
	for _, c := range ds.Spec.Template.Spec.Containers {
		if c.Name == "agent" {
			return c
		}
	}
	t.Fatal("no agent container")
	return corev1.Container{}
}

// TestSecurityByRebootMethod: command = privileged + hostPID; signal = hostPID with only
// CAP_KILL, not privileged, no privilege escalation. Both: read-only root filesystem.
func TestSecurityByRebootMethod(t *testing.T) {
	e := setup(t)
	for _, tc := range []struct {
		method string
		check  func(t *testing.T, sc *corev1.SecurityContext)
	}{
		{"command", func(t *testing.T, sc *corev1.SecurityContext) {
			if sc.Privileged == nil || !*sc.Privileged {
				t.Error("command method: want privileged (nsenter into the host)")
			}
		}},
		{"signal", func(t *testing.T, sc *corev1.SecurityContext) {
			if sc.Privileged == nil || *sc.Privileged {
				t.Error("signal method: want privileged: false")
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Error("signal method: want allowPrivilegeEscalation: false")
			}
			if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"KILL"}) {
				t.Errorf("signal method: want capabilities drop [ALL] add [KILL], got %+v", sc.Capabilities)
			}
			if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
				t.Error("signal method: want runAsUser 0 (an added capability is effective only for root without ambient capabilities)")
			}
		}},
	} {
		t.Run(tc.method, func(t *testing.T) {
			ds := daemonSet(t, e.render(t, "--set", "configuration.rebootMethod="+tc.method))
			spec := ds.Spec.Template.Spec
			if !spec.HostPID {
				t.Error("want hostPID")
			}
			if spec.HostNetwork {
				t.Error("want no hostNetwork")
			}
			c := agentContainer(t, ds)
			sc := c.SecurityContext
			if sc == nil {
				t.Fatal("no securityContext")
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Error("want readOnlyRootFilesystem")
			}
			tc.check(t, sc)
			if !slices.Contains(c.Args, "--reboot-method="+tc.method) {
				t.Errorf("args %q lack --reboot-method=%s", c.Args, tc.method)
			}
			wantImage := "ghcr.io/rebootgate/rebootgate:0.1.0"
			if tc.method == "command" {
				wantImage += "-nsenter"
			}
			if c.Image != wantImage {
				t.Errorf("image %s, want %s", c.Image, wantImage)
			}
		})
	}
}

// TestDaemonSetShape: Linux only, control-plane tolerations, downward-API env, probes on
// the metrics port, requests, the read-only sentinel mount as kured's chart has it.
func TestDaemonSetShape(t *testing.T) {
	e := setup(t)
	ds := daemonSet(t, e.render(t))
	spec := ds.Spec.Template.Spec
	if spec.NodeSelector["kubernetes.io/os"] != "linux" {
		t.Errorf("nodeSelector %v, want kubernetes.io/os=linux", spec.NodeSelector)
	}
	tolerated := map[string]bool{}
	for _, tol := range spec.Tolerations {
		if tol.Operator == corev1.TolerationOpExists && (tol.Effect == corev1.TaintEffectNoSchedule || tol.Effect == "") {
			tolerated[tol.Key] = true
		}
	}
	for _, k := range []string{"node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"} {
		if !tolerated[k] {
			t.Errorf("no toleration for %s", k)
		}
	}
	c := agentContainer(t, ds)
	envs := fieldRefEnv(c)
	if envs["NODE_NAME"] != "spec.nodeName" || envs["POD_NAMESPACE"] != "metadata.namespace" {
		t.Errorf("env from the downward API: %v", envs)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.LivenessProbe.HTTPGet.Port.String() != "metrics" {
		t.Errorf("livenessProbe %+v", c.LivenessProbe)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.ReadinessProbe.HTTPGet.Port.String() != "metrics" {
		t.Errorf("readinessProbe %+v", c.ReadinessProbe)
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "metrics" || c.Ports[0].ContainerPort != 8080 {
		t.Errorf("ports %+v", c.Ports)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("resource requests %v", c.Resources.Requests)
	}
	if !slices.Contains(c.Args, "--reboot-sentinel=/sentinel/reboot-required") {
		t.Errorf("args %q lack --reboot-sentinel=/sentinel/reboot-required", c.Args)
	}
	var mounted bool
	for _, m := range c.VolumeMounts {
		if m.Name == "sentinel" && m.MountPath == "/sentinel" && m.ReadOnly {
			mounted = true
		}
	}
	for _, v := range spec.Volumes {
		if v.Name == "sentinel" && (v.HostPath == nil || v.HostPath.Path != "/var/run") {
			t.Errorf("sentinel volume %+v, want hostPath /var/run", v)
		}
	}
	if !mounted {
		t.Errorf("no read-only /sentinel mount: %+v", c.VolumeMounts)
	}
}

// TestAgentAcceptsRenderedArgs parses the rendered args of every values file with the
// real `rebootgate agent` flag set (in process, with --help so nothing runs): every
// kured flag the chart renders must exist.
func TestAgentAcceptsRenderedArgs(t *testing.T) {
	e := setup(t)
	for _, f := range valuesFiles(t) {
		t.Run(caseName(f), func(t *testing.T) {
			c := agentContainer(t, daemonSet(t, e.render(t, "-f", f)))
			if len(c.Args) == 0 || c.Args[0] != "agent" {
				t.Fatalf("args %q do not start with the agent subcommand", c.Args)
			}
			var stderr bytes.Buffer
			args := append(slices.Clone(c.Args), "--help")
			if code := cli.Main(args, io.Discard, &stderr); code != 0 {
				t.Errorf("rebootgate %s: exit %d: %s", strings.Join(c.Args, " "), code, stderr.String())
			}
		})
	}
}

// TestKuredFlagsRendered: every kured flag of the brief's table has its configuration.*
// key, and a kured values file renders each one — but notifyUrl and slackHookUrl, which
// go into a Secret (TestNotifyURLsFromSecretNotArgs).
func TestKuredFlagsRendered(t *testing.T) {
	e := setup(t)
	c := agentContainer(t, daemonSet(t, e.render(t, "-f", filepath.Join("testdata", "kured.values.yaml"))))
	joined := " " + strings.Join(c.Args, " ") + " "
	for _, fl := range []string{
		"reboot-sentinel", "period", "ds-namespace", "ds-name", "lock-annotation", "lock-ttl",
		"lock-release-delay", "concurrency", "reboot-days", "start-time", "end-time", "time-zone",
		"blocking-pod-selector", "prometheus-url", "alert-filter-regexp", "alert-firing-only",
		"drain-grace-period", "drain-timeout", "drain-pod-selector", "skip-wait-for-delete-timeout",
		"drain-delay", "force-reboot", "reboot-method", "reboot-command", "reboot-delay",
		"annotate-nodes", "pre-reboot-node-labels", "post-reboot-node-labels",
		"prefer-no-schedule-taint", "slack-username", "slack-channel", "message-template-drain",
		"message-template-reboot", "message-template-uncordon", "metrics-port", "log-format",
	} {
		if !strings.Contains(joined, " --"+fl+"=") {
			t.Errorf("kured flag --%s not rendered from kured.values.yaml", fl)
		}
	}
	// The rest of kured's flags, each from its own configuration key.
	for key, want := range map[string]string{
		"alertFilterMatchOnly=true":                 "--alert-filter-match-only=true",
		"rebootSignal=34":                           "--reboot-signal=34",
		"metricsHost=0.0.0.0":                       "--metrics-host=0.0.0.0",
		"rebootSentinelCommand=test -f /run/reboot": "--reboot-sentinel-command=test -f /run/reboot",
	} {
		c := agentContainer(t, daemonSet(t, e.render(t, "--set", "configuration."+key)))
		if !slices.Contains(c.Args, want) {
			t.Errorf("--set configuration.%s: args %q lack %q", key, c.Args, want)
		}
	}
}

// TestConfigAndPolicies: the config ConfigMap is a valid RebootGateConfig, mounted and
// passed with --config; --set-file puts a Rego file into a labelled policy ConfigMap
// byte for byte.
func TestConfigAndPolicies(t *testing.T) {
	e := setup(t)
	rego := filepath.Join(e.root, "examples", "backup-job", "backup.rego")
	src, err := os.ReadFile(rego)
	if err != nil {
		t.Fatal(err)
	}
	objs := e.render(t, "-f", filepath.Join("testdata", "config.values.yaml"), "--set-file", "policies.backup-job="+rego)
	var cfgFound, policyFound bool
	for _, o := range objs {
		if o.Kind != "ConfigMap" {
			continue
		}
		var cm corev1.ConfigMap
		if err := yaml.UnmarshalStrict(o.YAML, &cm); err != nil {
			t.Fatal(err)
		}
		switch cm.Name {
		case Release + "-config":
			cfgFound = true
			if _, err := config.Parse([]byte(cm.Data["config.yaml"])); err != nil {
				t.Errorf("config ConfigMap is not a valid RebootGateConfig: %v\n%s", err, cm.Data["config.yaml"])
			}
		case Release + "-policy-backup-job":
			policyFound = true
			if cm.Labels["rebootgate.io/policy"] != "rego" {
				t.Errorf("policy ConfigMap labels %v", cm.Labels)
			}
			if cm.Data["backup-job.rego"] != string(src) {
				t.Errorf("policy ConfigMap data differs from %s:\n%s", rego, cm.Data["backup-job.rego"])
			}
		}
	}
	if !cfgFound || !policyFound {
		t.Fatalf("config ConfigMap rendered: %v, policy ConfigMap rendered: %v", cfgFound, policyFound)
	}
	c := agentContainer(t, daemonSet(t, objs))
	for _, want := range []string{"--config=/etc/rebootgate/config.yaml", "--policy-namespace=team-a", "--policy-namespace=$(POD_NAMESPACE)"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %q lack %q", c.Args, want)
		}
	}
}

// TestRejected: the schema and the chart's checks refuse bad values with a clear message.
func TestRejected(t *testing.T) {
	e := setup(t)
	for _, tc := range []struct {
		set  []string // --set-string: values as the user types them
		want string
	}{
		{[]string{"configuration.rebootDay=mo"}, "additional properties 'rebootDay' not allowed"},
		{[]string{"configuration.rebootMethod=reboot"}, "rebootMethod"},
		{[]string{"configuration.rebootMethod=signal", "configuration.rebootSentinelCommand=true"}, "needs configuration.rebootMethod=command"},
		{[]string{"config.pools[0].name=default", "configuration.startTime=9pm"}, "configuration.startTime and config: use one"},
		{[]string{"policies.Bad_Name=package rebootgate"}, "Bad_Name"},
		{[]string{"configuration.drainTimeout=soon"}, "drainTimeout"},
		{[]string{"metrics.prometheusRule.enabled=true", "metrics.prometheusRule.phaseStuckFor=an hour"}, "phaseStuckFor"},
		{[]string{"notify.existingSecret=hooks", "configuration.notifyUrl=slack://t@webhook"}, "notify.existingSecret holds the notification URLs"},
		{[]string{"notify.existingSecret=hooks", "notify.urls[0]=slack://t@webhook"}, "notify.existingSecret holds the notification URLs"},
		{[]string{"extraArgs.notify-url=slack://t@webhook"}, "extraArgs.notify-url: notification URLs carry tokens"},
		{[]string{"extraArgs.slack-hook-url=https://hooks.slack.com/services/T/B/X"}, "extraArgs.slack-hook-url: notification URLs carry tokens"},
		{[]string{"extraEnvVars[0].name=KURED_NOTIFY_URL", "extraEnvVars[0].value=slack://t@webhook"}, "extraEnvVars KURED_NOTIFY_URL: a notification URL carries a token"},
	} {
		var args []string
		for _, s := range tc.set {
			args = append(args, "--set-string", s)
		}
		_, err := Template(e.helm, e.chart, Release, Namespace, args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--set %v: got %v, want an error mentioning %q", tc.set, err, tc.want)
		}
	}
}

// TestMonitoring: off by default; on, the PrometheusRule carries the three alerts with the
// configured durations.
func TestMonitoring(t *testing.T) {
	e := setup(t)
	for _, o := range e.render(t) {
		if o.Kind == "ServiceMonitor" || o.Kind == "PrometheusRule" || o.Kind == "Service" {
			t.Errorf("%s rendered by default", o.Kind)
		}
	}
	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert string `json:"alert"`
					Expr  string `json:"expr"`
					For   string `json:"for"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	kinds := map[string]bool{}
	for _, o := range e.render(t, "-f", filepath.Join("testdata", "signal.values.yaml")) {
		kinds[o.Kind] = true
		if o.Kind == "PrometheusRule" {
			if err := yaml.Unmarshal(o.YAML, &rule); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range []string{"Service", "ServiceMonitor", "PrometheusRule"} {
		if !kinds[k] {
			t.Errorf("no %s rendered with monitoring on", k)
		}
	}
	got := map[string]string{}
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			got[r.Alert] = r.For + " " + r.Expr
		}
	}
	for alert, want := range map[string]string{
		"RebootgateRebootPendingTooLong": "48h max by (node) (rebootgate_reboot_required) == 1",
		"RebootgateNodeStuckInPhase":     "2h max by (node, phase) (rebootgate_phase) == 1",
		"RebootgatePolicyError":          "5m min by (node) (rebootgate_policy_status) == 0",
	} {
		if got[alert] != want {
			t.Errorf("alert %s: got %q, want %q", alert, got[alert], want)
		}
	}
}

// TestKuredLock: configuration.kuredLock renders --kured-lock with kured's lock flags,
// and grants the agent kured's DaemonSet alone, in its namespace; without it there is no
// such grant.
func TestKuredLock(t *testing.T) {
	e := setup(t)
	objs := e.render(t, "-f", filepath.Join("testdata", "kuredlock.values.yaml"))
	c := agentContainer(t, daemonSet(t, objs))
	for _, want := range []string{"--kured-lock=true", "--concurrency=2", "--ds-namespace=kube-system", "--ds-name=kured"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %q lack %q", c.Args, want)
		}
	}
	found := false
	for _, o := range objs {
		if o.Kind == "Role" && strings.HasSuffix(o.Name, "-kured-lock") {
			found = o.Namespace == "kube-system"
		}
	}
	if !found {
		t.Error("no kured-lock Role in kube-system")
	}
	for _, o := range e.render(t) {
		if strings.HasSuffix(o.Name, "-kured-lock") {
			t.Errorf("%s %s rendered without configuration.kuredLock", o.Kind, o.Name)
		}
	}
}

// TestSummarizerShape: the summarizer reads what the agents read (the same --config
// mount and --policy-namespace flags) and its flags parse with the real `rebootgate
// summarizer`; it has its own ServiceAccount, POD_NAMESPACE and POD_NAME from the
// downward API, and two replicas spread over nodes under a PodDisruptionBudget of one;
// its pods and the agents' match only their own controller's selector; with
// summarizer.enabled=false nothing of it is rendered.
func TestSummarizerShape(t *testing.T) {
	e := setup(t)
	for _, f := range valuesFiles(t) {
		t.Run(caseName(f), func(t *testing.T) {
			objs := e.render(t, "-f", f, "--set", "summarizer.medik8sNamespace=maint")
			d, ds := summarizer(t, objs), daemonSet(t, objs)
			if d == nil {
				t.Fatal("no summarizer Deployment rendered")
			}
			c := d.Spec.Template.Spec.Containers[0]
			agent := agentContainer(t, ds)
			if len(c.Args) == 0 || c.Args[0] != "summarizer" {
				t.Fatalf("args %q do not start with the summarizer subcommand", c.Args)
			}
			var stderr bytes.Buffer
			if code := cli.Main(append(slices.Clone(c.Args), "--help"), io.Discard, &stderr); code != 0 {
				t.Errorf("rebootgate %s: exit %d: %s", strings.Join(c.Args, " "), code, stderr.String())
			}
			shared := func(args []string) []string {
				return slices.DeleteFunc(slices.Clone(args), func(a string) bool {
					return !strings.HasPrefix(a, "--config=") && !strings.HasPrefix(a, "--policy-namespace=")
				})
			}
			if got, want := shared(c.Args), shared(agent.Args); !slices.Equal(got, want) {
				t.Errorf("config and policy flags %q, the agents' %q", got, want)
			}
			for _, want := range []string{"--leader-elect=true", "--medik8s-namespace=maint"} {
				if !slices.Contains(c.Args, want) {
					t.Errorf("args %q lack %s", c.Args, want)
				}
			}
			mountOf := func(mounts []corev1.VolumeMount, vols []corev1.Volume) string {
				for _, m := range mounts {
					for _, v := range vols {
						if m.MountPath == "/etc/rebootgate" && v.Name == m.Name && v.ConfigMap != nil {
							return v.ConfigMap.Name + " at " + m.MountPath + " ro=" + strconv.FormatBool(m.ReadOnly)
						}
					}
				}
				return ""
			}
			if got, want := mountOf(c.VolumeMounts, d.Spec.Template.Spec.Volumes), mountOf(agent.VolumeMounts, ds.Spec.Template.Spec.Volumes); got != want {
				t.Errorf("config mount %q, the agents' %q", got, want)
			}
			envs := fieldRefEnv(c)
			if envs["POD_NAMESPACE"] != "metadata.namespace" || envs["POD_NAME"] != "metadata.name" {
				t.Errorf("env from the downward API: %v", envs)
			}
			spec := d.Spec.Template.Spec
			if spec.ServiceAccountName == "" || spec.ServiceAccountName == ds.Spec.Template.Spec.ServiceAccountName {
				t.Errorf("ServiceAccount %q, want one of its own (the agents' is %q)", spec.ServiceAccountName, ds.Spec.Template.Spec.ServiceAccountName)
			}
			if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
				t.Errorf("replicas %v, want 2", d.Spec.Replicas)
			}
			podLabels := labels.Set(d.Spec.Template.Labels)
			if len(spec.TopologySpreadConstraints) != 1 {
				t.Fatalf("topologySpreadConstraints %+v, want one over kubernetes.io/hostname", spec.TopologySpreadConstraints)
			}
			tsc := spec.TopologySpreadConstraints[0]
			if tsc.TopologyKey != "kubernetes.io/hostname" || tsc.MaxSkew != 1 || tsc.WhenUnsatisfiable != corev1.DoNotSchedule ||
				tsc.NodeTaintsPolicy == nil || *tsc.NodeTaintsPolicy != corev1.NodeInclusionPolicyHonor || !selects(t, tsc.LabelSelector, podLabels) {
				t.Errorf("topology spread %+v: want maxSkew 1 per hostname, DoNotSchedule, tainted and cordoned nodes left out, over the summarizer's pods", tsc)
			}
			if !selects(t, d.Spec.Selector, podLabels) || selects(t, ds.Spec.Selector, podLabels) {
				t.Errorf("summarizer pod labels %v: want its Deployment's selector and not the DaemonSet's", podLabels)
			}
			if selects(t, d.Spec.Selector, labels.Set(ds.Spec.Template.Labels)) {
				t.Errorf("the summarizer's selector takes the agents' pods %v", ds.Spec.Template.Labels)
			}
			pdb := disruptionBudget(t, objs)
			if pdb == nil || pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || pdb.Spec.MinAvailable != nil ||
				pdb.Spec.UnhealthyPodEvictionPolicy == nil || *pdb.Spec.UnhealthyPodEvictionPolicy != policyv1.AlwaysAllow ||
				!selects(t, pdb.Spec.Selector, podLabels) {
				var spec any = "none"
				if pdb != nil {
					spec = pdb.Spec
				}
				t.Errorf("PodDisruptionBudget %+v: want maxUnavailable 1, unhealthy pods always evictable, over the summarizer's pods", spec)
			}
		})
	}
	for _, set := range []string{"summarizer.replicas=1", "summarizer.podDisruptionBudget.enabled=false"} {
		if pdb := disruptionBudget(t, e.render(t, "--set", set)); pdb != nil {
			t.Errorf("--set %s: a PodDisruptionBudget is rendered", set)
		}
	}

	for _, o := range e.render(t, "--set", "summarizer.enabled=false", "--set", "policyNamespaces={team-a}") {
		if strings.Contains(string(o.YAML), "summarizer") {
			t.Errorf("summarizer.enabled=false: %s %s/%s names the summarizer", o.Kind, o.Namespace, o.Name)
		}
	}
}

// fieldRefEnv is the container's env variables from the downward API: name → field path.
func fieldRefEnv(c corev1.Container) map[string]string {
	envs := map[string]string{}
	for _, ev := range c.Env {
		if ev.ValueFrom != nil && ev.ValueFrom.FieldRef != nil {
			envs[ev.Name] = ev.ValueFrom.FieldRef.FieldPath
		}
	}
	return envs
}

// selects reports whether sel matches set.
func selects(t *testing.T, sel *metav1.LabelSelector, set labels.Set) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	return sel != nil && !s.Empty() && s.Matches(set)
}

func disruptionBudget(t *testing.T, objs []Object) *policyv1.PodDisruptionBudget {
	t.Helper()
	for _, o := range objs {
		if o.Kind == "PodDisruptionBudget" {
			var pdb policyv1.PodDisruptionBudget
			if err := yaml.UnmarshalStrict(o.YAML, &pdb); err != nil {
				t.Fatal(err)
			}
			return &pdb
		}
	}
	return nil
}
