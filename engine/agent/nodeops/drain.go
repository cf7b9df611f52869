package nodeops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kubectl/pkg/drain"
)

// DrainOptions mirror kured's drain flags.
type DrainOptions struct {
	// GracePeriod for pods; negative uses each pod's own (kured's -1).
	GracePeriod time.Duration
	// Timeout bounds one drain attempt; 0 waits forever (kured's default).
	Timeout time.Duration
	// PodSelector drains only matching pods.
	PodSelector string
	// SkipWaitForDeleteTimeout ignores pods deleted longer ago than this.
	SkipWaitForDeleteTimeout time.Duration
	// Attempts bounds the drain attempts (at least 1).
	Attempts int
	// RetryDelay is the pause between attempts.
	RetryDelay time.Duration
	// EvictionRetryDelay is the pause after a refused eviction (a PDB's 429).
	EvictionRetryDelay time.Duration
	// Delay is a pause before draining (kured's --drain-delay).
	Delay time.Duration
}

// DrainError is a drain that did not finish within its attempts.
type DrainError struct {
	Node     string
	Attempts int
	// BlockedByPDB is true when evictions were refused to honour a PodDisruptionBudget.
	BlockedByPDB bool
	Err          error
}

func (e *DrainError) Error() string {
	why := ""
	if e.BlockedByPDB {
		why = " (a PodDisruptionBudget refused an eviction)"
	}
	return fmt.Sprintf("draining node %s failed after %d attempt(s)%s: %v", e.Node, e.Attempts, why, e.Err)
}

func (e *DrainError) Unwrap() error { return e.Err }

// Drainer evicts a node's pods.
type Drainer interface {
	Drain(ctx context.Context, node string) error
}

// KubectlDrainer drains with k8s.io/kubectl/pkg/drain through the eviction API, so
// PodDisruptionBudgets are honoured.
type KubectlDrainer struct {
	Client  kubernetes.Interface
	Options DrainOptions
	Logger  *slog.Logger
	// Sleep waits between attempts; it returns early with ctx's error.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Drain runs up to Options.Attempts drains.
func (d *KubectlDrainer) Drain(ctx context.Context, node string) error {
	attempts := max(1, d.Options.Attempts)
	var last error
	pdb := false
	for i := 1; i <= attempts; i++ {
		out := &logWriter{log: d.Logger, node: node}
		h := &drain.Helper{
			Ctx:                             ctx,
			Client:                          d.Client,
			Force:                           true, // pods without a controller are deleted, as kured does
			GracePeriodSeconds:              gracePeriodSeconds(d.Options.GracePeriod),
			IgnoreAllDaemonSets:             true,
			DeleteEmptyDirData:              true,
			Timeout:                         d.Options.Timeout,
			PodSelector:                     d.Options.PodSelector,
			SkipWaitForDeleteTimeoutSeconds: int(d.Options.SkipWaitForDeleteTimeout / time.Second),
			EvictErrorRetryDelay:            orDuration(d.Options.EvictionRetryDelay, 5*time.Second),
			Out:                             out,
			ErrOut:                          out,
		}
		last = drain.RunNodeDrain(h, node)
		if last == nil {
			return nil
		}
		if apierrors.IsTooManyRequests(last) || strings.Contains(last.Error(), "disruption budget") || out.pdbSeen() {
			pdb = true
		}
		if ctx.Err() != nil {
			break
		}
		d.Logger.Warn("drain attempt failed", "node", node, "attempt", i, "of", attempts, "err", last)
		if i < attempts && d.Sleep != nil {
			if err := d.Sleep(ctx, d.Options.RetryDelay); err != nil {
				break
			}
		}
	}
	return &DrainError{Node: node, Attempts: attempts, BlockedByPDB: pdb, Err: last}
}

func gracePeriodSeconds(d time.Duration) int {
	if d < 0 {
		return -1
	}
	return int(d / time.Second)
}

func orDuration(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// logWriter turns the drain helper's progress lines into log records, and notices
// PDB refusals, which the helper only reports as text while it retries.
type logWriter struct {
	log  *slog.Logger
	node string
	// The helper's eviction goroutines may still write after a timed-out drain returns.
	mu     sync.Mutex
	sawPDB bool
}

func (w *logWriter) pdbSeen() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sawPDB
}

func (w *logWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	if strings.Contains(line, "disruption budget") || strings.Contains(line, "Too Many Requests") {
		w.mu.Lock()
		w.sawPDB = true
		w.mu.Unlock()
	}
	if line != "" && w.log != nil {
		w.log.Info("drain", "node", w.node, "msg", line)
	}
	return len(p), nil
}

var _ io.Writer = (*logWriter)(nil)

// IsDrainError reports whether err is a failed drain.
func IsDrainError(err error) (*DrainError, bool) {
	var de *DrainError
	ok := errors.As(err, &de)
	return de, ok
}
