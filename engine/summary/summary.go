package summary

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/disruption"
)

// ConfigMapName is the ConfigMap holding the summary, in the agents' namespace, under
// DataKey as JSON (a disruption.Summary).
const (
	ConfigMapName = "rebootgate-node-summary"
	DataKey       = "summary.json"
)

// Defaults of Config.
const (
	DefaultInterval  = 2 * time.Second
	DefaultHeartbeat = 20 * time.Second
)

// read returns the published summary and its encoded form, served from the API
// server's watch cache (resourceVersion=0): cheap even when thousands of agents ask.
func read(ctx context.Context, client kubernetes.Interface, namespace string) (*disruption.Summary, string, error) {
	cm, err := client.CoreV1().ConfigMaps(namespace).Get(ctx, ConfigMapName, metav1.GetOptions{ResourceVersion: "0"})
	if apierrors.IsNotFound(err) {
		return nil, "", fmt.Errorf("no node summary: ConfigMap %s/%s does not exist (is the summarizer running?)", namespace, ConfigMapName)
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading the node summary %s/%s: %w", namespace, ConfigMapName, err)
	}
	data := cm.Data[DataKey]
	var s disruption.Summary
	if err := json.Unmarshal([]byte(data), &s); err != nil {
		return nil, "", fmt.Errorf("the node summary %s/%s key %s is not a summary: %w", cm.Namespace, cm.Name, DataKey, err)
	}
	return &s, data, nil
}

// Config configures a Summarizer. Client, Namespace, Identity and Engine are required.
type Config struct {
	Client    kubernetes.Interface
	Namespace string
	// Identity names the writer in the summary (the pod name).
	Identity string
	// Engine is the decision engine in force: its pools' selectors place each node.
	// An error (no valid config) stops publishing: the summary goes stale and budgets
	// fail closed.
	Engine func() (*decision.Engine, error)
	// EngineChanged, if set, signals a new engine (pool membership may change).
	EngineChanged <-chan struct{}
	// Medik8sNamespace holds medik8s' node-maintenance Leases (node-<name>). Default
	// disruption.Medik8sNamespace.
	Medik8sNamespace string
	Interval         time.Duration
	Heartbeat        time.Duration
	// IndexInterval is how often at most the node index is rewritten (default
	// DefaultIndexInterval); it is never rewritten unchanged, heartbeat or not.
	IndexInterval time.Duration
	Clock         clock.WithTicker
	Logger        *slog.Logger
}

// Summarizer watches the nodes and publishes the summary.
type Summarizer struct {
	cfg   Config
	dirty chan struct{}

	// nodeWatch and leaseWatch say why the informers cannot list or watch.
	nodeWatch, leaseWatch watchHealth

	last      *disruption.Summary
	lastWrite time.Time
	cms       map[string]*corev1.ConfigMap // our last write of each, for the guarded update

	// The node index last published: the summary names ref (nil while there is none, err
	// saying why); shards is its shard count, which never shrinks while this process runs.
	index struct {
		ref     *disruption.IndexRef
		err     string
		shards  int
		written time.Time
	}

	health progress // Run's progress, for Ready and Alive
}

// watchHealth is an informer's last list or watch failure, until it lists or watches
// again: client-go's reflector calls the watch error handler when a list or a watch
// fails (RBAC removed, the API server refusing), retries with back-off and meanwhile
// keeps its cache as it was, which must then not be published as complete.
type watchHealth struct {
	mu  sync.Mutex
	err string // why the informer cannot list or watch, "" when fine
	rv  string // its last synced resourceVersion when it failed
}

// failed records a failure; rv is the informer's last synced resourceVersion.
func (h *watchHealth) failed(what string, err error, rv string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.err, h.rv = fmt.Sprintf("%s cannot be listed or watched: %v", what, err), rv
}

// check returns the failure, if any, the informer's last synced resourceVersion being
// rv: a resourceVersion that moved on since the failure means a list or a watch event
// came through since, so the failure is over. (The reflector sets it only then.)
func (h *watchHealth) check(rv string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != "" && rv != h.rv {
		h.err = ""
	}
	if h.err == "" {
		return nil
	}
	return errors.New(h.err)
}

// onWatchError sets the informer's watch error handler to record failures in h.
func (s *Summarizer) onWatchError(inf cache.SharedIndexInformer, h *watchHealth, what string) error {
	return inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
		h.failed(what, err, inf.LastSyncResourceVersion())
		s.cfg.Logger.Warn("informer failing: the summary says it is incomplete until it recovers", "what", what, "err", err)
		s.markDirty()
	})
}

// New validates cfg and applies defaults.
func New(cfg Config) (*Summarizer, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("summary config: Client is required")
	case cfg.Namespace == "":
		return nil, errors.New("summary config: Namespace is required")
	case cfg.Identity == "":
		return nil, errors.New("summary config: Identity is required")
	case cfg.Engine == nil:
		return nil, errors.New("summary config: Engine is required")
	}
	if cfg.Medik8sNamespace == "" {
		cfg.Medik8sNamespace = disruption.Medik8sNamespace
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.IndexInterval <= 0 {
		cfg.IndexInterval = DefaultIndexInterval
	}
	if cfg.Heartbeat >= decision.MaxSummaryAge/2 {
		return nil, fmt.Errorf("summary config: Heartbeat %v must be less than half of %v, the age at which agents stop trusting a summary", cfg.Heartbeat, decision.MaxSummaryAge)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Summarizer{cfg: cfg, dirty: make(chan struct{}, 1), cms: map[string]*corev1.ConfigMap{}}
	s.index.err = "not written yet"
	return s, nil
}

func (s *Summarizer) markDirty() {
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

// strip keeps what availability, pool selectors and the node index need of a Node: the informer
// holds every node of the cluster, so images, volumes and managed fields are dropped.
func strip(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil // a tombstone
	}
	out := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion,
			Labels: n.Labels, Annotations: n.Annotations,
		},
		Spec: corev1.NodeSpec{Unschedulable: n.Spec.Unschedulable, Taints: n.Spec.Taints},
	}
	out.Status.NodeInfo = n.Status.NodeInfo
	// The node index resolves alerts' instance labels by these addresses.
	for _, a := range n.Status.Addresses {
		if slices.Contains(disruption.IndexedAddressTypes, a.Type) {
			out.Status.Addresses = append(out.Status.Addresses, a)
		}
	}
	for _, c := range n.Status.Conditions {
		// Heartbeat times change every few minutes and matter to nobody here.
		out.Status.Conditions = append(out.Status.Conditions, corev1.NodeCondition{
			Type: c.Type, Status: c.Status, Reason: c.Reason, Message: c.Message,
		})
	}
	return out, nil
}

// Run publishes until ctx is done.
func (s *Summarizer) Run(ctx context.Context) error {
	nodeFactory := informers.NewSharedInformerFactory(s.cfg.Client, 0)
	nodeInformer := nodeFactory.Core().V1().Nodes().Informer()
	s.started(nodeInformer.HasSynced)
	defer s.stopped()
	if err := nodeInformer.SetTransform(strip); err != nil {
		return fmt.Errorf("node informer: %w", err)
	}
	// Without this handler a failing node list or watch left the last cache in place,
	// re-published as fresh and complete at every heartbeat.
	if err := s.onWatchError(nodeInformer, &s.nodeWatch, "Nodes"); err != nil {
		return fmt.Errorf("node informer: %w", err)
	}
	leaseFactory := informers.NewSharedInformerFactoryWithOptions(s.cfg.Client, 0, informers.WithNamespace(s.cfg.Medik8sNamespace))
	leaseInformer := leaseFactory.Coordination().V1().Leases().Informer()
	if err := s.onWatchError(leaseInformer, &s.leaseWatch, "medik8s maintenance Leases in namespace "+s.cfg.Medik8sNamespace); err != nil {
		return fmt.Errorf("lease informer: %w", err)
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.markDirty() },
		UpdateFunc: func(any, any) { s.markDirty() },
		DeleteFunc: func(any) { s.markDirty() },
	}
	if _, err := nodeInformer.AddEventHandler(handler); err != nil {
		return fmt.Errorf("node informer: %w", err)
	}
	if _, err := leaseInformer.AddEventHandler(handler); err != nil {
		return fmt.Errorf("lease informer: %w", err)
	}
	nodeFactory.Start(ctx.Done())
	leaseFactory.Start(ctx.Done())
	defer nodeFactory.Shutdown()
	defer leaseFactory.Shutdown()
	// Wait for the first node list, or for its failure: a list that fails (RBAC) never
	// syncs, and the summary then says why instead of the summarizer hanging silently.
	// Likewise a lease list that fails: the summary carries the error, so budgets
	// fail closed.
	if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		return nodeInformer.HasSynced() || s.nodeWatch.check(nodeInformer.LastSyncResourceVersion()) != nil, nil
	}); err != nil {
		return nil // ctx is done
	}
	nodes := listersFor(nodeInformer.GetIndexer())
	tick := s.cfg.Clock.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	s.markDirty()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C():
		}
		s.passed()
		select {
		case <-s.dirty:
		case <-s.cfg.EngineChanged:
		default:
			if s.cfg.Clock.Since(s.lastWrite) < s.cfg.Heartbeat {
				continue
			}
		}
		var errs []string
		nodeErr := s.nodeWatch.check(nodeInformer.LastSyncResourceVersion())
		if nodeErr == nil && !nodeInformer.HasSynced() {
			nodeErr = errors.New("Nodes are not listed yet")
		}
		if nodeErr != nil {
			errs = append(errs, nodeErr.Error())
		}
		maint, maintErr := s.maintenance(leaseInformer)
		if maintErr != nil {
			errs = append(errs, maintErr.Error())
		}
		s.publish(ctx, nodes(), nodeErr == nil, maint, errs)
	}
}

func listersFor(idx cache.Indexer) func() []*corev1.Node {
	return func() []*corev1.Node {
		objs := idx.List()
		out := make([]*corev1.Node, 0, len(objs))
		for _, o := range objs {
			if n, ok := o.(*corev1.Node); ok {
				out = append(out, n)
			}
		}
		return out
	}
}

// maintenance returns the nodes a medik8s Lease holds now, or nil and an error while
// the Leases are not known.
func (s *Summarizer) maintenance(leases cache.SharedIndexInformer) (map[string]bool, error) {
	if err := s.leaseWatch.check(leases.LastSyncResourceVersion()); err != nil {
		return nil, err
	}
	if !leases.HasSynced() {
		return nil, fmt.Errorf("medik8s maintenance Leases in namespace %s are not listed yet", s.cfg.Medik8sNamespace)
	}
	var list []*coordinationv1.Lease
	for _, o := range leases.GetIndexer().List() {
		if l, ok := o.(*coordinationv1.Lease); ok {
			list = append(list, l)
		}
	}
	return MaintenanceHeld(list, s.cfg.Clock.Now()), nil
}

// Holds reports whether a medik8s maintenance Lease is held at now: it has a holder and,
// when it says how long it lasts, has been renewed within that time.
func Holds(l *coordinationv1.Lease, now time.Time) bool {
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
		return false
	}
	if l.Spec.LeaseDurationSeconds == nil {
		return true
	}
	last := l.Spec.AcquireTime
	if l.Spec.RenewTime != nil {
		last = l.Spec.RenewTime
	}
	if last == nil {
		return true
	}
	return now.Before(last.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second))
}

// publish computes the summary and writes it when it changed or a heartbeat is due;
// errs are what could not be observed (the summary is then incomplete). The node index
// is written only from nodes listed (nodesOK): a cache that cannot list must not replace
// a good index (the summary, incomplete, is not used meanwhile anyway).
func (s *Summarizer) publish(ctx context.Context, nodes []*corev1.Node, nodesOK bool, maint map[string]bool, errs []string) {
	engine, err := s.cfg.Engine()
	if err != nil {
		s.cfg.Logger.Warn("no node summary without a valid config; budgets and breakers fail closed once the last one is stale", "err", err)
		return
	}
	now := s.cfg.Clock.Now()
	if nodesOK {
		s.publishIndex(ctx, nodes, now)
	}
	sum := disruption.Summarize(nodes, maint, engine.Membership(now), now, s.cfg.Identity)
	sum.Errors = append(sum.Errors, errs...)
	sum.NodeIndex, sum.NodeIndexError = s.index.ref, s.index.err
	if disruption.SameCounts(sum, s.last) && s.cfg.Clock.Since(s.lastWrite) < s.cfg.Heartbeat {
		return
	}
	if err := s.write(ctx, sum); err != nil {
		s.cfg.Logger.Warn("writing the node summary failed; retrying", "err", err)
		s.markDirty()
		return
	}
	if !disruption.SameCounts(sum, s.last) {
		s.cfg.Logger.Info("node summary changed", "nodes", sum.Cluster.Nodes, "unavailable", sum.Cluster.Unavailable,
			"unavailableOthers", sum.Cluster.UnavailableOthers, "errors", sum.Errors)
	}
	s.last, s.lastWrite = sum, now
	s.wrote()
}

// publishIndex writes the node index's shards when its content changed, at most every
// IndexInterval (meanwhile the summary keeps naming the last shards written, which
// match what they hold). Shards are written before the summary that names them; a
// failed write leaves the summary naming no index, so that alerts needing it fail
// closed rather than trust shards half rewritten.
func (s *Summarizer) publishIndex(ctx context.Context, nodes []*corev1.Node, now time.Time) {
	if !s.index.written.IsZero() && now.Sub(s.index.written) < s.cfg.IndexInterval && !now.Before(s.index.written) {
		s.markDirty() // look again once the interval is over
		return
	}
	shards, data, ref, err := disruption.BuildIndex(nodes, s.index.shards)
	if err != nil {
		s.cfg.Logger.Error("the node index cannot be published; alerts whose instance is not their node's own block every node", "err", err)
		s.index.ref, s.index.err = nil, err.Error()
		return
	}
	if s.index.ref != nil && slices.Equal(ref.Hashes, s.index.ref.Hashes) {
		return
	}
	s.index.written = now
	for i, sh := range shards {
		if s.index.ref != nil && s.index.ref.Shards == ref.Shards && s.index.ref.Hashes[i] == sh.Hash {
			continue // unchanged
		}
		if err := s.writeConfigMap(ctx, IndexConfigMapName(i), "node-index", IndexDataKey, data[i]); err != nil {
			s.cfg.Logger.Warn("writing the node index failed; retrying", "err", err)
			s.index.ref, s.index.err = nil, fmt.Sprintf("writing it failed: %v", err)
			return
		}
	}
	s.cfg.Logger.Info("node index written", "nodes", len(nodes), "shards", ref.Shards, "hashes", ref.Hashes)
	s.index.ref, s.index.err, s.index.shards = ref, "", ref.Shards
}

// write writes the summary.
func (s *Summarizer) write(ctx context.Context, sum *disruption.Summary) error {
	data, err := json.Marshal(sum)
	if err != nil {
		return fmt.Errorf("encoding the summary: %w", err)
	}
	return s.writeConfigMap(ctx, ConfigMapName, "node-summary", DataKey, data)
}

// writeConfigMap creates or updates ConfigMap name with data under key, guarded by the
// resourceVersion of our last write (a conflict re-reads it and retries at the next
// tick).
func (s *Summarizer) writeConfigMap(ctx context.Context, name, component, key string, data []byte) error {
	cms := s.cfg.Client.CoreV1().ConfigMaps(s.cfg.Namespace)
	if s.cms[name] == nil {
		cur, err := cms.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			created, err := cms.Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.cfg.Namespace,
					Labels: map[string]string{"app.kubernetes.io/name": "rebootgate", "app.kubernetes.io/component": component}},
				Data: map[string]string{key: string(data)},
			}, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("creating ConfigMap %s/%s: %w", s.cfg.Namespace, name, err)
			}
			s.cms[name] = created
			return nil
		case err != nil:
			return fmt.Errorf("reading ConfigMap %s/%s: %w", s.cfg.Namespace, name, err)
		}
		s.cms[name] = cur
	}
	next := s.cms[name].DeepCopy()
	next.Data = map[string]string{key: string(data)}
	updated, err := cms.Update(ctx, next, metav1.UpdateOptions{})
	if err != nil {
		s.cms[name] = nil // re-read before the next try
		return fmt.Errorf("updating ConfigMap %s/%s: %w", s.cfg.Namespace, name, err)
	}
	s.cms[name] = updated
	return nil
}
