package notify

import (
	"testing"
	"time"

	"github.com/rebootgate/rebootgate/engine/decision"
)

func TestBlockedTooLong(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	at := func(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }
	denied := decision.Decision{Reasons: []decision.Reason{{Source: "policy", Message: "no"}}}
	allowed := decision.Decision{Allowed: true, Reasons: []decision.Reason{}}

	b := NewBlockedTooLong(24 * time.Hour)
	steps := []struct {
		now       time.Time
		required  bool
		d         decision.Decision
		fire      bool
		wantSince time.Time
	}{
		{at(0), false, denied, false, time.Time{}}, // no reboot needed: not blocked, whatever the gate says
		{at(1), true, denied, false, at(1)},        // the stretch starts
		{at(12), true, denied, false, at(1)},
		{at(24), true, denied, false, at(1)},         // 23h
		{at(25), true, denied, true, at(1)},          // 24h: fires
		{at(26), true, denied, false, at(1)},         // once per stretch
		{at(100), true, denied, false, at(1)},        // still once
		{at(101), true, allowed, false, time.Time{}}, // allowed: the stretch ends
		{at(102), true, denied, false, at(102)},      // a new stretch
		{at(126), true, denied, true, at(102)},       // fires again, exactly at the threshold
		{at(127), false, denied, false, time.Time{}}, // no longer required: ends
		{at(128), true, denied, false, at(128)},
		{at(140), true, denied, false, at(128)},
		{at(130), true, denied, false, at(128)}, // a clock going backwards does not fire
		{at(152), true, denied, true, at(128)},
	}
	for i, s := range steps {
		if got := b.Observe(s.now, s.required, s.d); got != s.fire {
			t.Errorf("step %d (%s): fire = %v, want %v", i, s.now.Sub(t0), got, s.fire)
		}
		if got := b.Since(); !got.Equal(s.wantSince) {
			t.Errorf("step %d: Since = %v, want %v", i, got, s.wantSince)
		}
	}

	off := NewBlockedTooLong(0)
	for h := range 1000 {
		if off.Observe(at(h), true, denied) {
			t.Fatal("a zero threshold fired")
		}
	}
	if !off.Since().Equal(at(0)) {
		t.Errorf("disabled tracker Since = %v, want %v", off.Since(), at(0))
	}
}
