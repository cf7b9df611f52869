package summary

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaseName is the leader-election Lease of the summarizer replicas, in their namespace.
const LeaseName = "rebootgate-summarizer"

// LeaderRenewGrace is how long past its Lease's duration a leader that has not renewed
// stays healthy (client-go's leader-election watchdog, Election.WatchDog): it should
// have stepped down by then, so something is stuck.
const LeaderRenewGrace = 20 * time.Second

// Election timings, client-go's usual ones: a dead leader is replaced within about
// LeaseDuration, and a leader that cannot renew steps down after RenewDeadline.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// Election is how the summarizer replicas elect the one that publishes: client-go's
// leader election on the Lease LeaseName. (client-go's elector keeps its own real
// clock; there is none to inject.)
type Election struct {
	Client    kubernetes.Interface
	Namespace string
	// Identity is this replica's name in the Lease.
	Identity string
	Logger   *slog.Logger
	// WatchDog, if set, watches the leader's Lease renewal (the summarizer's /healthz;
	// leaderelection.NewLeaderHealthzAdaptor(LeaderRenewGrace)).
	WatchDog *leaderelection.HealthzAdaptor
	// OnLeading, if set, is called when this replica starts leading, before the work.
	OnLeading func()
	// LeaseDuration, RenewDeadline and RetryPeriod default to the Default* timings.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// RunElected runs work while this replica leads, and returns work's error. A lost lead
// is an error, so the process ends and its Deployment restarts it as a candidate: two
// writers never overlap for long. It returns nil when ctx ends (releasing the Lease).
func RunElected(ctx context.Context, e Election, work func(context.Context) error) error {
	if e.Client == nil || e.Namespace == "" || e.Identity == "" {
		return errors.New("leader election: Client, Namespace and Identity are required")
	}
	log := e.Logger
	if log == nil {
		log = slog.Default()
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.Namespace, Name: LeaseName},
		Client:     e.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.Identity},
	}
	// run ends the election when the work returns, so a replica whose work failed
	// does not keep the Lease without publishing. The work runs here, not in the
	// elector's callback goroutine, so it has surely ended when RunElected returns.
	run, stop := context.WithCancel(ctx)
	defer stop()
	leading := make(chan context.Context, 1)
	lost := false
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   orDefault(e.LeaseDuration, DefaultLeaseDuration),
		RenewDeadline:   orDefault(e.RenewDeadline, DefaultRenewDeadline),
		RetryPeriod:     orDefault(e.RetryPeriod, DefaultRetryPeriod),
		ReleaseOnCancel: true, Name: LeaseName, WatchDog: e.WatchDog,
		Callbacks: leaderelection.LeaderCallbacks{
			// The elector cancels this context when it stops leading.
			OnStartedLeading: func(ctx context.Context) { leading <- ctx },
			OnStoppedLeading: func() { lost = run.Err() == nil },
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	elected := make(chan struct{})
	go func() {
		defer close(elected)
		le.Run(run)
	}()
	select {
	case <-elected: // ctx ended before this replica led
		return nil
	case leadCtx := <-leading:
		log.Info("leading: publishing the node summary", "identity", e.Identity)
		if e.OnLeading != nil {
			e.OnLeading()
		}
		workErr := work(leadCtx)
		stop()
		<-elected // the Lease is released and lost is set
		if workErr != nil {
			return workErr
		}
	}
	if lost {
		return fmt.Errorf("lost the lead of Lease %s/%s", e.Namespace, LeaseName)
	}
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
