package features

import (
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/engine/source"
	"github.com/rebootgate/rebootgate/test/testbed"
)

// freezePolicy is an operator's policy ConfigMap module: a node labelled freeze=true
// does not reboot.
const freezePolicy = `package rebootgate

deny contains msg if {
	input.node.labels.freeze == "true"
	msg := sprintf("node %s carries freeze=true", [input.node.name])
}
`

// TestEvalLiveMatchesAgent: `rebootgate eval --node-name` against the bed, pinned with
// --at to the time of each decision the agent reported on its node, reaches the same
// decision (allowed, pool, reasons in order, next allowed time): first blocked at once
// by a blackout, a blocking pod and a policy ConfigMap; then, with the pod and the
// label gone and the blackout over, allowed — and the node reboots after the blackout.
func TestEvalLiveMatchesAgent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pool, end := freezeFor(20 * time.Second)
	cfg := e.config(pool, `blockers:
  pods:
    selectors: ["app=blocker"]
`)
	node := e.node(func(n *corev1.Node) { n.Labels["freeze"] = "true" })
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "freeze", Namespace: e.ns, Labels: map[string]string{source.PolicyLabel: source.PolicyLabelValue}},
		Data:       map[string]string{"freeze.rego": freezePolicy},
	}
	if _, err := e.bed.Client.CoreV1().ConfigMaps(e.ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := e.bed.Client.CoreV1().Pods(e.ns)
	if _, err := pods.Create(ctx, testbed.NewPod(e.ns, "blocker", node, map[string]string{"app": "blocker"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.bed.WaitPodsRunning(ctx, e.ns, "app=blocker", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	sim := e.simulate([]string{node}, e.args(cfg))
	e.required(sim, node)

	blocked := e.waitDecision(node, time.Minute, "blocked by the blackout, the pod and the policy", func(d nodestate.Decision) bool { return len(d.Reasons) == 3 })
	e.evalMatches(cfg, node, blocked)

	if err := pods.Delete(ctx, "blocker", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.bed.Client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(`{"metadata":{"labels":{"freeze":null}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	allowed := e.waitDecision(node, time.Minute, "allowed after the blackout", func(d nodestate.Decision) bool { return d.Allowed })
	e.evalMatches(cfg, node, allowed)
	e.rebootedOnce(sim, node, end, time.Minute)
}

// evalMatches runs `rebootgate eval --node-name node -o json` at the agent's decision
// time and fails the test unless it decides as the agent did.
func (e *env) evalMatches(cfg, node string, agent nodestate.Decision) {
	e.t.Helper()
	cmd := exec.Command(binary, "eval", "--kubeconfig", e.bed.Kubeconfig, "--node-name", node, "--config", cfg,
		"--policy-namespace", e.ns, "--at", agent.At, "-o", "json")
	out, err := cmd.Output()
	if err != nil {
		e.t.Fatalf("%s: %v", strings.Join(cmd.Args, " "), err)
	}
	var ev decision.Decision
	if err := json.Unmarshal(out, &ev); err != nil {
		e.t.Fatalf("eval's output %q: %v", out, err)
	}
	if ev.Allowed != agent.Allowed || ev.Pool != agent.Pool || ev.At != agent.At || ev.NextAllowed != agent.NextAllowed ||
		!slices.Equal(ev.Reasons, agent.Reasons) {
		e.t.Fatalf("eval --node-name %s --at %s decided\n  allowed=%v pool=%s next=%s reasons=%q\nthe agent\n  allowed=%v pool=%s next=%s reasons=%q",
			node, agent.At, ev.Allowed, ev.Pool, ev.NextAllowed, reasons(ev.Reasons), agent.Allowed, agent.Pool, agent.NextAllowed, reasons(agent.Reasons))
	}
	e.t.Logf("eval and the agent agree at %s: allowed=%v %s", agent.At, agent.Allowed, reasons(agent.Reasons))
}
