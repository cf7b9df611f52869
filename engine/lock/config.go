package lock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// Defaults applied by [New] to zero fields of [Config].
const (
	DefaultTTL    = 2 * time.Minute
	DefaultJitter = 500 * time.Millisecond
	DefaultSkew   = 5 * time.Second
)

// Config configures a [Semaphore]. Client, Namespace, Pool and Holder are
// required; everything else has a default.
type Config struct {
	// Client talks to the API server. Only Leases in Namespace are written;
	// Nodes are read by the default HolderStatus.
	Client kubernetes.Interface
	// Namespace holds the pool's Leases (normally the agent's namespace).
	Namespace string
	// Pool names the semaphore. It must be a valid label value and short
	// enough for the Lease names built from it.
	Pool string
	// Holder is this node's name; it is written as the Leases' holderIdentity.
	Holder string
	// TTL is the lease duration while held. Held slots are renewed every
	// TTL/3. Default DefaultTTL; rounded up to whole seconds.
	TTL time.Duration
	// Jitter is the upper bound of the random delay a waiter sleeps after a
	// watch event suggests a free slot and before it tries to take it.
	// Default DefaultJitter; a negative value means no jitter.
	Jitter time.Duration
	// Skew is a safety margin on both sides of a Lease's expiry: another
	// node's Lease counts as expired only leaseDurationSeconds+Skew after this
	// node first saw its current version (on this node's clock, so clock
	// offsets between nodes do not matter), and this node considers its own
	// slot lost Skew before leaseDurationSeconds after its last renewal. The
	// margin covers clock rate drift and the delay of the watch. Default
	// DefaultSkew; a negative value means none. Must be less than TTL/4.
	Skew time.Duration
	// Clock is the source of time and timers. Default: the real clock.
	Clock clock.WithTicker
	// HolderStatus reports on the node holding a foreign Lease that has
	// stopped being renewed: a slot whose holder node is gone is reclaimed
	// early, one whose holder is mid-reboot stays taken however long that
	// lasts (see [nodestate.HolderStatus]). Default: [nodestate.HolderStatusOf]
	// a GET of the Node served from the watch cache (resourceVersion=0);
	// NotFound means it does not exist. An error counts as "exists and busy": the slot stays taken.
	HolderStatus func(ctx context.Context, node string) (nodestate.HolderStatus, error)
	// SlotUsers lists the other nodes that are mid-reboot on the slot Lease
	// named (their Nodes carry nodestate.LabelHoldsSlot=<lease> and a phase), asked
	// right before claiming a slot: a held Lease that was deleted must not let
	// a second node in while its holder is down. Default: a label-selected
	// List of Nodes from the watch cache.
	SlotUsers func(ctx context.Context, lease string) ([]string, error)
	// KeyUsers lists the other nodes that are mid-reboot under the slot-key
	// value given (their Nodes carry nodestate.LabelHoldsKey=[HoldsKeyValue] and a
	// phase), asked right before claiming a key Lease: a key Lease deleted
	// while its holder is down must not let one node too many of that value
	// in. Default: a label-selected List of Nodes from the watch cache.
	KeyUsers func(ctx context.Context, value string) ([]string, error)
	// OnStuckHolder, if set, is told that a slot Lease has expired but stays
	// taken because its holder is still mid-reboot (it has not come back):
	// the rollout of the pool stops there until it does. since is when the
	// holder entered its current phase (its phase-since annotation) or, if
	// that is unknown, its Lease's last renewTime by the holder's clock. It
	// is called at most once per Lease, holder and acquisition per
	// Semaphore, from the goroutine running Acquire or TryAcquire, so it
	// must not block for long.
	OnStuckHolder func(lease, holder string, since time.Time)
	// SlotValue, if set, is this node's value of the pool's slot key (for
	// example its zone): at most SlotsPerKey nodes per value hold a slot at a
	// time.
	SlotValue string
	// SlotsPerKey is how many nodes per slot value may hold a slot at once.
	// Default 1; [SlotsPerKey] makes one Acquire follow a changing count.
	SlotsPerKey int
	// QueueGrace is how long a waiter whose turn has come may take to claim
	// before the waiters behind it pass it over (its agent is gone or
	// stuck). Default DefaultQueueGrace; it must be less than TTL.
	QueueGrace time.Duration
	// Logger receives renewal failures and hand-offs. Default: slog.Default().
	Logger *slog.Logger
}

// Semaphore is one node's handle on one pool's slots. It is safe for
// concurrent use, though a node normally holds at most one slot.
type Semaphore struct {
	client       kubernetes.Interface
	namespace    string
	pool         string
	holder       string
	ttl          time.Duration
	jitter       time.Duration
	skew         time.Duration
	clock        clock.WithTicker
	holderStatus func(ctx context.Context, node string) (nodestate.HolderStatus, error)
	slotUsers    func(ctx context.Context, lease string) ([]string, error)
	keyUsers     func(ctx context.Context, value string) ([]string, error)
	onStuck      func(lease, holder string, since time.Time)
	slotValue    string
	slotsPerKey  int
	ticketName   string // this node's place in the queue
	grace        time.Duration
	log          *slog.Logger

	mu      sync.Mutex
	recheck chan struct{} // closed by Recheck; nil until someone waits
	// observed records, per foreign-held Lease of the pool, the version last
	// seen and when (on this node's clock) it was first seen: expiry is
	// judged from that, never from the holder's clock. Shared by every
	// Acquire, TryAcquire and Resume of this Semaphore; entries of Leases no
	// longer in the pool or no longer foreign-held are dropped.
	observed map[string]observation
	// stuckReported maps a slot Lease name to the stuckKey last reported to
	// OnStuckHolder, so that one stuck holding is reported once.
	stuckReported map[string]string
	// due records, per ticket, since when (on this node's clock) its waiter
	// should have claimed: after QueueGrace it is passed over.
	due map[string]dueSince
	// queued: this node has a ticket in the queue (as far as it knows).
	queued bool
}

// maxSlotSuffix is the longest suffix after "rebootgate-<pool>-": "key-" plus
// the value hash, which is longer than any slot index we accept.
var maxSlotSuffix = len(keySuffixPrefix) + keyHashLen

// New validates cfg, applies defaults and returns a Semaphore. It makes no
// API calls. Errors name the offending field.
func New(cfg Config) (*Semaphore, error) {
	if cfg.Client == nil {
		return nil, errors.New("lock config: Client is required")
	}
	if errs := validation.IsDNS1123Label(cfg.Namespace); len(errs) > 0 {
		return nil, fmt.Errorf("lock config: Namespace %q: %s", cfg.Namespace, strings.Join(errs, "; "))
	}
	if cfg.Pool == "" {
		return nil, errors.New("lock config: Pool is required")
	}
	if errs := validation.IsValidLabelValue(cfg.Pool); len(errs) > 0 {
		return nil, fmt.Errorf("lock config: Pool %q is not a valid label value: %s", cfg.Pool, strings.Join(errs, "; "))
	}
	longest := leasePrefix(cfg.Pool) + strings.Repeat("x", maxSlotSuffix)
	if errs := validation.IsDNS1123Subdomain(longest); len(errs) > 0 {
		return nil, fmt.Errorf("lock config: Pool %q does not make valid Lease names (e.g. %q): %s", cfg.Pool, longest, strings.Join(errs, "; "))
	}
	if cfg.Holder == "" {
		return nil, errors.New("lock config: Holder is required")
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < time.Second {
		return nil, fmt.Errorf("lock config: TTL %v must be at least 1s", cfg.TTL)
	}
	cfg.TTL = time.Duration(ttlSeconds(cfg.TTL)) * time.Second
	switch {
	case cfg.Jitter == 0:
		cfg.Jitter = DefaultJitter
	case cfg.Jitter < 0:
		cfg.Jitter = 0
	}
	switch {
	case cfg.Skew == 0:
		cfg.Skew = DefaultSkew
	case cfg.Skew < 0:
		cfg.Skew = 0
	}
	if cfg.Skew >= cfg.TTL/4 {
		return nil, fmt.Errorf("lock config: Skew %v must be less than TTL/4 (TTL %v)", cfg.Skew, cfg.TTL)
	}
	switch {
	case cfg.SlotsPerKey == 0:
		cfg.SlotsPerKey = 1
	case cfg.SlotsPerKey < 0:
		return nil, fmt.Errorf("lock config: SlotsPerKey %d must be at least 1", cfg.SlotsPerKey)
	}
	if cfg.QueueGrace == 0 {
		cfg.QueueGrace = min(DefaultQueueGrace, cfg.TTL/2)
	}
	if cfg.QueueGrace < 0 || cfg.QueueGrace >= cfg.TTL {
		return nil, fmt.Errorf("lock config: QueueGrace %v must be positive and less than TTL (TTL %v)", cfg.QueueGrace, cfg.TTL)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Semaphore{
		client:        cfg.Client,
		namespace:     cfg.Namespace,
		pool:          cfg.Pool,
		holder:        cfg.Holder,
		ttl:           cfg.TTL,
		jitter:        cfg.Jitter,
		skew:          cfg.Skew,
		clock:         cfg.Clock,
		holderStatus:  cfg.HolderStatus,
		onStuck:       cfg.OnStuckHolder,
		slotValue:     cfg.SlotValue,
		slotsPerKey:   cfg.SlotsPerKey,
		ticketName:    ticketLeaseName(cfg.Pool, cfg.Holder),
		grace:         cfg.QueueGrace,
		due:           map[string]dueSince{},
		log:           cfg.Logger.With("pool", cfg.Pool, "holder", cfg.Holder),
		observed:      map[string]observation{},
		stuckReported: map[string]string{},
	}
	s.slotUsers, s.keyUsers = cfg.SlotUsers, cfg.KeyUsers
	if s.slotUsers == nil {
		s.slotUsers = func(ctx context.Context, lease string) ([]string, error) {
			return s.listBusy(ctx, nodestate.LabelHoldsSlot, HoldsSlotValue(s.namespace, lease), "slot "+lease)
		}
	}
	if s.keyUsers == nil {
		s.keyUsers = func(ctx context.Context, value string) ([]string, error) {
			return s.listBusy(ctx, nodestate.LabelHoldsKey, HoldsKeyValue(s.namespace, s.pool, value), fmt.Sprintf("slot-key value %q", value))
		}
	}
	if s.holderStatus == nil {
		s.holderStatus = s.getHolderStatus
	}
	return s, nil
}

// listBusy lists the other nodes mid-reboot whose label key has the value
// given (the default SlotUsers and KeyUsers); what names the record for errors.
func (s *Semaphore) listBusy(ctx context.Context, key, value, what string) ([]string, error) {
	list, err := s.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{
		LabelSelector: key + "=" + value, ResourceVersion: "0",
	})
	if err != nil {
		return nil, fmt.Errorf("list nodes using %s (%s=%s): %w", what, key, value, err)
	}
	var users []string
	for i := range list.Items {
		if n := &list.Items[i]; n.Name != s.holder && nodestate.HolderStatusOf(n).Busy {
			users = append(users, n.Name)
		}
	}
	return users, nil
}

// getHolderStatus is the default HolderStatus.
func (s *Semaphore) getHolderStatus(ctx context.Context, name string) (nodestate.HolderStatus, error) {
	// resourceVersion=0 is served from the watch cache: cheap for the API
	// server even when many waiters check the same stalled holder.
	n, err := s.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{ResourceVersion: "0"})
	switch {
	case err == nil:
		return nodestate.HolderStatusOf(n), nil
	case apierrors.IsNotFound(err):
		return nodestate.HolderStatus{}, nil
	default:
		return nodestate.HolderStatus{}, fmt.Errorf("get node %q: %w", name, err)
	}
}

// ttlSeconds rounds d up to whole seconds, as Lease durations are seconds.
func ttlSeconds(d time.Duration) int32 {
	return int32((d + time.Second - 1) / time.Second)
}
