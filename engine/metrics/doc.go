// Package metrics defines the agent's Prometheus metrics in one place, registered on a
// registry the caller owns (no global state), so every package reports through the same
// names and the names can be checked with promlint in one test.
package metrics
