package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// faultKind names one kind of fault the chaos rollout injects.
type faultKind string

const (
	killAgent        faultKind = "kill-agent"        // SIGKILL of an agent's process group
	pauseAPIServer   faultKind = "pause-apiserver"   // SIGSTOP of kube-apiserver for For
	restartAPIServer faultKind = "restart-apiserver" // kill kube-apiserver, kwokctl start cluster
	deleteLease      faultKind = "delete-lease"      // delete a held slot Lease
	longDown         faultKind = "long-down"         // a host stays down Factor × its usual reboot
	prometheusDown   faultKind = "prometheus-down"   // Prometheus stopped for For
	brokenConfig     faultKind = "broken-config"     // invalid YAML in the config file for For
	pausePool        faultKind = "pause-pool"        // concurrency 0 in Pool for For
	adminCordon      faultKind = "admin-cordon"      // an admin cordons a node not mid-reboot
	summarizerKill   faultKind = "summarizer-kill"   // SIGKILL of the leading summarizer (restarted, as by its Deployment)
	summarizerStop   faultKind = "summarizer-stop"   // SIGSTOP of the leading summarizer for For, then SIGCONT
	deleteKeyLease   faultKind = "delete-key-lease"  // delete a held key Lease of the zoned pool, its holder down if one is
	disruptionTaint  faultKind = "disruption-taint"  // karpenter.sh/disrupted on a zoned node for For
	podAlert         faultKind = "pod-alert"         // an alert whose instance is a pod address fires for For
)

// allKinds is every fault kind, each of which a schedule holds at least once.
var allKinds = []faultKind{killAgent, pauseAPIServer, restartAPIServer, deleteLease, longDown, prometheusDown, brokenConfig, pausePool, adminCordon,
	summarizerKill, summarizerStop, deleteKeyLease, disruptionTaint, podAlert}

// extraKinds are drawn for the faults beyond one of each (longer windows get more).
var extraKinds = []faultKind{killAgent, killAgent, deleteLease, killAgent, pauseAPIServer, prometheusDown, brokenConfig, pausePool,
	summarizerKill, deleteKeyLease, disruptionTaint, podAlert}

// fault is one scheduled fault. Targets are indices into a candidate list that
// only the run knows (nodes in name order, held Leases in name order): the
// schedule is fixed by the seed, the run starts at Target and takes the first
// candidate that qualifies at that moment.
type fault struct {
	Kind   faultKind
	At     time.Duration // offset from the start of the rollout
	For    time.Duration // how long it lasts (pauses, outages, broken or paused config)
	Target int
	Pool   string  // pause-pool
	Factor float64 // long-down: multiple of the usual reboot delay
}

func (f fault) String() string {
	s := fmt.Sprintf("%s at=+%s", f.Kind, f.At.Round(100*time.Millisecond))
	if f.For > 0 {
		s += fmt.Sprintf(" for=%s", f.For.Round(100*time.Millisecond))
	}
	switch f.Kind {
	case pausePool:
		s += " pool=" + f.Pool
	case longDown:
		s += fmt.Sprintf(" factor=%.1f target=%d", f.Factor, f.Target)
	case killAgent, deleteLease, adminCordon, deleteKeyLease, disruptionTaint:
		s += fmt.Sprintf(" target=%d", f.Target)
	}
	return s
}

// lockTTL is the agents' --lock-ttl: short, so that outages outlast it (the agent
// wants more than 4 × its 5s clock-skew allowance).
const lockTTL = 25 * time.Second

// newSchedule draws the faults of one seed: one of each enabled kind (two agent
// kills) plus one more per 45s of window, at offsets in [3s, window), sorted by offset. The
// same seed, window and kinds give the same schedule.
func newSchedule(seed uint64, window time.Duration, kinds []faultKind) []fault {
	if len(kinds) == 0 {
		return nil
	}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(r.Int64N(int64(hi-lo)+1)) }
	list := slices.Clone(kinds)
	if slices.Contains(kinds, killAgent) {
		list = append(list, killAgent) // agents die more often than anything else
	}
	for range int(window / (45 * time.Second)) {
		if k := extraKinds[r.IntN(len(extraKinds))]; slices.Contains(kinds, k) {
			list = append(list, k)
		}
	}
	var out []fault
	longPause := false
	for _, k := range list {
		f := fault{Kind: k, At: between(3*time.Second, max(window, 4*time.Second)), Target: r.IntN(1 << 16)}
		switch k {
		case pauseAPIServer:
			// The first pause outlasts the agents' lock TTL, so that Leases look
			// expired when the apiserver comes back; any others are 10-90s.
			lo := 10 * time.Second
			if !longPause {
				lo, longPause = lockTTL+5*time.Second, true
			}
			f.For = between(lo, 90*time.Second)
		case prometheusDown:
			f.For = between(10*time.Second, 60*time.Second)
		case brokenConfig, pausePool:
			f.For = between(10*time.Second, 40*time.Second)
		case summarizerStop:
			// Sometimes shorter than the leader Lease (the stopped leader comes back
			// still leading), sometimes longer (the other replica takes over).
			f.For = between(5*time.Second, 45*time.Second)
		case disruptionTaint:
			f.For = between(15*time.Second, 60*time.Second)
		case podAlert:
			f.For = between(10*time.Second, 30*time.Second)
		case longDown:
			f.Factor = 4 + 2*r.Float64()
		}
		if k == pausePool {
			f.Pool = pools[r.IntN(len(pools))].name
		}
		out = append(out, f)
	}
	slices.SortStableFunc(out, func(a, b fault) int { return int(a.At - b.At) })
	return out
}

// parseKinds reads CHAOS_FAULTS: "" or "all" = every kind, "none" = no faults,
// or a comma list of kinds.
func parseKinds(v string) ([]faultKind, error) {
	switch strings.TrimSpace(v) {
	case "", "all":
		return slices.Clone(allKinds), nil
	case "none":
		return nil, nil
	}
	var out []faultKind
	for _, s := range strings.Split(v, ",") {
		k := faultKind(strings.TrimSpace(s))
		if !slices.Contains(allKinds, k) {
			return nil, fmt.Errorf("CHAOS_FAULTS: unknown fault kind %q (kinds: %v, or all, none)", k, allKinds)
		}
		out = append(out, k)
	}
	return out, nil
}
