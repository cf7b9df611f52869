package config

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/input"
	"github.com/rebootgate/rebootgate/engine/schedule"
)

// maxCronDuration bounds a cron window, which also bounds the search for its last hit.
const maxCronDuration = 31 * 24 * time.Hour

// Resolved is a validated config with defaults applied and everything parsed that can be
// parsed without CEL or Rego.
type Resolved struct {
	// Source is the config as written.
	Source         *Config
	Pools          []ResolvedPool
	NodeImageLabel string
	HoldAnnotation string
	// Breaker is the cluster-wide circuit breaker's maxUnavailable; nil without one.
	Breaker *intstr.IntOrString
}

// ResolvedPool is one pool, ready for the decision engine.
type ResolvedPool struct {
	Name        string
	Selector    string
	Concurrency intstr.IntOrString
	// SlotKey is the slot key's CEL expression, the shorthand expanded (see
	// SlotKeyExpression); "" when the pool has none.
	SlotKey string
	// SlotsPerKey is how many nodes per slot-key value may hold a slot at once, >= 1.
	SlotsPerKey int
	Conditions  []Condition
	HealthGate  []Condition
	// Windows are the parsed windows, aligned with Params.Windows.
	Windows   []schedule.Window
	Blackouts []schedule.Blackout
	// Params is the pool's part of the Rego input (input.params).
	Params *input.Params
	// CountOthers: the pool's nodes unavailable for other reasons use up its slots.
	CountOthers bool
	// DisruptionTaints are the built-in disruption taints plus the pool's own.
	DisruptionTaints []string
	// Breaker is the pool's circuit breaker's maxUnavailable; nil without one.
	Breaker *intstr.IntOrString
}

// MaxUnavailable resolves a breaker's maxUnavailable against a node count: a
// percentage is rounded up, as a PodDisruptionBudget's is.
func MaxUnavailable(v *intstr.IntOrString, nodes int) int {
	if v.Type == intstr.Int {
		return int(v.IntVal)
	}
	pct, _ := strconv.Atoi(strings.TrimSuffix(v.StrVal, "%"))
	return int(math.Ceil(float64(nodes) * float64(pct) / 100))
}

// NeedsSummary reports whether deciding for the pool needs the node summary: its
// budget counts others' disruptions, or a breaker (the pool's or the cluster's) is set.
func (r *Resolved) NeedsSummary(p *ResolvedPool) bool {
	return p.CountOthers || p.Breaker != nil || r.Breaker != nil
}

// Slots resolves the pool's concurrency against its current node count: a percentage
// is rounded up, and a non-empty pool always gets at least one slot unless the
// concurrency is 0 (a paused pool).
func (p *ResolvedPool) Slots(nodes int) int {
	if p.Concurrency.Type == intstr.Int {
		return int(p.Concurrency.IntVal)
	}
	pct, _ := strconv.Atoi(strings.TrimSuffix(p.Concurrency.StrVal, "%"))
	if pct == 0 || nodes == 0 {
		return 0
	}
	return max(1, int(math.Ceil(float64(nodes)*float64(pct)/100)))
}

// Default is the config used when none is given: one pool owning every node, one node
// at a time, any time.
func Default() *Resolved {
	r, err := Resolve(&Config{APIVersion: APIVersion, Kind: Kind})
	if err != nil {
		panic(fmt.Sprintf("the default config is invalid: %v", err)) // a programming error
	}
	return r
}

// Resolve validates a decoded config and applies defaults. Every problem is reported,
// each naming its field path and bad value.
func Resolve(cfg *Config) (*Resolved, error) {
	var e errs
	if cfg.APIVersion != APIVersion {
		e.add("apiVersion", "%q is not %s", cfg.APIVersion, APIVersion)
	}
	if cfg.Kind != Kind {
		e.add("kind", "%q is not %s", cfg.Kind, Kind)
	}
	r := &Resolved{
		Source:         cfg,
		NodeImageLabel: orDefault(cfg.NodeImageLabel, DefaultNodeImageLabel),
		HoldAnnotation: orDefault(cfg.HoldAnnotation, DefaultHoldAnnotation),
	}
	for _, msg := range validation.IsQualifiedName(r.NodeImageLabel) {
		e.add("nodeImageLabel", "%q is not a label key: %s", r.NodeImageLabel, msg)
	}
	for _, msg := range validation.IsQualifiedName(r.HoldAnnotation) {
		e.add("holdAnnotation", "%q is not an annotation key: %s", r.HoldAnnotation, msg)
	}
	if cfg.Breaker != nil {
		r.Breaker = resolveBreaker(cfg.Breaker, "breaker", &e)
	}
	selectors := resolvePodSelectors(cfg.Blockers.Pods.Selectors, &e)
	alerts := resolveAlerts(cfg.Blockers.Alerts, &e)

	pools := cfg.Pools
	if len(pools) == 0 {
		pools = []Pool{{Name: DefaultPoolName}}
	}
	seen := map[string]int{}
	for i := range pools {
		path := fmt.Sprintf("pools[%d]", i)
		p := resolvePool(&pools[i], path, &e)
		if j, dup := seen[p.Name]; dup && p.Name != "" {
			e.add(path+".name", "%q is already the name of pools[%d]", p.Name, j)
		}
		seen[p.Name] = i
		p.Params.PodSelectors = selectors
		p.Params.Alerts = alerts
		p.Params.HoldAnnotation = r.HoldAnnotation
		p.Params.Custom = mergeCustom(cfg.Custom, pools[i].Custom)
		r.Pools = append(r.Pools, p)
	}
	if err := e.err(); err != nil {
		return nil, err
	}
	return r, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func resolvePool(p *Pool, path string, e *errs) ResolvedPool {
	rp := ResolvedPool{
		Name:       p.Name,
		Selector:   orDefault(strings.TrimSpace(p.Selector), "true"),
		SlotKey:    SlotKeyExpression(p.SlotKey),
		Conditions: p.Conditions,
		HealthGate: p.HealthGate,
		Params:     &input.Params{},
	}
	switch msgs := validation.IsDNS1123Label(p.Name); {
	case p.Name == "":
		e.add(path+".name", "is required")
	case len(msgs) > 0:
		e.add(path+".name", "%q is not a DNS label (it names Leases): %s", p.Name, msgs[0])
	}
	rp.Concurrency = resolveConcurrency(p.Concurrency, path+".concurrency", e)
	var extraTaints []string
	if b := p.Budget; b != nil {
		rp.CountOthers = b.CountOthers
		for i, t := range b.DisruptionTaints {
			for _, msg := range validation.IsQualifiedName(t) {
				e.add(fmt.Sprintf("%s.budget.disruptionTaints[%d]", path, i), "%q is not a taint key: %s", t, msg)
			}
		}
		extraTaints = b.DisruptionTaints
	}
	rp.DisruptionTaints = disruption.Taints(extraTaints)
	if p.Breaker != nil {
		rp.Breaker = resolveBreaker(p.Breaker, path+".breaker", e)
	}
	rp.SlotsPerKey = 1
	if p.SlotsPerKey != nil {
		rp.SlotsPerKey = *p.SlotsPerKey
		switch {
		case *p.SlotsPerKey < 1:
			e.add(path+".slotsPerKey", "%d is less than 1 (it is how many nodes per slot-key value may hold a slot at once)", *p.SlotsPerKey)
		case rp.SlotKey == "":
			e.add(path+".slotsPerKey", "%d is set but slotKey is not (it limits nodes per slot-key value)", *p.SlotsPerKey)
		}
	}
	if p.SlotKey != "" && strings.TrimSpace(p.SlotKey) == "" {
		e.add(path+".slotKey", "%q is blank (leave it out for no per-key limit)", p.SlotKey)
	}
	for i := range p.Windows {
		wpath := fmt.Sprintf("%s.windows[%d]", path, i)
		w, params, ok := resolveWindow(&p.Windows[i], wpath, e)
		if ok {
			rp.Windows = append(rp.Windows, w)
			rp.Params.Windows = append(rp.Params.Windows, params)
		}
	}
	for i, b := range p.Blackouts {
		bpath := fmt.Sprintf("%s.blackouts[%d]", path, i)
		start, err1 := time.Parse(time.RFC3339, b.Start)
		if err1 != nil {
			e.add(bpath+".start", "%q is not an RFC 3339 time (e.g. 2026-12-24T00:00:00+01:00)", b.Start)
		}
		end, err2 := time.Parse(time.RFC3339, b.End)
		if err2 != nil {
			e.add(bpath+".end", "%q is not an RFC 3339 time (e.g. 2026-12-27T00:00:00+01:00)", b.End)
		}
		if err1 != nil || err2 != nil {
			continue
		}
		if !end.After(start) {
			e.add(bpath+".end", "%q is not after start %q", b.End, b.Start)
			continue
		}
		rp.Blackouts = append(rp.Blackouts, schedule.Blackout{Name: b.Name, Start: start, End: end})
		rp.Params.Blackouts = append(rp.Params.Blackouts, input.Blackout{
			Name: b.Name, Start: b.Start, End: b.End, StartNs: start.UnixNano(), EndNs: end.UnixNano(),
		})
	}
	validateConditions(p.Conditions, path+".conditions", e)
	validateConditions(p.HealthGate, path+".healthGate", e)
	rp.Params.NodeImage = input.NodeImage{Families: []string{}}
	if ni := p.NodeImage; ni != nil {
		if ni.Families != nil {
			rp.Params.NodeImage.Families = ni.Families
		}
		for i, f := range ni.Families {
			if f == "" {
				e.add(fmt.Sprintf("%s.nodeImage.families[%d]", path, i), "is empty")
			}
		}
		if ni.MinDate != "" {
			if _, err := time.Parse(time.DateOnly, ni.MinDate); err != nil {
				e.add(path+".nodeImage.minDate", "%q is not a date (use YYYY-MM-DD)", ni.MinDate)
			}
			rp.Params.NodeImage.MinDate = ni.MinDate
		}
	}
	return rp
}

// resolveBreaker validates a breaker; maxUnavailable is required, a count or a
// percentage as concurrency is (0 stops every reboot).
func resolveBreaker(b *Breaker, path string, e *errs) *intstr.IntOrString {
	if b.MaxUnavailable == nil {
		e.add(path+".maxUnavailable", "is required (a count like 2 or a percentage like \"30%%\")")
		return nil
	}
	v := resolveConcurrency(b.MaxUnavailable, path+".maxUnavailable", e)
	return &v
}

func resolveConcurrency(c *intstr.IntOrString, path string, e *errs) intstr.IntOrString {
	if c == nil {
		return intstr.FromInt32(1)
	}
	if c.Type == intstr.Int {
		if c.IntVal < 0 {
			e.add(path, "%d is negative (use a count like 2 or a percentage like \"10%%\"; 0 pauses the pool)", c.IntVal)
		}
		return *c
	}
	s := strings.TrimSpace(c.StrVal)
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return intstr.FromInt(n)
	}
	pct, err := strconv.Atoi(strings.TrimSuffix(s, "%"))
	if !strings.HasSuffix(s, "%") || err != nil || pct < 0 || pct > 100 {
		e.add(path, "%q is not a count or a percentage from 0%% to 100%% (e.g. 2 or \"10%%\")", c.StrVal)
		return intstr.FromInt32(0)
	}
	return intstr.FromString(strconv.Itoa(pct) + "%")
}

func resolveWindow(w *Window, path string, e *errs) (schedule.Window, input.WindowParams, bool) {
	ok := true
	loc, err := schedule.LoadLocation(w.TimeZone)
	if err != nil {
		e.addErr(path+".timeZone", err)
		ok = false
	}
	days := schedule.AllDays
	if len(w.Days) > 0 {
		if days, err = schedule.ParseDays(w.Days); err != nil {
			e.addErr(path+".days", err)
			ok = false
		}
	}
	zone := orDefault(w.TimeZone, "UTC")
	daily := w.StartTime != "" || w.EndTime != ""
	if w.Schedule != "" || w.Duration != "" {
		if daily {
			e.add(path, "set schedule and duration (a cron window) or startTime and endTime (a daily window), not both")
			return nil, input.WindowParams{}, false
		}
		return resolveCronWindow(w, path, days, loc, zone, ok, e)
	}
	start, end := schedule.TimeOfDay{}, schedule.TimeOfDay{Hour: 23, Minute: 59, Second: 59}
	if w.StartTime != "" {
		if start, err = schedule.ParseTimeOfDay(w.StartTime); err != nil {
			e.addErr(path+".startTime", err)
			ok = false
		}
	}
	if w.EndTime != "" {
		if end, err = schedule.ParseTimeOfDay(w.EndTime); err != nil {
			e.addErr(path+".endTime", err)
			ok = false
		}
	}
	if !ok {
		return nil, input.WindowParams{}, false
	}
	d := schedule.Daily{Days: days, Start: start, End: end, Location: loc}
	return d, input.WindowParams{
		Kind: input.KindDaily, Days: days.Names(), StartTime: start.String(), EndTime: end.String(),
		StartSeconds: start.Seconds(), EndSeconds: end.Seconds(), TimeZone: zone,
		CrossesMidnight: d.CrossesMidnight(),
	}, true
}

// resolveCronWindow finishes a window with schedule and duration; days (every day when
// not set) restricts which cron hits open it.
func resolveCronWindow(w *Window, path string, days schedule.Weekdays, loc *time.Location, zone string, ok bool, e *errs) (schedule.Window, input.WindowParams, bool) {
	if w.Schedule == "" {
		e.add(path+".schedule", "is required with duration")
		return nil, input.WindowParams{}, false
	}
	if w.Duration == "" {
		e.add(path+".duration", "is required with schedule (e.g. 4h)")
		return nil, input.WindowParams{}, false
	}
	d, err := time.ParseDuration(w.Duration)
	if err != nil || d <= 0 || d > maxCronDuration {
		e.add(path+".duration", "%q is not a duration between 1s and 744h (e.g. 4h, 90m)", w.Duration)
		return nil, input.WindowParams{}, false
	}
	if !ok {
		return nil, input.WindowParams{}, false
	}
	c, err := schedule.ParseCron(w.Schedule, d, days, loc)
	if err != nil {
		e.addErr(path+".schedule", err)
		return nil, input.WindowParams{}, false
	}
	return c, input.WindowParams{
		Kind: input.KindCron, Days: days.Names(), Schedule: w.Schedule,
		Duration: d.String(), DurationSeconds: int64(d / time.Second), TimeZone: zone,
	}, true
}

func resolvePodSelectors(raw []string, e *errs) []input.PodSelector {
	out := make([]input.PodSelector, 0, len(raw))
	for i, s := range raw {
		path := fmt.Sprintf("blockers.pods.selectors[%d]", i)
		if strings.TrimSpace(s) == "" {
			e.add(path, "is empty (an empty selector would match every pod)")
			continue
		}
		sel, err := labels.Parse(s)
		if err != nil {
			e.add(path, "%q is not a label selector: %v", s, err)
			continue
		}
		reqs, _ := sel.Requirements()
		ps := input.PodSelector{Selector: s, Requirements: make([]input.Requirement, 0, len(reqs))}
		for _, r := range reqs {
			ps.Requirements = append(ps.Requirements, input.Requirement{
				Key: r.Key(), Operator: operatorName(r.Operator()), Values: r.ValuesUnsorted(),
			})
		}
		out = append(out, ps)
	}
	return out
}

// operatorName folds the selector syntax's operator spellings into the six the policy
// handles.
func operatorName(op selection.Operator) string {
	switch op {
	case selection.Equals, selection.DoubleEquals, selection.In:
		return "In"
	case selection.NotEquals, selection.NotIn:
		return "NotIn"
	case selection.Exists:
		return "Exists"
	case selection.DoesNotExist:
		return "DoesNotExist"
	case selection.GreaterThan:
		return "Gt"
	case selection.LessThan:
		return "Lt"
	}
	return string(op)
}

// promLabelName is Prometheus' label name syntax (the classic one, which alerting rules
// and relabelling produce).
var promLabelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

func resolveAlerts(a AlertBlockers, e *errs) input.AlertParams {
	if a.FilterRegexp != "" {
		if _, err := regexp.Compile(a.FilterRegexp); err != nil {
			e.add("blockers.alerts.filterRegexp", "%q is not a regular expression: %v", a.FilterRegexp, err)
		}
	}
	nodeLabels := slices.Clone(DefaultAlertNodeLabels)
	if a.NodeLabels != nil {
		nodeLabels = make([]string, 0, len(*a.NodeLabels))
		for i, l := range *a.NodeLabels {
			if !promLabelName.MatchString(l) {
				e.add(fmt.Sprintf("blockers.alerts.nodeLabels[%d]", i), "%q is not a Prometheus label name (letters, digits and _, not starting with a digit)", l)
				continue
			}
			nodeLabels = append(nodeLabels, l)
		}
	}
	return input.AlertParams{
		FilterRegexp: a.FilterRegexp, FilterMatchOnly: a.FilterMatchOnly,
		FiringOnly: a.FiringOnly, BlockSilenced: a.BlockSilenced, NodeLabels: nodeLabels,
	}
}

// mergeCustom overlays a pool's custom keys on the global ones.
func mergeCustom(global, pool map[string]any) map[string]any {
	out := make(map[string]any, len(global)+len(pool))
	for k, v := range global {
		out[k] = v
	}
	for k, v := range pool {
		out[k] = v
	}
	return out
}

// SlotKeyExpression turns a pool's slotKey as written into a CEL expression. A value
// that is a valid label key (prefix/name: letters, digits, '-', '_', '.', at most one
// '/') is shorthand for that label, node.labels["<key>"], as slotKey was a label key
// before it became an expression. Anything else is CEL as it stands; to use an
// expression that is also a valid label key (node.name), wrap it in parentheses.
func SlotKeyExpression(slotKey string) string {
	s := strings.TrimSpace(slotKey)
	if s == "" || len(validation.IsQualifiedName(s)) > 0 {
		return s
	}
	return "node.labels[" + strconv.Quote(s) + "]"
}

// IsPercentage reports whether the concurrency depends on the pool's size.
func (p *ResolvedPool) IsPercentage() bool { return p.Concurrency.Type == intstr.String }

// validateConditions checks names (required, unique) and expressions (required).
func validateConditions(conds []Condition, path string, e *errs) {
	names := map[string]bool{}
	for i, c := range conds {
		cpath := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case c.Name == "":
			e.add(cpath+".name", "is required")
		case names[c.Name]:
			e.add(cpath+".name", "%q is used twice in this list", c.Name)
		}
		names[c.Name] = true
		if strings.TrimSpace(c.Expression) == "" {
			e.add(cpath+".expression", "is required")
		}
		if c.Message != "" && c.MessageExpression != "" {
			e.add(cpath+".messageExpression", "set message or messageExpression, not both")
		}
	}
}
