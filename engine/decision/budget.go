package decision

import (
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/facts"
	"github.com/rebootgate/rebootgate/engine/input"
)

// Reason sources of disruption budgets and circuit breakers.
const (
	SourceBudget  = "budget"
	SourceBreaker = "breaker"
)

// MaxSummaryAge is how long a reader trusts a node summary it has not seen change
// (the summarizer rewrites it at least every disruption heartbeat, and every write
// changes it).
const MaxSummaryAge = time.Minute

// MaxSummaryClockSkew is how far ahead of a reader's clock a summary's stamp may be
// and still be taken as the time it was written: the writer's and the reader's clocks
// differ a little. A stamp further ahead says nothing about the summary's age.
const MaxSummaryClockSkew = 5 * time.Second

// summaryState is the node summary as one decision sees it.
type summaryState struct {
	summary *disruption.Summary // nil when unknown
	err     error               // why it is unknown
}

// usableSummary checks that the gathered summary is there, fresh and complete.
func usableSummary(f *facts.Facts, now time.Time) summaryState {
	s, err := UsableSummary(f, now)
	return summaryState{summary: s, err: err}
}

// UsableSummary is the node summary of f if it may be trusted at now, or why not: the
// read failed, or SummaryUsable rejects it.
func UsableSummary(f *facts.Facts, now time.Time) (*disruption.Summary, error) {
	if f.SummaryErr != nil {
		return nil, f.SummaryErr
	}
	if err := SummaryUsable(f.Summary, f.SummarySeenAt, now); err != nil {
		return nil, err
	}
	return f.Summary, nil
}

// SummaryUsable says why a node summary must not be trusted at now (nil: it may be):
// missing, stale, or incomplete. seenAt is when the reader saw this summary appear, on
// the reader's own clock (see summary.Observer): its age is judged as a Lease's expiry
// is, so a summary that has not changed for MaxSummaryAge is stale whatever the stamp
// its writer put on it (a stamp in the future must not keep it fresh).
func SummaryUsable(s *disruption.Summary, seenAt, now time.Time) error {
	switch {
	case s == nil:
		return errors.New("no node summary was read")
	case seenAt.IsZero() || now.Sub(seenAt) > MaxSummaryAge:
		return fmt.Errorf("the node summary is stale: %s, more than %s ago (written by %s, stamped %s%s; is the summarizer running?)",
			seenSince(seenAt), MaxSummaryAge, s.Writer, s.ObservedAt.UTC().Format(time.RFC3339), ahead(s.ObservedAt, now))
	case len(s.Errors) > 0:
		return fmt.Errorf("the node summary is incomplete: %v", s.Errors)
	}
	return nil
}

// seenSince says since when the reader has seen the summary unchanged.
func seenSince(seenAt time.Time) string {
	if seenAt.IsZero() {
		return "this reader has not seen it change"
	}
	return "unchanged since this reader saw it appear at " + seenAt.UTC().Format(time.RFC3339)
}

// ahead notes a stamp further in the future than clock skew explains: the writer's
// clock is wrong, or someone else wrote the summary. (No amount: the message stays
// the same from one decision to the next while nothing changes.)
func ahead(stamp, now time.Time) string {
	if stamp.Sub(now) > MaxSummaryClockSkew {
		return ", in the future of this reader's clock"
	}
	return ""
}

// counts is the input form of a summary's counts.
func counts(c disruption.Counts) input.NodeCounts {
	c.Examples = nil // names are for messages; policies get the counts
	return input.NodeCounts{Known: true, Counts: c}
}

// disruptionReasons applies the pool's budget and the breakers. Without a usable
// summary they fail closed.
func (e *Engine) disruptionReasons(p *config.ResolvedPool, f *facts.Facts, st summaryState) []Reason {
	if !e.cfg.NeedsSummary(p) {
		return nil
	}
	if st.summary == nil {
		var out []Reason
		if p.CountOthers {
			out = append(out, Reason{Source: SourceBudget, Message: fmt.Sprintf(
				"the disruption budget of pool %s cannot be checked, so no reboot starts: %v", p.Name, st.err)})
		}
		if p.Breaker != nil || e.cfg.Breaker != nil {
			out = append(out, Reason{Source: SourceBreaker, Message: fmt.Sprintf(
				"the circuit breaker cannot be checked, so no reboot starts: %v", st.err)})
		}
		return out
	}
	self := disruption.Classify(f.Node, p.DisruptionTaints, false, disruption.InReboot(f.Node))
	pc := st.summary.Pool(p.Name)
	var out []Reason
	if p.Breaker != nil {
		if msg, open := breakerOpen(fmt.Sprintf("pool %s", p.Name), p.Breaker, pc, self, f.Node.Name); open {
			out = append(out, Reason{Source: SourceBreaker, Message: msg})
		}
	}
	if e.cfg.Breaker != nil {
		if msg, open := breakerOpen("the cluster", e.cfg.Breaker, st.summary.Cluster, self, f.Node.Name); open {
			out = append(out, Reason{Source: SourceBreaker, Message: msg})
		}
	}
	if p.CountOthers {
		others := OthersUnavailable(pc, self)
		if slots := p.Slots(pc.Nodes); others >= slots {
			out = append(out, Reason{Source: SourceBudget, Message: fmt.Sprintf(
				"the disruption budget of pool %s is used up: it allows %d unavailable node(s) and %d are unavailable for other reasons: %s",
				p.Name, slots, others, pc.Describe(f.Node.Name, true))})
		}
	}
	return out
}

// BudgetSlots is how many of the pool's slots rebootgate may hold, of slots by its
// concurrency, when pc counts the pool's nodes and self is the node asking: the nodes
// others made unavailable use slots up (countOthers), and holders plus them stay
// within the pool breaker's maxUnavailable.
func BudgetSlots(p *config.ResolvedPool, slots int, pc disruption.Counts, self *corev1.Node) int {
	others := OthersUnavailable(pc, disruption.Classify(self, p.DisruptionTaints, false, disruption.InReboot(self)))
	return SlotsWithin(p, slots, pc.Nodes, others)
}

// SlotsWithin is the rule of BudgetSlots on counts alone: of slots, what the pool's
// budget and breaker leave when others of its nodes are unavailable for reasons other
// than rebootgate (the forecast uses it too).
func SlotsWithin(p *config.ResolvedPool, slots, nodes, others int) int {
	if p.CountOthers {
		slots -= others
	}
	if p.Breaker != nil {
		slots = min(slots, config.MaxUnavailable(p.Breaker, nodes)-others)
	}
	return max(slots, 0)
}

// OthersUnavailable is how many of the pool's nodes other than this one are unavailable
// for reasons other than rebootgate: they use up the pool's budget.
func OthersUnavailable(pc disruption.Counts, self disruption.Status) int {
	others := pc.UnavailableOthers
	if self.Other() {
		others-- // this node takes a slot of its own when it reboots
	}
	return max(others, 0)
}

// breakerOpen says whether a new reboot of node would leave more than maxUnavailable
// of the counted nodes unavailable.
func breakerOpen(what string, maxUnavailable *intstr.IntOrString, c disruption.Counts, self disruption.Status, node string) (string, bool) {
	limit := config.MaxUnavailable(maxUnavailable, c.Nodes)
	after := c.Unavailable
	if !self.Unavailable() {
		after++ // this reboot makes one more
	}
	if after <= limit {
		return "", false
	}
	return fmt.Sprintf("the circuit breaker of %s is open: %d of its %d node(s) are unavailable and rebooting this node would make %d, above maxUnavailable %s (= %d): %s",
		what, c.Unavailable, c.Nodes, after, maxUnavailable.String(), limit, c.Describe(node, false)), true
}
