// Package config reads the RebootGateConfig file. Parsing is strict (an unknown key is an
// error) and validation collects every problem, each naming its field path and the bad
// value. A validated config is normalised into the structures the decision engine uses
// (parsed windows, label selectors, defaults applied); CEL and Rego are compiled by the
// decision package.
package config
