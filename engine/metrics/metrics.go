package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Namespace prefixes every metric name.
const Namespace = "rebootgate"

// Metrics are the agent's metrics. The node label is the agent's own node: one series
// per node and metric, so cardinality grows with the cluster, never with time.
type Metrics struct {
	// RebootRequired is 1 while the node's sentinel says a reboot is needed.
	RebootRequired *prometheus.GaugeVec
	// KuredRebootRequired is kured's one metric, kured_reboot_required{node}, with
	// the same value, so that kured's dashboards and alerts keep working.
	KuredRebootRequired *prometheus.GaugeVec
	// SentinelErrors counts sentinel checks that could not run.
	SentinelErrors *prometheus.CounterVec
	// GateDecision is 1 when the last decision allowed the reboot, 0 when it blocked it.
	GateDecision *prometheus.GaugeVec
	// GateDecisions counts decisions by result.
	GateDecisions *prometheus.CounterVec
	// Blocked is 1 for each source (pool, condition/<name>, policy, engine) of the
	// reasons of the node's current blocked decision; no series while allowed.
	Blocked *prometheus.GaugeVec
	// Reboots counts verified reboots of the node.
	Reboots *prometheus.CounterVec
	// Phase is 1 for the node's current pipeline phase, 0 for the others.
	Phase *prometheus.GaugeVec
	// SlotsHeld is the number of the pool's slots this node holds (0 or 1); sum it over
	// nodes for the pool's total.
	SlotsHeld *prometheus.GaugeVec
	// DrainDuration, RebootDuration and TotalDuration time the pipeline's steps.
	DrainDuration  *prometheus.HistogramVec
	RebootDuration *prometheus.HistogramVec
	TotalDuration  *prometheus.HistogramVec
	// Errors counts pipeline errors by step.
	Errors *prometheus.CounterVec
	// PolicyStatus is 1 when the policies and config in force loaded without error.
	PolicyStatus *prometheus.GaugeVec
	// PolicyLoadErrors counts failed policy or config loads.
	PolicyLoadErrors *prometheus.CounterVec
	// Failures counts failed reboot attempts of the node by reason (drain, reboot not
	// observed, sentinel survived the reboot); OnHold is 1 while the node is on hold.
	Failures *prometheus.CounterVec
	OnHold   *prometheus.GaugeVec
	// HolderNotBack is 1 while a slot holder of the pool (possibly another node, seen
	// by this waiting agent) has not come back from its reboot.
	HolderNotBack *prometheus.GaugeVec
	// DetectionDegraded is 1 while the sentinel file or the config file cannot be
	// watched (no inotify instance left) and is polled instead.
	DetectionDegraded *prometheus.GaugeVec
	// Stalled is 1 while a step (Ready, health gate) waits longer than its timeout.
	Stalled *prometheus.GaugeVec
}

// durationBuckets span a quick drain (seconds) to a slow reboot with soak (an hour).
var durationBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600}

// New creates the metrics and registers them on reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		RebootRequired: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "reboot_required",
			Help: "1 while the node's sentinel says a reboot is needed, else 0.",
		}, []string{"node"}),
		KuredRebootRequired: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Subsystem: "kured", Name: "reboot_required",
			Help: "OS requires reboot due to software updates (kured's metric; the same as rebootgate_reboot_required).",
		}, []string{"node"}),
		SentinelErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "sentinel_errors_total",
			Help: "Sentinel checks that could not run (never counted as reboot needed).",
		}, []string{"node"}),
		GateDecision: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "gate_decision",
			Help: "1 when the last gate decision allowed a reboot of the node, 0 when it blocked it.",
		}, []string{"node", "pool"}),
		GateDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "gate_decisions_total",
			Help: "Gate decisions by result (allowed or blocked).",
		}, []string{"node", "pool", "result"}),
		Blocked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "blocked",
			Help: "1 for each source (pool, condition/<name>, policy, engine) of a reason blocking the node's reboot; no series while allowed.",
		}, []string{"node", "pool", "source"}),
		Reboots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "reboots_total",
			Help: "Verified reboots of the node (new boot ID, then uncordoned and the slot released).",
		}, []string{"node", "pool"}),
		Phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "phase",
			Help: "1 for the node's current reboot pipeline phase, 0 for the others.",
		}, []string{"node", "phase"}),
		SlotsHeld: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "slots_held",
			Help: "Reboot slots of the pool held by this node (sum over nodes for the pool).",
		}, []string{"node", "pool"}),
		DrainDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "drain_duration_seconds",
			Help: "Time to drain the node.", Buckets: durationBuckets,
		}, []string{"node", "pool"}),
		RebootDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "reboot_duration_seconds",
			Help: "Time from the (last) reboot request to the node showing a new boot ID, as recorded on the node, so measured across the agent's restart.", Buckets: durationBuckets,
		}, []string{"node", "pool"}),
		TotalDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "total_duration_seconds",
			Help: "Time from the cordon to the end of a verified reboot (uncordon, slot released), as recorded on the node.", Buckets: durationBuckets,
		}, []string{"node", "pool"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "errors_total",
			Help: "Errors by pipeline step.",
		}, []string{"node", "step"}),
		PolicyStatus: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "policy_status",
			Help: "1 when the config and policies in force loaded without error, 0 while the last load failed.",
		}, []string{"node"}),
		PolicyLoadErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "policy_load_errors_total",
			Help: "Failed loads of the config or of policy ConfigMaps.",
		}, []string{"node"}),
		Failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "failures_total",
			Help: "Failed reboot attempts of the node (each is backed off; too many in a row put the node on hold).",
		}, []string{"node", "reason"}),
		OnHold: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "on_hold",
			Help: "1 while the node carries the hold annotation, else 0.",
		}, []string{"node"}),
		HolderNotBack: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "holder_not_back",
			Help: "1 while a slot holder of the pool has not come back from its reboot after the reboot and ready timeouts.",
		}, []string{"pool", "holder"}),
		DetectionDegraded: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "detection_degraded",
			Help: "1 while the sentinel (what=sentinel) or config file (what=config) cannot be watched and is polled instead (every 15s).",
		}, []string{"node", "what"}),
		Stalled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "stalled",
			Help: "1 while the node's reboot waits longer than its timeout for a step (ready, health).",
		}, []string{"node", "step"}),
	}
	for _, c := range []prometheus.Collector{
		m.RebootRequired, m.KuredRebootRequired, m.SentinelErrors, m.GateDecision, m.GateDecisions, m.Blocked, m.Reboots, m.Phase, m.SlotsHeld,
		m.DrainDuration, m.RebootDuration, m.TotalDuration, m.Errors, m.PolicyStatus, m.PolicyLoadErrors,
		m.Failures, m.OnHold, m.HolderNotBack, m.DetectionDegraded, m.Stalled,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// NewAPIRequests counts the agent's requests to the API server by HTTP method and
// whether they are watches. It lives outside Metrics because the client that it
// counts for is built before the agent; register it with the agent's registry.
func NewAPIRequests() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "api_requests_total",
		Help: "Requests to the Kubernetes API server by HTTP method and whether they are watches.",
	}, []string{"method", "watch"})
}
