// Package celeval holds rebootgate's CEL environment. Pool selectors see `node` and
// `now`; pool conditions also see `pods`, `alerts` and `pool`. Variables are declared with
// their Go types (the same structs the Rego input is built from), so an expression such as
// `node.lables` is rejected when the config is loaded, not when a node is about to reboot.
// Kubernetes' CEL libraries (semver, quantity, regex, lists, ...) are available.
package celeval
