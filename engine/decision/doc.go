// Package decision is rebootgate's decision engine: facts and a time in, an explained
// decision out. It picks the node's pool by CEL selector, evaluates the pool's CEL
// conditions, the disruption budget and breakers, the back-offs recorded on the node
// (reboot loop, failures) and then the Rego gate, and collects every reason a reboot is
// not allowed.
// It does no I/O; everything expensive (CEL programs, the prepared Rego query, the
// pool's parameters as an OPA value) is built once in New.
package decision
