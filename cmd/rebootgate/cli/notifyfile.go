package cli

import (
	"os"
	"strings"
)

// readNotifyURLFile reads --notify-url-file: shoutrrr URLs, one per line; blank lines
// and lines starting with # are skipped. It lets the URLs, which carry tokens, come from
// a mounted Secret rather than the command line, where anyone who can read the Pod spec
// or the host's process list sees them. Errors name the flag, the file and the line,
// never the line's text (it may be a token).
func readNotifyURLFile(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, badInput("--notify-url-file %s: %v", path, err)
	}
	var urls []string
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.Contains(line, "://") || strings.ContainsAny(line, " \t") {
			return nil, badInput("--notify-url-file %s: line %d is not one URL (scheme://…); give one shoutrrr URL per line", path, i+1)
		}
		urls = append(urls, line)
	}
	if len(urls) == 0 {
		return nil, badInput("--notify-url-file %s: no URL in the file", path)
	}
	return urls, nil
}
