package notify

import (
	"strings"
	"testing"

	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/slack"
)

// A made-up hook in Slack's shape (team, bot, 24-character secret).
const (
	testHook      = "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
	testShoutrrrU = "slack://hook:T00000000-B00000000-XXXXXXXXXXXXXXXXXXXXXXXX@webhook"
)

func TestSlackHookURL(t *testing.T) {
	got, err := SlackHookURL(testHook)
	if err != nil {
		t.Fatal(err)
	}
	if got != testShoutrrrU {
		t.Errorf("got %q, want %q", got, testShoutrrrU)
	}
	if _, err := SlackHookURL(" " + testHook + "/ "); err != nil {
		t.Errorf("trailing slash and spaces: %v", err)
	}
	// shoutrrr's slack service accepts the result.
	if _, err := newSender(got, nil); err != nil {
		t.Errorf("shoutrrr rejects %q: %v", got, err)
	}

	for hook, want := range map[string]string{
		"https://example.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX":   "not hooks.slack.com",
		"ftp://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX": "not https",
		"https://hooks.slack.com/services/T00000000/B00000000":                        "path",
		"https://hooks.slack.com/workflows/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXX":  "path",
		"https://hooks.slack.com/services/A/B/C":                                      "token",
		"https://hooks.slack.com/services//B00000000/XXXXXXXXXXXXXXXXXXXXXXXX":        "path",
		"::": "not a URL",
	} {
		_, err := SlackHookURL(hook)
		if err == nil {
			t.Errorf("%s: accepted", hook)
			continue
		}
		if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--slack-hook-url") {
			t.Errorf("%s: error %q should name --slack-hook-url and contain %q", hook, err, want)
		}
	}
}

func TestNewWithSlackHook(t *testing.T) {
	log, logs := testLogger()
	n, err := New(Config{SlackHookURL: testHook, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	sn, ok := n.(*shoutrrrNotifier)
	if !ok || len(sn.senders) != 1 || sn.senders[0].name != "slack://webhook" {
		t.Fatalf("got %#v", n)
	}
	if !strings.Contains(logs.String(), "deprecated") || strings.Contains(logs.String(), "XXXXXXXX") {
		t.Errorf("want a deprecation warning without the secret:\n%s", logs)
	}

	// As in kured, --notify-url wins over --slack-hook-url.
	n, err = New(Config{URLs: []string{"generic://127.0.0.1:1/x?disabletls=yes"}, SlackHookURL: testHook, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if sn := n.(*shoutrrrNotifier); len(sn.senders) != 1 || sn.senders[0].name != "generic://127.0.0.1:1/…" {
		t.Errorf("senders %v", sn.senders[0].name)
	}
	if !strings.Contains(logs.String(), "using --notify-url only") {
		t.Errorf("no warning about both flags:\n%s", logs)
	}

	if _, err := New(Config{SlackHookURL: "https://hooks.slack.com/services/A/B/C"}); err == nil {
		t.Error("a malformed hook was accepted")
	}
}

// kured's --slack-username names the poster of the webhook's messages; its
// --slack-channel cannot be sent through a webhook and is only warned about.
func TestNewWithSlackUsernameAndChannel(t *testing.T) {
	log, logs := testLogger()
	n, err := New(Config{SlackHookURL: testHook, SlackUsername: "kured bot", SlackChannel: "#ops", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	svc, ok := n.(*shoutrrrNotifier).senders[0].svc.(*slack.Service)
	if !ok {
		t.Fatalf("service %T is not Slack", n.(*shoutrrrNotifier).senders[0].svc)
	}
	if svc.Config.BotName != "kured bot" || svc.Config.Channel != "webhook" {
		t.Errorf("botname %q channel %q, want %q and the webhook's own", svc.Config.BotName, svc.Config.Channel, "kured bot")
	}
	if !strings.Contains(logs.String(), "--slack-channel has no effect") {
		t.Errorf("no warning about --slack-channel:\n%s", logs)
	}

	n, err = New(Config{SlackHookURL: testHook, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if svc := n.(*shoutrrrNotifier).senders[0].svc.(*slack.Service); svc.Config.BotName != "" {
		t.Errorf("botname %q without --slack-username, want the webhook's own", svc.Config.BotName)
	}
}
