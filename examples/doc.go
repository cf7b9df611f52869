// Package examples checks that every example under examples/ does what its README
// claims: each example's cases.yaml lists facts, a time and the expected decision.
package examples
