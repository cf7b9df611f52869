package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/yaml"

	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/facts"
	"github.com/rebootgate/rebootgate/engine/policy"
	"github.com/rebootgate/rebootgate/engine/summary"
)

// evalOptions are the flags of `rebootgate eval`.
type evalOptions struct {
	gateFlags
	NodePath string
	PodsPath string
	At       string
	Output   string
	// NodeName selects live mode: gather the facts from a cluster as the agent does.
	NodeName string
}

// gateFlags are the flags eval and plan share: where the config, the policies and the
// alerts come from, and the cluster in live mode.
type gateFlags struct {
	ConfigPath string
	AlertsPath string
	Policies   []string

	// SummaryPath is a node summary file (--node-summary).
	SummaryPath string

	// Live mode.
	Kubeconfig string
	// Namespace is the agents' namespace, where the node summary is read (live mode).
	Namespace        string
	PolicyNamespaces []string
	PrometheusURL    string
	AlertmanagerURL  string

	// Sched is kured's schedule, blocker and concurrency flags: a config without --config.
	Sched kuredSchedule
	// inline is the config the kured flags made, if any.
	inline *config.Resolved
}

func (g *gateFlags) bind(f *pflag.FlagSet) {
	f.StringVar(&g.ConfigPath, "config", "", "RebootGateConfig file (default: one pool, any time)")
	f.StringVar(&g.AlertsPath, "alerts", "", "Prometheus ALERTS query response or Alertmanager /api/v2/alerts response")
	f.StringArrayVar(&g.Policies, "policy", nil, "extra Rego file or directory, added to the default gate (repeatable)")
	f.StringVar(&g.SummaryPath, "node-summary", "", "node summary for budgets, breakers and alerts' node labels, taken as observed at --at: the summary.json of ConfigMap rebootgate-node-summary, or, with the node index that resolves alerts' instance labels, the summary's and the index's ConfigMaps (kubectl get cm -l 'app.kubernetes.io/component in (node-summary,node-index)' -o yaml)")
	f.StringVar(&g.Kubeconfig, "kubeconfig", "", "live mode: kubeconfig of the cluster (default: $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&g.Namespace, "namespace", defaultNamespace, "live mode: the agents' namespace, where the node summary is read when a budget, breaker or rule needs it")
	f.StringSliceVar(&g.PolicyNamespaces, "policy-namespace", nil, "live mode: also load policy ConfigMaps (label rebootgate.io/policy=rego) from these namespaces")
	f.StringVar(&g.PrometheusURL, "prometheus-url", "", "live mode: query Prometheus for ALERTS")
	f.StringVar(&g.AlertmanagerURL, "alertmanager-url", "", "live mode: ask Alertmanager for its alerts")
	g.Sched.bind(f)
}

// resolveSched makes the config of kured's schedule and blocker flags, which needs to
// know which flags were given.
func (g *gateFlags) resolveSched(fs *pflag.FlagSet) error {
	inline, err := g.Sched.resolve(fs, g.ConfigPath)
	if err != nil {
		return err
	}
	g.inline = inline
	return nil
}

// engine builds the decision engine: the config from --config, else the one kured's
// flags made, else the default; the default gate, the policies read from the cluster
// (live) and the --policy files.
func (g *gateFlags) engine(ctx context.Context, live []policy.Module) (*decision.Engine, error) {
	cfg := config.Default()
	if g.inline != nil {
		cfg = g.inline
	}
	if g.ConfigPath != "" {
		var err error
		if cfg, err = config.Load(g.ConfigPath); err != nil {
			return nil, badInput("%s: %w", g.ConfigPath, unwrapPathError(err))
		}
	}
	modules := append(policy.DefaultModules(), live...)
	if len(g.Policies) > 0 {
		extra, err := policy.LoadPaths(g.Policies)
		if err != nil {
			return nil, badInput("%w", err)
		}
		modules = append(modules, extra...)
	}
	engine, err := decision.New(ctx, cfg, modules)
	if err != nil {
		var fieldErrs config.ErrorList
		if errors.As(err, &fieldErrs) {
			return nil, badInput("%s: %w", orDefault(g.ConfigPath, "default config"), err)
		}
		var compileErr *policy.CompileError
		if errors.As(err, &compileErr) {
			return nil, badInput("policy: %w", err)
		}
		return nil, err
	}
	return engine, nil
}

func newEvalCommand() *cobra.Command {
	o := &evalOptions{}
	cmd := &cobra.Command{
		Use:   "eval --node NODE.yaml [--config CONFIG.yaml] [--pods PODS.yaml] [--alerts ALERTS.json] [--policy FILE_OR_DIR ...] [--at RFC3339] [-o table|json|input]",
		Short: "Decide offline whether a node would reboot at a given time, and why not",
		Long: `eval runs the same decision as the agent on facts read from files:
a Node (kubectl get node X -o yaml), its pods (kubectl get pods -o yaml), and alerts (a
Prometheus /api/v1/query response for ALERTS or an Alertmanager /api/v2/alerts response).

It exits 0 when a decision was reached, allowed or not, and 2 for bad input.
-o input prints the document the Rego gate sees, for writing and testing policies.

Instead of --config, kured's flags (--reboot-days, --start-time, --end-time, --time-zone,
--concurrency, --blocking-pod-selector, --alert-filter-*) answer "would my kured settings
allow a reboot now?", e.g.
  rebootgate eval --node n.yaml --reboot-days mon,tue --start-time 9pm --end-time 5am \
    --time-zone America/Los_Angeles --at 2019-04-04T00:49:00-07:00`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.runFlags(cmd.Context(), cmd.Flags(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	o.gateFlags.bind(f)
	f.StringVar(&o.NodePath, "node", "", "Node as YAML or JSON (kubectl get node X -o yaml)")
	f.StringVar(&o.PodsPath, "pods", "", "pods on the node: a PodList, a List of Pods or a Pod")
	f.StringVar(&o.At, "at", "", "evaluation time, RFC 3339 (default: now)")
	f.StringVarP(&o.Output, "output", "o", "table", "output format: table, json or input")
	f.StringVar(&o.NodeName, "node-name", "", "live mode: read this Node, its pods and (with URLs) alerts from the cluster instead of files")
	return cmd
}

func (o *evalOptions) runFlags(ctx context.Context, fs *pflag.FlagSet, out io.Writer) error {
	if err := o.resolveSched(fs); err != nil {
		return err
	}
	return o.run(ctx, out)
}

func (o *evalOptions) run(ctx context.Context, out io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	switch o.Output {
	case "table", "json", "input":
	default:
		return badInput("-o: %q is not one of table, json, input", o.Output)
	}
	now, err := parseAt(o.At)
	if err != nil {
		return err
	}
	var f *facts.Facts
	var live []policy.Module
	if o.NodeName != "" {
		if o.NodePath != "" {
			return badInput("--node and --node-name: use one (a file, or a node of the cluster)")
		}
		if f, live, err = o.gatherLive(ctx); err != nil {
			return err
		}
	} else {
		if f, err = o.loadFacts(); err != nil {
			return err
		}
	}
	engine, err := o.engine(ctx, live)
	if err != nil {
		return err
	}
	if err := o.fillSummary(ctx, engine, f, now); err != nil {
		return err
	}
	ev := engine.Evaluate(ctx, f, now)
	if o.NodeName != "" {
		agentLoadError(&ev.Decision, f.Node)
	}
	switch o.Output {
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(ev.Decision)
	case "input":
		if ev.Input == nil {
			ev.Input = ast.NewObject()
		}
		var v any
		if err := json.Unmarshal([]byte(ev.Input.String()), &v); err != nil {
			return fmt.Errorf("printing the input: %w", err)
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	default:
		return printDecisionTable(out, &ev.Decision)
	}
}

func (o *evalOptions) loadFacts() (*facts.Facts, error) {
	if o.NodePath == "" {
		return nil, badInput("--node: is required (a Node as printed by kubectl get node NAME -o yaml), or --node-name with a cluster")
	}
	f := &facts.Facts{}
	var err error
	if f.Node, err = readFile("--node", o.NodePath, facts.ParseNode); err != nil {
		return nil, err
	}
	if f.Pods, f.Alerts, err = readPodsAndAlerts(o.PodsPath, o.AlertsPath); err != nil {
		return nil, err
	}
	return f, nil
}

// fillSummary gives the decision its node summary when it needs one (for a budget,
// a breaker, a rule, or the node index that resolves alerts' instance labels): from
// --node-summary (as observed at the evaluation time), else in live mode from the
// cluster, as the agent reads it.
func (o *evalOptions) fillSummary(ctx context.Context, engine *decision.Engine, f *facts.Facts, now time.Time) error {
	switch {
	case o.SummaryPath != "":
		read, err := readFile("--node-summary", o.SummaryPath, parseSummaryFile)
		if err != nil {
			return err
		}
		read.summary.ObservedAt = now
		f.Summary, f.SummarySeenAt, f.NodeIndex = read.summary, now, read.index
	case o.NodeName != "" && (len(engine.NodeIndexKeys(f.Node, f.Alerts)) > 0 || engine.NeedsSummary(f.Node, now)):
		client, err := newClient(o.Kubeconfig, "rebootgate-eval")
		if err != nil {
			return badInput("%w", err)
		}
		// One read sees no change: the summary is dated by its stamp, as an agent's
		// first read dates it (a stamp in the future leaves it stale).
		f.Summary, f.SummarySeenAt, f.SummaryErr = summary.NewObserver(client, o.Namespace).Read(ctx, now)
		summary.NewIndexReader(client, o.Namespace, clock.RealClock{}).Fill(ctx, f, engine.NodeIndexKeys(f.Node, f.Alerts), now)
	}
	return nil
}

// summaryFile is what --node-summary gives: the summary and the node index shards.
type summaryFile struct {
	summary *disruption.Summary
	index   []*disruption.IndexShard
}

// parseSummaryFile reads --node-summary: a summary's JSON (no node index), or the
// ConfigMaps of the summary and of the index's shards (a List, as kubectl prints them),
// other ConfigMaps ignored. The shards are used only when the summary names their
// hashes, as an agent uses them.
func parseSummaryFile(data []byte) (summaryFile, error) {
	var probe struct {
		Kind  string          `json:"kind"`
		Pools json.RawMessage `json:"pools"`
	}
	if err := yaml.Unmarshal(data, &probe); err != nil {
		return summaryFile{}, fmt.Errorf("not YAML or JSON: %w", err)
	}
	if probe.Kind == "" {
		s, err := parseSummary(data)
		return summaryFile{summary: s}, err
	}
	cms, err := facts.ParseConfigMaps(data)
	if err != nil {
		return summaryFile{}, fmt.Errorf("not a node summary (JSON) nor its ConfigMaps: %w", err)
	}
	var out summaryFile
	for i := range cms {
		cm := &cms[i]
		switch {
		case cm.Name == summary.ConfigMapName:
			if out.summary, err = parseSummary([]byte(cm.Data[summary.DataKey])); err != nil {
				return summaryFile{}, fmt.Errorf("ConfigMap %s key %s: %w", cm.Name, summary.DataKey, err)
			}
		case strings.HasPrefix(cm.Name, summary.IndexConfigMapPrefix):
			shard, err := disruption.DecodeIndexShard([]byte(cm.Data[summary.IndexDataKey]))
			if err != nil {
				return summaryFile{}, fmt.Errorf("ConfigMap %s key %s: %w", cm.Name, summary.IndexDataKey, err)
			}
			out.index = append(out.index, shard)
		}
	}
	if out.summary == nil {
		return summaryFile{}, fmt.Errorf("no ConfigMap %s among the %d ConfigMaps", summary.ConfigMapName, len(cms))
	}
	return out, nil
}

func parseSummary(data []byte) (*disruption.Summary, error) {
	var s disruption.Summary
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("not a node summary (JSON, as in ConfigMap rebootgate-node-summary): %w", err)
	}
	if s.Pools == nil {
		return nil, errors.New("not a node summary: no \"pools\" key")
	}
	return &s, nil
}

// readFile parses the file a flag names; errors are bad input naming the flag or file.
func readFile[T any](flag, path string, parse func([]byte) (T, error)) (T, error) {
	var zero T
	data, err := os.ReadFile(path)
	if err != nil {
		return zero, badInput("%s: %w", flag, err)
	}
	v, err := parse(data)
	if err != nil {
		return zero, badInput("%s: %w", path, err)
	}
	return v, nil
}

// readPodsAndAlerts reads the --pods and --alerts files, each when given.
func readPodsAndAlerts(podsPath, alertsPath string) (pods []corev1.Pod, alerts []facts.Alert, err error) {
	if podsPath != "" {
		if pods, err = readFile("--pods", podsPath, facts.ParsePods); err != nil {
			return nil, nil, err
		}
	}
	if alertsPath != "" {
		if alerts, err = readFile("--alerts", alertsPath, facts.ParseAlerts); err != nil {
			return nil, nil, err
		}
	}
	return pods, alerts, nil
}

// parseAt is the --at flag's time; now when empty.
func parseAt(at string) (time.Time, error) {
	if at == "" {
		return time.Now(), nil
	}
	t, err := time.Parse(time.RFC3339, at)
	if err != nil {
		return time.Time{}, badInput("--at: %q is not an RFC 3339 time (e.g. 2026-11-21T09:30:00+01:00)", at)
	}
	return t, nil
}

// unwrapPathError drops the "open x: " wrapper that repeats the file name.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func printDecisionTable(out io.Writer, d *decision.Decision) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if d.SlotKey == "" {
		fmt.Fprintln(tw, "NODE\tPOOL\tALLOWED\tAT\tNEXT ALLOWED")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Node, orDefault(d.Pool, "<none>"), yesNo(d.Allowed), d.At, orDefault(d.NextAllowed, "-"))
	} else {
		// Only pools with a slot key have the column, so other tables stay as they were.
		fmt.Fprintln(tw, "NODE\tPOOL\tSLOT KEY\tALLOWED\tAT\tNEXT ALLOWED")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Node, d.Pool, d.SlotKey, yesNo(d.Allowed), d.At, orDefault(d.NextAllowed, "-"))
	}
	if len(d.Reasons) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "SOURCE\tREASON")
		for _, r := range d.Reasons {
			fmt.Fprintf(tw, "%s\t%s\n", r.Source, strings.ReplaceAll(r.Message, "\n", " "))
		}
	}
	if len(d.Conditions) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "CONDITION\tRESULT\tEXPRESSION")
		for _, c := range d.Conditions {
			res := fmt.Sprint(c.Result)
			if c.Error != "" {
				res = "error"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, res, c.Expression)
		}
	}
	return tw.Flush()
}
