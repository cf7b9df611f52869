package notify

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"

	"github.com/nicholas-fedor/shoutrrr/pkg/router"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/slack"
	"github.com/nicholas-fedor/shoutrrr/pkg/types"
)

// maxInFlight bounds the sends to one URL still running (Notify gave up on them but the
// service has not returned); beyond it new messages for that URL are dropped.
const maxInFlight = 4

// errBusy: too many earlier sends to this URL are still running.
var errBusy = errors.New("dropped: earlier notifications to this URL are still being sent")

// sender is one shoutrrr service, for one URL.
type sender struct {
	name    string   // the URL without secrets, for logs and errors
	secrets []string // parts of the URL that errors must not show
	svc     types.Service
	slots   chan struct{}
}

// newSender initializes the shoutrrr service for rawURL. Plain service URLs are
// initialized directly so that the service's own error is kept (shoutrrr's router
// replaces it with "failed to initialize service"); custom "service+https://…" URLs go
// through the router, which converts them.
func newSender(rawURL string, log types.StdLogger) (s *sender, err error) {
	defer func() {
		// shoutrrr's router dereferences a nil URL when a custom URL fails to convert.
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("shoutrrr rejected the URL: %v", r)
		}
	}()
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the whole URL, secrets included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme == "" {
		return nil, errors.New("not a shoutrrr URL: no scheme (e.g. slack://, teams://, smtp://, generic://)")
	}
	r, err := router.New(log)
	if err != nil {
		return nil, err
	}
	var svc types.Service
	if !strings.Contains(u.Scheme, "+") {
		svc, err = r.NewService(u.Scheme)
		if err == nil {
			err = svc.Initialize(u, log)
		}
	} else {
		svc, err = r.Locate(rawURL)
	}
	secrets := urlSecrets(u)
	if err != nil {
		// Some services quote the token they reject.
		return nil, errors.New(scrub(Redact(err.Error()), secrets))
	}
	return &sender{name: Redact(rawURL), secrets: secrets, svc: svc, slots: make(chan struct{}, maxInFlight)}, nil
}

// send hands msg to the service and waits for it or for ctx. A send outlasting ctx keeps
// running in the background, holding one of the URL's slots until it returns.
func (s *sender) send(ctx context.Context, msg string) error {
	select {
	case s.slots <- struct{}{}:
	default:
		return errBusy
	}
	done := make(chan error, 1)
	go func() {
		defer func() { <-s.slots }()
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("shoutrrr service panicked: %v", r)
			}
		}()
		done <- s.svc.Send(msg, &types.Params{})
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("gave up waiting (%w); the send continues in the background", context.Cause(ctx))
	}
}

// SlackHookURL converts kured's deprecated --slack-hook-url, a Slack incoming webhook
// https://hooks.slack.com/services/T…/B…/X…, into shoutrrr's Slack webhook URL
// slack://hook:T…-B…-X…@webhook, which is what --notify-url takes. Anything else is an
// error (in particular another host: kured would silently have posted to Slack).
func SlackHookURL(hook string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("notify: --slack-hook-url: %s; expected https://hooks.slack.com/services/T…/B…/X… (or use --notify-url with a shoutrrr URL)", why)
	}
	u, err := url.Parse(strings.TrimSpace(hook))
	if err != nil {
		return bad("not a URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return bad(fmt.Sprintf("scheme %q is not https", u.Scheme))
	}
	if !strings.EqualFold(u.Hostname(), "hooks.slack.com") {
		return bad(fmt.Sprintf("host %q is not hooks.slack.com", u.Hostname()))
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 4 || parts[0] != "services" || parts[1] == "" || parts[2] == "" || parts[3] == "" {
		return bad("path is not /services/T…/B…/X…")
	}
	token, err := slack.ParseToken(slack.HookTokenIdentifier + ":" + strings.Join(parts[1:], "-"))
	if err != nil {
		return bad(fmt.Sprintf("the webhook token is not in Slack's form: %v", err))
	}
	return (&url.URL{Scheme: slack.Scheme, User: token.UserInfo(), Host: "webhook"}).String(), nil
}

// urlPattern matches URLs inside free text: scheme, optional user info, host, rest.
var urlPattern = regexp.MustCompile(`\b([a-zA-Z][a-zA-Z0-9+.-]*)://(?:[^\s"'<>/?#@]*@)?([^\s"'<>/?#]*)([^\s"'<>]*)`)

// Redact removes what may be secret from every URL in s (user info, path, query,
// fragment), keeping the scheme and host: "slack://hook:T-B-X@webhook" becomes
// "slack://webhook", "https://hooks.slack.com/services/T/B/X" becomes
// "https://hooks.slack.com/…".
func Redact(s string) string {
	return urlPattern.ReplaceAllStringFunc(s, func(m string) string {
		sub := urlPattern.FindStringSubmatch(m)
		out := sub[1] + "://" + sub[2]
		if rest := strings.TrimRight(sub[3], ".,;:)"); rest != "" && rest != "/" {
			out += "/…" + sub[3][len(rest):]
		} else {
			out += sub[3]
		}
		return out
	})
}

// minSecret is the shortest URL part treated as secret by scrub; shorter ones are too
// likely to be ordinary words of an error message.
const minSecret = 6

// urlSecrets lists the parts of u that may be credentials: user info, path segments,
// query values and fragment, longest first.
func urlSecrets(u *url.URL) []string {
	var out []string
	add := func(s string) {
		if len(s) >= minSecret {
			out = append(out, s)
		}
	}
	if u.User != nil {
		add(u.User.String())
		add(u.User.Username())
		if p, ok := u.User.Password(); ok {
			add(p)
		}
	}
	for _, seg := range strings.Split(u.Path, "/") {
		add(seg)
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			add(v)
		}
	}
	add(u.Fragment)
	if u.Opaque != "" {
		add(u.Opaque)
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// scrub replaces every secret in s by "…".
func scrub(s string, secrets []string) string {
	for _, sec := range secrets {
		s = strings.ReplaceAll(s, sec, "…")
	}
	return s
}
