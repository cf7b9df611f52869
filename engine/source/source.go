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
)

// Event reasons, also the reasons of [Status].
const (
	// ReasonPolicyError is the reason of the Warning event, on the agent's Node (or, for
	// the summarizer, on the ConfigMap at fault), when the policy modules do not
	// compile.
	ReasonPolicyError = "PolicyError"
	// ReasonConfigError is the reason of the Warning event on the agent's Node when the
	// config file cannot be loaded.
	ReasonConfigError = "ConfigError"
	// ReasonLoaded is the reason of a Status whose config and policies are in force.
	ReasonLoaded = "PolicyLoaded"
	// ReasonNotRead is the reason of the Status before the first load finished.
	ReasonNotRead = "NotRead"
)

// Defaults applied by [New] to zero fields of [Config].
const (
	DefaultConfigPollInterval = time.Minute
	// DegradedConfigPollInterval is the config file's re-read period while it cannot
	// be watched (no inotify instance left): a short poll stands in for the events.
	DegradedConfigPollInterval = 15 * time.Second
)

// ErrNoValidPolicy is wrapped by the error [Source.Current] returns while no config and
// policy set has ever compiled. Its text is the start of the reason the agent reports.
var ErrNoValidPolicy = errors.New("no valid policy has loaded")

// ErrNotLoaded is wrapped by the error [Source.Current] returns while the latest config
// or policy update does not load although an earlier set did: that update may have been
// a restriction (a blackout, a lower concurrency, a deny module), so no new reboot may
// start under the older, possibly looser, set. [Source.LastGood] still has that set for
// the reboots already in progress.
var ErrNotLoaded = errors.New("the latest config or policy update does not load")

// Consequence is what a load failure means for the reboots, as the events, the Node's
// condition and the decision say it.
const Consequence = "no new reboot starts until a valid config and policy set loads; reboots past the cordon finish"

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
	// Client reads policy ConfigMaps (list and watch; it writes none).
	Client kubernetes.Interface
	// Clock times the config re-read. Default: the real clock.
	Clock clock.Clock
	// Logger receives load failures. Default: slog.Default().
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
	// was missed. Default DefaultConfigPollInterval.
	ConfigPollInterval time.Duration
	// Recorder emits the PolicyError and ConfigError events.
	Recorder EventRecorder
	// PolicyEventsOnConfigMaps puts each PolicyError event on the ConfigMap at fault
	// rather than on NodeRef. Only a single writer (the summarizer) sets it: every agent
	// compiles the same modules to the same error, and one event from each on one
	// ConfigMap would be thousands of copies of one message.
	PolicyEventsOnConfigMaps bool
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
	recorder   EventRecorder
	metrics    *metrics.Metrics
	// cmEvents: PolicyError events go on the ConfigMaps at fault.
	cmEvents bool

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
	// loads counts finished loads, so tests can wait for one.
	loads atomic.Uint64
}

// inForce is the last good engine and whether the latest load put it in force.
type inForce struct {
	// engine is the last engine that compiled; nil until one has.
	engine *decision.Engine
	// err is nil while the latest config and policies are in force; otherwise it wraps
	// ErrNoValidPolicy (engine nil) or ErrNotLoaded.
	err    error
	status Status
}

// Status is the outcome of the latest load, as the agent reports it on its Node.
type Status struct {
	// Loaded: the latest config and policies are in force.
	Loaded bool
	// Reason is ReasonLoaded, ReasonConfigError, ReasonPolicyError or ReasonNotRead.
	Reason string
	// Message is the load error, `config <path>: ...` or `policy ConfigMaps:
	// <ns>/<configmap>/<key>:<line>: ...`, followed by what it means for the reboots;
	// or what is in force.
	Message string
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
	s := &Source{
		client:       cfg.Client,
		clock:        cfg.Clock,
		log:          cfg.Logger.With("component", "source"),
		nodeName:     cfg.NodeName,
		nodeRef:      cfg.NodeRef,
		configPath:   cfg.ConfigPath,
		inline:       cfg.Config,
		pollInterval: cfg.ConfigPollInterval,
		recorder:     cfg.Recorder,
		metrics:      cfg.Metrics,
		cmEvents:     cfg.PolicyEventsOnConfigMaps,
		selector:     labels.SelectorFromSet(labels.Set{PolicyLabel: PolicyLabelValue}),
		changed:      make(chan struct{}, 1),
		kick:         make(chan struct{}, 1),
	}
	s.current.Store(&inForce{
		err:    fmt.Errorf("%w: %w", ErrNoValidPolicy, errNotReadYet),
		status: Status{Reason: ReasonNotRead, Message: errNotReadYet.Error()},
	})

	onChange := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.reload() },
		UpdateFunc: func(any, any) { s.reload() },
		DeleteFunc: func(any) { s.reload() },
	}
	for _, ns := range namespaces {
		// One factory per namespace, each watching only labelled ConfigMaps: an agent
		// never lists or watches ConfigMaps cluster-wide. No resync: a resync would
		// only replay the cache.
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
	defer wg.Wait() // the file watcher ends with ctx
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
	s.load(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
			s.load(ctx)
			if s.ConfigDegraded() {
				poll.Reset(interval())
			}
		case <-poll.C():
			if watch != nil {
				watch.ensure() // the directory may have appeared since
			}
			s.load(ctx)
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

// Current returns the engine for new reboots: the one built from the latest config and
// policies. While they do not load it returns an error, and the caller must not start a
// reboot: one wrapping ErrNoValidPolicy (`no valid policy has loaded: <cause>`) while
// no set has ever loaded, one wrapping ErrNotLoaded (`the latest config or policy update
// does not load: <cause>`) while the latest update is broken. Decide does this. It is
// cheap and safe for concurrent use.
func (s *Source) Current() (*decision.Engine, error) {
	in := s.current.Load()
	if in.err != nil {
		return nil, in.err
	}
	return in.engine, nil
}

// LastGood returns the last engine that loaded, even while a later update does not:
// what a reboot already past the cordon needs to finish (its health gate, the hold
// annotation). Never use it to start a reboot. The error wraps ErrNoValidPolicy while
// no set has ever loaded.
func (s *Source) LastGood() (*decision.Engine, error) {
	in := s.current.Load()
	if in.engine == nil {
		return nil, in.err
	}
	return in.engine, nil
}

// Status is the outcome of the latest load.
func (s *Source) Status() Status { return s.current.Load().status }

// Decide decides with the engine of Current or, while there is none, returns the
// blocked decision of [Blocked]. Callers that use it cannot forget the fail-safe.
func (s *Source) Decide(ctx context.Context, f *facts.Facts, now time.Time) decision.Decision {
	e, err := s.Current()
	if err != nil {
		return Blocked(nodeOf(f), now, err)
	}
	return e.Decide(ctx, f, now)
}

// DecideLastGood decides with the last good engine: the re-checks of a reboot already
// past the cordon (the drain's guard, the final check), which a broken update must not
// cut short; a restrictive rule of the last good set still stops them.
func (s *Source) DecideLastGood(ctx context.Context, f *facts.Facts, now time.Time) decision.Decision {
	e, err := s.LastGood()
	if err != nil {
		return Blocked(nodeOf(f), now, err)
	}
	return e.Decide(ctx, f, now)
}

func nodeOf(f *facts.Facts) string {
	if f != nil && f.Node != nil {
		return f.Node.Name
	}
	return ""
}

// Blocked is a denied decision with err's text as its one reason: from source "config"
// when err is a load failure (it wraps ErrNotLoaded, or ErrNoValidPolicy after the first
// read), from "engine" otherwise (not read yet, the facts could not be gathered).
func Blocked(node string, now time.Time, err error) decision.Decision {
	if err == nil {
		err = ErrNoValidPolicy
	}
	src := decision.SourceEngine
	if errors.Is(err, ErrNotLoaded) || (errors.Is(err, ErrNoValidPolicy) && !errors.Is(err, errNotReadYet)) {
		src = decision.SourceConfig
	}
	return decision.Decision{
		Node:       node,
		At:         now.Format(time.RFC3339),
		Reasons:    []decision.Reason{{Source: src, Message: err.Error()}},
		Conditions: []input.ConditionResult{},
	}
}

// Changed receives a value after each change of the engine in force, so the agent can
// decide again. It has one buffered slot: changes made while nobody reads collapse into
// one notification. Use a single reader.
func (s *Source) Changed() <-chan struct{} { return s.changed }

// set records the latest load's outcome and, when it changed, notifies the reader of
// Changed: a broken update must reach an agent waiting for a slot at once.
func (s *Source) set(next *inForce) {
	prev := s.current.Swap(next)
	if prev.engine == next.engine && prev.status == next.status && errText(prev.err) == errText(next.err) {
		return
	}
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
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
