// Package agent is rebootgate's per-node agent. It watches only its own Node and the
// pods bound to it, detects the need for a reboot, asks the decision engine whether the
// reboot may happen, reports each decision (Event, annotation, metric, log), and — when
// allowed and not in dry-run — takes a slot of the node's pool and runs the reboot
// pipeline (engine/pipeline decides each step, engine/agent/nodeops carries it out).
// Everything is event-driven: an idle agent makes no periodic API requests.
package agent
