// Package notify sends chat/e-mail/webhook notifications about a node's reboot through
// shoutrrr (the maintained fork github.com/nicholas-fedor/shoutrrr), the way kured's
// --notify-url does, plus one kured lacks: a node that needs a reboot but has been
// blocked by the gate for too long.
//
// # Events and templates
//
// An Event has a Kind (Drain, Reboot, Uncordon, BlockedTooLong) and the node, its pool,
// the gate's decision, a time and free text. Each kind has a message template, a Go
// text/template that sees the Event's fields: .Kind, .Node, .Pool, .Decision (a
// decision.Decision, with .Decision.Reasons, .Decision.Allowed, .Decision.NextAllowed…),
// .Since and .Detail. Inside a template .Decision is never nil: an event without a
// decision shows an empty one. One function is added: reasons N DECISION (usually
// written {{.Decision | reasons 3}}) joins the messages of the first N reasons with "; "
// and says how many more there are; N <= 0 means all.
//
// kured's templates keep working: a template that contains "%s" and no "{{" is kured's
// printf form, and "%s" is replaced by the node name, so
// --message-template-drain="Draining node %s" renders "Draining node worker-1". A
// template containing both is a Go template in which "%s" is plain text. The defaults
// are kured's, written as Go templates ("Draining node {{.Node}}", "Rebooting node
// {{.Node}}", "Node {{.Node}} rebooted & uncordoned successfully!"), and a BlockedTooLong message
// naming the pool, the start of the blocked stretch and the first three reasons.
//
// Templates are parsed once, by New or ParseTemplates, and executed against a sample
// event there too, so a misspelt field (.Nodes) is a startup error rather than a missing
// notification; the error names the flag (--message-template-drain …) and the template
// problem (the BlockedTooLong template's flag is --message-template-blocked-too-long;
// see FlagName). Should a template still fail when a notification is sent, the default
// template of that kind is used instead and the failure is logged.
//
// # URLs
//
// Config.URLs are shoutrrr service URLs (kured's --notify-url; several may be given,
// each gets every message). kured's deprecated --slack-hook-url, a Slack incoming
// webhook https://hooks.slack.com/services/T…/B…/X…, is converted by SlackHookURL to
// shoutrrr's Slack webhook form slack://hook:T…-B…-X…@webhook; as in kured it is used
// only when no --notify-url is given. With no URL at all, New returns Nop, which sends
// nothing (templates are still checked).
//
// URLs carry secrets (webhook tokens, passwords), so they are never logged or put in an
// error whole: only the scheme and host are shown (see Redact), and parts of the URL
// (user info, path segments, query values) are scrubbed from service errors, some of
// which quote the token they reject. A URL shoutrrr cannot initialize is a New error;
// a panic inside shoutrrr (its router dereferences nil for some bad "generic+https://"
// URLs) is recovered into that error.
//
// # Sending
//
// Notify never blocks its caller for longer than Config.Timeout (default 5s) or the
// caller's context, whichever ends first; it sends to all URLs in parallel, logs every
// failure with log/slog and returns them joined, so callers may ignore the error. A send
// still running when Notify gives up carries on in the background (shoutrrr services do
// not take a context); at most a few may be in flight per URL, beyond which new messages
// for that URL are dropped and logged, so a dead endpoint cannot pile up goroutines.
// Nothing in this package panics on bad input or a misbehaving service.
//
// # Blocked too long
//
// BlockedTooLong turns the stream of gate decisions into one "blocked too long" signal
// per blocked stretch: Observe(now, required, decision) returns true once, when a node
// that needs a reboot has been denied by the gate for at least the threshold, and the
// stretch ends (re-arming the signal) when the gate allows the node or the reboot is no
// longer needed. It is pure: time comes only from its arguments.
package notify
