package detect

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{`test -f /var/run/reboot-required`, []string{"test", "-f", "/var/run/reboot-required"}},
		{"  a \t b\n c  ", []string{"a", "b", "c"}},
		{`sh -c 'test -f /x && exit 0'`, []string{"sh", "-c", "test -f /x && exit 0"}},
		{`sh -c "echo \"hi\" \$HOME \\ \n"`, []string{"sh", "-c", `echo "hi" $HOME \ \n`}},
		{`'a\b'`, []string{`a\b`}},
		{`a\ b c\'d \"e`, []string{"a b", "c'd", `"e`}},
		{`"a"'b'c`, []string{"abc"}},
		{`x "" ''`, []string{"x", "", ""}},
		{`a "b c" d`, []string{"a", "b c", "d"}},
		{"a \\\nb", []string{"a", "b"}},
		{"\"a\\\nb\"", []string{"ab"}},
		{"cmd # a comment\narg", []string{"cmd", "arg"}},
		{"cmd a#b", []string{"cmd", "a#b"}},
		{`cmd '#x'`, []string{"cmd", "#x"}},
		{`a|b && c; d > e`, []string{"a|b", "&&", "c;", "d", ">", "e"}},
		{`$HOME ~ *`, []string{"$HOME", "~", "*"}},
		{`"héllo wörld" ü`, []string{"héllo wörld", "ü"}},
	}
	for _, tt := range tests {
		got, err := SplitCommand(tt.in)
		if err != nil {
			t.Errorf("SplitCommand(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitCommand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSplitCommandErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{``, "empty command"},
		{"  \t\n", "empty command"},
		{"# only a comment", "empty command"},
		{`sh -c 'exit 0`, "unterminated single quote at offset 6"},
		{`echo "abc`, "unterminated double quote at offset 5"},
		{`echo "a\"`, "unterminated double quote"},
		{`echo abc\`, "trailing backslash"},
		{`é 'x`, "unterminated single quote at offset 3"},
	}
	for _, tt := range tests {
		got, err := SplitCommand(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("SplitCommand(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.want)
		}
	}
}
