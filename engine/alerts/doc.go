// Package alerts gathers the cluster's alerts for the gate, from Prometheus, from
// Alertmanager, or from both.
//
//   - Prometheus: the instant query ALERTS at /api/v1/query, as kured does. It has
//     firing and pending alerts but knows nothing of silences.
//   - Alertmanager: /api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true,
//     which lists every alert it holds with its silenced/inhibited status, so that the
//     gate (not Alertmanager's filter) decides what a silenced alert means.
//
// Both responses are parsed by facts.ParseAlerts. When both sources are configured
// they are merged (see [Merge]): a Prometheus alert that Alertmanager also holds
// takes its silence from Alertmanager. Any error is returned: the caller puts it into
// facts.Facts.AlertsErr and the gate fails closed.
//
// A [Gatherer] caches its last answer for a short TTL (15 s by default) and shares one
// request among concurrent callers, so that a burst of decisions on a node costs one
// query. The agent only asks when a decision needs alerts; an idle node sends none.
//
// A [Resolver] decides, purely, which nodes each alert blocks for one node's decision
// (its facts.AlertScope): from the pool's node labels, the node's own name and addresses,
// and the node index of the summarizer's node summary ([Index]). An alert blocks only
// the nodes its labels really resolve to; one resolving to no node, or one that cannot be
// resolved without a fresh index, blocks every node.
package alerts
