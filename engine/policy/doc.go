// Package policy loads and compiles the Rego gate: the embedded default policy plus
// operators' modules (files, directories or ConfigMap data). The decision query
// `data.rebootgate.deny` is prepared once and evaluated per decision with a pre-built
// input value. It also runs Rego unit tests with the embedded OPA, giving the same
// verdicts as stock `opa test`.
package policy
