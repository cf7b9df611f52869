// Package nodestate is rebootgate's on-Node contract: every key rebootgate writes on
// a Node (annotations, labels), the Node conditions it sets and their reasons, the
// codec of the reboot lifecycle's [State] (annotations in, annotations and a merge
// patch out), and the schema of the decision annotation ([Decision]) with its readers.
//
// The agent writes these keys on its own Node (the only Node it may write); the lock,
// the disruption counts, the decision engine, the CLI (`status`, `eval`, `plan`) and
// the tests read them. Defining each key once here means a reader cannot drift from
// the writer, and an older agent's Node keeps decoding: keys, values and JSON field
// names never change without a migration.
//
// rebootgate writes no taint under its own prefix: the PreferNoSchedule taint it sets
// while a node waits (--prefer-no-schedule-taint) is the operator's key. The keys of
// rebootgate's Leases (pool label, waiter and slot-value annotations) are the lock's
// and live in package lock.
//
// It imports nothing from rebootgate, so every package may import it.
package nodestate
