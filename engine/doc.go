// Package engine is the root of rebootgate's decision engine. The work is split into
// small packages:
//
//   - facts: what is known about a node (Node, pods, alerts) and loaders for files;
//   - schedule: kured-compatible days, times and windows, cron windows and blackouts;
//   - nodeimage: the AKS node-image version label parser;
//   - config: the RebootGateConfig file, strictly parsed and validated;
//   - celeval: the one CEL environment used for pool selectors and conditions;
//   - input: the document the Rego gate sees, and its fast conversion to OPA values;
//   - policy: loading, compiling and testing Rego modules;
//   - decision: facts in, explained decision out, with no I/O and the time passed in.
package engine
