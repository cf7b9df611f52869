package decision

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/facts"
)

const zoneLabel = "topology.kubernetes.io/zone"

// TestSlotKeyOf covers the key's forms (CEL, the label-key shorthand, none) and the
// failures that must fail closed: a missing label, a non-string, an empty string.
func TestSlotKeyOf(t *testing.T) {
	zoned := testNode("n1", map[string]string{zoneLabel: "westeurope-1", "rack": "r7", "empty": ""})
	for _, tc := range []struct {
		name, slotKey string
		want          string
		wantErr       []string
	}{
		{name: "none", slotKey: "", want: ""},
		{name: "CEL", slotKey: `node.labels["topology.kubernetes.io/zone"]`, want: "westeurope-1"},
		{name: "shorthand", slotKey: zoneLabel, want: "westeurope-1"},
		{name: "computed", slotKey: `node.labels["topology.kubernetes.io/zone"] + "/" + node.labels["rack"]`, want: "westeurope-1/r7"},
		{name: "parenthesised", slotKey: `(node.name)`, want: "n1"},
		{name: "pool variable", slotKey: `pool.name + "-" + node.labels["rack"]`, want: "p-r7"},
		{name: "missing label", slotKey: `node.labels["nope"]`, wantErr: []string{`pool "p"`, `slot key node.labels["nope"]`, "node n1", "no such key: nope"}},
		{name: "missing label, shorthand", slotKey: "example.com/nope", wantErr: []string{`slot key node.labels["example.com/nope"]`, "no such key"}},
		{name: "empty", slotKey: "empty", wantErr: []string{`slot key node.labels["empty"]`, "the key is the empty string"}},
		{name: "dyn non-string", slotKey: `dyn(node.labels.size())`, wantErr: []string{"got int, want string"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := "pools:\n- name: p\n"
			if tc.slotKey != "" {
				yaml += "  slotKey: '" + tc.slotKey + "'\n"
			}
			e := newEngine(t, yaml)
			got, err := e.SlotKeyOf(zoned, at)
			if tc.wantErr == nil {
				if err != nil || got != tc.want {
					t.Fatalf("SlotKeyOf = %q, %v; want %q", got, err, tc.want)
				}
				d := e.Decide(context.Background(), &facts.Facts{Node: zoned}, at)
				if !d.Allowed || d.SlotKey != tc.want {
					t.Errorf("decision allowed=%v slotKey=%q reasons=%v; want allowed with %q", d.Allowed, d.SlotKey, sources(d), tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("SlotKeyOf = %q, want an error", got)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			// The decision denies the node with the same error.
			d := e.Decide(context.Background(), &facts.Facts{Node: zoned}, at)
			if d.Allowed || d.SlotKey != "" || len(d.Reasons) != 1 || d.Reasons[0].Source != SourceSlotKey || !strings.Contains(d.Reasons[0].Message, err.Error()) {
				t.Errorf("decision allowed=%v slotKey=%q reasons=%v; want denied by %s naming %q", d.Allowed, d.SlotKey, sources(d), SourceSlotKey, err)
			}
		})
	}
}

func TestSlotKeyOfNodeWithoutPool(t *testing.T) {
	e := newEngine(t, "pools:\n- name: p\n  selector: 'node.name == \"other\"'\n  slotKey: "+zoneLabel+"\n")
	if _, err := e.SlotKeyOf(testNode("n1", map[string]string{zoneLabel: "a"}), at); err == nil || !strings.Contains(err.Error(), "no pool selects node n1") {
		t.Errorf("err = %v, want no pool", err)
	}
}

func TestNewReportsBadSlotKeyWithPath(t *testing.T) {
	for _, tc := range []struct{ slotKey, want string }{
		{`node.labels["zone"`, `pools[1].slotKey: pool "b": node.labels["zone"`},
		{`node.labels.size()`, `pools[1].slotKey: pool "b": node.labels.size(): must evaluate to string, not int`},
		// The key must be computable from the Node alone: no pods, no alerts.
		{`pods[0].name`, `undeclared reference to 'pods'`},
		{`zone == "a"`, `undeclared reference to 'zone'`},
	} {
		cfg, err := config.Parse([]byte(header + "pools:\n- name: a\n  selector: 'false'\n- name: b\n  slotKey: '" + tc.slotKey + "'\n"))
		if err != nil {
			t.Fatalf("%s: %v", tc.slotKey, err)
		}
		_, err = New(context.Background(), cfg, nil)
		var list config.ErrorList
		if !errors.As(err, &list) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "pools[1].slotKey") {
			t.Errorf("%s: err = %v, want a config error containing %q", tc.slotKey, err, tc.want)
		}
	}
}
