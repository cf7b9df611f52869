package testbed

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// PollInterval is how often Poll re-checks a condition.
const PollInterval = 100 * time.Millisecond

// ErrTimeout is wrapped by every error Poll returns when the deadline passes.
var ErrTimeout = errors.New("timed out")

// Poll calls cond until it reports true, the timeout passes or ctx ends.
// An error from cond does not stop polling (API calls may fail transiently
// while components restart); the last one is reported on timeout. Use
// Permanent to stop at once. what names the condition in errors.
func Poll(ctx context.Context, timeout time.Duration, what string, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ticker := time.NewTicker(PollInterval)
	defer ticker.Stop()
	var last error
	for {
		ok, err := cond(ctx)
		if err != nil {
			var p *permanentError
			if errors.As(err, &p) {
				return fmt.Errorf("waiting for %s: %w", what, p.err)
			}
			last = err
		}
		if ok && err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("waiting for %s: %w after %s (last error: %w)", what, ErrTimeout, timeout, last)
			}
			return fmt.Errorf("waiting for %s: %w after %s", what, ErrTimeout, timeout)
		case <-ticker.C:
		}
	}
}

type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// Permanent marks an error returned by a Poll condition as final.
func Permanent(err error) error { return &permanentError{err: err} }
