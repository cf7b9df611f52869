package main

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rebootgate/rebootgate/cmd/rebootgate/cli"
	"github.com/rebootgate/rebootgate/engine/metrics"
)

// The README must not name a make target, a rebootgate command or flag, or a metric that
// does not exist. What counts as a mention:
//
//   - a make target: the words after `make` on a command in a code block or a code span
//     (`make bench BENCH=Latency` names bench; assignments are skipped);
//   - a rebootgate command: `rebootgate` and the words after it up to the first flag, on
//     a command in a code block or a code span (`rebootgate policy test dir/` names
//     `policy test`: trailing words may be arguments);
//   - a flag of a rebootgate command: the flags on a `rebootgate <subcommand>` command
//     in a code block or a code span, checked against that subcommand; and a code span
//     that starts with a flag (`--lock-ttl`, `--period=1m`, `-o`), as the prose and the
//     reference tables name rebootgate's flags, checked against every subcommand.
//     Commands of other tools (opa, helm, kubectl, go, az, …) are not rebootgate
//     commands, so their flags are never checked; neither are single-dash words longer
//     than a letter (`-reboot` is the README's short form of --message-template-reboot);
//   - a metric: any word rebootgate_… or kured_… in lower case, anywhere.

// readmeMention is one name the README uses.
type readmeMention struct {
	line int
	kind string // "target", "command", "flag" or "metric"
	name string // the target, the metric, or the flag with its dashes (--dry-run, -o)
	// cmd (commands and flags) holds the words after `rebootgate` up to the first
	// flag; it is nil for a flag standing alone, which any command may define.
	cmd []string
}

// readmeFacts is what exists.
type readmeFacts struct {
	targets map[string]bool
	// flags maps a command path ("" for the root, "eval", "policy test") to its flags,
	// spelled with their dashes.
	flags   map[string]map[string]bool
	metrics map[string]bool
}

var (
	codeSpan   = regexp.MustCompile("`([^`]+)`")
	metricName = regexp.MustCompile(`\b(?:rebootgate|kured)_[a-z0-9_]*[a-z0-9]\b`)
	flagWord   = regexp.MustCompile(`^(--[a-zA-Z0-9][a-zA-Z0-9-]*|-[a-zA-Z])(?:=.*)?$`)
	envAssign  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)
	// commandSeparators split a shell line into commands.
	commandSeparators = regexp.MustCompile(`\|\||&&|[|;()]|\$\(|<\(`)
)

// readmeMentions extracts the mentions from a README's text.
func readmeMentions(text string) []readmeMention {
	var out []readmeMention
	lines := strings.Split(text, "\n")
	inFence := false
	for i := 0; i < len(lines); i++ {
		n, line := i+1, lines[i]
		out = append(out, metricMentions(n, line)...)
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
			continue
		}
		if inFence {
			// A command continued with a backslash is one line.
			for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
				i++
				line = strings.TrimSuffix(line, "\\") + " " + lines[i]
				out = append(out, metricMentions(i+1, lines[i])...)
			}
			if j := strings.Index(line, " #"); j >= 0 {
				line = line[:j]
			}
			out = append(out, shellMentions(n, strings.TrimPrefix(strings.TrimSpace(line), "$ "))...)
			continue
		}
		for _, m := range codeSpan.FindAllStringSubmatch(line, -1) {
			words := strings.Fields(m[1])
			if len(words) > 0 && flagWord.MatchString(words[0]) {
				for _, w := range words {
					if f := flagOf(w); f != "" {
						out = append(out, readmeMention{line: n, kind: "flag", name: f})
					}
				}
				continue
			}
			out = append(out, shellMentions(n, m[1])...)
		}
	}
	return out
}

func metricMentions(n int, line string) []readmeMention {
	var out []readmeMention
	for _, m := range metricName.FindAllString(line, -1) {
		out = append(out, readmeMention{line: n, kind: "metric", name: m})
	}
	return out
}

// flagOf returns the flag a word names ("--at=…" → "--at", "[-v]" → "-v"), or "".
func flagOf(w string) string {
	m := flagWord.FindStringSubmatch(strings.Trim(w, "[],"))
	if m == nil {
		return ""
	}
	return m[1]
}

// shellMentions reads the make targets and rebootgate flags of the commands on a line.
func shellMentions(n int, line string) []readmeMention {
	var out []readmeMention
	for _, c := range commandSeparators.Split(line, -1) {
		words := strings.Fields(c)
		for len(words) > 0 && envAssign.MatchString(words[0]) {
			words = words[1:]
		}
		if len(words) == 0 {
			continue
		}
		switch words[0] {
		case "make":
			for _, w := range words[1:] {
				if strings.HasPrefix(w, "-") || strings.Contains(w, "=") {
					continue
				}
				out = append(out, readmeMention{line: n, kind: "target", name: w})
			}
		case "rebootgate":
			cmd := []string{}
			for _, w := range words[1:] {
				if strings.HasPrefix(w, "-") || strings.HasPrefix(w, "[") {
					break
				}
				cmd = append(cmd, w)
			}
			out = append(out, readmeMention{line: n, kind: "command", cmd: cmd})
			for _, w := range words[1:] {
				if f := flagOf(w); f != "" {
					out = append(out, readmeMention{line: n, kind: "flag", name: f, cmd: cmd})
				}
			}
		}
	}
	return out
}

// checkReadme returns one problem per mention of something that does not exist, each
// naming the README line.
func checkReadme(mentions []readmeMention, f readmeFacts) []string {
	var problems []string
	for _, m := range mentions {
		var problem string
		switch m.kind {
		case "target":
			if !f.targets[m.name] {
				problem = fmt.Sprintf("`make %s`: the Makefile has no target %s", m.name, m.name)
			}
		case "metric":
			if !f.metrics[m.name] && !f.metrics[histogramBase(m.name)] {
				problem = fmt.Sprintf("metric %s is not registered (engine/metrics)", m.name)
			}
		case "command":
			if _, ok := commandPath(m.cmd, f.flags); !ok {
				problem = fmt.Sprintf("`rebootgate %s`: no such command", strings.Join(m.cmd, " "))
			}
		case "flag":
			problem = checkFlag(m, f.flags)
		}
		if problem != "" {
			problems = append(problems, fmt.Sprintf("README.md:%d: %s", m.line, problem))
		}
	}
	return problems
}

// histogramBase strips the series suffixes a histogram's name takes in queries.
func histogramBase(name string) string {
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, s); ok {
			return b
		}
	}
	return name
}

func checkFlag(m readmeMention, flags map[string]map[string]bool) string {
	if m.cmd == nil {
		for _, fs := range flags {
			if fs[m.name] {
				return ""
			}
		}
		return fmt.Sprintf("flag %s is not a flag of any rebootgate command", m.name)
	}
	path, ok := commandPath(m.cmd, flags)
	if !ok {
		return "" // the command's own mention reports it
	}
	if !flags[path][m.name] {
		return fmt.Sprintf("flag %s is not a flag of `%s`", m.name, strings.TrimSpace("rebootgate "+path))
	}
	return ""
}

// commandPath finds the command that words name: the longest run of leading words that
// is a command, the rest being its arguments. The root takes no arguments, so words
// that start with anything but a command name no command.
func commandPath(words []string, flags map[string]map[string]bool) (string, bool) {
	for i := len(words); i > 0; i-- {
		if _, ok := flags[strings.Join(words[:i], " ")]; ok {
			return strings.Join(words[:i], " "), true
		}
	}
	return "", len(words) == 0
}

// makeTargets lists the targets a Makefile defines (rules, not variables).
func makeTargets(makefile string) map[string]bool {
	rule := regexp.MustCompile(`^([A-Za-z0-9_.-][A-Za-z0-9_. -]*):([^=]|$)`)
	out := map[string]bool{}
	for _, line := range strings.Split(makefile, "\n") {
		if m := rule.FindStringSubmatch(line); m != nil {
			for _, t := range strings.Fields(m[1]) {
				if !strings.HasPrefix(t, ".") {
					out[t] = true
				}
			}
		}
	}
	return out
}

// commandFlags walks the rebootgate command tree with cobra's own completion protocol
// (`rebootgate __complete <path> -`), through cli.Main, so the tree is the one users
// get. (Completion leaves out hidden flags, so a hidden flag counts as absent.)
func commandFlags(t *testing.T) map[string]map[string]bool {
	complete := func(args ...string) []string {
		var out, errOut bytes.Buffer
		if code := cli.Main(append([]string{"__complete"}, args...), &out, &errOut); code != cli.ExitOK {
			t.Fatalf("rebootgate __complete %q: exit %d: %s", args, code, errOut.String())
		}
		var names []string
		for _, line := range strings.Split(out.String(), "\n") {
			if line == "" || strings.HasPrefix(line, ":") {
				continue // ":<directive>" ends the list
			}
			name, _, _ := strings.Cut(line, "\t")
			names = append(names, name)
		}
		return names
	}
	flags := map[string]map[string]bool{}
	var walk func(path []string)
	walk = func(path []string) {
		set := map[string]bool{}
		for _, f := range complete(append(slices.Clone(path), "-")...) {
			set[f] = true
		}
		flags[strings.Join(path, " ")] = set
		if len(path) > 0 && (path[0] == "help" || path[0] == "completion") {
			return // cobra's own commands: their arguments are not subcommands
		}
		for _, sub := range complete(append(slices.Clone(path), "")...) {
			if !strings.HasPrefix(sub, "-") && len(path) < 3 {
				if _, seen := flags[strings.Join(append(slices.Clone(path), sub), " ")]; !seen {
					walk(append(slices.Clone(path), sub))
				}
			}
		}
	}
	walk(nil)
	return flags
}

// registeredMetrics creates the agent's metrics in a registry, as the agent does
// (engine/metrics' set and the API request counter), and reads their names back from
// the registry's descriptions.
func registeredMetrics(t *testing.T) map[string]bool {
	reg := prometheus.NewPedanticRegistry()
	if _, err := metrics.New(reg); err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(metrics.NewAPIRequests())
	descs := make(chan *prometheus.Desc)
	go func() { reg.Describe(descs); close(descs) }()
	fqName := regexp.MustCompile(`^Desc\{fqName: ("(?:[^"\\]|\\.)*")`)
	out := map[string]bool{}
	for d := range descs {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the name of %s", d)
		}
		name, err := strconv.Unquote(m[1])
		if err != nil {
			t.Fatal(err)
		}
		out[name] = true
	}
	return out
}

func TestReadmeNamesOnlyWhatExists(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	mentions := readmeMentions(string(readme))
	kinds := map[string]int{}
	for _, m := range mentions {
		kinds[m.kind]++
	}
	// Guard the extractor itself: the README names dozens of each.
	for _, k := range []string{"target", "flag", "metric"} {
		if kinds[k] < 5 {
			t.Fatalf("found only %d %s mentions in README.md; is the extractor broken?", kinds[k], k)
		}
	}
	facts := readmeFacts{targets: makeTargets(string(makefile)), flags: commandFlags(t), metrics: registeredMetrics(t)}
	for _, p := range checkReadme(mentions, facts) {
		t.Error(p)
	}
}

func TestReadmeCheckReportsWhatIsMissing(t *testing.T) {
	readme := strings.Join([]string{
		"# Fake", // 1
		"Run `make test` or `make no-such-target`.", // 2
		"```sh", // 3
		"make bench BENCH=Latency   # make nothing-here is a comment", // 4
		"rebootgate eval --node n.yaml --no-such-flag \\",             // 5
		"  --at 2026-01-01T00:00:00Z -o json | jq .",                  // 6
		"helm install x --not-ours",                                   // 7
		"rebootgate frobnicate --at now",                              // 8
		"```",                                                         // 9
		"| `--dry-run` | a flag |",                                    // 10
		"| `--bogus-flag`, `-z` | none |",                             // 11
		"Metrics `rebootgate_reboot_required` and `rebootgate_no_such_total`, and `kured_missing`.", // 12
		"`opa check --strict` and `rebootgate policy test -v --default-gate --nope`.",               // 13
		"`--message-template-drain`, `-reboot`.",                                                    // 14
	}, "\n")
	facts := readmeFacts{
		targets: map[string]bool{"test": true, "bench": true},
		flags: map[string]map[string]bool{
			"":            {"--help": true, "-h": true},
			"eval":        {"--node": true, "--at": true, "-o": true, "--output": true},
			"agent":       {"--dry-run": true, "--message-template-drain": true},
			"policy":      {},
			"policy test": {"-v": true, "--default-gate": true},
		},
		metrics: map[string]bool{"rebootgate_reboot_required": true},
	}
	got := checkReadme(readmeMentions(readme), facts)
	want := []string{
		"README.md:2: `make no-such-target`: the Makefile has no target no-such-target",
		"README.md:5: flag --no-such-flag is not a flag of `rebootgate eval`",
		"README.md:8: `rebootgate frobnicate`: no such command",
		"README.md:11: flag --bogus-flag is not a flag of any rebootgate command",
		"README.md:11: flag -z is not a flag of any rebootgate command",
		"README.md:12: metric rebootgate_no_such_total is not registered (engine/metrics)",
		"README.md:12: metric kured_missing is not registered (engine/metrics)",
		"README.md:13: flag --nope is not a flag of `rebootgate policy test`",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestMakeTargets(t *testing.T) {
	got := makeTargets("X := 1\nY ?= 2\n.PHONY: a b\na b: c\n\t$(GO) test\n$(OPA):\n\tinstall\nc:\n")
	if len(got) != 3 || !got["a"] || !got["b"] || !got["c"] {
		t.Errorf("targets = %v", got)
	}
}
