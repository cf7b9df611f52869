// Command rebootgate is the policy-gated node reboot agent and its CLI.
package main

import (
	"os"

	"github.com/rebootgate/rebootgate/cmd/rebootgate/cli"
)

func main() {
	os.Exit(cli.MainArgv(os.Args, os.Stdout, os.Stderr))
}
