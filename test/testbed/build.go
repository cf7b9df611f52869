package testbed

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildBinary builds the rebootgate binary into a new temporary directory for a suite's
// TestMain, returning its path and a cleanup that removes it.
func BuildBinary() (path string, cleanup func(), err error) { return build(nil) }

// BuildReleaseBinary is BuildBinary with the flags of `make build-static`, the binary
// the image ships: static, without symbol tables, paths trimmed.
func BuildReleaseBinary() (path string, cleanup func(), err error) {
	return build([]string{"CGO_ENABLED=0"}, "-trimpath", "-ldflags", "-s -w")
}

func build(env []string, flags ...string) (path string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "rebootgate-e2e-")
	if err != nil {
		return "", nil, fmt.Errorf("building rebootgate: %w", err)
	}
	path = filepath.Join(dir, "rebootgate")
	args := append(append([]string{"build"}, flags...), "-o", path, "github.com/rebootgate/rebootgate/cmd/rebootgate")
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("building rebootgate: %w", err)
	}
	return path, func() { os.RemoveAll(dir) }, nil
}

// EnvBinary, when set, is the path of a prebuilt rebootgate binary that
// MainWithBinary uses instead of building one from the working tree: to run a
// suite against another version (e.g. one built from a `git worktree` of an
// older commit, to see a fault test fail there).
const EnvBinary = "REBOOTGATE_BIN"

// MainWithBinary is Main for suites that run the rebootgate binary: when the suite
// runs at all, it builds the binary first (or takes $REBOOTGATE_BIN) and stores its
// path in *binary.
func MainWithBinary(m *testing.M, binary *string) int {
	if os.Getenv(EnvE2E) == "" {
		return Main(m) // skips, without building anything
	}
	if p := os.Getenv(EnvBinary); p != "" {
		abs, err := filepath.Abs(p)
		if err == nil {
			_, err = os.Stat(abs)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "testbed: %s=%s: %v\n", EnvBinary, p, err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "testbed: using the rebootgate binary %s (%s)\n", abs, EnvBinary)
		*binary = abs
		return Main(m)
	}
	path, cleanup, err := BuildBinary()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	*binary = path
	return Main(m)
}
