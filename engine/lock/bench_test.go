package lock

import (
	"context"
	"slices"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"
)

// BenchmarkHandoff measures release → next holder's Acquire returning, with
// the fake client and no jitter: the cost of the watch-driven path itself
// (informer event delivery, one re-plan from cache, one guarded Update).
// Setting up each waiter (informer start and first List) is not timed.
//
//	go test -run '^$' -bench Handoff ./engine/lock/
func BenchmarkHandoff(b *testing.B) {
	cs := newClient(b)
	clocks := [2]*testingclock.FakeClock{testingclock.NewFakeClock(t0), testingclock.NewFakeClock(t0)}
	sems := [2]*Semaphore{newSem(b, cs, clocks[0], "node-a"), newSem(b, cs, clocks[1], "node-b")}
	held := mustTry(b, sems[0], 1)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		next := (i + 1) % 2
		ch := acquireAsync(context.Background(), sems[next], fixed(1))
		eventually(b, "waiter to wait", clocks[next].HasWaiters)
		b.StartTimer()
		start := time.Now()
		if err := held.Release(context.Background()); err != nil {
			b.Fatal(err)
		}
		r := <-ch
		lat = append(lat, time.Since(start))
		if r.err != nil {
			b.Fatal(r.err)
		}
		held = r.held
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	_ = held.Release(context.Background())
}
