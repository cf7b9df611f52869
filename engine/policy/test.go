package policy

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestOptions configure RunTests.
type TestOptions struct {
	// Paths are Rego files and directories, as for `opa test`.
	Paths []string
	// Verbose prints every test, not only failures.
	Verbose bool
	// DefaultGate also loads the embedded default gate.
	DefaultGate bool
	// Run selects tests by a regular expression over their names.
	Run string
	// Output receives the report, in opa test's format.
	Output io.Writer
}

// TestSummary counts the outcomes.
type TestSummary struct {
	Passed, Failed, Errored, Skipped int
}

// Total is the number of tests run or skipped.
func (s TestSummary) Total() int { return s.Passed + s.Failed + s.Errored + s.Skipped }

// RunTests runs Rego unit tests with the embedded OPA, reporting like `opa test`.
func RunTests(ctx context.Context, o TestOptions) (TestSummary, error) {
	var sum TestSummary
	modules, store, err := tester.LoadWithRegoVersion(o.Paths, nil, ast.RegoV1)
	if err != nil {
		return sum, fmt.Errorf("loading %v: %w", o.Paths, err)
	}
	// The same isolation as the agent's: operators' modules (test files aside, which the
	// agent never loads) may only add to deny, and no module may call an I/O built-in.
	// The default gate loaded from disk (policies/gate.rego) is recognised by its source.
	var custom []*ast.Module
	for name, mod := range modules {
		if strings.HasSuffix(name, "_test.rego") {
			continue
		}
		if src, err := os.ReadFile(name); err == nil && isDefaultGate(string(src)) {
			continue
		}
		custom = append(custom, mod)
	}
	if errs := checkModules(custom); len(errs) > 0 {
		return sum, &CompileError{Errors: errs}
	}
	if o.DefaultGate {
		for _, m := range DefaultModules() {
			mod, err := ast.ParseModuleWithOpts(m.Name, m.Source, ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				return sum, fmt.Errorf("embedded %s: %w", m.Name, err)
			}
			modules["<embedded>/"+m.Name] = mod
		}
	}
	compiler := ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1).WithCapabilities(capabilities())
	runner := tester.NewRunner().SetCompiler(compiler).SetStore(store).SetDefaultRegoVersion(ast.RegoV1)
	if o.Run != "" {
		runner = runner.Filter(o.Run)
	}
	results, err := runner.Run(ctx, modules)
	if err != nil {
		return sum, fmt.Errorf("running tests: %w", err)
	}
	counted := make(chan *tester.Result)
	go func() {
		defer close(counted)
		for r := range results {
			switch {
			case r.Skip:
				sum.Skipped++
			case r.Error != nil:
				sum.Errored++
			case r.Fail:
				sum.Failed++
			default:
				sum.Passed++
			}
			counted <- r
		}
	}()
	if err := (tester.PrettyReporter{Output: o.Output, Verbose: o.Verbose}).Report(counted); err != nil {
		return sum, fmt.Errorf("reporting: %w", err)
	}
	return sum, nil
}
