package decision

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	corev1 "k8s.io/api/core/v1"

	"github.com/rebootgate/rebootgate/engine/alerts"
	"github.com/rebootgate/rebootgate/engine/celeval"
	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/facts"
	"github.com/rebootgate/rebootgate/engine/input"
	"github.com/rebootgate/rebootgate/engine/nodestate"
	"github.com/rebootgate/rebootgate/engine/policy"
	"github.com/rebootgate/rebootgate/engine/schedule"
)

// Reason sources.
const (
	SourcePool      = "pool"
	SourceCondition = "condition/" // followed by the condition's name
	SourcePolicy    = "policy"
	SourceEngine    = "engine"
	// SourceConfig: the config file or the policy ConfigMaps do not load, so no new
	// reboot starts (the message names the file or ConfigMap, key and error).
	SourceConfig  = "config"
	SourceSlotKey = "slotKey"
)

// nextAllowedHorizon bounds the search for the next instant a reboot may happen.
const nextAllowedHorizon = 366 * 24 * time.Hour

// Decision is the engine's answer for one node at one time.
type Decision struct {
	Node    string `json:"node"`
	Pool    string `json:"pool"`
	Allowed bool   `json:"allowed"`
	At      string `json:"at"`
	// Reasons says why not; empty when allowed.
	Reasons []Reason `json:"reasons"`
	// Conditions are the pool's CEL condition results.
	Conditions []input.ConditionResult `json:"conditions"`
	// NextAllowed is the earliest time the pool's windows and blackouts allow, RFC 3339;
	// empty when none is found within a year.
	NextAllowed string `json:"nextAllowed"`
	// SlotKey is the node's value of the pool's slot key (e.g. its zone): at most
	// slotsPerKey nodes per value hold a slot at once. Empty when the pool has no slot
	// key or it could not be computed (then a reason says why, and the node is denied).
	SlotKey string `json:"slotKey,omitempty"`
}

// Reason is one thing that stops the reboot. It is the type the agent records in
// the Node's decision annotation (package nodestate).
type Reason = nodestate.Reason

// Engine decides. It is safe for concurrent use.
type Engine struct {
	cfg   *config.Resolved
	pools []*pool
	gate  *policy.Gate
	conv  input.Converter
	// policiesReadSummary: an operator's module mentions input.pool.nodes or
	// input.cluster, so every decision gathers the node summary.
	policiesReadSummary bool
	// poolsReadSummary: some pool has a budget or breaker or reads the summary, so
	// NeedsSummary must find the node's pool; otherwise it answers without.
	poolsReadSummary bool
	// alertNodeLabels are the pools' blockers.alerts.nodeLabels together (today one
	// global list): which alert labels may need the node index (NeedsNodeIndex).
	alertNodeLabels []string
}

type pool struct {
	cfg        *config.ResolvedPool
	selector   *celeval.Program
	slotKey    *celeval.Program // nil without a slot key
	conditions []condition
	health     []condition
	params     *ast.Term
	// readsSummary: a condition or health check reads poolSummary or clusterSummary.
	readsSummary bool
}

type condition struct {
	cfg     config.Condition
	program *celeval.Program
	message *celeval.Program // nil: use cfg.Message
}

// New compiles the config's CEL expressions and the Rego modules. A bad CEL expression
// is a config.ErrorList naming the pool and condition; a bad module a
// *policy.CompileError with file:line.
func New(ctx context.Context, cfg *config.Resolved, modules []policy.Module) (*Engine, error) {
	env, err := celeval.NewEnv()
	if err != nil {
		return nil, err
	}
	var errs config.ErrorList
	fail := func(path string, err error) {
		errs = append(errs, &config.FieldError{Path: path, Msg: err.Error()})
	}
	e := &Engine{cfg: cfg}
	for i := range cfg.Pools {
		rp := &cfg.Pools[i]
		path := fmt.Sprintf("pools[%d]", i)
		p := &pool{cfg: rp}
		if p.selector, err = env.CompileSelector(rp.Selector); err != nil {
			fail(path+".selector", fmt.Errorf("pool %q: %q: %w", rp.Name, rp.Selector, err))
		}
		if rp.SlotKey != "" {
			if p.slotKey, err = env.CompileSlotKey(rp.SlotKey); err != nil {
				fail(path+".slotKey", fmt.Errorf("pool %q: %s: %w", rp.Name, rp.SlotKey, err))
			}
		}
		p.conditions = compileChecks(rp.Conditions, path+".conditions", fmt.Sprintf("pool %q condition", rp.Name),
			env.CompileCondition, env.CompileMessage, fail)
		p.health = compileChecks(rp.HealthGate, path+".healthGate", fmt.Sprintf("pool %q health check", rp.Name),
			env.CompileHealthCheck, env.CompileHealthMessage, fail)
		p.readsSummary = mentionsSummary(rp.Conditions) || mentionsSummary(rp.HealthGate)
		e.poolsReadSummary = e.poolsReadSummary || p.readsSummary || cfg.NeedsSummary(rp)
		if p.params, err = input.ParamsValue(rp.Params); err != nil {
			fail(path, err)
		}
		for _, l := range rp.Params.Alerts.NodeLabels {
			if !slices.Contains(e.alertNodeLabels, l) {
				e.alertNodeLabels = append(e.alertNodeLabels, l)
			}
		}
		e.pools = append(e.pools, p)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if e.gate, err = policy.Compile(ctx, modules); err != nil {
		return nil, err
	}
	for _, m := range modules {
		if readsSummary.MatchString(m.Source) {
			e.policiesReadSummary = true
		}
	}
	return e, nil
}

// readsSummary matches a Rego reference to the node summary (input.pool.nodes,
// input.cluster, or either key in brackets). A false positive only costs one cheap read
// per decision.
var readsSummary = regexp.MustCompile(`input\s*\.\s*cluster\b|\.\s*pool\s*\.\s*nodes\b|\[\s*"(cluster|nodes)"\s*\]`)

// mentionsSummary reports whether a CEL check may read the node summary. A false
// positive only costs one cheap read per decision.
func mentionsSummary(checks []config.Condition) bool {
	for _, c := range checks {
		for _, s := range []string{c.Expression, c.MessageExpression} {
			if strings.Contains(s, "poolSummary") || strings.Contains(s, "clusterSummary") {
				return true
			}
		}
	}
	return false
}

// NeedsSummary reports whether deciding for node n at now needs the node summary: its
// pool has a budget or breaker, the cluster has a breaker, or a check or policy reads
// the summary. Gatherers read it only then.
func (e *Engine) NeedsSummary(n *corev1.Node, now time.Time) bool {
	if e.cfg.Breaker != nil || e.policiesReadSummary {
		return true
	}
	if !e.poolsReadSummary {
		return false // the usual case, asked on every decision: no pool selection
	}
	node := input.NodeFrom(n, e.cfg.NodeImageLabel)
	p, _ := e.selectPool(&celeval.Vars{Node: &node, Now: now})
	return p != nil && (e.cfg.NeedsSummary(p.cfg) || p.readsSummary)
}

// NodeIndexKeys are the node index keys that scoping the alerts for node n looks up
// (see disruption.IndexKey): those of node label values (of any pool's nodeLabels, so
// that no pool selection is needed) that are not n's own name or address. None: the
// index is not needed, and gatherers read no shard of it.
func (e *Engine) NodeIndexKeys(n *corev1.Node, list []facts.Alert) []string {
	if len(list) == 0 || len(e.alertNodeLabels) == 0 {
		return nil
	}
	return alerts.NewResolver(e.alertNodeLabels, n, nil, nil).IndexKeys(list)
}

// resolver scopes alerts for the pool's node labels and node n, with the node index
// the usable summary names (the shards of f whose hashes it names); otherwise it says
// why there is no index.
func (e *Engine) resolver(p *pool, f *facts.Facts, sum summaryState) *alerts.Resolver {
	var idx *alerts.Index
	noIndex := sum.err
	if s := sum.summary; s != nil {
		if idx = alerts.NewIndex(s.NodeIndex, f.NodeIndex, f.NodeIndexErr); idx == nil {
			why := "its summarizer predates it"
			if s.NodeIndexError != "" {
				why = s.NodeIndexError
			}
			noIndex = fmt.Errorf("the node summary by %s names no node index: %s", s.Writer, why)
		}
	}
	return alerts.NewResolver(p.cfg.Params.Alerts.NodeLabels, f.Node, idx, noIndex)
}

// compileChecks compiles CEL checks (conditions or health checks) and their message
// expressions, reporting each failure with its field path.
func compileChecks(checks []config.Condition, path, what string,
	compile, compileMessage func(string) (*celeval.Program, error), fail func(string, error)) []condition {
	out := make([]condition, 0, len(checks))
	for j, c := range checks {
		cpath := fmt.Sprintf("%s[%d]", path, j)
		check := condition{cfg: c}
		var err error
		if check.program, err = compile(c.Expression); err != nil {
			fail(cpath+".expression", fmt.Errorf("%s %q: %w", what, c.Name, err))
		}
		if c.MessageExpression != "" {
			if check.message, err = compileMessage(c.MessageExpression); err != nil {
				fail(cpath+".messageExpression", fmt.Errorf("%s %q: %w", what, c.Name, err))
			}
		}
		out = append(out, check)
	}
	return out
}

// Config is the config the engine was built from.
func (e *Engine) Config() *config.Resolved { return e.cfg }

// Evaluation is a decision together with the input document the gate saw.
type Evaluation struct {
	Decision Decision
	// Input is the Rego input; nil when no pool owns the node (the gate did not run).
	Input ast.Value
}

// Decide decides whether the node may reboot at now.
func (e *Engine) Decide(ctx context.Context, f *facts.Facts, now time.Time) Decision {
	return e.Evaluate(ctx, f, now).Decision
}

// Evaluate is Decide that also returns the input document.
func (e *Engine) Evaluate(ctx context.Context, f *facts.Facts, now time.Time) Evaluation {
	node := input.NodeFrom(f.Node, e.cfg.NodeImageLabel)
	d := Decision{Node: node.Name, At: now.Format(time.RFC3339), Reasons: []Reason{}, Conditions: []input.ConditionResult{}}
	vars := &celeval.Vars{Node: &node, Now: now}

	p, reason := e.selectPool(vars)
	if p == nil {
		d.Reasons = append(d.Reasons, reason)
		return Evaluation{Decision: d}
	}
	d.Pool = p.cfg.Name
	sum := p.fill(vars, f)
	if key, err := p.slotKeyOf(vars); err != nil {
		// Fail closed: without its key the node would escape the per-key limit.
		d.Reasons = append(d.Reasons, Reason{Source: SourceSlotKey, Message: err.Error() + "; the node may not take a slot until its key can be computed"})
	} else {
		d.SlotKey = key
	}

	for _, c := range p.conditions {
		res := c.evaluate(vars)
		d.Conditions = append(d.Conditions, res)
		if !res.Result {
			d.Reasons = append(d.Reasons, Reason{Source: SourceCondition + c.cfg.Name, Message: res.Message})
		}
	}

	d.Reasons = append(d.Reasons, e.disruptionReasons(p.cfg, f, sum)...)
	_, backoff := Backoff(f.Node, now)
	d.Reasons = append(d.Reasons, backoff...)

	doc := &input.Document{
		Node:   node,
		Pool:   input.Pool{Name: p.cfg.Name, Concurrency: p.cfg.Concurrency.String(), Conditions: d.Conditions},
		Pods:   vars.Pods,
		Alerts: input.AlertsOf(vars.Alerts, e.resolver(p, f, sum).Scopes(vars.Alerts)),
		Time:   input.Time{RFC3339: d.At, Ns: now.UnixNano()},
	}
	if f.AlertsErr != nil {
		doc.Errors.Alerts = f.AlertsErr.Error()
	}
	if s := sum.summary; s != nil {
		doc.Pool.Nodes, doc.Cluster.Nodes = counts(s.Pool(p.cfg.Name)), counts(s.Cluster)
	} else {
		doc.Errors.NodeSummary = sum.err.Error()
	}
	doc.Schedule = scheduleState(p.cfg, now)
	d.NextAllowed = doc.Schedule.NextAllowed
	in := doc.Value(input.Parts{
		Params: p.params,
		Node:   e.conv.NodeTerm(f.Node, &doc.Node),
		Pods:   e.conv.PodsTerm(f.Pods, doc.Pods),
		Alerts: e.conv.AlertsTerm(doc.Alerts),
	})

	msgs, err := e.gate.Deny(ctx, in, now)
	if err != nil {
		d.Reasons = append(d.Reasons, Reason{Source: SourceEngine, Message: "the policy could not be evaluated, so the reboot is denied: " + err.Error()})
	}
	for _, m := range msgs {
		d.Reasons = append(d.Reasons, Reason{Source: SourcePolicy, Message: m})
	}
	d.Allowed = len(d.Reasons) == 0
	return Evaluation{Decision: d, Input: in}
}

// selectPool returns the first pool whose selector is true. A selector that fails to
// evaluate stops the search: falling through to a later, looser pool would be unsafe.
func (e *Engine) selectPool(vars *celeval.Vars) (*pool, Reason) {
	for i, p := range e.pools {
		ok, err := p.selector.Bool(vars)
		if err != nil {
			return nil, Reason{Source: SourcePool, Message: fmt.Sprintf("pools[%d] (%s) selector failed: %v", i, p.cfg.Name, err)}
		}
		if ok {
			return p, Reason{}
		}
	}
	return nil, Reason{Source: SourcePool, Message: fmt.Sprintf("no pool selects node %s", vars.Node.Name)}
}

func (c *condition) evaluate(vars *celeval.Vars) input.ConditionResult {
	res := input.ConditionResult{Name: c.cfg.Name, Expression: c.cfg.Expression}
	ok, err := c.program.Bool(vars)
	if err != nil {
		res.Error = err.Error()
		res.Message = fmt.Sprintf("condition %q could not be evaluated: %v", c.cfg.Name, err)
		return res
	}
	res.Result = ok
	if ok {
		return res
	}
	switch {
	case c.message != nil:
		msg, err := c.message.String(vars)
		if err != nil {
			res.Message = fmt.Sprintf("condition %q is false (its messageExpression failed: %v)", c.cfg.Name, err)
		} else {
			res.Message = msg
		}
	case c.cfg.Message != "":
		res.Message = c.cfg.Message
	default:
		res.Message = fmt.Sprintf("condition %q is false: %s", c.cfg.Name, c.cfg.Expression)
	}
	return res
}

// scheduleState computes what Rego cannot: cron window state, daily windows' bounds on
// now's local date, and the next openings.
func scheduleState(p *config.ResolvedPool, now time.Time) input.Schedule {
	s := input.Schedule{Windows: make([]input.WindowState, len(p.Windows))}
	for i, w := range p.Windows {
		st := input.WindowState{Index: i, Kind: p.Params.Windows[i].Kind}
		switch w := w.(type) {
		case schedule.Cron:
			if opened, active := w.Active(now); active {
				st.Active = true
				st.OpenedAt = opened.Format(time.RFC3339)
				st.ClosesAt = opened.Add(w.Duration).Format(time.RFC3339)
			}
		case schedule.Daily:
			start, end := w.Bounds(now)
			st.StartNs, st.EndNs = start.UnixNano(), end.UnixNano()
		}
		if t, ok := w.NextOpening(now); ok {
			st.NextOpening = t.Format(time.RFC3339)
		}
		s.Windows[i] = st
	}
	if t, ok := schedule.NextAllowed(now, p.Windows, p.Blackouts, nextAllowedHorizon); ok {
		s.NextAllowed = t.Format(time.RFC3339)
	}
	return s
}

// PoolOf returns the pool that owns the node, or an error naming why none does.
func (e *Engine) PoolOf(n *corev1.Node, now time.Time) (*config.ResolvedPool, error) {
	node := input.NodeFrom(n, e.cfg.NodeImageLabel)
	p, reason := e.selectPool(&celeval.Vars{Node: &node, Now: now})
	if p == nil {
		return nil, errors.New(reason.Message)
	}
	return p.cfg, nil
}

// Membership says which pool owns a node and its disruption taints, for
// disruption.Summarize.
func (e *Engine) Membership(now time.Time) disruption.Membership {
	return func(n *corev1.Node) (string, []string, bool) {
		p, err := e.PoolOf(n, now)
		if err != nil {
			return "", nil, false
		}
		return p.Name, p.DisruptionTaints, true
	}
}

// SlotKeyOf computes the node's value of its pool's slot key: value is "" and err nil
// when the pool has none. err names the pool and the expression when no pool owns the
// node or the key cannot be computed (an evaluation error, a non-string or an empty
// string); such a node must not take a slot.
func (e *Engine) SlotKeyOf(n *corev1.Node, now time.Time) (value string, err error) {
	node := input.NodeFrom(n, e.cfg.NodeImageLabel)
	vars := &celeval.Vars{Node: &node, Now: now}
	p, reason := e.selectPool(vars)
	if p == nil {
		return "", errors.New(reason.Message)
	}
	vars.Pool = p.vars()
	return p.slotKeyOf(vars)
}

// slotKeyOf evaluates the pool's slot key on vars (node, now and pool set).
func (p *pool) slotKeyOf(vars *celeval.Vars) (string, error) {
	if p.slotKey == nil {
		return "", nil
	}
	key, err := p.slotKey.Key(vars)
	if err != nil {
		return "", fmt.Errorf("pool %q: slot key %s cannot be computed for node %s: %w", p.cfg.Name, p.cfg.SlotKey, vars.Node.Name, err)
	}
	return key, nil
}

// PoolSize counts the nodes the pool owns, for a percentage concurrency.
func (e *Engine) PoolSize(nodes []*corev1.Node, pool string, now time.Time) int {
	count := 0
	for _, n := range nodes {
		if p, err := e.PoolOf(n, now); err == nil && p.Name == pool {
			count++
		}
	}
	return count
}

// HealthCheck evaluates the pool's post-reboot health gate on fresh facts and the
// pool's nodes. ok is true when every check is true (or there are none); why names
// the first failing check.
func (e *Engine) HealthCheck(f *facts.Facts, poolNodes []*corev1.Node, now time.Time) (ok bool, why string) {
	node := input.NodeFrom(f.Node, e.cfg.NodeImageLabel)
	vars := &celeval.Vars{Node: &node, Now: now}
	p, reason := e.selectPool(vars)
	if p == nil {
		return false, reason.Message
	}
	if len(p.health) == 0 {
		return true, ""
	}
	p.fill(vars, f)
	vars.PoolNodes = make([]input.Node, 0, len(poolNodes))
	for _, n := range poolNodes {
		vars.PoolNodes = append(vars.PoolNodes, input.NodeFrom(n, e.cfg.NodeImageLabel))
	}
	for _, c := range p.health {
		if res := c.evaluate(vars); !res.Result {
			return false, res.Message
		}
	}
	return true, ""
}

// fill sets what conditions and health checks see beyond node and now, and returns the
// node summary as far as it is usable.
func (p *pool) fill(vars *celeval.Vars, f *facts.Facts) summaryState {
	vars.Pods = input.PodsFrom(f.Pods)
	vars.Alerts = f.Alerts
	if vars.Alerts == nil {
		vars.Alerts = []facts.Alert{}
	}
	vars.Pool = p.vars()
	sum := usableSummary(f, vars.Now)
	if s := sum.summary; s != nil {
		pc := s.Pool(p.cfg.Name)
		vars.PoolSummary, vars.ClusterSummary = pc.Map(), s.Cluster.Map()
	}
	return sum
}

// vars is the pool variable of CEL expressions.
func (p *pool) vars() map[string]string {
	return map[string]string{"name": p.cfg.Name, "concurrency": p.cfg.Concurrency.String()}
}
