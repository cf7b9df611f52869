package source

import (
	"context"
	"errors"
	"fmt"
	"github.com/fsnotify/fsnotify"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/facts"
	"github.com/rebootgate/rebootgate/engine/input"
	"github.com/rebootgate/rebootgate/engine/metrics"
)

// Keys and values of the policy ConfigMap convention (kube-mgmt's, with our names).
const (
	// PolicyLabel marks a ConfigMap whose .rego keys are policy modules.
	PolicyLabel = "rebootgate.io/policy"
	// PolicyLabelValue is the only value of PolicyLabel that is read.
	PolicyLabelValue = "rego"
	// StatusAnnotation is written back onto each policy ConfigMap.
	StatusAnnotation = "rebootgate.io/policy-status"
)

// Event reasons.
const (
	// ReasonPolicyError is the reason of the Warning event on a policy ConfigMap whose
	// modules do not compile.
	ReasonPolicyError = "PolicyError"
	// ReasonConfigError is the reason of the Warning event on the agent's Node when the
	// config file cannot be loaded.
	ReasonConfigError = "ConfigError"
)

// Defaults applied by [New] to zero fields of [Config].
const (
	DefaultStatusJitter       = 5 * time.Second
	DefaultConfigPollInterval = time.Minute
	// DegradedConfigPollInterval is the config file's re-read period while it cannot
	// be watched (no inotify instance left): a short poll stands in for the events.
	DegradedConfigPollInterval = 15 * time.Second
)

// ErrNoValidPolicy is wrapped by the error [Source.Current] returns while no config and
// policy set has ever compiled. Its text is the start of the reason the agent reports.
var ErrNoValidPolicy = errors.New("no valid policy has loaded")

// errNotReadYet is the cause of ErrNoValidPolicy before the first load finished.
var errNotReadYet = errors.New("the config and the policy ConfigMaps have not been read yet")

// EventRecorder is the part of client-go's record.EventRecorder this package uses, so
// tests can pass record.NewFakeRecorder.
type EventRecorder interface {
	Eventf(object runtime.Object, eventtype, reason, messageFmt string, args ...any)
}

// Config configures a [Source]. Client, NodeName, Namespaces and Recorder are required;
// everything else has a default.
type Config struct {
	// Client reads policy ConfigMaps (watch, from the watch cache) and patches their
	// status annotation.
	Client kubernetes.Interface
	// Clock times the status jitter and the config re-read. Default: the real clock.
	Clock clock.Clock
	// Logger receives load failures and status writes. Default: slog.Default().
	Logger *slog.Logger
	// NodeName is the agent's node: the metrics' node label and the default NodeRef.
	NodeName string
	// NodeRef is the object config errors are reported on. Default: the Node named
	// NodeName, with the UID the kubelet uses for its own node events (the name).
	NodeRef *corev1.ObjectReference
	// Namespaces hold the policy ConfigMaps; normally just the agent's namespace.
	Namespaces []string
	// ConfigPath is the config file. Empty means Config.
	ConfigPath string
	// Config is the fixed config used when ConfigPath is empty (the agent's kured
	// flags build one); nil means config.Default().
	Config *config.Resolved
	// ConfigPollInterval is how often the config file is re-read in case a watch event
	// was missed; failed status writes are retried at the same pace. Default
	// DefaultConfigPollInterval.
	ConfigPollInterval time.Duration
	// StatusJitter bounds the random delay before writing a status annotation. Default
	// DefaultStatusJitter; a negative value means none.
	StatusJitter time.Duration
	// Recorder emits the PolicyError and ConfigError events.
	Recorder EventRecorder
	// Metrics, if set, gets PolicyStatus and PolicyLoadErrors.
	Metrics *metrics.Metrics
}

// Source owns the config and the policies in force. Create it with [New], start it with
// [Source.Run], read it with [Source.Decide] or [Source.Current].
type Source struct {
	client       kubernetes.Interface
	clock        clock.Clock
	log          *slog.Logger
	nodeName     string
	nodeRef      *corev1.ObjectReference
	configPath   string
	inline       *config.Resolved
	pollInterval time.Duration
	// watch is the config file's watch, once Run started it.
	watch atomic.Pointer[configWatch]
	// newWatcher, if set, replaces fsnotify.NewWatcher (tests).
	newWatcher func() (*fsnotify.Watcher, error)
	jitter     time.Duration
	recorder   EventRecorder
	metrics    *metrics.Metrics

	factories []informers.SharedInformerFactory
	listers   []listersv1.ConfigMapLister
	synced    []cache.InformerSynced
	selector  labels.Selector

	// current is what readers see; swapped whole so a reader never sees an engine
	// paired with another load's error.
	current atomic.Pointer[inForce]
	changed chan struct{}
	// kick asks the Run loop to reload; buffered 1 so bursts coalesce.
	kick chan struct{}

	loader loader
	status statusWriter
	// loads counts finished loads, so tests can wait for one.
	loads atomic.Uint64
}

// inForce is an engine, or the reason there is none.
type inForce struct {
	engine *decision.Engine
	err    error // wraps ErrNoValidPolicy when engine is nil
}

// New validates cfg, applies defaults and sets up the informers. It makes no API calls.
func New(cfg Config) (*Source, error) {
	if cfg.Client == nil {
		return nil, errors.New("source config: Client is required")
	}
	if cfg.NodeName == "" {
		return nil, errors.New("source config: NodeName is required")
	}
	if cfg.Recorder == nil {
		return nil, errors.New("source config: Recorder is required")
	}
	var namespaces []string
	for _, ns := range cfg.Namespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return nil, fmt.Errorf("source config: namespace %q: %v", ns, errs)
		}
		if !slices.Contains(namespaces, ns) {
			namespaces = append(namespaces, ns)
		}
	}
	if len(namespaces) == 0 {
		return nil, errors.New("source config: Namespaces is required (normally the agent's namespace)")
	}
	slices.Sort(namespaces)
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NodeRef == nil {
		cfg.NodeRef = &corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: cfg.NodeName, UID: types.UID(cfg.NodeName)}
	}
	if cfg.ConfigPollInterval <= 0 {
		cfg.ConfigPollInterval = DefaultConfigPollInterval
	}
	switch {
	case cfg.StatusJitter == 0:
		cfg.StatusJitter = DefaultStatusJitter
	case cfg.StatusJitter < 0:
		cfg.StatusJitter = 0
	}
	s := &Source{
		client:       cfg.Client,
		clock:        cfg.Clock,
		log:          cfg.Logger.With("component", "source"),
		nodeName:     cfg.NodeName,
		nodeRef:      cfg.NodeRef,
		configPath:   cfg.ConfigPath,
		inline:       cfg.Config,
		pollInterval: cfg.ConfigPollInterval,
		jitter:       cfg.StatusJitter,
		recorder:     cfg.Recorder,
		metrics:      cfg.Metrics,
		selector:     labels.SelectorFromSet(labels.Set{PolicyLabel: PolicyLabelValue}),
		changed:      make(chan struct{}, 1),
		kick:         make(chan struct{}, 1),
	}
	s.status.init()
	s.current.Store(&inForce{err: fmt.Errorf("%w: %w", ErrNoValidPolicy, errNotReadYet)})

	onChange := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.reload() },
		UpdateFunc: func(any, any) { s.reload() },
		DeleteFunc: func(any) { s.reload() },
	}
	for _, ns := range namespaces {
		// One factory per namespace, each watching only labelled ConfigMaps: an agent
		// never lists or watches ConfigMaps cluster-wide. No resync: a resync would
		// only replay the cache, and the config poll already retries failed writes.
		f := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0,
			informers.WithNamespace(ns),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = s.selector.String() }))
		inf := f.Core().V1().ConfigMaps()
		if _, err := inf.Informer().AddEventHandler(onChange); err != nil {
			return nil, fmt.Errorf("source: watching ConfigMaps in %s: %w", ns, err)
		}
		s.factories = append(s.factories, f)
		s.listers = append(s.listers, inf.Lister())
		s.synced = append(s.synced, inf.Informer().HasSynced)
	}
	return s, nil
}

// Run reads the config and the policies, then keeps them current until ctx is done.
// Call it once. Until the first load, Current returns an error and Decide blocks.
func (s *Source) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait() // status writers and the file watcher end with ctx
	for _, f := range s.factories {
		f.Start(ctx.Done())
	}
	defer func() {
		for _, f := range s.factories {
			f.Shutdown()
		}
	}()
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		return // ctx done
	}
	var watch *configWatch
	if s.configPath != "" {
		watch = newConfigWatch(s.configPath, s.log, s.reload)
		watch.newWatcher = s.newWatcher
		s.watch.Store(watch)
		wg.Go(func() { watch.run(ctx) })
	}
	interval := func() time.Duration {
		if s.ConfigDegraded() {
			return min(s.pollInterval, DegradedConfigPollInterval)
		}
		return s.pollInterval
	}
	poll := s.clock.NewTimer(s.pollInterval)
	defer poll.Stop()
	s.load(ctx, &wg)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
			s.load(ctx, &wg)
			if s.ConfigDegraded() {
				poll.Reset(interval())
			}
		case <-poll.C():
			if watch != nil {
				watch.ensure() // the directory may have appeared since
			}
			s.load(ctx, &wg)
			poll.Reset(interval())
		}
	}
}

// ConfigDegraded reports whether the config file is re-read by polling alone, every
// DegradedConfigPollInterval, because it cannot be watched.
func (s *Source) ConfigDegraded() bool {
	w := s.watch.Load()
	return w != nil && w.degraded.Load()
}

// reload asks the Run loop to load again; many calls before it runs make one load.
func (s *Source) reload() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Current returns the engine in force. While no config and policy set has ever compiled
// it returns an error wrapping ErrNoValidPolicy, whose text (`no valid policy has
// loaded: <cause>`) is the reason to report: the caller must then block the reboot,
// which is what Decide does. It is cheap and safe for concurrent use.
func (s *Source) Current() (*decision.Engine, error) {
	in := s.current.Load()
	return in.engine, in.err
}

// Decide decides with the engine in force or, while there is none, returns the blocked
// decision of [Blocked]. Callers that use it cannot forget the fail-safe.
func (s *Source) Decide(ctx context.Context, f *facts.Facts, now time.Time) decision.Decision {
	e, err := s.Current()
	if err != nil {
		name := ""
		if f != nil && f.Node != nil {
			name = f.Node.Name
		}
		return Blocked(name, now, err)
	}
	return e.Decide(ctx, f, now)
}

// Blocked is the decision while no valid engine has loaded: reboot denied, with err's
// text as the one reason from source "engine".
func Blocked(node string, now time.Time, err error) decision.Decision {
	if err == nil {
		err = ErrNoValidPolicy
	}
	return decision.Decision{
		Node:       node,
		At:         now.Format(time.RFC3339),
		Reasons:    []decision.Reason{{Source: decision.SourceEngine, Message: err.Error()}},
		Conditions: []input.ConditionResult{},
	}
}

// Changed receives a value after each change of the engine in force, so the agent can
// decide again. It has one buffered slot: changes made while nobody reads collapse into
// one notification. Use a single reader.
func (s *Source) Changed() <-chan struct{} { return s.changed }

// setEngine puts e in force and notifies the reader of Changed.
func (s *Source) setEngine(e *decision.Engine) {
	s.current.Store(&inForce{engine: e})
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// setNoEngine records why there is still no engine (there never was one).
func (s *Source) setNoEngine(cause error) {
	s.current.Store(&inForce{err: fmt.Errorf("%w: %w", ErrNoValidPolicy, cause)})
}

// policyStatusMetric sets PolicyStatus and, when a load failed, counts it.
func (s *Source) policyStatusMetric(ok bool, failedLoads int) {
	if s.metrics == nil {
		return
	}
	v := 0.0
	if ok {
		v = 1
	}
	s.metrics.PolicyStatus.WithLabelValues(s.nodeName).Set(v)
	if failedLoads > 0 {
		s.metrics.PolicyLoadErrors.WithLabelValues(s.nodeName).Add(float64(failedLoads))
	}
}

// WaitCurrent is Current after the first load has finished (or ctx is done), for
// callers that must not act on the "not read yet" state, such as resuming a reboot.
func (s *Source) WaitCurrent(ctx context.Context) (*decision.Engine, error) {
	for {
		e, err := s.Current()
		if !errors.Is(err, errNotReadYet) {
			return e, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.clock.After(50 * time.Millisecond):
		}
	}
}
