package notify

import (
	"strings"
	"testing"
	"time"

	"github.com/rebootgate/rebootgate/engine/decision"
)

func blockedDecision(msgs ...string) *decision.Decision {
	d := &decision.Decision{Node: "worker-1", Pool: "workers", Reasons: []decision.Reason{}}
	for _, m := range msgs {
		d.Reasons = append(d.Reasons, decision.Reason{Source: decision.SourcePolicy, Message: m})
	}
	return d
}

func TestDefaultTemplates(t *testing.T) {
	m, err := ParseTemplates(Templates{})
	if err != nil {
		t.Fatal(err)
	}
	since := time.Date(2026, 11, 20, 8, 30, 0, 0, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		ev   Event
		want string
	}{
		{Event{Kind: KindDrain, Node: "worker-1"}, "Draining node worker-1"},
		{Event{Kind: KindReboot, Node: "worker-1"}, "Rebooting node worker-1"},
		{Event{Kind: KindUncordon, Node: "worker-1"}, "Node worker-1 rebooted & uncordoned successfully!"},
		{
			Event{Kind: KindBlockedTooLong, Node: "worker-1", Pool: "workers", Since: since,
				Decision: blockedDecision("outside the maintenance window", "alert KubeNodeNotReady is firing", "pod db-0 blocks", "fourth")},
			"Node worker-1 (pool workers) needs a reboot but has been blocked since 2026-11-20 07:30 UTC: outside the maintenance window; alert KubeNodeNotReady is firing; pod db-0 blocks (and 1 more)",
		},
		{
			// No pool, no decision: no dangling punctuation, no nil-pointer failure.
			Event{Kind: KindBlockedTooLong, Node: "worker-1", Since: since},
			"Node worker-1 needs a reboot but has been blocked since 2026-11-20 07:30 UTC",
		},
	} {
		got, err := m.Render(tc.ev)
		if err != nil {
			t.Fatalf("%s: %v", tc.ev.Kind, err)
		}
		if got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.ev.Kind, got, tc.want)
		}
	}
}

func TestGoTemplates(t *testing.T) {
	m, err := ParseTemplates(Templates{
		Drain:          `[{{.Kind}}] {{.Node}}/{{.Pool}}: {{.Detail}}`,
		Reboot:         `{{.Node}} allowed={{.Decision.Allowed}} reasons={{len .Decision.Reasons}}`,
		Uncordon:       `{{.Node}} up since {{.Since.Format "15:04"}}`,
		BlockedTooLong: `{{.Node}}:{{range .Decision.Reasons}} [{{.Source}}] {{.Message}}{{end}} | {{.Decision | reasons 0}} | {{reasons 1 .Decision}}`,
	})
	if err != nil {
		t.Fatal(err)
	}
	d := blockedDecision("closed window", "alert firing")
	for _, tc := range []struct {
		ev   Event
		want string
	}{
		{Event{Kind: KindDrain, Node: "n1", Pool: "p1", Detail: "slot p1-0"}, "[Drain] n1/p1: slot p1-0"},
		// A nil Decision renders as an empty one.
		{Event{Kind: KindReboot, Node: "n1"}, "n1 allowed=false reasons=0"},
		{Event{Kind: KindReboot, Node: "n1", Decision: &decision.Decision{Allowed: true}}, "n1 allowed=true reasons=0"},
		{Event{Kind: KindUncordon, Node: "n1", Since: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)}, "n1 up since 03:04"},
		{Event{Kind: KindBlockedTooLong, Node: "n1", Decision: d},
			"n1: [policy] closed window [policy] alert firing | closed window; alert firing | closed window (and 1 more)"},
	} {
		got, err := m.Render(tc.ev)
		if err != nil {
			t.Fatalf("%s: %v", tc.ev.Kind, err)
		}
		if got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.ev.Kind, got, tc.want)
		}
	}
	if _, err := m.Render(Event{Kind: "Bogus", Node: "n1"}); err == nil {
		t.Error("unknown kind rendered without error")
	}
}

func TestKuredPrintfTemplates(t *testing.T) {
	m, err := ParseTemplates(Templates{
		Drain:    "Draining node %s",
		Reboot:   "Rebooting node %s now (100%% sure)", // printf form: %% is a literal %
		Uncordon: "Node %s is back, {{.Pool}}",         // has "{{": a Go template, %s stays literal
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		kind Kind
		want string
	}{
		{KindDrain, "Draining node worker-7"},
		{KindReboot, "Rebooting node worker-7 now (100% sure)"},
		{KindUncordon, "Node %s is back, pool-a"},
	} {
		got, err := m.Render(Event{Kind: tc.kind, Node: "worker-7", Pool: "pool-a"})
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.kind, got, tc.want)
		}
	}
	for s, want := range map[string]bool{"Draining node %s": true, "Node {{.Node}}": false, "%s {{.Node}}": false, "plain": false} {
		if got := IsPrintfTemplate(s); got != want {
			t.Errorf("IsPrintfTemplate(%q) = %v", s, got)
		}
	}
}

func TestBadTemplates(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    Templates
		want []string // all must appear in the error
	}{
		{"syntax", Templates{Drain: "Draining {{.Node"}, []string{"--message-template-drain", "Drain message", "unclosed action"}},
		{"unknown field", Templates{Reboot: "Rebooting {{.Nodes}}"}, []string{"--message-template-reboot", "can't evaluate field Nodes"}},
		{"unknown function", Templates{Uncordon: "{{upper .Node}}"}, []string{"--message-template-uncordon", `function "upper" not defined`}},
		{"bad reasons call", Templates{BlockedTooLong: `{{reasons "x" .Decision}}`}, []string{"--message-template-blocked-too-long", "expected integer"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTemplates(tc.t)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			// New checks templates even when no URL is configured.
			if _, err := New(Config{Templates: tc.t}); err == nil {
				t.Error("New accepted the bad template")
			}
		})
	}
}
