// Package input defines the document the Rego gate sees as `input` (and that CEL
// expressions see as typed variables), builds it from facts, and converts it to OPA's
// ast.Value directly. The static part (parameters from the config) is converted once per
// pool; only the facts are converted per decision, which keeps a decision cheap.
package input
