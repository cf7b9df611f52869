package alerts

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/rebootgate/rebootgate/engine/facts"
)

// Merge combines the alerts of Prometheus (ALERTS) and Alertmanager into one list.
//
// A Prometheus alert P and an Alertmanager alert A are the same alert when they have
// the same name and every label of P is on A with the same value. A may have more
// labels: Prometheus adds its external labels (cluster, prometheus, ...) to the alerts
// it sends to Alertmanager, and they are not in ALERTS.
//
//   - A Prometheus alert that matches Alertmanager alerts is reported once, as
//     Prometheus reports it (state firing or pending, its labels, source
//     "prometheus"), with Silenced set when every matching Alertmanager alert is
//     silenced or inhibited. If one of them is not (e.g. the same alert from another
//     Prometheus with different external labels), it is not silenced: in doubt, block.
//   - A Prometheus alert that Alertmanager does not hold (pending, or not yet sent) is
//     not silenced.
//   - An Alertmanager alert that no Prometheus alert matches (another Prometheus
//     server, or one that Prometheus resolved but Alertmanager still holds) is
//     reported as Alertmanager reports it (state firing, source "alertmanager").
//
// With one of the lists empty, Merge returns the other. The result is sorted by name,
// state, labels and source, so that equal inputs give equal outputs.
func Merge(prom, am []facts.Alert) []facts.Alert {
	out := make([]facts.Alert, 0, len(prom)+len(am))
	byName := make(map[string][]int, len(am))
	for i, a := range am {
		byName[a.Name] = append(byName[a.Name], i)
	}
	matched := make([]bool, len(am))
	for _, p := range prom {
		n, silenced := 0, true
		for _, i := range byName[p.Name] {
			if !subset(p.Labels, am[i].Labels) {
				continue
			}
			matched[i] = true
			n++
			silenced = silenced && am[i].Silenced
		}
		p.Silenced = n > 0 && silenced
		out = append(out, p)
	}
	for i, a := range am {
		if !matched[i] {
			out = append(out, a)
		}
	}
	sortAlerts(out)
	return out
}

// subset reports whether every label of small is in big with the same value.
func subset(small, big map[string]string) bool {
	for k, v := range small {
		if w, ok := big[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// sortAlerts orders alerts fully: name, state, labels, source.
func sortAlerts(alerts []facts.Alert) {
	slices.SortStableFunc(alerts, func(a, b facts.Alert) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		if c := strings.Compare(a.State, b.State); c != 0 {
			return c
		}
		if c := strings.Compare(labelKey(a.Labels), labelKey(b.Labels)); c != 0 {
			return c
		}
		return strings.Compare(a.Source, b.Source)
	})
}

// labelKey is a canonical form of a label set: sorted name="value" pairs.
func labelKey(labels map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(labels[k]))
		b.WriteByte(',')
	}
	return b.String()
}
