package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/summary"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// readSummary reads the published node summary.
func readSummary(ctx context.Context, c kubernetes.Interface, ns string) (*disruption.Summary, error) {
	s, _, err := summary.NewObserver(c, ns).Read(ctx, time.Now())
	return s, err
}

// freeAddr is a loopback address with a port free at the time of asking.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// summarizerProc is a real `rebootgate summarizer` as the chart's summarizer
// ServiceAccount, its output in a file.
type summarizerProc struct {
	cmd     *exec.Cmd
	log     string
	address string // its /healthz and /readyz
	// exited is closed when it has exited, with err its Wait's error.
	exited chan struct{}
	err    error
}

func startSummarizer(t *testing.T, kubeconfig, ns, identity string) *summarizerProc {
	t.Helper()
	p := &summarizerProc{log: filepath.Join(t.TempDir(), identity+".log"), address: freeAddr(t), exited: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(binary, "summarizer", "--kubeconfig", kubeconfig, "--namespace", ns, "--identity", identity,
		"--health-address", p.address, "--log-level", "debug")
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
		}
		if t.Failed() {
			data, _ := os.ReadFile(p.log)
			t.Logf("--- %s log ---\n%s", identity, tail(string(data), 4096))
		}
	})
	return p
}

// probe GETs path and returns the status (0 when the request failed) and the body.
func (p *summarizerProc) probe(path string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + p.address + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// waitProbe waits until path answers status.
func (p *summarizerProc) waitProbe(t *testing.T, path string, status int) {
	t.Helper()
	var last string
	err := testbed.Poll(context.Background(), time.Minute, fmt.Sprintf("%s answers %d", path, status), func(context.Context) (bool, error) {
		code, body := p.probe(path)
		last = fmt.Sprintf("%d %s", code, body)
		return code == status, nil
	})
	if err != nil {
		t.Fatalf("%v; last answer %s", err, last)
	}
}

// TestSummarizerHealthOnTheBed runs two real summarizers as the chart's summarizer
// ServiceAccount (its token: exactly the chart's RBAC) with --health-address: each
// passes its start-up RBAC check; the leader's /readyz answers 200 only once the summary
// it wrote is there, the candidate's once its config has loaded; /healthz answers 200 on
// both. Stopped, the leader hands over and the other becomes ready as the writer.
func TestSummarizerHealthOnTheBed(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	ns, release, _ := e.install(t)
	kubeconfig, err := e.bed.ServiceAccountKubeconfig(ctx, ns, release+"-rebootgate-summarizer", t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a := startSummarizer(t, kubeconfig, ns, "summarizer-a")
	a.waitProbe(t, "/readyz", http.StatusOK)
	s, err := readSummary(ctx, e.bed.Client, ns)
	if err != nil || s.Writer != "summarizer-a" {
		t.Fatalf("summarizer-a ready as the only replica, but the summary is %+v (%v)", s, err)
	}
	if code, body := a.probe("/healthz"); code != http.StatusOK {
		t.Errorf("the leader's /healthz: %d %s", code, body)
	}
	b := startSummarizer(t, kubeconfig, ns, "summarizer-b")
	b.waitProbe(t, "/readyz", http.StatusOK) // a candidate, ready to take over
	if code, body := b.probe("/healthz"); code != http.StatusOK {
		t.Errorf("the candidate's /healthz: %d %s", code, body)
	}
	if s, err := readSummary(ctx, e.bed.Client, ns); err != nil || s.Writer != "summarizer-a" {
		t.Fatalf("the candidate took over while the leader runs: %+v (%v)", s, err)
	}
	// The leader goes; the candidate leads, publishes, and is ready as the writer.
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-a.exited
	if a.err != nil {
		t.Errorf("the leader's exit on SIGTERM: %v", a.err)
	}
	err = testbed.Poll(ctx, time.Minute, "summarizer-b writes the summary", func(ctx context.Context) (bool, error) {
		s, err := readSummary(ctx, e.bed.Client, ns)
		return err == nil && s.Writer == "summarizer-b", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b.waitProbe(t, "/readyz", http.StatusOK)
	if code, body := b.probe("/healthz"); code != http.StatusOK {
		t.Errorf("the new leader's /healthz: %d %s", code, body)
	}
	for _, p := range []*summarizerProc{a, b} {
		data, _ := os.ReadFile(p.log)
		if bytes.Contains(bytes.ToLower(data), []byte("forbidden")) {
			t.Errorf("%s hit a missing permission:\n%s", p.log, tail(string(data), 4096))
		}
	}
}

// TestSummarizerRBACCheckOnTheBed: with the chart's summarizer ClusterRoleBinding gone
// (no node list or watch), a real summarizer as the summarizer's ServiceAccount exits
// at once with one line naming each missing permission and where to grant it, and
// writes no summary; without the check it would wait for ever on a node informer that
// cannot sync.
func TestSummarizerRBACCheckOnTheBed(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	ns, release, _ := e.install(t)
	sa := release + "-rebootgate-summarizer"
	kubeconfig, err := e.bed.ServiceAccountKubeconfig(ctx, ns, sa, t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// The cluster rules: nodes, and (the default medik8sLeaseAccess) medik8s' Leases.
	if err := e.bed.Client.RbacV1().ClusterRoleBindings().Delete(ctx, sa, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	attrs := authorizationv1.ResourceAttributes{Verb: "list", Resource: "nodes"}
	if err := testbed.WaitAccess(ctx, kubeconfig, attrs, false, time.Minute); err != nil {
		t.Fatal(err)
	}
	p := startSummarizer(t, kubeconfig, ns, "summarizer-a")
	select {
	case <-p.exited:
		var exit *exec.ExitError
		if !errors.As(p.err, &exit) || exit.ExitCode() == 0 {
			t.Errorf("exit %v, want a non-zero exit", p.err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the summarizer without node access still runs after 1m")
	}
	data, _ := os.ReadFile(p.log)
	var line string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "rebootgate: RBAC: ") {
			line = l
		}
	}
	for _, want := range []string{
		"list nodes (core) cluster-wide", "watch nodes (core) cluster-wide",
		"list leases (coordination.k8s.io) in namespace medik8s-leases",
		"grant them to the summarizer's ServiceAccount",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("the error line does not name %q: %q", want, line)
		}
	}
	for _, granted := range []string{"configmaps", "in namespace " + ns} {
		if strings.Contains(line, granted) {
			t.Errorf("the error names %q, which the chart's Role still grants: %q", granted, line)
		}
	}
	if _, err := readSummary(ctx, e.bed.Client, ns); err == nil {
		t.Error("a summary was written without node access")
	}
}
