// Package chaos is the seeded chaos rollout (`make test-chaos`): a rolling reboot of
// simulated nodes in three pools on the test bed — the third keyed by zone, with a
// disruption budget and a breaker fed by two real summarizer replicas — while faults
// are injected at random moments: agents killed, kube-apiserver paused and restarted,
// slot and key Leases deleted, a host that stays down, Prometheus down, a broken
// config, a paused pool, an admin's cordon, the leading summarizer killed or stopped,
// Karpenter's disruption taint, an alert whose instance is a pod. An oracle judges it
// that trusts the node simulator, the cluster's state and the run's own record of
// what it did, never rebootgate's own annotations. See TestChaosRollout.
//
// It runs only with REBOOTGATE_CHAOS set (and REBOOTGATE_E2E, which hack/testbed/e2e.sh
// sets), so `make test-e2e`'s ./test/... does not run it a second time; without them
// only the bed-free unit tests of the schedule and the oracle run.
package chaos

import (
	"fmt"
	"os"
	"testing"

	"github.com/rebootgate/rebootgate/test/testbed"
)

const (
	// envChaos enables the chaos rollout (`make test-chaos` sets it).
	envChaos = "REBOOTGATE_CHAOS"
	// envBinary runs this rebootgate binary instead of building ./cmd/rebootgate.
	envBinary = "CHAOS_BINARY"
)

// binary is the rebootgate binary the agents run.
var binary string

func TestMain(m *testing.M) {
	if os.Getenv(envChaos) == "" || os.Getenv(testbed.EnvE2E) == "" {
		fmt.Fprintf(os.Stderr, "chaos: %s and %s not both set, only unit tests run (use `make test-chaos`)\n", envChaos, testbed.EnvE2E)
		os.Exit(m.Run())
	}
	if b := os.Getenv(envBinary); b != "" {
		binary = b
		os.Exit(testbed.Main(m))
	}
	os.Exit(testbed.MainWithBinary(m, &binary))
}
