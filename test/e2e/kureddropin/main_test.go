// Package kureddropin runs examples/kured-dropin on the test bed: kured's DaemonSet with
// rebootgate's image. Each simulated node runs the rebootgate binary invoked as the
// manifest's /usr/bin/kured, with the container's command and env, as the manifest's
// ServiceAccount (a token, so exactly rbac.yaml's permissions). It runs only under
// `make test-e2e` (REBOOTGATE_E2E set).
package kureddropin

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"sigs.k8s.io/yaml"

	"github.com/rebootgate/rebootgate/test/chart"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// binary is the rebootgate binary built for this suite.
var binary string

func TestMain(m *testing.M) { os.Exit(testbed.MainWithBinary(m, &binary)) }

// The manifest's namespace and ServiceAccount, and the name its command runs under.
const (
	namespace      = "kube-system"
	serviceAccount = "kured"
	kuredCommand   = "/usr/bin/kured"
	// kuredName names rbac.yaml's objects that hold kured's own RBAC; the others are
	// rebootgate's delta.
	kuredName = "kured"
	// agentNamespace is the agent's namespace (slot Leases, policy ConfigMaps, the node
	// summary): its default, since the manifest sets neither --namespace nor
	// POD_NAMESPACE. rbac.yaml creates it.
	agentNamespace = "rebootgate"
)

// dropin is examples/kured-dropin, parsed.
type dropin struct {
	t   *testing.T
	bed *testbed.Bed
	ds  appsv1.DaemonSet
	// base is kured's RBAC with the ServiceAccount, delta rebootgate's delta: rbac.yaml's
	// objects, as YAML documents. deltaRBAC is the delta without its Namespace, which
	// stays at cleanup (deleting it would race the next test's apply).
	base, delta, deltaRBAC []byte
}

func load(t *testing.T) *dropin {
	t.Helper()
	root, err := chart.Root()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "examples", "kured-dropin")
	d := &dropin{t: t, bed: testbed.Shared(t)}
	if err := yaml.UnmarshalStrict(read(t, filepath.Join(dir, "daemonset.yaml")), &d.ds); err != nil {
		t.Fatalf("daemonset.yaml: %v", err)
	}
	spec := d.ds.Spec.Template.Spec
	if d.ds.Namespace != namespace || spec.ServiceAccountName != serviceAccount || len(spec.Containers) != 1 {
		t.Fatalf("daemonset.yaml: namespace %q, serviceAccountName %q, %d containers; want %s, %s, 1",
			d.ds.Namespace, spec.ServiceAccountName, len(spec.Containers), namespace, serviceAccount)
	}
	objs, err := chart.Split(read(t, filepath.Join(dir, "rbac.yaml")))
	if err != nil {
		t.Fatalf("rbac.yaml: %v", err)
	}
	for _, o := range objs {
		doc := append([]byte("---\n"), o.YAML...)
		switch {
		case o.Name == kuredName:
			d.base = append(d.base, doc...)
		case o.Kind == "Namespace":
			if o.Name != agentNamespace {
				t.Fatalf("rbac.yaml: Namespace %q, want the agent's %s", o.Name, agentNamespace)
			}
			d.delta = append(d.delta, doc...)
		default:
			d.delta = append(d.delta, doc...)
			d.deltaRBAC = append(d.deltaRBAC, doc...)
		}
	}
	if len(d.base) == 0 || len(d.deltaRBAC) == 0 || len(d.delta) == len(d.deltaRBAC) {
		t.Fatalf("rbac.yaml: kured's RBAC %d bytes, the delta %d bytes, without its Namespace %d bytes", len(d.base), len(d.delta), len(d.deltaRBAC))
	}
	return d
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// kubectl runs kubectl as the bed's admin with manifests on stdin.
func (d *dropin) kubectl(stdin []byte, args ...string) error {
	cmd := exec.Command("kubectl", args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+d.bed.Kubeconfig)
	cmd.Stdin = bytes.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// applyRBAC applies rbac.yaml's kured part, and its delta when withDelta (else it makes
// sure the delta's RBAC is absent), and removes everything but the Namespace at cleanup.
func (d *dropin) applyRBAC(withDelta bool) {
	d.t.Helper()
	rbac := append(append([]byte{}, d.base...), d.deltaRBAC...)
	d.t.Cleanup(func() {
		if err := d.kubectl(rbac, "delete", "--ignore-not-found", "-f", "-"); err != nil {
			d.t.Error(err)
		}
	})
	apply := d.base
	if withDelta {
		apply = append(append([]byte{}, d.base...), d.delta...)
	} else if err := d.kubectl(d.deltaRBAC, "delete", "--ignore-not-found", "-f", "-"); err != nil {
		d.t.Fatal(err)
	}
	if err := d.kubectl(apply, "apply", "-f", "-"); err != nil {
		d.t.Fatal(err)
	}
}

// tokenKubeconfig mints a token for the manifest's ServiceAccount (TokenRequest API) and
// writes a kubeconfig with it: an agent using it has exactly rbac.yaml's permissions.
func (d *dropin) tokenKubeconfig() string {
	d.t.Helper()
	path, err := d.bed.ServiceAccountKubeconfig(context.Background(), namespace, serviceAccount, d.t.TempDir(), time.Hour)
	if err != nil {
		d.t.Fatal(err)
	}
	return path
}

// waitAccess waits until the kubeconfig's user may (or may not) do attrs.
func (d *dropin) waitAccess(kubeconfig string, attrs authorizationv1.ResourceAttributes, allowed bool) {
	d.t.Helper()
	if err := testbed.WaitAccess(context.Background(), kubeconfig, attrs, allowed, time.Minute); err != nil {
		d.t.Fatal(err)
	}
}

// nodes creates n fresh simulated nodes (deleted at cleanup).
func (d *dropin) nodes(n int) []string {
	id := strings.ToLower(testbed.NewUUID()[:6])
	var names []string
	for i := range n {
		name := fmt.Sprintf("kured-dropin-%s-%d", id, i)
		d.bed.CreateNode(d.t, testbed.NewNode(name, "user", fmt.Sprintf("eastus-%d", i%3+1)))
		names = append(names, name)
	}
	return names
}

// simulate runs the manifest's container on each node under the node simulator: the
// rebootgate binary through a symlink named kured (the image's /usr/bin/kured), with the
// container's command, args and env.
func (d *dropin) simulate(kubeconfig string, nodes []string) *testbed.Simulator {
	d.t.Helper()
	c := d.ds.Spec.Template.Spec.Containers[0]
	if len(c.Command) == 0 || c.Command[0] != kuredCommand {
		d.t.Fatalf("daemonset.yaml: command %q does not run %s", c.Command, kuredCommand)
	}
	kured := filepath.Join(d.t.TempDir(), "kured")
	if err := os.Symlink(binary, kured); err != nil {
		d.t.Fatal(err)
	}
	argv := append(append([]string{kured}, c.Command[1:]...), c.Args...)
	// What the bed needs on top, each overriding the manifest's value (the last wins):
	argv = append(argv,
		// In the pod, client-go finds the mounted ServiceAccount token; here the token's
		// kubeconfig gives the agent the same identity and permissions.
		"--kubeconfig="+kubeconfig,
		// The host's /var/run mounted at /sentinel: the simulator's per-node sentinel.
		"--reboot-sentinel="+testbed.PhSentinel,
		// The privileged, hostPID pod runs /bin/systemctl reboot in PID 1's mount
		// namespace; here the simulator's hook stands for the host, run directly.
		"--reboot-command="+testbed.PhRebootHook, "--nsenter=false",
		// Each pod has its own network namespace for port 8080; here the agents share the
		// loopback, so each gets a free port.
		"--metrics-host=127.0.0.1", "--metrics-port="+testbed.PhPort,
	)
	var env []string
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName":
			env = append(env, e.Name+"="+testbed.PhNode) // the downward API: the pod's node
		default:
			d.t.Fatalf("daemonset.yaml: env %s: only values and spec.nodeName are simulated", e.Name)
		}
	}
	sim := d.bed.StartSimulator(d.t, testbed.SimConfig{Command: argv, Env: env, Nodes: nodes, RebootDelay: 2 * time.Second, FlipReady: true})
	d.t.Cleanup(func() {
		if d.t.Failed() {
			for _, n := range nodes {
				d.t.Logf("--- agent log of %s (last 4 KiB) ---\n%s", n, tail(string(d.agentLog(sim, n)), 4096))
			}
		}
	})
	return sim
}

func (d *dropin) agentLog(sim *testbed.Simulator, node string) []byte {
	data, _ := os.ReadFile(sim.LogPath(node))
	return data
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
