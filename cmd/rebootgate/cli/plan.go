package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/facts"
	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/engine/plan"
	"github.com/rebootgate/rebootgate/engine/policy"
	"github.com/rebootgate/rebootgate/engine/summary"
)

// planOptions are the flags of `rebootgate plan`.
type planOptions struct {
	gateFlags
	NodesPath string
	PodsPath  string
	At        string
	Horizon   time.Duration
	Duration  time.Duration
	Output    string

	// Which nodes need a reboot; by default those that say so.
	Need         []string
	NeedSelector string
	NeedAll      bool
}

func newPlanCommand() *cobra.Command {
	o := &planOptions{}
	cmd := &cobra.Command{
		Use:   "plan [--config CONFIG.yaml] [--nodes NODES.yaml | --kubeconfig FILE] [--duration D] [--at RFC3339] [--horizon D] [-o table|json]",
		Short: "Forecast a rollout: when each node will reboot, when each pool is done, and which nodes never will",
		Long: `plan simulates the pools' windows, blackouts, concurrency and slot keys forward from
--at and prints each node's predicted reboot, each pool's completion, and the nodes that
will never reboot under this config, with the gate's reasons.

The nodes come from --nodes (kubectl get nodes -o yaml), or, without it, from the cluster
(--kubeconfig). The nodes to reboot are those that say they need one (rebootgate's
RebootRequired condition or annotation) or are mid-reboot, unless --need, --need-selector
or --need-all says which.

Each reboot takes --duration; without it, each node's last recorded reboot
(rebootgate.io/last-reboot-duration), else the median of all recorded ones, else 10m.
It exits 0 when a forecast was made and 2 for bad input.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.runFlags(cmd.Context(), cmd.Flags(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	o.gateFlags.bind(f)
	f.StringVar(&o.NodesPath, "nodes", "", "nodes as YAML or JSON (kubectl get nodes -o yaml); without it, read them from the cluster")
	f.StringVar(&o.PodsPath, "pods", "", "pods of the nodes (kubectl get pods -A -o yaml), for blocking-pod rules")
	f.StringVar(&o.At, "at", "", "start of the forecast, RFC 3339 (default: now); times are printed in its zone")
	f.DurationVar(&o.Horizon, "horizon", plan.DefaultHorizon, "how far ahead to simulate")
	f.DurationVar(&o.Duration, "duration", 0, "estimated time of one node's reboot, cordon to uncordon (default: the nodes' recorded reboots, else 10m)")
	f.StringVarP(&o.Output, "output", "o", "table", "output format: table or json")
	f.StringSliceVar(&o.Need, "need", nil, "these nodes need a reboot (names, comma-separated or repeated)")
	f.StringVar(&o.NeedSelector, "need-selector", "", "the nodes matching this label selector need a reboot")
	f.BoolVar(&o.NeedAll, "need-all", false, "every node needs a reboot")
	return cmd
}

func (o *planOptions) runFlags(ctx context.Context, fs *pflag.FlagSet, out io.Writer) error {
	if err := o.resolveSched(fs); err != nil {
		return err
	}
	return o.run(ctx, out)
}

// planInputs are the facts a forecast starts from.
type planInputs struct {
	nodes  []corev1.Node
	pods   []corev1.Pod
	alerts []facts.Alert
	// alertsErr is set when the alerts could not be read (every node is blocked).
	alertsErr error
	live      []policy.Module
	// client is the cluster's in live mode.
	client kubernetes.Interface
}

func (o *planOptions) run(ctx context.Context, out io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if o.Output != "table" && o.Output != "json" {
		return badInput("-o: %q is not one of table, json", o.Output)
	}
	if o.Horizon <= 0 {
		return badInput("--horizon: %s is not positive", o.Horizon)
	}
	if o.Duration < 0 {
		return badInput("--duration: %s is negative", o.Duration)
	}
	if n := btoi(len(o.Need) > 0) + btoi(o.NeedSelector != "") + btoi(o.NeedAll); n > 1 {
		return badInput("--need, --need-selector and --need-all: use one")
	}
	var sel labels.Selector
	if o.NeedSelector != "" {
		var err error
		if sel, err = labels.Parse(o.NeedSelector); err != nil {
			return badInput("--need-selector: %q is not a label selector: %w", o.NeedSelector, err)
		}
	}
	at, err := parseAt(o.At)
	if err != nil {
		return err
	}
	var in *planInputs
	if o.NodesPath != "" {
		in, err = o.loadInputs()
	} else {
		in, err = o.gatherLive(ctx)
	}
	if err != nil {
		return err
	}
	engine, err := o.engine(ctx, in.live)
	if err != nil {
		return err
	}
	var maintenance map[string]bool
	if in.client != nil && needsSummary(engine.Config()) {
		if maintenance, err = summary.ListMaintenance(ctx, in.client, disruption.Medik8sNamespace, at); err != nil {
			return err
		}
	}

	all := make([]*corev1.Node, len(in.nodes))
	for i := range in.nodes {
		all[i] = &in.nodes[i]
	}
	cands, err := o.candidates(all, in, sel)
	if err != nil {
		return err
	}
	res := plan.Forecast(ctx, engine, all, cands, plan.Options{At: at, Horizon: o.Horizon, Duration: o.Duration, Maintenance: maintenance})
	if o.Output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	return printPlanTable(out, res, at.Location())
}

// candidates are the nodes to reboot, with their facts: those the --need flags name,
// else those that say they need a reboot.
func (o *planOptions) candidates(all []*corev1.Node, in *planInputs, sel labels.Selector) ([]plan.Candidate, error) {
	known := map[string]bool{}
	for _, n := range all {
		known[n.Name] = true
	}
	for _, name := range o.Need {
		if !known[name] {
			return nil, badInput("--need: node %q is not among the nodes", name)
		}
	}
	podsOf := map[string][]corev1.Pod{}
	for _, p := range in.pods {
		podsOf[p.Spec.NodeName] = append(podsOf[p.Spec.NodeName], p)
	}
	var cands []plan.Candidate
	for _, n := range all {
		since, needs := nodestate.RebootRequiredSince(n)
		switch {
		case o.NeedAll:
			needs = true
		case len(o.Need) > 0:
			needs = slices.Contains(o.Need, n.Name)
		case sel != nil:
			needs = sel.Matches(labels.Set(n.Labels))
		}
		if needs {
			cands = append(cands, plan.Candidate{
				Facts:       &facts.Facts{Node: n, Pods: podsOf[n.Name], Alerts: in.alerts, AlertsErr: in.alertsErr},
				NeededSince: since,
			})
		}
	}
	return cands, nil
}

// needsSummary reports whether a pool's budget or a breaker counts unavailable nodes.
func needsSummary(cfg *config.Resolved) bool {
	for i := range cfg.Pools {
		if cfg.NeedsSummary(&cfg.Pools[i]) {
			return true
		}
	}
	return false
}

func (o *planOptions) loadInputs() (*planInputs, error) {
	in := &planInputs{}
	var err error
	if in.nodes, err = readFile("--nodes", o.NodesPath, facts.ParseNodes); err != nil {
		return nil, err
	}
	if in.pods, in.alerts, err = readPodsAndAlerts(o.PodsPath, o.AlertsPath); err != nil {
		return nil, err
	}
	return in, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// printPlanTable prints the forecast: a summary line, the pools, the nodes that will
// reboot, and those that never will.
func printPlanTable(out io.Writer, r *plan.Result, loc *time.Location) error {
	ts := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.In(loc).Format(time.RFC3339)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	done := "not within the horizon"
	if r.Completion != nil {
		done = ts(r.Completion)
	}
	if len(r.Nodes) == 0 {
		done = "nothing to reboot"
	}
	fmt.Fprintf(tw, "Forecast from %s to %s (horizon %s). Rollout done: %s.\n", ts(&r.At), ts(&r.HorizonEnd), r.Horizon, done)
	fmt.Fprintf(tw, "Reboot duration: %s.\n", durationSummary(r.Duration))
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "POOL\tNODES\tSLOTS\tSLOT KEY\tREBOOTS\tNEVER\tFIRST ALLOWED\tDONE")
	for _, p := range r.Pools {
		key := "-"
		if p.SlotKey != "" {
			key = fmt.Sprintf("%s (%d each)", p.SlotKey, p.SlotsPerKey)
		}
		done := ts(p.Completion)
		if p.Completion == nil && p.Reboots > 0 {
			done = "beyond horizon"
		}
		slots := fmt.Sprint(p.Slots)
		if p.Slots != p.Concurrency {
			slots = fmt.Sprintf("%d of %d", p.Slots, p.Concurrency) // budgets and breakers
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\t%s\t%s\n", p.Name, p.Size, slots, key, p.Reboots, p.Never, ts(p.FirstAllowed), done)
	}
	if len(r.Nodes) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "NODE\tPOOL\tSLOT KEY\tSTATUS\tSTART\tEND\tDURATION")
		for _, n := range r.Nodes {
			d := time.Duration(n.DurationSeconds * float64(time.Second))
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s (%s)\n", n.Node, n.Pool, orDefault(n.SlotKey, "-"), n.Status, ts(n.Start), ts(n.End), d, n.DurationSource)
		}
	}
	if len(r.Never) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "NEVER REBOOTS\tPOOL\tSOURCE\tREASON")
		for _, n := range r.Never {
			for _, why := range n.Reasons {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Node, orDefault(n.Pool, "<none>"), why.Source, strings.ReplaceAll(why.Message, "\n", " "))
			}
		}
	}
	return tw.Flush()
}

func durationSummary(d plan.DurationSummary) string {
	seconds := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	switch d.Source {
	case plan.DurationGiven:
		return fmt.Sprintf("%s each (--duration)", seconds(d.GivenSeconds))
	case plan.DurationDefault:
		return fmt.Sprintf("%s each (the default: no node has a recorded reboot)", plan.DefaultDuration)
	case plan.DurationMedian:
		return fmt.Sprintf("%s each (the median of %d recorded reboots)", seconds(d.MedianSeconds), d.Recorded)
	case plan.DurationRecorded:
		return "each node's own last reboot"
	}
	return fmt.Sprintf("each node's own last reboot, else the median of %d recorded reboots (%s)", d.Recorded, seconds(d.MedianSeconds))
}
