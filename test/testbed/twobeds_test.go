package testbed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Two beds share one cache of built binaries; stopping one must leave the other's
// etcd, kube-apiserver and the rest running (hack/testbed/down.sh once killed every
// process running a cached binary).
func TestStoppingAnotherBedLeavesThisOne(t *testing.T) {
	if os.Getenv(EnvE2E) == "" {
		t.Skipf("needs the running test bed (%s, as make test-e2e sets it)", EnvE2E)
	}
	root, err := FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	bed, err := Open(context.Background(), root, nil)
	if err != nil {
		t.Fatalf("the test bed is not running: %v", err)
	}
	pid, err := bed.APIServer().PID()
	if err != nil {
		t.Fatal(err)
	}
	prom, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	am, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	second := filepath.Join(t.TempDir(), "state")
	env := append(os.Environ(), "TESTBED_STATE="+second, "TESTBED_CLUSTER=second-"+NewUUID()[:6], "NODES=1",
		fmt.Sprintf("PROM_PORT=%d", prom), fmt.Sprintf("AM_PORT=%d", am))
	script := func(name string) error {
		cmd := exec.Command(filepath.Join(bed.Root, "hack", "testbed", name))
		cmd.Env, cmd.Stdout, cmd.Stderr = env, os.Stderr, os.Stderr
		return cmd.Run()
	}
	t.Cleanup(func() { _ = script("down.sh") })
	if err := script("up.sh"); err != nil {
		t.Fatalf("starting a second bed: %v", err)
	}
	if err := script("down.sh"); err != nil {
		t.Fatalf("stopping the second bed: %v", err)
	}
	if !processAlive(pid) {
		t.Fatalf("this bed's kube-apiserver (pid %d) died when the second bed was stopped", pid)
	}
	if err := bed.Healthy(context.Background()); err != nil {
		t.Fatalf("this bed is unhealthy after the second bed was stopped: %v", err)
	}
	if _, err := os.Stat(second); !os.IsNotExist(err) {
		t.Errorf("the second bed's state %s is still there (%v)", second, err)
	}
}
