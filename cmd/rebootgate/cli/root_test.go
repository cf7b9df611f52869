package cli

import (
	"strings"
	"testing"
)

// TestInvokedAsKured: kured's DaemonSet runs /usr/bin/kured with kured's flags and no
// subcommand; under that name the binary is `rebootgate agent`.
func TestInvokedAsKured(t *testing.T) {
	code, out, errOut := runArgv("/usr/bin/kured", "--help")
	if code != ExitOK {
		t.Fatalf("kured --help: exit %d: %s", code, errOut)
	}
	_, agentHelp, _ := run("agent", "--help")
	if out != agentHelp {
		t.Errorf("kured --help is not rebootgate agent --help:\n%s", out)
	}
	for _, kf := range kuredFlags {
		if !strings.Contains(out, "--"+kf.Name+" ") {
			t.Errorf("kured --help lacks --%s", kf.Name)
		}
	}
	// A flag error is the agent's, with its exit code.
	code, _, errOut = runArgv("kured", "--reboot-method=reboot", "--bogus")
	if code != ExitBadInput || !strings.Contains(errOut, "--bogus") {
		t.Errorf("kured --bogus: exit %d, %q; want %d naming the flag", code, errOut, ExitBadInput)
	}
}

// TestInvokedAsRebootgate: any other name keeps the subcommands, whatever the directory.
func TestInvokedAsRebootgate(t *testing.T) {
	for _, argv0 := range []string{"/usr/local/bin/rebootgate", "rebootgate", "/opt/kured/rebootgate", "kured.sh"} {
		code, out, errOut := runArgv(argv0, "--help")
		if code != ExitOK || !strings.Contains(out, "Available Commands:") || !strings.Contains(out, "agent") {
			t.Errorf("%s --help: exit %d, want the root command's help:\n%s%s", argv0, code, out, errOut)
		}
	}
	if code, _, errOut := runArgv(); code != ExitOK {
		t.Errorf("empty argv: exit %d: %s", code, errOut)
	}
}
