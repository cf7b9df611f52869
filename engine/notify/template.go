package notify

import (
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/rebootgate/rebootgate/engine/decision"
)

// Templates holds one message template per Kind; an empty field takes the default. Each
// is a Go text/template over Event, or kured's printf form (contains "%s" and no "{{";
// %s is the node name).
type Templates struct {
	Drain          string // --message-template-drain
	Reboot         string // --message-template-reboot
	Uncordon       string // --message-template-uncordon
	BlockedTooLong string // --message-template-blocked-too-long
	NotBack        string // no flag: the default message
	Hold           string // no flag: the default message
	LoadError      string // no flag: the default message
}

// The default templates: kured's, as Go templates, plus one for BlockedTooLong.
const (
	DefaultDrainTemplate          = "Draining node {{.Node}}"
	DefaultRebootTemplate         = "Rebooting node {{.Node}}"
	DefaultUncordonTemplate       = "Node {{.Node}} rebooted & uncordoned successfully!"
	DefaultNotBackTemplate        = `Node {{.Node}}{{with .Pool}} (pool {{.}}){{end}} has not come back after {{.Detail}}; it keeps its slot and the pool's rollout is stopped`
	DefaultHoldTemplate           = `Node {{.Node}}{{with .Pool}} (pool {{.}}){{end}} is on hold: {{.Detail}}`
	DefaultLoadErrorTemplate      = `Node {{.Node}}{{with .Pool}} (pool {{.}}){{end}}: the config or policies do not load: {{.Detail}}`
	DefaultBlockedTooLongTemplate = `Node {{.Node}}{{with .Pool}} (pool {{.}}){{end}} needs a reboot but has been blocked since {{.Since.UTC.Format "2006-01-02 15:04 UTC"}}{{with .Decision | reasons 3}}: {{.}}{{end}}`
)

// FlagName is the command-line flag that sets the template for k.
func FlagName(k Kind) string {
	switch k {
	case KindDrain:
		return "--message-template-drain"
	case KindReboot:
		return "--message-template-reboot"
	case KindUncordon:
		return "--message-template-uncordon"
	case KindBlockedTooLong:
		return "--message-template-blocked-too-long"
	}
	return "--message-template-" + strings.ToLower(string(k))
}

func (t Templates) get(k Kind) string {
	switch k {
	case KindDrain:
		return t.Drain
	case KindReboot:
		return t.Reboot
	case KindUncordon:
		return t.Uncordon
	case KindBlockedTooLong:
		return t.BlockedTooLong
	case KindNotBack:
		return t.NotBack
	case KindHold:
		return t.Hold
	case KindLoadError:
		return t.LoadError
	}
	return ""
}

var defaultTemplates = Templates{
	Drain:          DefaultDrainTemplate,
	Reboot:         DefaultRebootTemplate,
	Uncordon:       DefaultUncordonTemplate,
	BlockedTooLong: DefaultBlockedTooLongTemplate,
	NotBack:        DefaultNotBackTemplate,
	Hold:           DefaultHoldTemplate,
	LoadError:      DefaultLoadErrorTemplate,
}

// defaultMessages renders the defaults; it is the fallback when a template fails.
var defaultMessages = func() *Messages {
	m, err := ParseTemplates(Templates{})
	if err != nil {
		panic(err) // the defaults are constants; covered by the tests
	}
	return m
}()

// Messages renders events with parsed templates. It is safe for concurrent use.
type Messages struct {
	byKind map[Kind]message
}

// message is one parsed template: a Go template, or kured's printf form.
type message struct {
	tmpl   *template.Template
	printf string
}

// IsPrintfTemplate reports whether s is kured's printf form: it contains "%s" and no "{{".
func IsPrintfTemplate(s string) bool {
	return strings.Contains(s, "%s") && !strings.Contains(s, "{{")
}

// funcs are the functions templates may call besides text/template's own.
var funcs = template.FuncMap{"reasons": reasons}

// ParseTemplates parses t (empty fields take the defaults) and executes each template
// against a sample event, so that unknown fields or functions fail here. The error
// names the flag and the template problem.
func ParseTemplates(t Templates) (*Messages, error) {
	m := &Messages{byKind: make(map[Kind]message, len(Kinds))}
	for _, k := range Kinds {
		src := t.get(k)
		if src == "" {
			src = defaultTemplates.get(k)
		}
		if IsPrintfTemplate(src) {
			m.byKind[k] = message{printf: src}
			continue
		}
		tmpl, err := template.New(string(k)).Funcs(funcs).Parse(src)
		if err != nil {
			return nil, fmt.Errorf("notify: %s (%s message): %w", FlagName(k), k, err)
		}
		msg := message{tmpl: tmpl}
		if _, err := msg.render(sampleEvent(k)); err != nil {
			return nil, fmt.Errorf("notify: %s (%s message): %w", FlagName(k), k, err)
		}
		m.byKind[k] = msg
	}
	return m, nil
}

// sampleEvent exercises every field a template can reach.
func sampleEvent(k Kind) Event {
	return Event{
		Kind: k, Node: "node-1", Pool: "pool-1", Since: time.Unix(0, 0), Detail: "detail",
		Decision: &decision.Decision{
			Node: "node-1", Pool: "pool-1", At: time.Unix(0, 0).UTC().Format(time.RFC3339),
			Reasons: []decision.Reason{{Source: decision.SourcePolicy, Message: "sample reason"}},
		},
	}
}

// Render returns ev's message, from the template of ev.Kind.
func (m *Messages) Render(ev Event) (string, error) {
	msg, ok := m.byKind[ev.Kind]
	if !ok {
		return "", fmt.Errorf("notify: unknown event kind %q", ev.Kind)
	}
	s, err := msg.render(ev)
	if err != nil {
		return "", fmt.Errorf("notify: %s (%s message): %w", FlagName(ev.Kind), ev.Kind, err)
	}
	return s, nil
}

// mustRender is for the defaults only, which cannot fail; an unknown kind still gets a
// message.
func (m *Messages) mustRender(ev Event) string {
	if s, err := m.Render(ev); err == nil {
		return s
	}
	return fmt.Sprintf("%s: node %s", ev.Kind, ev.Node)
}

func (msg message) render(ev Event) (string, error) {
	if msg.tmpl == nil {
		return fmt.Sprintf(msg.printf, ev.Node), nil
	}
	if ev.Decision == nil {
		ev.Decision = &decision.Decision{}
	}
	var b strings.Builder
	if err := msg.tmpl.Execute(&b, ev); err != nil {
		return "", err
	}
	return b.String(), nil
}

// reasons joins the messages of d's first n reasons (all when n <= 0) with "; ", and
// says how many were left out.
func reasons(n int, d *decision.Decision) string {
	if d == nil || len(d.Reasons) == 0 {
		return ""
	}
	rs := d.Reasons
	if n <= 0 || n > len(rs) {
		n = len(rs)
	}
	parts := make([]string, 0, n)
	for _, r := range rs[:n] {
		parts = append(parts, r.Message)
	}
	s := strings.Join(parts, "; ")
	if more := len(rs) - n; more > 0 {
		s += fmt.Sprintf(" (and %d more)", more)
	}
	return s
}
