package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/rebootgate/rebootgate/engine/decision"
)

// Kind is what an Event reports. Its value is what templates see as .Kind.
type Kind string

// The kinds of notification.
const (
	// Drain: the node has been cordoned and is being drained.
	KindDrain Kind = "Drain"
	// Reboot: the node is about to be rebooted.
	KindReboot Kind = "Reboot"
	// Uncordon: the node rebooted, passed its checks and was uncordoned.
	KindUncordon Kind = "Uncordon"
	// BlockedTooLong: the node needs a reboot but the gate has denied it for longer
	// than the configured threshold (see BlockedTooLong).
	KindBlockedTooLong Kind = "BlockedTooLong"
	// NotBack: a node asked to reboot has not come back (Ready) after the reboot and
	// ready timeouts; its slot stays held, so its pool's rollout has stopped.
	KindNotBack Kind = "NotBack"
	// Hold: the node failed too many times in a row and was put on hold.
	KindHold Kind = "Hold"
	// LoadError: the latest config or policy update does not load, so no new reboot
	// starts; Detail is the load error. Sent once per error by each agent whose node
	// needs a reboot or is in one.
	KindLoadError Kind = "LoadError"
)

// Kinds lists every Kind, in pipeline order.
var Kinds = []Kind{KindDrain, KindReboot, KindUncordon, KindBlockedTooLong, KindNotBack, KindHold, KindLoadError}

// Event is one notification. Its fields are what message templates see.
type Event struct {
	Kind Kind
	// Node is the node's name; kured's printf templates substitute it for %s.
	Node string
	// Pool is the node's pool, empty when unknown.
	Pool string
	// Decision is the gate's latest decision for the node; may be nil (templates then
	// see an empty decision).
	Decision *decision.Decision
	// Since is when the situation began: for BlockedTooLong the start of the blocked
	// stretch; otherwise optional (e.g. when the phase began).
	Since time.Time
	// Detail is optional free text (e.g. a drain error).
	Detail string
}

// Notifier sends notifications. Implementations are safe for concurrent use, never
// panic, and return within a bounded time; failures are logged by the implementation,
// so the returned error is informational.
type Notifier interface {
	Notify(ctx context.Context, ev Event) error
}

// Nop is the Notifier used when no URL is configured: it sends nothing.
type Nop struct{}

// Notify does nothing.
func (Nop) Notify(context.Context, Event) error { return nil }

// DefaultTimeout bounds one Notify call when Config.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Config configures New.
type Config struct {
	// URLs are shoutrrr service URLs (kured's --notify-url), each sent every message.
	// Empty entries are ignored.
	URLs []string
	// SlackHookURL is kured's deprecated --slack-hook-url
	// (https://hooks.slack.com/services/T…/B…/X…), converted with SlackHookURL. As in
	// kured it is ignored, with a warning, when URLs holds any URL.
	SlackHookURL string
	// SlackUsername (kured's --slack-username) is the name the --slack-hook-url
	// messages are posted under (shoutrrr's botname); empty keeps the webhook's own.
	SlackUsername string
	// SlackChannel is kured's --slack-channel. Slack's incoming webhooks post to the
	// channel they were created for, and shoutrrr (as kured since 1.7) sends no channel
	// override through a webhook, so it is accepted and only logged.
	SlackChannel string
	// Templates are the per-kind message templates; empty fields take the defaults.
	Templates Templates
	// Timeout bounds each Notify call; zero means DefaultTimeout.
	Timeout time.Duration
	// Logger receives send failures (and, at debug level, shoutrrr's own chatter);
	// nil means slog.Default().
	Logger *slog.Logger
}

// New parses the templates and builds a Notifier sending through shoutrrr to every
// configured URL, or Nop when there is none. Errors name the offending flag or URL
// (without its secrets) and the problem.
func New(cfg Config) (Notifier, error) {
	msgs, err := ParseTemplates(cfg.Templates)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	var urls []string
	for _, u := range cfg.URLs {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	if hook := strings.TrimSpace(cfg.SlackHookURL); hook != "" {
		if len(urls) > 0 {
			log.Warn("both --notify-url and the deprecated --slack-hook-url are set; using --notify-url only")
		} else {
			u, err := SlackHookURL(hook)
			if err != nil {
				return nil, err
			}
			if name := strings.TrimSpace(cfg.SlackUsername); name != "" {
				u += "?" + url.Values{"botname": {name}}.Encode()
			}
			if ch := strings.TrimSpace(cfg.SlackChannel); ch != "" {
				log.Warn("--slack-channel has no effect: a Slack incoming webhook posts to the channel it was created for (as with kured since 1.7); create the webhook for that channel, or use --notify-url with a Slack bot token and channel", "channel", ch)
			}
			log.Warn("--slack-hook-url is deprecated; use --notify-url with the shoutrrr Slack URL instead", "notifyURL", Redact(u))
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 {
		return Nop{}, nil
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	n := &shoutrrrNotifier{msgs: msgs, timeout: timeout, log: log}
	svcLog := slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	for i, u := range urls {
		s, err := newSender(u, svcLog)
		if err != nil {
			label := Redact(u)
			if !strings.Contains(u, "://") {
				label = "no scheme" // could be a bare token: don't echo it
			}
			return nil, fmt.Errorf("notify: URL #%d (%s): %w", i+1, label, err)
		}
		n.senders = append(n.senders, s)
	}
	return n, nil
}

// shoutrrrNotifier renders a message and hands it to every sender.
type shoutrrrNotifier struct {
	msgs    *Messages
	senders []*sender
	timeout time.Duration
	log     *slog.Logger
}

// Notify renders ev's message and sends it to every URL in parallel, returning when all
// are done or the timeout (or ctx) ends.
func (n *shoutrrrNotifier) Notify(ctx context.Context, ev Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("notify: internal error: %v", r)
			n.log.Error("notification failed", "kind", ev.Kind, "node", ev.Node, "err", err)
		}
	}()
	msg, rerr := n.msgs.Render(ev)
	if rerr != nil {
		n.log.Warn("notification template failed; sending the default message", "kind", ev.Kind, "node", ev.Node, "err", rerr)
		msg = defaultMessages.mustRender(ev)
	}
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	errs := make([]error, len(n.senders))
	done := make(chan struct{}, len(n.senders))
	for i, s := range n.senders {
		go func() {
			defer func() { done <- struct{}{} }()
			errs[i] = s.send(ctx, msg)
		}()
	}
	for range n.senders {
		<-done
	}
	var failed []error
	for i, e := range errs {
		if e == nil {
			continue
		}
		e = redacted{prefix: n.senders[i].name + ": ", err: e, secrets: n.senders[i].secrets}
		n.log.Warn("notification failed", "kind", ev.Kind, "node", ev.Node, "err", e)
		failed = append(failed, e)
	}
	if len(failed) > 0 {
		return fmt.Errorf("notify %s for node %s: %w", ev.Kind, ev.Node, errors.Join(failed...))
	}
	n.log.Debug("notification sent", "kind", ev.Kind, "node", ev.Node, "services", len(n.senders))
	return nil
}

// redacted shows err without URLs or URL secrets, but still unwraps to it.
type redacted struct {
	prefix  string
	err     error
	secrets []string
}

func (r redacted) Error() string { return r.prefix + scrub(Redact(r.err.Error()), r.secrets) }
func (r redacted) Unwrap() error { return r.err }
