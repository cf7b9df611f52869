package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/rebootgate/rebootgate/cmd/rebootgate/internal/footprint"
	"github.com/rebootgate/rebootgate/engine/agent"
	"github.com/rebootgate/rebootgate/engine/detect"
	"github.com/rebootgate/rebootgate/engine/metrics"
)

// agentOptions are the flags of `rebootgate agent`; they bind onto agent.Config.
type agentOptions struct {
	cfg              agent.Config
	kubeconfig       string
	rebootCommand    string
	preLabels        []string
	postLabels       []string
	metricsHost      string
	metricsPort      int
	logFormat        string
	logLevel         string
	drainGracePeriod int
	drainTimeout     time.Duration
	skipWaitTimeout  int
	notifyURLFile    string

	// kured's flags that have no field of their own in agent.Config.
	sched          kuredSchedule
	period         time.Duration
	kuredLock      bool
	dsNamespace    string
	dsName         string
	lockAnnotation string
	// lookupEnv reads the KURED_* variables; os.LookupEnv unless a test sets it.
	lookupEnv func(string) (string, bool)
}

func newAgentCommand() *cobra.Command { return newAgentCommandFor(&agentOptions{}) }

// newAgentCommandFor binds the flags onto o (tests set o.lookupEnv).
func newAgentCommandFor(o *agentOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the per-node agent (a DaemonSet on every Linux node)",
		Args:  cobra.NoArgs,
		Long: `agent runs on every node: it notices that a reboot is needed, decides with the
config and policies in force, takes a slot of the node's pool and cordons, drains and
reboots the node, then uncordons it and releases the slot.

It is a drop-in for kured: every kured flag is accepted under kured's name, and also
from env KURED_<FLAG_IN_UPPER_SNAKE> (the env wins, as in kured). Without --config,
kured's schedule, blocker and concurrency flags (--reboot-days, --start-time, --end-time,
--time-zone, --concurrency, --blocking-pod-selector, --alert-filter-*) make one pool,
"default", owning every node; with --config they are an error, the file says it all.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd.Flags(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	c := &o.cfg
	// The defaults are agent.Config's: filled once, then each flag is bound with its
	// field's value as its default (kwok's way), so they are defined in one place.
	c.Defaults()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster)")
	f.StringVar(&c.NodeName, "node-id", "", "this node's name (default: env KURED_NODE_ID or NODE_NAME)")
	f.StringVar(&c.Namespace, "namespace", "", "namespace of the slot Leases, policy ConfigMaps and node summary (default: env POD_NAMESPACE, else "+defaultNamespace+")")
	f.StringSliceVar(&c.PolicyNamespaces, "policy-namespace", nil, "namespaces with policy ConfigMaps labelled rebootgate.io/policy=rego (default: --namespace)")
	f.StringVar(&c.ConfigPath, "config", "", "RebootGateConfig file, reloaded on change (default: one pool, any time)")
	f.BoolVar(&c.DryRun, "dry-run", false, "decide and report only: never cordon, drain or reboot")
	f.StringVar(&c.SentinelPath, "reboot-sentinel", c.SentinelPath, "file whose existence means a reboot is needed")
	f.StringVar(&c.SentinelCommand, "reboot-sentinel-command", "", "command instead of the file: exit 0 = needed, 1 = not needed, anything else is an error")
	f.DurationVar(&c.SentinelPeriod, "sentinel-period", 0, "sentinel command period and sentinel file fallback check (default --period if given, else 1m / 5m)")
	f.BoolVar(&c.Nsenter, "nsenter", true, "run the sentinel and reboot commands in the host's mount namespace (nsenter -m/proc/1/ns/mnt)")
	f.StringVar(&c.Alerts.Prometheus.URL, "prometheus-url", "", "Prometheus URL; firing ALERTS block reboots")
	f.StringVar(&c.Alerts.Alertmanager.URL, "alertmanager-url", "", "Alertmanager URL; its alerts block reboots, silenced ones only with blockSilenced")
	f.DurationVar(&c.LockTTL, "lock-ttl", 0, "slot Lease duration while held, renewed every third of it; 0 = 2m. As kured's 0 (never expires), a node mid-reboot keeps its slot until it is back, however long that takes (safer than kured's TTL > 0, which frees it mid-reboot); only a holder that stopped renewing and is not rebooting loses it")
	f.DurationVar(&c.LockReleaseDelay, "lock-release-delay", 0, "after a reboot, uncordon and then keep the slot this long before releasing it (kured's throttle between nodes; --soak instead waits before the uncordon)")
	f.BoolVar(&o.kuredLock, "kured-lock", false, "also take kured's lock (the --lock-annotation on DaemonSet --ds-namespace/--ds-name, in kured's JSON; --concurrency gives its holder count and must match the kured agents') after the slot and before the cordon, so that a mixed kured and rebootgate fleet never reboots more nodes together than kured's --concurrency")
	f.StringVar(&o.dsNamespace, "ds-namespace", "kube-system", "with --kured-lock: the namespace of kured's DaemonSet (not the agent's namespace: rebootgate writes nothing there but kured's lock)")
	f.StringVar(&o.dsName, "ds-name", "kured", "with --kured-lock: the DaemonSet carrying kured's lock annotation")
	f.StringVar(&o.lockAnnotation, "lock-annotation", "weave.works/kured-node-lock", "with --kured-lock: kured's lock annotation on --ds-name")
	f.DurationVar(&o.period, "period", 0, "kured's main-loop period (1h in kured): the sentinel check period (as --sentinel-period) and the re-check period while a needed reboot is blocked (as --recheck-interval); rebootgate also reacts to events at once")
	o.sched.bind(f)
	f.DurationVar(&c.LockJitter, "lock-jitter", 0, "random delay before a waiter that could not queue takes a freed slot (default 500ms)")
	f.DurationVar(&c.LockQueueGrace, "lock-queue-grace", 0, "how long a waiter whose turn has come may take to claim before the queue passes it over (default 10s, less than --lock-ttl)")
	f.IntVar(&o.drainGracePeriod, "drain-grace-period", -1, "pod termination grace period in seconds; -1 = each pod's own")
	f.DurationVar(&o.drainTimeout, "drain-timeout", c.Drain.Timeout, "timeout of the whole drain, all attempts; then the node is uncordoned and the slot released, or with --force-reboot it reboots anyway (kured's 0, no timeout, means 15m: a drain that never ends would hold a cordoned node and its slot for ever)")
	f.StringVar(&c.Drain.PodSelector, "drain-pod-selector", "", "only drain pods with these labels")
	f.IntVar(&o.skipWaitTimeout, "skip-wait-for-delete-timeout", 0, "ignore pods whose deletion started more than this many seconds ago")
	f.DurationVar(&c.Drain.Delay, "drain-delay", 0, "wait after the cordon before evicting pods (the gate and the slot are still checked meanwhile)")
	f.IntVar(&c.Drain.Attempts, "drain-attempts", c.Drain.Attempts, "drain attempts before giving up (uncordon, then release the slot)")
	f.DurationVar(&c.Drain.RetryDelay, "drain-retry-delay", c.Drain.RetryDelay, "pause between drain attempts")
	f.BoolVar(&c.ForceReboot, "force-reboot", false, "reboot even if the drain fails")
	f.StringVar(&c.RebootMethod, "reboot-method", c.RebootMethod, "command or signal")
	f.StringVar(&o.rebootCommand, "reboot-command", strings.Join(c.RebootCommand, " "), "reboot command (method command), run through nsenter unless --nsenter=false")
	f.IntVar(&c.RebootSignal, "reboot-signal", c.RebootSignal, "signal sent to PID 1 (method signal); 39 = SIGRTMIN+5")
	f.DurationVar(&c.RebootDelay, "reboot-delay", 0, "wait between the drain and the reboot")
	f.DurationVar(&c.RebootTimeout, "reboot-timeout", c.RebootTimeout, "how long to wait for a new boot ID before asking again")
	f.IntVar(&c.RebootAttempts, "reboot-attempts", c.RebootAttempts, "reboot requests before giving up")
	f.DurationVar(&c.ReadyTimeout, "ready-timeout", c.ReadyTimeout, "how long to wait for Ready after the reboot before warning")
	f.DurationVar(&c.Soak, "soak", 0, "how long the node must stay healthy before it is uncordoned")
	f.DurationVar(&c.LoopBackoff, "loop-backoff", c.LoopBackoff, "least time between two reboots of a node (reboot-loop protection)")
	f.DurationVar(&c.RecheckInterval, "recheck-interval", c.RecheckInterval, "re-decide this often while a needed reboot is blocked")
	f.IntVar(&c.MaxFailures, "max-failures", c.MaxFailures, "consecutive failures (failed drain, reboot not observed, sentinel that survived a reboot) that put the node on hold")
	f.DurationVar(&c.FailureBackoff, "failure-backoff", c.FailureBackoff, "back-off after a failure, doubled per consecutive failure up to 1h")
	f.DurationVar(&c.UnhealthyAfter, "unhealthy-after", c.UnhealthyAfter, "/healthz fails once every reconcile has failed for this long")
	f.StringSliceVar(&o.preLabels, "pre-reboot-node-labels", nil, "labels (k=v) set before cordoning")
	f.StringSliceVar(&o.postLabels, "post-reboot-node-labels", nil, "labels (k=v) set after uncordoning")
	f.BoolVar(&c.KuredAnnotations, "annotate-nodes", false, "also write kured's node annotations weave.works/kured-reboot-in-progress and weave.works/kured-most-recent-reboot-needed (RFC 3339 times) for tools that read them; rebootgate's own are always written")
	f.BoolVar(&c.MaintenanceConditions, "node-maintenance-conditions", false, "write the Node conditions of KEP-5683 (MaintenancePlanned, MaintenanceInProgress, DrainInProgress, Drained) as the reboot goes, so other tools see it; off again, it turns False those it set")
	f.StringVar(&c.PreferNoScheduleTaint, "prefer-no-schedule-taint", "", "taint key (effect PreferNoSchedule) set while the node waits for a slot and while it reboots, so pods prefer other nodes")
	f.StringVar(&o.metricsHost, "metrics-host", "", "address /metrics, /healthz and /readyz listen on")
	f.IntVar(&o.metricsPort, "metrics-port", 8080, "port of /metrics; 0 disables")
	f.StringArrayVar(&c.Notify.URLs, "notify-url", nil, "shoutrrr URL for notifications (repeatable), e.g. slack://…, teams://…, smtp://…")
	f.StringVar(&o.notifyURLFile, "notify-url-file", "", "file of shoutrrr URLs, one per line (# comments), added to --notify-url: keeps the tokens out of the command line (e.g. a mounted Secret)")
	f.StringVar(&c.Notify.SlackHookURL, "slack-hook-url", "", "deprecated: a Slack incoming-webhook URL (use --notify-url)")
	f.StringVar(&c.Notify.SlackUsername, "slack-username", "kured", "deprecated: with --slack-hook-url, the name messages are posted under (used only when given)")
	f.StringVar(&c.Notify.SlackChannel, "slack-channel", "", "deprecated, no effect (as in kured since 1.7): a Slack incoming webhook posts to the channel it was created for")
	f.StringVar(&c.Notify.Templates.Drain, "message-template-drain", "", "drain message: a Go template over .Node .Pool .Decision, or kured's printf form with %s")
	f.StringVar(&c.Notify.Templates.Reboot, "message-template-reboot", "", "reboot message (as --message-template-drain)")
	f.StringVar(&c.Notify.Templates.Uncordon, "message-template-uncordon", "", "uncordon message (as --message-template-drain)")
	f.StringVar(&c.Notify.Templates.BlockedTooLong, "message-template-blocked-too-long", "", "message when a needed reboot stays blocked for --blocked-too-long")
	f.DurationVar(&c.BlockedTooLong, "blocked-too-long", 24*time.Hour, "notify once when a needed reboot stays blocked this long; 0 = never")
	f.StringVar(&o.logFormat, "log-format", "text", "text or json")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// defaultNamespace is rebootgate's namespace when neither --namespace nor POD_NAMESPACE
// says (a kured manifest sets neither): a namespace of its own rather than kured's
// --ds-namespace (kube-system), so that the RBAC for its Leases and ConfigMaps grants
// nothing in kube-system, where a Lease is a component's leader lock and a ConfigMap
// may be coredns' or aws-auth.
const defaultNamespace = "rebootgate"

// releaseAfterReady is when, after the agent is ready, start-up's memory is given
// back (footprint.Release): its first decision, the status it writes and the events
// it records are done well within it.
const releaseAfterReady = 30 * time.Second

func (o *agentOptions) run(ctx context.Context, fs *pflag.FlagSet, stderr io.Writer) error {
	log, err := o.configure(fs, stderr)
	if err != nil {
		return err
	}
	c := &o.cfg
	c.APIRequests = metrics.NewAPIRequests()
	// What only start-up needed (initialisers, the policy compilers, the first lists,
	// the first decision and its reports) need not stay resident in an agent that may
	// idle for weeks: release it once start-up is over.
	var release *time.Timer
	c.OnReady = func() {
		release = time.AfterFunc(releaseAfterReady, func() {
			if n, err := footprint.Release(); err != nil {
				log.Warn("returning start-up memory to the system", "err", err)
			} else {
				log.Debug("returned start-up memory to the system", "unmappedBytes", n)
			}
		})
	}
	defer func() {
		if release != nil {
			release.Stop()
		}
	}()
	cfg, err := restConfig(o.kubeconfig, "rebootgate-agent/"+c.NodeName, c.APIRequests.(*prometheus.CounterVec))
	if err != nil {
		return badInput("%w", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return badInput("%w", err)
	}
	a, err := agent.New(*c, client, log)
	if err != nil {
		return badInput("%w", err)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// The config is valid (agent.New checked it without API requests): say now which
	// permission is missing, not with the first Forbidden mid-reboot. The reviews get
	// their own rate limit, so the informers' start is not queued behind them.
	reviews := rest.CopyConfig(cfg)
	reviews.QPS, reviews.Burst = 50, 50
	reviewClient, err := kubernetes.NewForConfig(reviews)
	if err != nil {
		return badInput("%w", err)
	}
	if err := checkRBAC(ctx, reviewClient, o.accessTarget().checks(agentPermissions), agentRBACHint, log); err != nil {
		return err
	}
	return a.Run(ctx)
}

// accessTarget is where this agent's permissions apply.
func (o *agentOptions) accessTarget() accessTarget {
	c := &o.cfg
	return accessTarget{
		node: c.NodeName, namespace: c.Namespace, policyNamespaces: c.PolicyNamespaces,
		dsNamespace: o.dsNamespace, dsName: o.dsName, kuredLock: o.kuredLock,
	}
}

// configure applies the KURED_* env over the parsed flags and turns them into o.cfg,
// without touching the cluster. It returns the logger the flags ask for.
func (o *agentOptions) configure(fs *pflag.FlagSet, stderr io.Writer) (*slog.Logger, error) {
	lookup := o.lookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var err error
	if o.sched.env, err = applyKuredEnv(fs, lookup); err != nil {
		return nil, err
	}
	log, err := newLogger(stderr, o.logFormat, o.logLevel)
	if err != nil {
		return nil, badInput("%w", err)
	}
	if err := o.prepare(fs, log); err != nil {
		return nil, err
	}
	return log, nil
}

// prepare turns the parsed flags into o.cfg.
func (o *agentOptions) prepare(fs *pflag.FlagSet, log *slog.Logger) error {
	var err error
	c := &o.cfg
	c.NodeName = firstNonEmpty(c.NodeName, os.Getenv("KURED_NODE_ID"), os.Getenv("NODE_NAME"))
	c.Namespace = firstNonEmpty(c.Namespace, os.Getenv("POD_NAMESPACE"), defaultNamespace)
	if c.RebootCommand, err = detect.SplitCommand(o.rebootCommand); err != nil {
		return badInput("--reboot-command: %w", err)
	}
	if c.PreRebootLabels, err = parseLabels("--pre-reboot-node-labels", o.preLabels); err != nil {
		return err
	}
	if c.PostRebootLabels, err = parseLabels("--post-reboot-node-labels", o.postLabels); err != nil {
		return err
	}
	c.Drain.GracePeriod = time.Duration(o.drainGracePeriod) * time.Second
	c.Drain.Timeout = o.drainTimeout
	c.Drain.SkipWaitForDeleteTimeout = time.Duration(o.skipWaitTimeout) * time.Second
	if o.notifyURLFile != "" {
		urls, err := readNotifyURLFile(o.notifyURLFile)
		if err != nil {
			return err
		}
		c.Notify.URLs = append(c.Notify.URLs, urls...)
	}
	if o.metricsPort > 0 {
		c.MetricsAddress = net.JoinHostPort(o.metricsHost, strconv.Itoa(o.metricsPort))
	}
	return o.prepareKured(fs, log)
}

func newClient(kubeconfig, userAgent string) (kubernetes.Interface, error) {
	cfg, err := restConfig(kubeconfig, userAgent, nil)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// restConfig is the client config; with counter, every request is counted by method
// and watch, which is how the agent proves it makes no periodic requests when idle.
func restConfig(kubeconfig, userAgent string, counter *prometheus.CounterVec) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		cfg, err = rest.InClusterConfig()
	} else {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		rules.ExplicitPath = kubeconfig
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = userAgent
	if counter != nil {
		cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				counter.WithLabelValues(r.Method, strconv.FormatBool(r.URL.Query().Get("watch") == "true")).Inc()
				return rt.RoundTrip(r)
			})
		})
	}
	return cfg, nil
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", format)
}

func parseLabels(flag string, items []string) (map[string]string, error) {
	out := map[string]string{}
	for _, it := range items {
		k, v, ok := strings.Cut(it, "=")
		if !ok || k == "" {
			return nil, badInput("%s: %q is not key=value", flag, it)
		}
		out[k] = v
	}
	return out, nil
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
