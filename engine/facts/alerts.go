package facts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
)

// promResponse covers the two Prometheus API answers that carry alerts: an instant query
// of the ALERTS series (/api/v1/query) and the alerts endpoint (/api/v1/alerts).
type promResponse struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   *struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
		} `json:"result"`
		Alerts []struct {
			Labels map[string]string `json:"labels"`
			State  string            `json:"state"`
		} `json:"alerts"`
	} `json:"data"`
}

// alertmanagerAlert is one element of Alertmanager's /api/v2/alerts answer.
type alertmanagerAlert struct {
	Labels map[string]string `json:"labels"`
	Status *struct {
		State       string   `json:"state"`
		SilencedBy  []string `json:"silencedBy"`
		InhibitedBy []string `json:"inhibitedBy"`
	} `json:"status"`
}

// ParseAlerts reads alerts from a Prometheus /api/v1/query response for ALERTS, a
// Prometheus /api/v1/alerts response, or an Alertmanager /api/v2/alerts response. The
// format is detected from the document's shape.
func ParseAlerts(data []byte) ([]Alert, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("empty document: want a Prometheus /api/v1/query response or an Alertmanager /api/v2/alerts response")
	}
	switch trimmed[0] {
	case '[':
		return parseAlertmanager(trimmed)
	case '{':
		return parsePrometheus(trimmed)
	default:
		return nil, errors.New("not JSON: want a Prometheus /api/v1/query response or an Alertmanager /api/v2/alerts response")
	}
}

func parseAlertmanager(data []byte) ([]Alert, error) {
	var raw []alertmanagerAlert
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("alertmanager /api/v2/alerts response: %w", err)
	}
	alerts := make([]Alert, 0, len(raw))
	for i, a := range raw {
		name := a.Labels["alertname"]
		if name == "" {
			return nil, fmt.Errorf("alertmanager /api/v2/alerts response: [%d].labels.alertname is missing", i)
		}
		silenced := false
		if a.Status != nil {
			// Inhibited alerts are suppressed by another alert, which Alertmanager treats
			// like a silence: nobody is paged for them.
			silenced = len(a.Status.SilencedBy) > 0 || len(a.Status.InhibitedBy) > 0
		}
		// Alertmanager only ever holds firing alerts; Prometheus keeps pending ones.
		alerts = append(alerts, Alert{Name: name, State: "firing", Labels: a.Labels, Silenced: silenced, Source: SourceAlertmanager})
	}
	SortAlerts(alerts)
	return alerts, nil
}

func parsePrometheus(data []byte) ([]Alert, error) {
	var resp promResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, fmt.Errorf("prometheus response: %w", err)
	}
	if resp.Status == "error" {
		return nil, fmt.Errorf("prometheus response: status error: %s", resp.Error)
	}
	if resp.Data == nil {
		return nil, errors.New("prometheus response: no data field: want a /api/v1/query response for ALERTS or an Alertmanager /api/v2/alerts array")
	}
	var alerts []Alert
	switch {
	case resp.Data.ResultType == "vector":
		for i, s := range resp.Data.Result {
			name := s.Metric["alertname"]
			if name == "" {
				return nil, fmt.Errorf("prometheus response: data.result[%d].metric.alertname is missing: is the query ALERTS?", i)
			}
			alerts = append(alerts, Alert{Name: name, State: s.Metric["alertstate"], Labels: withoutMeta(s.Metric), Source: SourcePrometheus})
		}
	case resp.Data.ResultType != "":
		return nil, fmt.Errorf("prometheus response: data.resultType %q: want vector (an instant query of ALERTS)", resp.Data.ResultType)
	default:
		for i, a := range resp.Data.Alerts {
			name := a.Labels["alertname"]
			if name == "" {
				return nil, fmt.Errorf("prometheus response: data.alerts[%d].labels.alertname is missing", i)
			}
			alerts = append(alerts, Alert{Name: name, State: a.State, Labels: a.Labels, Source: SourcePrometheus})
		}
	}
	SortAlerts(alerts)
	return alerts, nil
}

// withoutMeta drops the series name and alert state, which are not alert labels.
func withoutMeta(metric map[string]string) map[string]string {
	labels := make(map[string]string, len(metric))
	for k, v := range metric {
		if k == "__name__" || k == "alertstate" {
			continue
		}
		labels[k] = v
	}
	return labels
}

// SortAlerts orders alerts by name then state, so that decisions are stable.
func SortAlerts(alerts []Alert) {
	sort.SliceStable(alerts, func(i, j int) bool {
		if alerts[i].Name != alerts[j].Name {
			return alerts[i].Name < alerts[j].Name
		}
		return alerts[i].State < alerts[j].State
	})
}
