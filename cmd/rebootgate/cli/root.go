package cli

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	_ "time/tzdata" // time zones must resolve in a distroless image too

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	ExitOK       = 0
	ExitError    = 1
	ExitBadInput = 2
)

// exitError carries the exit code of a failed command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// badInput marks err as the user's input being wrong (exit 2).
func badInput(format string, args ...any) error {
	return &exitError{code: ExitBadInput, err: fmt.Errorf(format, args...)}
}

// KuredName is the name under which the binary is kured: kured's DaemonSet runs
// `/usr/bin/kured --flag...`, with no subcommand, and the image links that path to
// rebootgate, so a kured manifest runs with only the image swapped.
const KuredName = "kured"

// MainArgv runs the process's whole argv (the program name first) and returns the exit
// code. Invoked as kured, it runs `rebootgate agent` with the arguments.
func MainArgv(argv []string, stdout, stderr io.Writer) int {
	if len(argv) == 0 {
		return Main(nil, stdout, stderr)
	}
	args := argv[1:]
	if filepath.Base(argv[0]) == KuredName {
		args = append([]string{"agent"}, args...)
	}
	return Main(args, stdout, stderr)
}

// Main runs the command line (without the program name) and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "rebootgate: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return ExitError
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "rebootgate",
		Short:         "Policy-gated, event-driven node reboots for Kubernetes",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	// Flag errors are bad input too.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: ExitBadInput, err: err}
	})
	root.AddCommand(newEvalCommand(), newPlanCommand(), newPolicyCommand(), newAgentCommand(), newStatusCommand(), newSummarizerCommand(), newVersionCommand())
	return root
}

// Version is set at build time with -ldflags "-X ...cli.Version=v1.2.3".
var Version = "dev"

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), Version)
			return err
		},
	}
}
