package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeNotifyFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "urls")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestNotifyURLFileAddsToNotifyURL: one URL per line, blank lines, CRLF and # comments
// skipped; the file's URLs follow those of --notify-url.
func TestNotifyURLFileAddsToNotifyURL(t *testing.T) {
	p := writeNotifyFile(t, "# team chat\nslack://hook:T0-B0-X0@webhook\r\n\n  teams://group@tenant/altId/groupOwner?host=example.webhook.office.com  \n")
	o, _, err := configureAgent(t, nil, "--node-id", "n", "--namespace", "ns", "--notify-url", "smtp://u:p@mail:25/?to=ops@example.com", "--notify-url-file", p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"smtp://u:p@mail:25/?to=ops@example.com", "slack://hook:T0-B0-X0@webhook", "teams://group@tenant/altId/groupOwner?host=example.webhook.office.com"}
	if !slices.Equal(o.cfg.Notify.URLs, want) {
		t.Errorf("URLs %q, want %q", o.cfg.Notify.URLs, want)
	}
}

// TestNotifyURLFileAddsToKuredEnv: KURED_NOTIFY_URL replaces --notify-url as in kured;
// the file's URLs are still added.
func TestNotifyURLFileAddsToKuredEnv(t *testing.T) {
	p := writeNotifyFile(t, "slack://hook:T0-B0-X0@webhook\n")
	o, _, err := configureAgent(t, map[string]string{"KURED_NOTIFY_URL": "teams://x@y/z/w"}, "--node-id", "n", "--namespace", "ns", "--notify-url", "smtp://flag", "--notify-url-file", p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"teams://x@y/z/w", "slack://hook:T0-B0-X0@webhook"}; !slices.Equal(o.cfg.Notify.URLs, want) {
		t.Errorf("URLs %q, want %q", o.cfg.Notify.URLs, want)
	}
}

// TestNotifyURLFileErrorsNameFlagAndFileNotToken: a missing file, an empty file and a
// line that is not one URL are errors naming --notify-url-file, the path and the line,
// and never echo the line (a bare token, or a URL with a second one after it).
func TestNotifyURLFileErrorsNameFlagAndFileNotToken(t *testing.T) {
	const token = "xoxb-SECRET-TOKEN-123"
	missing := filepath.Join(t.TempDir(), "absent")
	for name, tc := range map[string]struct {
		path string
		want []string
	}{
		"missing":    {missing, []string{"--notify-url-file " + missing, "no such file"}},
		"empty":      {writeNotifyFile(t, "# none yet\n\n"), []string{"--notify-url-file ", "no URL in the file"}},
		"bare":       {writeNotifyFile(t, "slack://ok@webhook\n"+token+"\n"), []string{"--notify-url-file ", "line 2 is not one URL"}},
		"two a line": {writeNotifyFile(t, "slack://"+token+"@webhook teams://"+token+"@x\n"), []string{"line 1 is not one URL"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := configureAgent(t, nil, "--node-id", "n", "--namespace", "ns", "--notify-url-file", tc.path)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %q does not name the file %s", err, tc.path)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error %q shows the token", err)
			}
		})
	}
}
