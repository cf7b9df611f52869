package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/rebootgate/rebootgate/engine/policy"
)

// policyTestOptions are the flags of `rebootgate policy test`.
type policyTestOptions struct {
	Verbose     bool
	DefaultGate bool
	Run         string
}

func newPolicyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Work with Rego policies",
	}
	cmd.AddCommand(newPolicyTestCommand())
	return cmd
}

func newPolicyTestCommand() *cobra.Command {
	o := &policyTestOptions{}
	cmd := &cobra.Command{
		Use:   "test [FILE_OR_DIR...]",
		Short: "Run Rego unit tests with the embedded OPA (the same verdicts as opa test)",
		Long: `test runs the test_ rules of the given Rego files and directories (default: the
current directory), like 'opa test'. With --default-gate the embedded default gate is
loaded too, so a custom policy's tests can check the whole deny set without a copy of
policies/. It exits 0 when every test passes and 2 when any fails.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"."}
			}
			return o.run(cmd.Context(), cmd.OutOrStdout(), args)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.Verbose, "verbose", "v", false, "print every test, not only failures")
	f.BoolVar(&o.DefaultGate, "default-gate", false, "also load the embedded default gate (package rebootgate)")
	f.StringVarP(&o.Run, "run", "r", "", "run only tests whose names match this regular expression")
	return cmd
}

func (o *policyTestOptions) run(ctx context.Context, out io.Writer, paths []string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	summary, err := policy.RunTests(ctx, policy.TestOptions{
		Paths: paths, Verbose: o.Verbose, DefaultGate: o.DefaultGate, Run: o.Run, Output: out,
	})
	if err != nil {
		return badInput("%w", err)
	}
	if summary.Failed > 0 || summary.Errored > 0 {
		return &exitError{code: ExitBadInput, err: fmt.Errorf("%d of %d tests failed", summary.Failed+summary.Errored, summary.Total())}
	}
	if summary.Total() == 0 {
		return badInput("no tests found in %v", paths)
	}
	return nil
}
