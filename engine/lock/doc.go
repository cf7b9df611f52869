// Package lock is rebootgate's per-pool reboot semaphore: at most `slots`
// nodes of a pool may hold a slot at a time, and a node reboots only while it
// holds one.
//
// Slots are coordination.k8s.io/v1 Leases in one namespace, named
// rebootgate-<pool>-<i> for slot i and labelled rebootgate.io/pool=<pool>.
// The holder identity is the node name. Every write is a Create or a
// resourceVersion-guarded Update, so the API server, not this package,
// decides who wins a race: two nodes can never both hold one slot, and a
// 409 Conflict (or AlreadyExists) only means that another node was faster.
//
// Design for clusters of thousands of nodes:
//
//   - No polling. A waiting node runs one informer on the pool's Leases
//     (label-selected, one namespace, served from the API server's watch
//     cache) and re-plans from its local cache on every event. The only
//     timers are a random jitter before an attempt (so that waiters woken by
//     the same event do not stampede) and one timer for the earliest moment
//     a foreign Lease becomes reclaimable, because expiry produces no event.
//     A node that does not wait has no watch at all.
//   - Expiry is judged on the waiter's clock, never the holder's (as
//     client-go's leader election does): a Semaphore records, per foreign
//     Lease, when it first saw the Lease's current resourceVersion. A Lease
//     is suspect leaseDurationSeconds/2 after that and expired
//     leaseDurationSeconds+Skew after it. A holder whose clock lags keeps
//     its slot, since each renewal is a new version; and a Lease seen for
//     the first time starts its full duration then, so nothing is reclaimed
//     on first sight. The record is shared by every call on the Semaphore
//     and holds only the pool's current foreign-held Leases.
//   - A Lease is reclaimable when it is free (no holder), when it is suspect
//     and its holder node no longer exists, or when it has expired and its
//     holder node is gone or idle. A holder is busy while its Node carries a
//     non-empty rebootgate.io/phase annotation (cordoning, draining,
//     rebooting, verifying): its slot stays taken however long it is down,
//     so a node that does not come back halts the pool's rollout instead of
//     letting the next node reboot. [Config.OnStuckHolder] is told once per
//     holding, so that people are. The holder is asked about (one GET of its
//     Node from the watch cache, [Config.HolderStatus]) when its Lease turns
//     suspect, again when it expires, and then at most once per TTL while it
//     stays busy, so a waiter notices when it finishes or disappears. An
//     error counts as busy: the slot stays taken.
//   - A Lease with index >= the current slot count is never taken, and live
//     holders of such slots still count against the limit: when concurrency
//     shrinks, the extra holders drain naturally. (That count is read from
//     the cache, so two waiters may each fill a slot below the new limit
//     while an old holder above it finishes: the total never exceeds the
//     larger of the old and new counts, and each slot always has at most one
//     holder.) The count is re-read on
//     every attempt; a count that changes without any Lease changing (a
//     percentage of a pool that grew) is picked up on [Semaphore.Recheck].
//   - Waiters queue, first come first served, and a hand-off costs O(1)
//     writes however many nodes wait. A node that wants a slot first creates a
//     ticket Lease rebootgate-<pool>-q-<hash> (no holder; its node in the
//     rebootgate.io/waiter annotation), even when a slot is free, so nodes
//     that start together take turns instead of racing; tickets are ordered
//     by creationTimestamp, then queued-at time, then name. A waiter claims
//     only once its own ticket is in its watch's cache: a watch delivers in
//     commit order, so every ticket ahead of it is known. Only the first k
//     waiters, for k
//     claimable slots, try to claim (each its own slot, so they do not
//     collide), right after a last gate check ([BeforeClaim]); the others
//     only watch. A waiter that gets a slot deletes its ticket; one whose
//     gate closes gives its place up ([Semaphore.Leave]). A waiter that is
//     a holder already, or whose slot value has all its key Leases taken,
//     does not hold up the queue, and neither does one that lets its turn pass: after
//     QueueGrace it is passed over, and a TTL later the waiter claiming
//     behind it deletes its ticket. A restarted agent keeps its place (it
//     touches its ticket). Holders of stalled slots are asked about only by
//     waiters near the head. Tickets order the claims; they never decide
//     safety, which rests on the slot Leases alone.
//   - Jitter applies only to a waiter that could not queue (its ticket was
//     refused): unqueued waiters woken by one event spread their attempts.
//   - With a slot value (for example the node's zone), a node first takes
//     one of the value's SlotsPerKey key Leases rebootgate-<pool>-key-<hash>
//     (the hash of the value, and of the value and j for key Lease j > 0)
//     and only then a slot, and gives them up in the reverse order. That
//     makes "at most SlotsPerKey holders per value" a property of the API
//     server's optimistic concurrency rather than a check-then-act over a
//     list: each key Lease has one holder. Key Lease 0 has the name of the
//     single per-value mutex of earlier versions, so old and new agents
//     exclude each other. Live key Leases of the value beyond the first
//     SlotsPerKey (left by a larger count) count against it, as live slots
//     beyond the slot count do, and key and slot expire and are reclaimed
//     under the same rules.
//
// A holding has a second record besides its Leases: while its node is
// mid-reboot, the Node carries the label rebootgate.io/holds-slot=<lease> and,
// with a slot value, rebootgate.io/holds-key=<hash of the pool's value>.
// Right before claiming, a waiter lists (from the watch cache) the Nodes with
// the slot's label and those with its value's; if one is still mid-reboot on
// the slot, the slot is not taken, and the value's recorded users count with
// the live holders of its key Leases against SlotsPerKey. So a slot or key
// Lease deleted while its holder is down never lets one node too many in.
// And a node that finds, when its agent comes back mid-reboot, that its slot
// Lease is gone keeps its key Lease until the reboot has ended
// ([Semaphore.Resume], [Semaphore.ReleaseKeys]). This costs one or two Lists
// per claim attempt, not per event.
//
// A [Held] slot is renewed every TTL/3. A renewal that fails is logged and
// retried; if the lease cannot be renewed before it would expire (minus the
// skew allowance), or if another node has taken it over or it was deleted,
// [Held.Lost] is closed so that the pipeline can stop safely. [Held.Confirm]
// renews at once and says whether the slot is held at this moment: call it
// right before each disruptive step. A holder marks its Node with the phase
// annotation before its first disruptive step, so that its slot stays taken
// while it is down; [Semaphore.Resume] picks the slot up again after the
// restart. [Held.Release] clears the holder at once, which wakes the next
// waiter through its watch (kured #791).
package lock
