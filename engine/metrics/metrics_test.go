package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func TestNamesPassPromlint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	// Touch every vector so that it is gathered.
	m.RebootRequired.WithLabelValues("n").Set(1)
	m.SentinelErrors.WithLabelValues("n").Inc()
	m.GateDecision.WithLabelValues("n", "p").Set(0)
	m.GateDecisions.WithLabelValues("n", "p", "blocked").Inc()
	m.Phase.WithLabelValues("n", "draining").Set(1)
	m.SlotsHeld.WithLabelValues("n", "p").Set(1)
	m.DrainDuration.WithLabelValues("n", "p").Observe(3)
	m.RebootDuration.WithLabelValues("n", "p").Observe(30)
	m.TotalDuration.WithLabelValues("n", "p").Observe(60)
	m.Errors.WithLabelValues("n", "drain").Inc()
	m.PolicyStatus.WithLabelValues("n").Set(1)
	m.PolicyLoadErrors.WithLabelValues("n").Inc()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) != 12 {
		t.Errorf("gathered %d families, want 12", len(families))
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), Namespace+"_") {
			t.Errorf("%s lacks the %s_ prefix", f.GetName(), Namespace)
		}
	}
}
