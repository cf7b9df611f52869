package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	appslisters "k8s.io/client-go/listers/apps/v1"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/rebootgate/rebootgate/engine/agent/nodeops"
	"github.com/rebootgate/rebootgate/engine/alerts"
	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/detect"
	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/facts"
	"github.com/rebootgate/rebootgate/engine/lock"
	"github.com/rebootgate/rebootgate/engine/metrics"
	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/engine/notify"
	"github.com/rebootgate/rebootgate/engine/pipeline"
	"github.com/rebootgate/rebootgate/engine/source"
	"github.com/rebootgate/rebootgate/engine/summary"
)

// Agent is one node's agent.
type Agent struct {
	cfg      Config
	client   kubernetes.Interface
	clock    clock.WithTicker
	log      *slog.Logger // with the node attribute
	baseLog  *slog.Logger // for packages that add the node themselves
	registry *prometheus.Registry
	metrics  *metrics.Metrics
	events   record.EventBroadcaster
	recorder record.EventRecorder
	nodeRef  *corev1.ObjectReference

	source   *source.Source
	detector detect.Detector
	alerts   *alerts.Gatherer
	notifier notify.Notifier
	blocked  *notify.BlockedTooLong

	nodes listersv1.NodeLister
	pods  listersv1.PodLister
	// kuredDS caches kured's DaemonSet (with --kured-lock); kuredWaitingFor is the
	// holders last reported while waiting for its lock.
	kuredDS         appslisters.DaemonSetLister
	kuredWaitingFor string
	// kuredKept is the created time of this node's entry as last written or seen by
	// keepKuredLock (zero: unknown); kuredLostTo the holders last reported when the
	// entry could not be kept.
	kuredKept   time.Time
	kuredLostTo string
	pokes       chan struct{}
	// detectorStates carries the sentinel's changes to the loop.
	detectorStates chan detect.State
	ready          atomic.Bool

	semMu sync.Mutex
	sems  map[string]*lock.Semaphore

	poolSizeMu sync.Mutex
	poolSize   poolSizeCache

	summaryMu    sync.Mutex
	summaryCache summaryRead
	summaries    *summary.Observer
	nodeIndex    *summary.IndexReader // the node index shards read, by their hashes

	executor *nodeops.Executor

	// Loop state, owned by Run's goroutine.
	needed       detect.State
	lastReport   string
	blockedBy    map[[2]string]bool // pool, source of the rebootgate_blocked series set
	lastRequired *bool
	// held is the slot this node holds (nil: none), heldRef names it.
	held    *lock.Held
	heldRef nodeops.SlotRef
	// lastWrite is the agent's last write of the node's state not yet seen in the
	// informer's cache (nil: none).
	lastWrite *written
	// resumed: this process already looked for a slot held before it started.
	resumed      bool
	healthySince time.Time
	// ended is how the last reboot ended, seen by this process (the lifecycle
	// conditions' reason); condsSent is their last write.
	ended     pipeline.Action
	condsSent *condsSent
	// policyCondSent is the last write of the RebootPolicyLoaded condition;
	// loadErrorSent the load error last notified ("" while the set loads).
	policyCondSent *condsSent
	loadErrorSent  string
	// lastHealthWhy is the health gate's last reason, reported once per change.
	lastHealthWhy string
	stalled       map[string]bool // escalations already reported in this phase

	// notBackSeen dedupes "has not come back" reports (the watch of other holders and
	// the loop); notBacks is that watch.
	notBackMu   sync.Mutex
	notBackSeen map[string]bool
	notBacks    *notBackWatch

	// Health of the reconcile loop, for /healthz.
	loopMu       sync.Mutex
	failingSince time.Time
	lastErr      error
}

// New builds an agent. It makes no API requests.
func New(cfg Config, client kubernetes.Interface, log *slog.Logger) (*Agent, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	a := &Agent{
		cfg: cfg, client: client, clock: clock.RealClock{}, log: log.With("node", cfg.NodeName), baseLog: log,
		registry: prometheus.NewRegistry(), pokes: make(chan struct{}, 1), detectorStates: make(chan detect.State, 1), sems: map[string]*lock.Semaphore{},
		// Kubelet records Node events with the node name as UID; so do we, so they show
		// in kubectl describe node.
		nodeRef: &corev1.ObjectReference{Kind: "Node", Name: cfg.NodeName, UID: types.UID(cfg.NodeName)},
	}
	var err error
	if a.metrics, err = metrics.New(a.registry); err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	a.registry.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	if cfg.APIRequests != nil {
		if err := a.registry.Register(cfg.APIRequests); err != nil {
			return nil, fmt.Errorf("registering the API request counter: %w", err)
		}
	}
	a.events = record.NewBroadcaster()
	a.recorder = a.events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "rebootgate", Host: cfg.NodeName})
	a.source, err = source.New(source.Config{
		Client: client, Clock: a.clock, Logger: a.log, NodeName: cfg.NodeName, NodeRef: a.nodeRef,
		Namespaces: cfg.PolicyNamespaces, ConfigPath: cfg.ConfigPath, Config: cfg.InlineConfig, Recorder: a.recorder, Metrics: a.metrics,
	})
	if err != nil {
		return nil, err
	}
	a.detector, err = detect.FromKured(cfg.SentinelPath, cfg.SentinelCommand, detect.Options{
		Period: cfg.SentinelPeriod, NoNsenter: !cfg.Nsenter, Clock: a.clock, Logger: a.log,
	})
	if err != nil {
		return nil, err
	}
	if cfg.Notify.Logger == nil {
		cfg.Notify.Logger = a.log
	}
	if a.notifier, err = notify.New(cfg.Notify); err != nil {
		return nil, err
	}
	if cfg.BlockedTooLong > 0 {
		a.blocked = notify.NewBlockedTooLong(cfg.BlockedTooLong)
	}
	a.stalled, a.notBackSeen = map[string]bool{}, map[string]bool{}
	a.notBacks = newNotBackWatch(client, cfg.Namespace, a.clock, cfg.RebootTimeout+cfg.ReadyTimeout, cfg.RecheckInterval, a.notBack, a.holderBack)
	if k := cfg.KuredLock; k != nil {
		own := *k
		if own.Client == nil {
			own.Client = client
		}
		if own.NodeID == "" {
			own.NodeID = cfg.NodeName
		}
		if own.Clock == nil {
			own.Clock = a.clock
		}
		if err := own.Validate(); err != nil {
			return nil, err
		}
		a.cfg.KuredLock = &own
	}
	if a.executor, err = nodeops.New(a.executorConfig()); err != nil {
		return nil, err
	}
	if cfg.Alerts.Prometheus.URL != "" || cfg.Alerts.Alertmanager.URL != "" {
		if cfg.Alerts.Logger == nil {
			cfg.Alerts.Logger = a.log
		}
		if a.alerts, err = alerts.New(cfg.Alerts); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// Registry is the agent's metrics registry.
func (a *Agent) Registry() *prometheus.Registry { return a.registry }

// Run runs the agent until ctx is done.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: a.client.CoreV1().Events("")})
	defer a.events.Shutdown()

	if a.cfg.MetricsAddress != "" {
		srv := &http.Server{Addr: a.cfg.MetricsAddress, Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("metrics server stopped", "address", a.cfg.MetricsAddress, "err", err)
			}
		}()
		defer srv.Close()
	}
	if err := a.startInformers(ctx); err != nil {
		return err
	}
	if a.cfg.KuredLock != nil {
		// Also in dry-run: a reboot in progress there still gives kured's lock back.
		if err := a.startKuredInformer(ctx); err != nil {
			return err
		}
	}
	go a.source.Run(ctx)
	go a.notBacks.run(ctx)
	go func() {
		if err := a.detector.Run(ctx, a.detectorStates); err != nil {
			a.log.Error("reboot detection stopped", "err", err)
		}
	}()
	// Decide only once the config and policies have been read: a decision before that
	// would report a spurious "no valid policy" block.
	if _, err := a.source.WaitCurrent(ctx); err != nil && ctx.Err() != nil {
		return nil
	}
	a.ready.Store(true)
	if a.cfg.OnReady != nil {
		a.cfg.OnReady()
	}
	a.log.Info("agent started", "dryRun", a.cfg.DryRun, "sentinel", a.cfg.SentinelPath, "sentinelCommand", a.cfg.SentinelCommand)

	a.loop(ctx)
	return nil
}

func (a *Agent) poke() {
	select {
	case a.pokes <- struct{}{}:
	default:
	}
}

// startInformers watches this Node and the pods bound to it, and nothing else.
func (a *Agent) startInformers(ctx context.Context) error {
	nodeFactory := informers.NewSharedInformerFactoryWithOptions(a.client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", a.cfg.NodeName).String()
	}))
	podFactory := informers.NewSharedInformerFactoryWithOptions(a.client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.cfg.NodeName).String()
	}))
	nodeInformer := nodeFactory.Core().V1().Nodes()
	podInformer := podFactory.Core().V1().Pods()
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { a.poke() },
		UpdateFunc: func(old, cur any) { a.onUpdate(old, cur) },
		DeleteFunc: func(any) { a.poke() },
	}
	if _, err := nodeInformer.Informer().AddEventHandler(handler); err != nil {
		return fmt.Errorf("watching node %s: %w", a.cfg.NodeName, err)
	}
	if _, err := podInformer.Informer().AddEventHandler(handler); err != nil {
		return fmt.Errorf("watching pods on node %s: %w", a.cfg.NodeName, err)
	}
	a.nodes, a.pods = nodeInformer.Lister(), podInformer.Lister()
	nodeFactory.Start(ctx.Done())
	podFactory.Start(ctx.Done())
	for typ, ok := range nodeFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("syncing the %v informer: %w", typ, ctx.Err())
		}
	}
	for typ, ok := range podFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("syncing the %v informer: %w", typ, ctx.Err())
		}
	}
	return nil
}

// onUpdate ignores Node heartbeats: only a change that can matter to a decision
// (labels, annotations, taints, schedulability, conditions' status, addresses) pokes
// the loop.
func (a *Agent) onUpdate(old, cur any) {
	on, ok1 := old.(*corev1.Node)
	cn, ok2 := cur.(*corev1.Node)
	if ok1 && ok2 && !nodeChangeMatters(on, cn) {
		return
	}
	a.poke()
}

func nodeChangeMatters(a, b *corev1.Node) bool {
	if !labels.Equals(a.Labels, b.Labels) || !labels.Equals(a.Annotations, b.Annotations) ||
		a.Spec.Unschedulable != b.Spec.Unschedulable || len(a.Spec.Taints) != len(b.Spec.Taints) ||
		a.Status.NodeInfo.BootID != b.Status.NodeInfo.BootID || len(a.Status.Conditions) != len(b.Status.Conditions) ||
		!slices.Equal(a.Status.Addresses, b.Status.Addresses) { // node-scoped alerts name addresses
		return true
	}
	for i := range a.Status.Conditions {
		if a.Status.Conditions[i].Type != b.Status.Conditions[i].Type || a.Status.Conditions[i].Status != b.Status.Conditions[i].Status {
			return true
		}
	}
	return false
}

func (a *Agent) node() (*corev1.Node, error) { return a.nodes.Get(a.cfg.NodeName) }

// gather collects the facts of a decision: the Node and pods from the informers'
// caches, alerts (cached briefly) only when configured.
func (a *Agent) gather(ctx context.Context) (*facts.Facts, error) {
	n, err := a.node()
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", a.cfg.NodeName, err)
	}
	list, err := a.pods.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("pods on node %s: %w", a.cfg.NodeName, err)
	}
	f := &facts.Facts{Node: n, Pods: make([]corev1.Pod, len(list))}
	for i, p := range list {
		f.Pods[i] = *p
	}
	if a.alerts != nil {
		a.alerts.Fill(ctx, f)
	}
	// The last good engine: a reboot in progress re-decides with it, and a new one is
	// denied without a current engine anyway. The summary also names the node index
	// that tells whether an alert's instance names another node, a pod, or nothing:
	// read it, and the index shards the alerts' keys are in, when an alert needs it.
	if engine, err := a.source.LastGood(); err == nil {
		keys := engine.NodeIndexKeys(n, f.Alerts)
		if len(keys) > 0 || engine.NeedsSummary(n, a.clock.Now()) {
			r := a.nodeSummary(ctx)
			f.Summary, f.SummarySeenAt, f.SummaryErr = r.summary, r.seenAt, r.err
			a.indexReader().Fill(ctx, f, keys, a.clock.Now())
		}
	}
	return f, nil
}

// summaryReuse is how long a read node summary is reused: the lock asks for the slot
// count on every Lease event, and a burst of events needs one read, not one each.
const summaryReuse = time.Second

// nodeSummary reads the summarizer's node summary from the API server's watch cache,
// with when this agent saw it appear (its age is judged on this agent's clock).
func (a *Agent) nodeSummary(ctx context.Context) summaryRead {
	now := a.clock.Now()
	a.summaryMu.Lock()
	defer a.summaryMu.Unlock()
	if c := a.summaryCache; c.at != (time.Time{}) && now.Sub(c.at) < summaryReuse && !now.Before(c.at) {
		return c
	}
	if a.summaries == nil {
		a.summaries = summary.NewObserver(a.client, a.cfg.Namespace)
	}
	s, seenAt, err := a.summaries.Read(ctx, now)
	a.summaryCache = summaryRead{summary: s, seenAt: seenAt, err: err, at: now}
	return a.summaryCache
}

// indexReader is the agent's reader of node index shards, made at first use (on the
// agent's clock, which tests replace after New).
func (a *Agent) indexReader() *summary.IndexReader {
	a.summaryMu.Lock()
	defer a.summaryMu.Unlock()
	if a.nodeIndex == nil {
		a.nodeIndex = summary.NewIndexReader(a.client, a.cfg.Namespace, a.clock)
	}
	return a.nodeIndex
}

// summaryRead is the last read of the node summary.
type summaryRead struct {
	summary *disruption.Summary
	seenAt  time.Time // when this agent saw it appear
	err     error
	at      time.Time
}

// usable is the summary read if it may be trusted at now, or why not.
func (r summaryRead) usable(now time.Time) (*disruption.Summary, error) {
	return decision.UsableSummary(&facts.Facts{Summary: r.summary, SummarySeenAt: r.seenAt, SummaryErr: r.err}, now)
}

// decide is the engine's decision for a new reboot: while the latest config or
// policies do not load, it is denied. The back-off rules are the decision's, read from
// the node, so eval and plan give the same answer.
func (a *Agent) decide(ctx context.Context) decision.Decision { return a.decideWith(ctx, false) }

// decideWith decides with the current engine or, inFlight, with the last good one: the
// re-checks of a reboot already past the cordon, which a broken update must not cut
// short (a restriction of the last good set still does).
func (a *Agent) decideWith(ctx context.Context, inFlight bool) decision.Decision {
	now := a.clock.Now()
	f, err := a.gather(ctx)
	if err != nil {
		return source.Blocked(a.cfg.NodeName, now, err)
	}
	decide := a.source.Decide
	if inFlight {
		decide = a.source.DecideLastGood
	}
	return decide(ctx, f, now)
}

// acquire waits for a slot — a watch on the pool's Leases — for as long as the reboot
// stays allowed. Meanwhile it re-decides every RecheckInterval and at once on any
// change of the node, its pods or the config, and gives up as soon as the gate closes
// or the node's pool or slot key changes; the slot count is read from the config in force at each
// attempt, so a lowered concurrency (0 pauses the pool) reaches waiting agents.
func (a *Agent) acquire(ctx context.Context, sem *lock.Semaphore, ref nodeops.SlotRef) (*lock.Held, error) {
	pool := ref.Pool
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// atHead asks the watcher for a fresh decision when this node's turn has come:
	// all decisions are made on the watcher's goroutine.
	atHead := make(chan chan error)
	watcherDone := make(chan struct{})
	go func() {
		defer close(watcherDone)
		for {
			var reply chan error
			select {
			case <-actx.Done():
				return
			case <-a.clock.After(a.cfg.RecheckInterval):
			case <-a.pokes:
			case <-a.source.Changed():
			case reply = <-atHead:
			}
			d := a.gate(actx, false)
			if actx.Err() != nil {
				return
			}
			// Run's goroutine is blocked in Acquire below, so reporting from here does
			// not race with it; watcherDone orders it before Run goes on.
			a.report(actx, d)
			var closed error
			switch {
			case !d.Allowed:
				closed = errGateClosed
			case d.Pool != pool:
				closed = fmt.Errorf("%w: the node moved from pool %s to %s", errGateClosed, pool, d.Pool)
			case d.SlotKey != ref.Value:
				// The semaphore is bound to the old value; wait again under the new one.
				closed = fmt.Errorf("%w: the node's slot key changed from %q to %q", errGateClosed, ref.Value, d.SlotKey)
			}
			if reply != nil {
				reply <- closed
			}
			if closed != nil {
				cancel(closed)
				return
			}
			// The concurrency may have changed (config, or a percentage pool's size).
			// Not after a decision asked for at the head: Acquire is about to claim on
			// the plan it made, and waking it would cut short the back-off it takes
			// when that claim fails.
			if reply == nil {
				sem.Recheck()
			}
		}
	}()
	beforeClaim := lock.BeforeClaim(func(ctx context.Context) error {
		reply := make(chan error, 1)
		select {
		case atHead <- reply:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		select {
		case err := <-reply:
			return err
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})
	held, err := sem.Acquire(actx, func() int { return a.currentSlots(actx, pool) }, beforeClaim,
		lock.SlotsPerKey(func() int { return a.slotsPerKey(pool) }))
	cause := context.Cause(actx)
	cancel(nil)
	<-watcherDone
	if err != nil && (errors.Is(cause, errGateClosed) || errors.Is(err, errGateClosed)) {
		// Give our place in the queue up: the waiters behind go on without us.
		if lerr := sem.Leave(ctx); lerr != nil {
			a.log.Warn("leaving the slot queue failed; the waiters behind pass us over", "err", lerr)
		}
		if errors.Is(err, errGateClosed) {
			return nil, err
		}
		return nil, cause
	}
	return held, err
}

// errGateClosed stops waiting for a slot: the reboot is no longer allowed.
var errGateClosed = errors.New("the gate closed while waiting for a slot")

// currentSlots is the concurrency of pool under the config in force now, for claiming
// a slot; 0 (no slot) when the latest config or policies do not load or the node is no
// longer in that pool.
func (a *Agent) currentSlots(ctx context.Context, pool string) int {
	return a.slotsUnder(ctx, pool, a.source.Current)
}

// heldSlots is currentSlots for a slot held by a reboot already past the cordon: under
// the last good config, so that a broken update does not stop it halfway.
func (a *Agent) heldSlots(ctx context.Context, pool string) int {
	return a.slotsUnder(ctx, pool, a.source.LastGood)
}

// slotsUnder is pool's concurrency under the engine engineOf gives; 0 without one.
func (a *Agent) slotsUnder(ctx context.Context, pool string, engineOf func() (*decision.Engine, error)) int {
	engine, err := engineOf()
	if err != nil {
		return 0
	}
	n, err := a.node()
	if err != nil {
		return 0
	}
	p, err := engine.PoolOf(n, a.clock.Now())
	if err != nil || p.Name != pool {
		return 0
	}
	slots := a.slots(ctx, engine, p)
	if !p.CountOthers && p.Breaker == nil {
		return slots
	}
	// The pool's nodes that others made unavailable use up slots, so that rebootgate's
	// holders plus them stay within the concurrency (budget) and within the breaker's
	// maxUnavailable: the lock's slots make both exact, whatever the summary's lag.
	// No usable summary, no slot (fail closed).
	s, err := a.nodeSummary(ctx).usable(a.clock.Now())
	if err != nil {
		// Debug: asked on every Lease event; the decision reports it once per change.
		a.log.Debug("the disruption budget or breaker cannot be checked: no slot this time", "pool", pool, "err", err)
		return 0
	}
	return decision.BudgetSlots(p, slots, s.Pool(pool), n)
}

// slotsPerKey is pool's slotsPerKey under the config in force now; 1, the least, when
// there is no valid config or no such pool (currentSlots then gives no slot anyway).
func (a *Agent) slotsPerKey(pool string) int {
	engine, err := a.source.Current()
	if err != nil {
		return 1
	}
	for _, p := range engine.Config().Pools {
		if p.Name == pool {
			return p.SlotsPerKey
		}
	}
	return 1
}

// gate is the decision the pipeline re-checks: the engine's (inFlight: the last good
// one's, see decideWith), and the reboot must still be required — a sentinel that went
// away while the node waited for a slot must not lead to a reboot.
func (a *Agent) gate(ctx context.Context, inFlight bool) decision.Decision {
	d := a.decideWith(ctx, inFlight)
	if a.cfg.DryRun {
		// Switched to dry-run mid-reboot: nothing disruptive any more. Before the
		// reboot request the lifecycle undoes the reboot; after it, it finishes.
		d.Allowed = false
		d.Reasons = append(d.Reasons, decision.Reason{Source: decision.SourceEngine, Message: "dry-run: no disruptive step is taken; a reboot in progress is undone, or finished once the host was asked to reboot"})
	}
	if st := a.detector.Check(ctx); !st.Needed {
		d.Allowed = false
		msg := "a reboot is no longer required"
		if st.Err != nil {
			msg = "reboot detection failed: " + st.Err.Error()
		}
		d.Reasons = append(d.Reasons, decision.Reason{Source: decision.SourceEngine, Message: msg})
	}
	return d
}

// nextCheck is when a blocked decision is worth re-deciding: when the window opens,
// and meanwhile every RecheckInterval (alerts and pods may clear).
func (a *Agent) nextCheck(d decision.Decision) time.Duration {
	next := a.cfg.RecheckInterval
	if t, err := time.Parse(time.RFC3339, d.NextAllowed); err == nil {
		if until := t.Sub(a.clock.Now()); until > 0 && until < next {
			next = until + time.Duration(rand.Int64N(int64(time.Second)))
		}
	}
	return next
}

// slots resolves the pool's concurrency; a percentage needs the pool's size, read from
// the apiserver's watch cache (resourceVersion=0), and only then.
func (a *Agent) slots(ctx context.Context, engine *decision.Engine, pool *config.ResolvedPool) int {
	if !pool.IsPercentage() {
		return pool.Slots(0)
	}
	// The summarizer counts the pool's nodes anyway: with a fresh summary, no list.
	if engine.Config().NeedsSummary(pool) {
		if s, err := a.nodeSummary(ctx).usable(a.clock.Now()); err == nil {
			return pool.Slots(s.Pool(pool.Name).Nodes)
		}
	}
	// The lock asks on every Lease event; counting the pool reads every Node, so the
	// count is reused for a re-check interval (the acquire loop calls Recheck after
	// each interval, so a grown pool's new slots are still seen).
	now := a.clock.Now()
	a.poolSizeMu.Lock()
	defer a.poolSizeMu.Unlock()
	if c := a.poolSize; c.pool == pool.Name && c.engine == engine && now.Sub(c.at) < a.cfg.RecheckInterval {
		return pool.Slots(c.size)
	}
	list, err := a.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		a.log.Warn("counting the pool's nodes failed: no slot this time", "pool", pool.Name, "err", err)
		return 0
	}
	nodes := make([]*corev1.Node, len(list.Items))
	for i := range list.Items {
		nodes[i] = &list.Items[i]
	}
	size := engine.PoolSize(nodes, pool.Name, now)
	a.poolSize = poolSizeCache{pool: pool.Name, engine: engine, size: size, at: now}
	return pool.Slots(size)
}

// poolSizeCache is the last count of a percentage pool's nodes.
type poolSizeCache struct {
	pool   string
	engine *decision.Engine
	size   int
	at     time.Time
}

func (a *Agent) semaphore(pool, value string) (*lock.Semaphore, error) {
	key := pool + "\x00" + value
	a.semMu.Lock()
	defer a.semMu.Unlock()
	if s, ok := a.sems[key]; ok {
		return s, nil
	}
	s, err := lock.New(lock.Config{
		Client: a.client, Namespace: a.cfg.Namespace, Pool: pool, Holder: a.cfg.NodeName,
		TTL: a.cfg.LockTTL, Jitter: a.cfg.LockJitter, QueueGrace: a.cfg.LockQueueGrace, Clock: a.clock,
		SlotValue: value, SlotsPerKey: a.slotsPerKey(pool), Logger: a.log,
		OnStuckHolder: func(lease, holder string, since time.Time) {
			a.notBacks.track(pool, lease, holder, since)
		},
	})
	if err != nil {
		return nil, err
	}
	a.sems[key] = s
	return s, nil
}

func (a *Agent) dryRunSlots(ctx context.Context, pool *config.ResolvedPool, slots int) {
	holders, err := lock.Holders(ctx, a.client, a.cfg.Namespace, pool.Name)
	if err != nil {
		a.log.Warn("dry-run: reading the pool's slots failed", "pool", pool.Name, "err", err)
		return
	}
	a.log.Info("dry-run: would take a slot and reboot", "pool", pool.Name, "slots", slots, "held", len(holders), "slotFree", len(holders) < slots)
}

func (a *Agent) setPhase(ph nodestate.Phase) {
	for _, p := range nodestate.Phases {
		v := 0.0
		if p == ph {
			v = 1
		}
		a.metrics.Phase.WithLabelValues(a.cfg.NodeName, string(p)).Set(v)
	}
}

func (a *Agent) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-a.clock.After(d):
		return nil
	}
}

// handler serves /metrics, /healthz and /readyz.
func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metricsHandler(a.registry))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.loopHealth(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if d := a.degradedStatus(); d != "" {
			_, _ = w.Write([]byte("ok, " + d + "\n")) // healthy, but slower to notice
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "informers not synced", http.StatusServiceUnavailable)
			return
		}
		// Ready once a set has loaded: a later broken update blocks new reboots, and
		// the RebootPolicyLoaded condition and the metric say so, but the agent is
		// still needed for the reboots in progress.
		if _, err := a.source.LastGood(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// healthGate runs the pool's post-reboot health checks, those of the last good config
// (finishing a reboot needs no new config). The pool's nodes are read from the
// apiserver's watch cache, and only when the pool has checks.
func (a *Agent) healthGate(ctx context.Context) (bool, string) {
	engine, err := a.source.LastGood()
	if err != nil {
		return false, err.Error()
	}
	f, err := a.gather(ctx)
	if err != nil {
		return false, err.Error()
	}
	now := a.clock.Now()
	pool, err := engine.PoolOf(f.Node, now)
	if err != nil {
		return false, err.Error()
	}
	if len(pool.HealthGate) == 0 {
		return true, ""
	}
	list, err := a.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return false, "listing the pool's nodes: " + err.Error()
	}
	var poolNodes []*corev1.Node
	for i := range list.Items {
		if p, err := engine.PoolOf(&list.Items[i], now); err == nil && p.Name == pool.Name {
			poolNodes = append(poolNodes, &list.Items[i])
		}
	}
	return engine.HealthCheck(f, poolNodes, now)
}
