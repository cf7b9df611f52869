package policy

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
)

// IsolationErr is the ast.Error code of a module rejected because it would do more than
// add to the deny set, or call a built-in that policies may not use.
const IsolationErr = "rebootgate_isolation_error"

// deniedBuiltins are removed from the compiler's capabilities, with the reason shown in
// the error naming a module that calls one: policy evaluation does no I/O.
var deniedBuiltins = map[string]string{
	"http.send":          "it makes network requests",
	"net.lookup_ip_addr": "it makes DNS queries",
	"opa.runtime":        "it exposes the agent's environment variables",
	"json.match_schema":  "a schema's $ref can read files and URLs",
	"json.verify_schema": "a schema's $ref can read files and URLs",
}

// capabilities is OPA's capabilities for this version without the denied built-ins, and
// with no host allowed for network access (defence in depth: nothing left can connect).
// A module calling a removed built-in fails to compile.
func capabilities() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion() // a fresh copy, safe to modify
	c.Builtins = slices.DeleteFunc(c.Builtins, func(b *ast.Builtin) bool {
		_, denied := deniedBuiltins[b.Name]
		return denied
	})
	c.AllowNet = []string{}
	return c
}

// defaultGate is what the embedded default gate owns: its packages and the paths of its
// rules. Operators' modules may define nothing there but additions to deny.
type defaultGate struct {
	sources  map[string]bool // the modules' sources, to recognise them
	packages map[string]bool // package paths, e.g. "data.rebootgate"
	rules    []ast.Ref       // rule paths, e.g. data.rebootgate.in_window
	deny     ast.Ref         // data.rebootgate.deny
}

var parsedDefaultGate = sync.OnceValue(func() *defaultGate {
	g := &defaultGate{sources: map[string]bool{}, packages: map[string]bool{}, deny: ast.MustParseRef(Query)}
	for _, m := range DefaultModules() {
		mod, err := ast.ParseModuleWithOpts(m.Name, m.Source, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			panic(fmt.Sprintf("embedded %s: %v", m.Name, err)) // tested; cannot happen at run time
		}
		g.sources[normalize(m.Source)] = true
		g.packages[mod.Package.Path.String()] = true
		for _, r := range mod.Rules {
			g.rules = append(g.rules, r.Path())
		}
	}
	return g
})

// isDefaultGate reports whether src is one of the default gate's modules, wherever it
// was loaded from. (Sources are compared: OPA's structural Module.Compare panics on some
// rule heads.)
func isDefaultGate(src string) bool { return parsedDefaultGate().sources[normalize(src)] }

func normalize(src string) string { return strings.ReplaceAll(src, "\r\n", "\n") }

// checkModules returns an isolation error for every rule of an operator's module that
// would do more than add to deny, and for every call of a denied built-in.
func checkModules(custom []*ast.Module) ast.Errors {
	g := parsedDefaultGate()
	var errs ast.Errors
	for _, mod := range custom {
		errs = append(errs, deniedCalls(mod)...)
		for _, r := range mod.Rules {
			if msg := g.ruleViolation(mod, r); msg != "" {
				errs = append(errs, ast.NewError(IsolationErr, r.Loc(), "rule %s: %s", r.Head.Ref(), msg))
			}
		}
	}
	slices.SortStableFunc(errs, func(a, b *ast.Error) int { return a.Location.Compare(b.Location) })
	return errs
}

// ruleViolation says why an operator's rule is not allowed, or "" when it is. In a
// package of the default gate the only rule allowed is an addition to the deny set
// (`deny contains msg if {...}`); elsewhere a rule may define anything but a document
// the default gate defines (a sub-package named after one of its rules, say).
func (g *defaultGate) ruleViolation(mod *ast.Module, r *ast.Rule) string {
	path := r.Path()
	pkg := mod.Package.Path.String()
	if path.Equal(g.deny) {
		if r.Default || len(r.Head.Args) > 0 || len(r.Head.Ref()) != 1 || r.Head.DocKind() != ast.PartialSetDoc {
			return fmt.Sprintf("an operator's module may only add to %s, with `deny contains msg if { ... }`; "+
				"this rule would change what the set is", g.deny)
		}
		return ""
	}
	for _, owned := range g.rules {
		if path.HasPrefix(owned) {
			return fmt.Sprintf("%s belongs to the default gate; an operator's module may only add to %s, "+
				"with `deny contains msg if { ... }`", owned, g.deny)
		}
	}
	if g.packages[pkg] {
		return fmt.Sprintf("an operator's module in package %s may only add to deny, with `deny contains msg if { ... }`; "+
			"put helper rules in a package of your own (e.g. package rebootgate.custom.<name>) and refer to them from deny",
			strings.TrimPrefix(pkg, "data."))
	}
	return ""
}

// deniedCalls finds calls of denied built-ins in mod, for an error clearer than the
// compiler's "undefined function".
func deniedCalls(mod *ast.Module) ast.Errors {
	var errs ast.Errors
	check := func(op ast.Ref, loc *ast.Location) {
		name := op.String()
		if why, denied := deniedBuiltins[name]; denied {
			errs = append(errs, ast.NewError(IsolationErr, loc, "%s is not available to rebootgate policies: %s", name, why))
		}
	}
	ast.WalkExprs(mod, func(e *ast.Expr) bool {
		if e.IsCall() {
			check(e.Operator(), e.Location)
		}
		return false
	})
	ast.WalkTerms(mod, func(t *ast.Term) bool {
		if call, ok := t.Value.(ast.Call); ok && len(call) > 0 {
			if op, ok := call[0].Value.(ast.Ref); ok {
				check(op, t.Location)
			}
		}
		return false
	})
	return errs
}
