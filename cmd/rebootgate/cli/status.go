package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/lock"
	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// statusOptions are the flags of `rebootgate status`.
type statusOptions struct {
	Kubeconfig string
	Namespace  string
	Selector   string
	Watch      time.Duration
}

func newStatusCommand() *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every node's reboot state: pool, reboot required, last decision, phase, slot",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	f.StringVarP(&o.Namespace, "namespace", "n", firstNonEmpty(os.Getenv("POD_NAMESPACE"), defaultNamespace), "namespace of the agents' slot Leases")
	f.StringVarP(&o.Selector, "selector", "l", "", "only nodes matching this label selector")
	f.DurationVarP(&o.Watch, "watch", "w", 0, "refresh every interval (clears the screen), until interrupted")
	return cmd
}

func (o *statusOptions) run(ctx context.Context, out io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	client, err := newClient(o.Kubeconfig, "rebootgate-status")
	if err != nil {
		return badInput("%w", err)
	}
	for {
		rows, err := collectStatus(ctx, client, o.Namespace, o.Selector)
		if err != nil {
			return err
		}
		if o.Watch > 0 {
			fmt.Fprint(out, "\033[H\033[2J")
			fmt.Fprintf(out, "%s  (every %s)\n\n", time.Now().Format(time.TimeOnly), o.Watch)
		}
		if err := printStatus(out, rows); err != nil || o.Watch <= 0 {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.Watch):
		}
	}
}

// StatusRow is one node's line.
type StatusRow struct {
	Node           string
	Pool           string
	RebootRequired bool
	Decision       string
	Phase          string
	Slot           string
	Cordoned       bool
	// Policy is the agent's RebootPolicyLoaded condition: "ok", its reason when False
	// (ConfigError, PolicyError), "-" when the agent has not written it; PolicyError
	// is the condition's message when False.
	Policy      string
	PolicyError string
}

// collectStatus reads the nodes (from the apiserver's watch cache) and the slot Leases:
// two requests, whatever the cluster's size.
func collectStatus(ctx context.Context, client kubernetes.Interface, namespace, selector string) ([]StatusRow, error) {
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0", LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	leases, err := client.CoordinationV1().Leases(namespace).List(ctx, metav1.ListOptions{LabelSelector: lock.LabelPool})
	if err != nil {
		return nil, fmt.Errorf("listing slot Leases in %s: %w", namespace, err)
	}
	slotOf := map[string]string{}
	for i := range leases.Items {
		l := &leases.Items[i]
		if kind, _, ok := lock.KindOf(l); ok && kind == lock.KindSlot && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
			slotOf[*l.Spec.HolderIdentity] = l.Name
		}
	}
	rows := make([]StatusRow, 0, len(nodes.Items))
	for i := range nodes.Items {
		rows = append(rows, statusRow(&nodes.Items[i], slotOf))
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Pool != rows[j].Pool {
			return rows[i].Pool < rows[j].Pool
		}
		return rows[i].Node < rows[j].Node
	})
	return rows, nil
}

func statusRow(n *corev1.Node, slotOf map[string]string) StatusRow {
	row := StatusRow{Node: n.Name, Phase: string(nodestate.StateOf(n).Phase), Slot: slotOf[n.Name], Cordoned: n.Spec.Unschedulable}
	row.Policy = "-"
	for _, c := range n.Status.Conditions {
		switch c.Type {
		case nodestate.ConditionRebootRequired:
			row.RebootRequired = c.Status == corev1.ConditionTrue
		case nodestate.ConditionPolicyLoaded:
			row.Policy = "ok"
			if c.Status != corev1.ConditionTrue {
				row.Policy, row.PolicyError = orDefault(c.Reason, "error"), c.Message
			}
		}
	}
	switch d, found, err := nodestate.DecisionOf(n); {
	case !found:
		row.Decision = "-"
	case err != nil:
		row.Decision = "unreadable"
	case d.Allowed:
		row.Pool, row.Decision = d.Pool, "allowed"
	default:
		row.Pool, row.Decision = d.Pool, "blocked"
		if len(d.Reasons) > 0 {
			row.Decision += ": " + d.Reasons[0].Message
		}
	}
	return row
}

// printStatus prints the table, then each distinct load error the agents report with
// the nodes that report it: the table's POLICY column says only which kind.
func printStatus(out io.Writer, rows []StatusRow) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tPOOL\tREBOOT-REQUIRED\tPHASE\tSLOT\tSCHEDULABLE\tPOLICY\tLAST DECISION")
	var errs []string
	nodesOf := map[string][]string{}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Node, orDefault(r.Pool, "-"), yesNo(r.RebootRequired),
			orDefault(r.Phase, "-"), orDefault(r.Slot, "-"), yesNo(!r.Cordoned), r.Policy, r.Decision)
		if r.PolicyError != "" {
			key := r.Policy + ": " + r.PolicyError
			if nodesOf[key] == nil {
				errs = append(errs, key)
			}
			nodesOf[key] = append(nodesOf[key], r.Node)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, e := range errs {
		if _, err := fmt.Fprintf(out, "\n%s (%d node(s): %s)\n", e, len(nodesOf[e]), strings.Join(nodesOf[e], ", ")); err != nil {
			return err
		}
	}
	return nil
}

// agentLoadError denies d, the live eval's decision, when the node's agent reports
// (RebootPolicyLoaded False) that its config or policies do not load: the agent then
// starts no reboot, whatever this process's own copy of the config says.
func agentLoadError(d *decision.Decision, n *corev1.Node) {
	for _, c := range n.Status.Conditions {
		if c.Type == nodestate.ConditionPolicyLoaded && c.Status == corev1.ConditionFalse {
			d.Allowed = false
			d.Reasons = append(d.Reasons, decision.Reason{Source: decision.SourceConfig,
				Message: fmt.Sprintf("the agent on %s reports %s: %s", n.Name, c.Reason, c.Message)})
		}
	}
}
