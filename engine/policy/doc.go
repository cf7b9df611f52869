// Package policy loads and compiles the Rego gate: the embedded default policy plus
// operators' modules (files, directories or ConfigMap data). The decision query
// `data.rebootgate.deny` is prepared once and evaluated per decision with a pre-built
// input value, under a deadline (an evaluation that runs out of time denies). It also
// runs Rego unit tests with the embedded OPA, giving the same verdicts as stock
// `opa test`.
//
// Operators' modules are isolated from the default gate: they can only add to the deny
// set (`deny contains msg if {...}` in package rebootgate; helper rules in a package of
// their own), so they can never open a window or drop a default denial, and no module
// can call a built-in that does I/O (http.send, net.lookup_ip_addr, opa.runtime, the
// JSON-schema built-ins). Both are enforced when the modules are compiled, for the agent,
// `rebootgate eval` and `rebootgate policy test` alike.
package policy
