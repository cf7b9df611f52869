// Command rebootgate is the policy-gated node reboot agent and its CLI.
package main

import (
	"os"

	"github.com/rebootgate/rebootgate/cmd/rebootgate/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
