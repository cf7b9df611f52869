// Package scheduletest holds test data for the schedule package's tests and for the
// tests of packages built on it.
package scheduletest
