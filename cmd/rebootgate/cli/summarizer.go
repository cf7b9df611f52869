package cli

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/record"

	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/source"
	"github.com/rebootgate/rebootgate/engine/summary"
)

// summarizerOptions are the flags of `rebootgate summarizer`.
type summarizerOptions struct {
	kubeconfig       string
	namespace        string
	policyNamespaces []string
	configPath       string
	identity         string
	medik8sNamespace string
	leaderElect      bool
	interval         time.Duration
	heartbeat        time.Duration
	healthAddress    string
	unhealthyAfter   time.Duration
	logFormat        string
	logLevel         string
}

func newSummarizerCommand() *cobra.Command {
	o := &summarizerOptions{}
	cmd := &cobra.Command{
		Use:   "summarizer",
		Short: "Publish the node summary that disruption budgets and circuit breakers use",
		Args:  cobra.NoArgs,
		Long: `summarizer watches every Node (stripped to its availability) and medik8s'
maintenance Leases, and publishes per pool and for the cluster how many nodes are
Ready, NotReady, cordoned, disrupted (a disruption taint) or under maintenance, in
the ConfigMap ` + summary.ConfigMapName + ` of --namespace, and, when it changes, the node index
(every node's name and addresses, which resolves alerts' instance labels) in the
ConfigMaps ` + summary.IndexConfigMapPrefix + `<n>, which the summary names by hash. Agents read them
when they decide, so no agent watches every node. Run two replicas: one is elected and
writes.`,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), cmd) },
	}
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster)")
	f.StringVar(&o.namespace, "namespace", "", "namespace of the summary ConfigMap, the leader Lease and the policy ConfigMaps: the agents' (default: env POD_NAMESPACE)")
	f.StringSliceVar(&o.policyNamespaces, "policy-namespace", nil, "namespaces with policy ConfigMaps, as the agents' (default: --namespace)")
	f.StringVar(&o.configPath, "config", "", "RebootGateConfig file, the agents' (its pools place the nodes)")
	f.StringVar(&o.identity, "identity", "", "this replica's name in the leader Lease and the summary (default: env POD_NAME, else the host name)")
	f.StringVar(&o.medik8sNamespace, "medik8s-namespace", disruption.Medik8sNamespace, "namespace of medik8s' node-maintenance Leases (node-<name>)")
	f.BoolVar(&o.leaderElect, "leader-elect", true, "elect one writer among the replicas with the Lease "+summary.LeaseName)
	f.DurationVar(&o.interval, "interval", summary.DefaultInterval, "write a changed summary at most this often")
	f.DurationVar(&o.heartbeat, "heartbeat", summary.DefaultHeartbeat, "rewrite an unchanged summary this often, so agents can tell it is fresh")
	f.StringVar(&o.healthAddress, "health-address", "", "address /healthz and /readyz listen on, e.g. :8081 (default: none)")
	f.DurationVar(&o.unhealthyAfter, "unhealthy-after", time.Minute, "/healthz fails once the leader's publishing loop has made no pass for this long")
	f.StringVar(&o.logFormat, "log-format", "text", "text or json")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func (o *summarizerOptions) run(ctx context.Context, cmd *cobra.Command) error {
	log, err := newLogger(cmd.ErrOrStderr(), o.logFormat, o.logLevel)
	if err != nil {
		return badInput("%w", err)
	}
	o.namespace = firstNonEmpty(o.namespace, os.Getenv("POD_NAMESPACE"))
	if o.namespace == "" {
		return badInput("--namespace: required (or env POD_NAMESPACE)")
	}
	host, _ := os.Hostname()
	o.identity = firstNonEmpty(o.identity, os.Getenv("POD_NAME"), host)
	if o.identity == "" {
		return badInput("--identity: required (or env POD_NAME)")
	}
	if len(o.policyNamespaces) == 0 {
		o.policyNamespaces = []string{o.namespace}
	}
	if o.unhealthyAfter <= 0 {
		return badInput("--unhealthy-after: %v is not positive", o.unhealthyAfter)
	}
	client, err := newClient(o.kubeconfig, "rebootgate-summarizer/"+o.identity)
	if err != nil {
		return badInput("%w", err)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return o.serve(ctx, client, log)
}

// serve checks the summarizer's permissions, then publishes (when elected) until ctx is
// done.
func (o *summarizerOptions) serve(ctx context.Context, client kubernetes.Interface, log *slog.Logger) error {
	// Say now which permission is missing, not with a Forbidden in every loop (a node
	// list refused would leave the informer unsynced for ever).
	if err := checkRBAC(ctx, client, o.accessTarget().checks(summarizerPermissions), summarizerRBACHint, log); err != nil {
		return err
	}
	events := record.NewBroadcaster()
	events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	defer events.Shutdown()
	recorder := events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "rebootgate-summarizer"})
	src, err := source.New(source.Config{
		Client: client, Logger: log, NodeName: o.identity, Namespaces: o.policyNamespaces, ConfigPath: o.configPath, Recorder: recorder,
		// Config errors are reported on the summary ConfigMap: the summarizer has no Node.
		NodeRef: &corev1.ObjectReference{Kind: "ConfigMap", APIVersion: "v1", Namespace: o.namespace, Name: summary.ConfigMapName},
		// One or two replicas, not one per node: policy errors go on the ConfigMap at
		// fault, where whoever edited it looks.
		PolicyEventsOnConfigMaps: true,
	})
	if err != nil {
		return badInput("%w", err)
	}
	sum, err := summary.New(summary.Config{
		Client: client, Namespace: o.namespace, Identity: o.identity, Engine: src.LastGood, EngineChanged: src.Changed(),
		Medik8sNamespace: o.medik8sNamespace, Interval: o.interval, Heartbeat: o.heartbeat, Logger: log,
	})
	if err != nil {
		return badInput("%w", err)
	}
	health := &summarizerHealth{
		source: func() error { _, err := src.Current(); return err },
		sum:    sum, stall: o.unhealthyAfter,
	}
	if o.leaderElect {
		health.elector = leaderelection.NewLeaderHealthzAdaptor(summary.LeaderRenewGrace)
	} else {
		health.leading.Store(true)
	}
	if o.healthAddress != "" {
		if err := serveHealth(ctx, o.healthAddress, health, log); err != nil {
			return err
		}
	}
	go src.Run(ctx)
	if !o.leaderElect {
		return sum.Run(ctx)
	}
	return summary.RunElected(ctx, summary.Election{
		Client: client, Namespace: o.namespace, Identity: o.identity, Logger: log,
		WatchDog: health.elector, OnLeading: func() { health.leading.Store(true) },
	}, sum.Run)
}

// accessTarget is where the summarizer's permissions apply.
func (o *summarizerOptions) accessTarget() accessTarget {
	return accessTarget{namespace: o.namespace, policyNamespaces: o.policyNamespaces, medik8sNamespace: o.medik8sNamespace}
}
