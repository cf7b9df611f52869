package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/rebootgate/rebootgate/policies"
)

// Query is the decision query: the union of every module's deny rules in package
// rebootgate.
const Query = "data.rebootgate.deny"

// Module is one Rego source file.
type Module struct {
	// Name identifies the module in errors: a file path or configmap/key.
	Name   string
	Source string
}

// DefaultModules returns the embedded default gate.
func DefaultModules() []Module {
	var out []Module
	for name, src := range policies.DefaultGate() {
		out = append(out, Module{Name: name, Source: src})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// LoadPaths reads Rego modules from files and directories (recursively). Test files
// (*_test.rego) in directories are skipped: they are for `policy test`, not decisions.
func LoadPaths(paths []string) ([]Module, error) {
	var out []Module
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("policy %s: %w", p, err)
		}
		if !info.IsDir() {
			m, err := readModule(p)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !strings.HasSuffix(path, ".rego") || strings.HasSuffix(path, "_test.rego") {
				return nil
			}
			m, err := readModule(path)
			if err != nil {
				return err
			}
			out = append(out, m)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("policy directory %s: %w", p, err)
		}
	}
	return out, nil
}

func readModule(path string) (Module, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Module{}, fmt.Errorf("policy %s: %w", path, err)
	}
	return Module{Name: path, Source: string(data)}, nil
}

// CompileError lists Rego parse and compile errors, each with file:line.
type CompileError struct{ Errors ast.Errors }

func (e *CompileError) Error() string {
	msgs := make([]string, 0, len(e.Errors))
	for _, err := range e.Errors {
		loc := ""
		if err.Location != nil {
			loc = fmt.Sprintf("%s:%d: ", err.Location.File, err.Location.Row)
		}
		msgs = append(msgs, loc+err.Code+": "+err.Message)
	}
	return strings.Join(msgs, "; ")
}

// DefaultEvalTimeout bounds one evaluation of the deny set unless WithEvalTimeout says
// otherwise.
const DefaultEvalTimeout = time.Second

// Gate is a compiled, prepared decision query. It is safe for concurrent use.
type Gate struct {
	query       rego.PreparedEvalQuery
	modules     []string
	evalTimeout time.Duration
}

// Option configures Compile.
type Option func(*Gate)

// WithEvalTimeout bounds each evaluation of the deny set (DefaultEvalTimeout if d <= 0).
// An evaluation that runs out of time is an error, so the decision is a denial.
func WithEvalTimeout(d time.Duration) Option {
	return func(g *Gate) {
		if d > 0 {
			g.evalTimeout = d
		}
	}
}

// Compile parses and compiles the modules (Rego v1) and prepares the decision query.
//
// Operators' modules (every module that is not the embedded default gate) can only add
// to the deny set: a rule of theirs that redefines a default-gate rule, defines a helper
// in the default gate's package, or makes deny anything but a partial set is an error
// (code IsolationErr) naming the module, line and rule. Built-ins that do I/O
// (http.send, net.lookup_ip_addr, opa.runtime, the JSON-schema built-ins) are not
// available to any module.
func Compile(ctx context.Context, modules []Module, opts ...Option) (*Gate, error) {
	g := &Gate{evalTimeout: DefaultEvalTimeout}
	for _, o := range opts {
		o(g)
	}
	parsed := make(map[string]*ast.Module, len(modules))
	var errs ast.Errors
	names := make([]string, 0, len(modules))
	for _, m := range modules {
		if _, dup := parsed[m.Name]; dup {
			return nil, fmt.Errorf("policy %s: loaded twice", m.Name)
		}
		mod, err := ast.ParseModuleWithOpts(m.Name, m.Source, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			var astErrs ast.Errors
			if errors.As(err, &astErrs) {
				errs = append(errs, astErrs...)
				continue
			}
			return nil, fmt.Errorf("policy %s: %w", m.Name, err)
		}
		parsed[m.Name] = mod
		names = append(names, m.Name)
	}
	if len(errs) > 0 {
		return nil, &CompileError{Errors: errs}
	}
	var custom []*ast.Module
	for _, m := range modules {
		if !isDefaultGate(m.Source) {
			custom = append(custom, parsed[m.Name])
		}
	}
	if errs := checkModules(custom); len(errs) > 0 {
		return nil, &CompileError{Errors: errs}
	}
	caps := capabilities()
	compiler := ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1).WithStrict(false).WithCapabilities(caps)
	if compiler.Compile(parsed); compiler.Failed() {
		return nil, &CompileError{Errors: compiler.Errors}
	}
	pq, err := rego.New(
		rego.Query(Query),
		rego.Compiler(compiler),
		rego.Capabilities(caps),
		rego.SetRegoVersion(ast.RegoV1),
		rego.StrictBuiltinErrors(true),
		// Hand the deny set back as OPA's own value: converting it to Go maps and
		// slices would allocate for every decision only to be read once.
		rego.GenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("preparing %s: %w", Query, err)
	}
	sort.Strings(names)
	g.query, g.modules = pq, names
	return g, nil
}

// Modules names the compiled modules.
func (g *Gate) Modules() []string { return g.modules }

// EvalTimeout is the bound on one evaluation of the deny set.
func (g *Gate) EvalTimeout() time.Duration { return g.evalTimeout }

// EvalTimeoutError is returned by Deny when the evaluation ran out of time.
type EvalTimeoutError struct{ Limit time.Duration }

func (e *EvalTimeoutError) Error() string {
	return fmt.Sprintf("policy evaluation exceeded %s", e.Limit)
}

// Deny evaluates the deny set, within the gate's evaluation timeout. Elements are
// strings, or objects with a "msg" or "message" field (Gatekeeper style); others are
// printed as JSON. The messages come back sorted. An evaluation error, including running
// out of time (*EvalTimeoutError), is returned as an error: callers fail closed.
func (g *Gate) Deny(ctx context.Context, in ast.Value, now time.Time) ([]string, error) {
	evalCtx, cancel := context.WithTimeoutCause(ctx, g.evalTimeout, &EvalTimeoutError{Limit: g.evalTimeout})
	defer cancel()
	rs, err := g.query.Eval(evalCtx, rego.EvalParsedInput(in), rego.EvalTime(now))
	if err != nil {
		if cause := context.Cause(evalCtx); ctx.Err() == nil && cause != nil {
			err = cause // our deadline, not the caller's: say so rather than "cancelled"
		}
		return nil, fmt.Errorf("evaluating %s: %w", Query, err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, nil // no module defines deny: nothing denies
	}
	t, ok := rs[0].Expressions[0].Value.(*ast.Term)
	if !ok {
		return nil, fmt.Errorf("%s: unexpected result %T", Query, rs[0].Expressions[0].Value)
	}
	set, ok := t.Value.(ast.Set)
	if !ok {
		return nil, fmt.Errorf("%s is a %s, want a set of messages", Query, ast.ValueName(t.Value))
	}
	msgs := make([]string, 0, set.Len())
	set.Foreach(func(el *ast.Term) { msgs = append(msgs, message(el.Value)) })
	sort.Strings(msgs)
	return msgs, nil
}

// message reads one deny element: a string, or an object with a "msg" or "message"
// string; anything else is printed as Rego.
func message(v ast.Value) string {
	switch m := v.(type) {
	case ast.String:
		return string(m)
	case ast.Object:
		for _, k := range []string{"msg", "message"} {
			if t := m.Get(ast.StringTerm(k)); t != nil {
				if s, ok := t.Value.(ast.String); ok {
					return string(s)
				}
			}
		}
	}
	return v.String()
}
