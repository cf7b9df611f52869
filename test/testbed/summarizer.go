package testbed

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// Summarizer is a `rebootgate summarizer` process started by StartSummarizer.
type Summarizer struct {
	// Cmd is the running process; a test may signal it (SIGSTOP, SIGKILL) to fault it.
	Cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
}

// StartSummarizer runs `binary summarizer` against the bed with kubeconfig (the bed's
// admin one, or another identity's) until the test ends: it publishes the node summary
// and the node index into namespace, placing nodes with the config at configPath, as
// identity. It writes a changed summary within 300 ms and a heartbeat every 5 s, so that
// agents see changes quickly. At cleanup it is stopped (Stop) and its log's tail is shown
// when the test failed.
func StartSummarizer(t testing.TB, binary, kubeconfig, namespace, configPath, identity string) *Summarizer {
	t.Helper()
	log, err := os.Create(filepath.Join(t.TempDir(), identity+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "summarizer", "--kubeconfig", kubeconfig, "--namespace", namespace,
		"--config", configPath, "--identity", identity, "--interval", "300ms", "--heartbeat", "5s", "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &Summarizer{Cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.Stop()
		_ = log.Close()
		if t.Failed() {
			data, _ := os.ReadFile(log.Name())
			if len(data) > 4096 {
				data = data[len(data)-4096:]
			}
			t.Logf("--- %s log ---\n%s", identity, data)
		}
	})
	return s
}

// Stop ends the summarizer (resumed first, should it be stopped by SIGSTOP) and waits for
// it to exit. It may be called more than once.
func (s *Summarizer) Stop() {
	_ = s.Cmd.Process.Signal(syscall.SIGCONT)
	_ = s.Cmd.Process.Signal(os.Interrupt)
	<-s.done
}
