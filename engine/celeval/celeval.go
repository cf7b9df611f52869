package celeval

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	"k8s.io/apiserver/pkg/cel/library"

	"github.com/rebootgate/rebootgate/engine/facts"
	"github.com/rebootgate/rebootgate/engine/input"
)

// CostLimit bounds one evaluation, as Kubernetes bounds a ValidatingAdmissionPolicy
// expression, so that no expression can stall a decision.
const CostLimit = 1_000_000

// Env is the compiled environment. It is safe for concurrent use.
type Env struct {
	selector  *cel.Env
	slotKey   *cel.Env
	condition *cel.Env
	health    *cel.Env
}

// NewEnv builds the environment once per process (or per config load).
func NewEnv() (*Env, error) {
	base, err := cel.NewEnv(
		cel.DefaultUTCTimeZone(true),
		cel.HomogeneousAggregateLiterals(),
		cel.OptionalTypes(),
		cel.CrossTypeNumericComparisons(true),
		ext.Strings(ext.StringsVersion(2)),
		ext.Sets(),
		ext.Math(),
		library.Lists(),
		library.Regex(),
		library.URLs(),
		library.Quantity(),
		library.SemverLib(),
		library.IP(),
		library.CIDR(),
		library.Format(),
		// Native types last: the libraries above register types with the default provider,
		// which the native-type provider then wraps.
		ext.NativeTypes(ext.ParseStructTag("json"), reflect.TypeFor[input.Node](), reflect.TypeFor[input.Pod](), reflect.TypeFor[facts.Alert]()),
		cel.Variable("node", cel.ObjectType("input.Node")),
		cel.Variable("now", cel.TimestampType),
	)
	if err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	// A slot key sees the node, now and pool but not pods and alerts: it must be
	// computable from the Node alone, so that the lock, the forecast and the decision
	// agree on it.
	slotKey, err := base.Extend(cel.Variable("pool", cel.MapType(cel.StringType, cel.StringType)))
	if err != nil {
		return nil, fmt.Errorf("building the CEL slot-key environment: %w", err)
	}
	cond, err := slotKey.Extend(
		cel.Variable("pods", cel.ListType(cel.ObjectType("input.Pod"))),
		cel.Variable("alerts", cel.ListType(cel.ObjectType("facts.Alert"))),
		cel.Variable("poolSummary", cel.MapType(cel.StringType, cel.IntType)),
		cel.Variable("clusterSummary", cel.MapType(cel.StringType, cel.IntType)),
	)
	if err != nil {
		return nil, fmt.Errorf("building the CEL condition environment: %w", err)
	}
	health, err := cond.Extend(cel.Variable("poolNodes", cel.ListType(cel.ObjectType("input.Node"))))
	if err != nil {
		return nil, fmt.Errorf("building the CEL health-gate environment: %w", err)
	}
	return &Env{selector: base, slotKey: slotKey, condition: cond, health: health}, nil
}

// CompileHealthCheck compiles a post-reboot health check: a bool expression that also
// sees poolNodes, the nodes of the pool.
func (e *Env) CompileHealthCheck(expr string) (*Program, error) {
	return compile(e.health, expr, cel.BoolType)
}

// CompileHealthMessage compiles a health check's messageExpression.
func (e *Env) CompileHealthMessage(expr string) (*Program, error) {
	return compile(e.health, expr, cel.StringType)
}

// Program is a compiled expression.
type Program struct {
	expr string
	prg  cel.Program
}

// CompileSelector compiles a pool selector: a bool expression over node and now.
func (e *Env) CompileSelector(expr string) (*Program, error) {
	return compile(e.selector, expr, cel.BoolType)
}

// CompileSlotKey compiles a pool's slot key: a string expression over node, now and
// pool.
func (e *Env) CompileSlotKey(expr string) (*Program, error) {
	return compile(e.slotKey, expr, cel.StringType)
}

// CompileCondition compiles a pool condition: a bool expression over node, pods,
// alerts, pool and now.
func (e *Env) CompileCondition(expr string) (*Program, error) {
	return compile(e.condition, expr, cel.BoolType)
}

// CompileMessage compiles a messageExpression: a string expression over the same
// variables as a condition.
func (e *Env) CompileMessage(expr string) (*Program, error) {
	return compile(e.condition, expr, cel.StringType)
}

func compile(env *cel.Env, expr string, want *cel.Type) (*Program, error) {
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, errors.New(oneLine(iss.Err().Error()))
	}
	if !ast.OutputType().IsExactType(want) && ast.OutputType() != cel.DynType {
		return nil, fmt.Errorf("must evaluate to %s, not %s", want, ast.OutputType())
	}
	prg, err := env.Program(ast, cel.CostLimit(CostLimit), cel.InterruptCheckFrequency(100))
	if err != nil {
		return nil, fmt.Errorf("building program: %w", err)
	}
	return &Program{expr: expr, prg: prg}, nil
}

// oneLine folds cel-go's multi-line issue report (message, source line, caret) into
// one line, keeping the message and the position.
func oneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "|") {
			continue
		}
		parts = append(parts, l)
	}
	return strings.Join(parts, "; ")
}

// Vars are the values an expression sees.
type Vars struct {
	Node   *input.Node
	Pods   []input.Pod
	Alerts []facts.Alert
	Pool   map[string]string
	Now    time.Time
	// PoolNodes is set for health checks only.
	PoolNodes []input.Node
	// PoolSummary and ClusterSummary are the node summaries (disruption.Counts.Map);
	// empty when unknown, so that an expression reading them fails (closed).
	PoolSummary, ClusterSummary map[string]int64
}

func (v *Vars) activation() map[string]any {
	return map[string]any{
		"node":      v.Node,
		"now":       v.Now,
		"pods":      v.Pods,
		"alerts":    v.Alerts,
		"pool":      v.Pool,
		"poolNodes": v.PoolNodes,
		// A nil map would be a CEL null: an empty one makes a missing summary an error.
		"poolSummary":    orEmpty(v.PoolSummary),
		"clusterSummary": orEmpty(v.ClusterSummary),
	}
}

func orEmpty(m map[string]int64) map[string]int64 {
	if m == nil {
		return map[string]int64{}
	}
	return m
}

// Bool evaluates a bool program.
func (p *Program) Bool(v *Vars) (bool, error) {
	out, _, err := p.prg.Eval(v.activation())
	if err != nil {
		return false, fmt.Errorf("evaluating %q: %w", p.expr, err)
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("evaluating %q: got %s, want bool", p.expr, out.Type())
	}
	return bool(b), nil
}

// Key evaluates a slot-key program. Unlike String, its errors do not repeat the
// expression (the caller names it with the pool), and an empty result is an error:
// an empty key would put the node under no per-key limit.
func (p *Program) Key(v *Vars) (string, error) {
	out, _, err := p.prg.Eval(v.activation())
	if err != nil {
		return "", err
	}
	s, ok := out.(types.String)
	switch {
	case !ok:
		return "", fmt.Errorf("got %s, want string", out.Type())
	case s == "":
		return "", errors.New("the key is the empty string")
	}
	return string(s), nil
}

// String evaluates a string program.
func (p *Program) String(v *Vars) (string, error) {
	out, _, err := p.prg.Eval(v.activation())
	if err != nil {
		return "", fmt.Errorf("evaluating %q: %w", p.expr, err)
	}
	s, ok := out.(types.String)
	if !ok {
		return "", fmt.Errorf("evaluating %q: got %s, want string", p.expr, out.Type())
	}
	return string(s), nil
}
