package testbed

import (
	"fmt"
	"os"
	"testing"
)

// BenchMain is the TestMain of a benchmark suite on the bed: it runs only when the
// environment variable env is set (by its make target, named in the skip message),
// and otherwise is MainWithBinary.
func BenchMain(m *testing.M, env, target string, binary *string) int {
	if os.Getenv(env) == "" {
		fmt.Fprintf(os.Stderr, "%s is not set, skipping (run `make %s`)\n", env, target)
		return 0
	}
	return MainWithBinary(m, binary)
}

// CheckRebootedOnce fails t for each of names that the simulator did not reboot exactly
// once: the oracle is the simulator's record, not rebootgate's annotations.
func CheckRebootedOnce(t testing.TB, sim *Simulator, names []string) {
	t.Helper()
	per := map[string]int{}
	for _, r := range sim.Reboots() {
		per[r.Node]++
	}
	for _, name := range names {
		if per[name] != 1 {
			t.Errorf("%s rebooted %d times, want 1", name, per[name])
		}
	}
}
