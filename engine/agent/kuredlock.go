package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/rebootgate/rebootgate/engine/agent/nodeops"
	"github.com/rebootgate/rebootgate/engine/lock"
	"github.com/rebootgate/rebootgate/engine/nodestate"
)

// ReasonWaitingForKuredLock is the Node event while kured's lock is full.
const ReasonWaitingForKuredLock = "WaitingForKuredLock"

// startKuredInformer watches kured's DaemonSet, the one object, so that a freed kured
// lock wakes the loop without polling.
func (a *Agent) startKuredInformer(ctx context.Context) error {
	k := a.cfg.KuredLock
	factory := informers.NewSharedInformerFactoryWithOptions(a.client, 0, informers.WithNamespace(k.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", k.DaemonSet).String()
		}))
	inf := factory.Apps().V1().DaemonSets()
	poke := func(any) { a.poke() }
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, UpdateFunc: func(_, cur any) { poke(cur) }, DeleteFunc: poke,
	}); err != nil {
		return fmt.Errorf("watching kured's DaemonSet %s/%s: %w", k.Namespace, k.DaemonSet, err)
	}
	a.kuredDS = inf.Lister()
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("syncing the %v informer: %w", typ, ctx.Err())
		}
	}
	return nil
}

// cachedKuredDS is kured's DaemonSet as last seen (nil: not seen, or no kured lock).
func (a *Agent) cachedKuredDS() *appsv1.DaemonSet {
	if a.kuredDS == nil {
		return nil
	}
	ds, err := a.kuredDS.DaemonSets(a.cfg.KuredLock.Namespace).Get(a.cfg.KuredLock.DaemonSet)
	if err != nil {
		return nil
	}
	return ds
}

// takeKuredLock takes kured's lock before the cordon. It returns false, with when to
// look again, while the lock is full; the informer's events wake the loop earlier.
func (a *Agent) takeKuredLock(ctx context.Context, n *corev1.Node) (bool, time.Duration, error) {
	k := a.cfg.KuredLock
	if k == nil {
		return true, 0, nil
	}
	ds := a.cachedKuredDS()
	if ds != nil {
		// Only a lock with room (or ours already) is worth a request.
		holders, err := k.Holders(ds)
		if err == nil && len(holders) >= k.MaxOwners && !slices.Contains(holders, k.NodeID) {
			return false, a.kuredWait(ctx, ds, holders), nil
		}
	}
	ok, holders, err := k.Acquire(ctx, n.Spec.Unschedulable)
	if err != nil {
		return false, 0, fmt.Errorf("taking kured's lock: %w", err)
	}
	if !ok {
		return false, a.kuredWait(ctx, ds, holders), nil
	}
	a.kuredWaitingFor = ""
	a.log.Info("took kured's lock", "daemonset", k.Namespace+"/"+k.DaemonSet, "annotation", k.Annotation)
	return true, 0, nil
}

// kuredWait reports, once per set of holders, that the node waits for kured's lock,
// and says when to look again without an event: when an entry expires, else after
// the re-check interval.
func (a *Agent) kuredWait(_ context.Context, ds *appsv1.DaemonSet, holders []string) time.Duration {
	if who := strings.Join(holders, ","); who != a.kuredWaitingFor {
		a.kuredWaitingFor = who
		a.executor.Event(corev1.EventTypeNormal, ReasonWaitingForKuredLock, "waiting for kured's lock on DaemonSet %s/%s, held by %s (concurrency %d)",
			a.cfg.KuredLock.Namespace, a.cfg.KuredLock.DaemonSet, who, a.cfg.KuredLock.MaxOwners)
	}
	wait := a.cfg.RecheckInterval
	if ds != nil {
		if at, ok := a.cfg.KuredLock.NextExpiry(ds); ok {
			wait = min(wait, max(at.Sub(a.clock.Now()), 0)+time.Second)
		}
	}
	return wait
}

// confirmKuredLock proves, by a read, that this node still holds kured's lock.
func (a *Agent) confirmKuredLock(ctx context.Context) error {
	k := a.cfg.KuredLock
	if k == nil {
		return nil
	}
	held, err := k.Holding(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("confirming kured's lock: %w", err)
	case !held:
		a.executor.Event(corev1.EventTypeWarning, nodeops.ReasonSlotLost, "kured's lock on DaemonSet %s/%s no longer names this node", k.Namespace, k.DaemonSet)
		return fmt.Errorf("%w: kured's lock on DaemonSet %s/%s no longer names this node", nodeops.ErrCancelled, k.Namespace, k.DaemonSet)
	}
	return nil
}

// keepKuredLock keeps this node's entry in kured's lock valid from the cordon to the
// release — through the drain, the reboot delay, Verifying and the soak — by renewing
// it every RenewEvery (a write only then; the agent remembers its last one). It
// returns when to look again (0: nothing to renew). A failed renewal is retried at the
// next pass; it never stops the reboot from finishing.
func (a *Agent) keepKuredLock(ctx context.Context, n *corev1.Node) time.Duration {
	k := a.cfg.KuredLock
	if k == nil || k.RenewEvery() <= 0 {
		return 0
	}
	now := a.clock.Now()
	if due := a.kuredKept.Add(k.RenewEvery()); !a.kuredKept.IsZero() && now.Before(due) {
		return due.Sub(now)
	}
	held, holders, created, err := k.Keep(ctx, n.Spec.Unschedulable && !nodestate.StateOf(n).CordonedByUs)
	switch {
	case err != nil:
		a.log.Warn("renewing this node's entry in kured's lock failed; retrying", "err", err)
		return a.cfg.ErrorBackoff
	case !held:
		a.kuredKept = time.Time{}
		if who := strings.Join(holders, ","); who != a.kuredLostTo {
			a.kuredLostTo = who
			a.executor.Event(corev1.EventTypeWarning, nodeops.ReasonSlotLost, "this node's entry in kured's lock on DaemonSet %s/%s expired and the lock is held by %s; the reboot goes on without it",
				k.Namespace, k.DaemonSet, who)
		}
		return a.cfg.RecheckInterval
	}
	a.kuredKept, a.kuredLostTo = created, ""
	return max(created.Add(k.RenewEvery()).Sub(now), time.Millisecond)
}

// releaseKuredLock gives kured's lock back; without an entry of this node there is
// nothing to do.
func (a *Agent) releaseKuredLock(ctx context.Context) error {
	k := a.cfg.KuredLock
	if k == nil {
		return nil
	}
	if err := k.Release(ctx); err != nil {
		return fmt.Errorf("releasing kured's lock: %w", err)
	}
	a.kuredWaitingFor, a.kuredKept = "", time.Time{}
	return nil
}

// releaseStaleKuredLock gives back an entry of this node that nothing is using: the
// node is idle and holds no slot (the agent died between the two locks, or a release
// failed). Read from the cache, so it costs nothing when there is none.
func (a *Agent) releaseStaleKuredLock(ctx context.Context) error {
	ds := a.cachedKuredDS()
	if ds == nil || a.held != nil {
		return nil
	}
	if held, err := a.cfg.KuredLock.HeldBy(ds); err != nil || !held {
		return nil
	}
	a.log.Info("releasing kured's lock held by this idle node")
	return a.releaseKuredLock(ctx)
}

// slotAndKuredLock releases kured's lock, then the slot: the order of taking them
// reversed. held may be nil (the slot was lost or never resumed).
type slotAndKuredLock struct {
	a    *Agent
	held *lock.Held
}

func (s slotAndKuredLock) Name() string {
	if s.held == nil {
		return "kured's lock"
	}
	return s.held.Name()
}

// Release gives both back. A failing release of kured's lock does not keep the slot:
// the idle node's next pass gives kured's lock back (releaseStaleKuredLock), retried
// with the loop's back-off until it succeeds.
func (s slotAndKuredLock) Release(ctx context.Context) error {
	s.a.releaseKuredLockOrLater(ctx)
	if s.held == nil {
		return nil
	}
	return s.held.Release(ctx)
}

// releaseKuredLockOrLater releases kured's lock, leaving a failure to the idle node's
// level-triggered retry (releaseStaleKuredLock) rather than holding up the slot's
// release.
func (a *Agent) releaseKuredLockOrLater(ctx context.Context) {
	if err := a.releaseKuredLock(ctx); err != nil {
		a.log.Warn("releasing kured's lock failed; releasing the slot anyway, kured's lock is given back on the next pass", "err", err)
	}
}
