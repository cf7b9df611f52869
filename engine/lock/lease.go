package lock

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
)

const (
	// LabelPool marks every Lease of a pool; waiters watch with this selector.
	LabelPool = "rebootgate.io/pool"
	// AnnotationSlotValue records the slot-key value (e.g. the zone) of a
	// holder, for `rebootgate status` and for debugging.
	AnnotationSlotValue = "rebootgate.io/slot-value"

	keySuffixPrefix = "key-"
	keyHashLen      = 10 // hex digits of sha256: 40 bits, collisions irrelevant at zone counts
)

func leasePrefix(pool string) string { return "rebootgate-" + pool + "-" }

// SlotLeaseName is the name of slot i's Lease in pool.
func SlotLeaseName(pool string, i int) string { return leasePrefix(pool) + strconv.Itoa(i) }

// KeyLeaseName is the name of key Lease j (0 <= j < slotsPerKey) of one
// slot-key value. The value is hashed because keys such as zones may contain
// characters (upper case, dots, slashes) or lengths that Lease names do not
// allow. Lease 0 has the name the single per-value mutex always had, so agents
// of either version exclude each other during an upgrade.
func KeyLeaseName(pool, value string, j int) string {
	if j == 0 {
		return hashedLeaseName(pool, keySuffixPrefix, value)
	}
	return hashedLeaseName(pool, keySuffixPrefix, value+"\x00"+strconv.Itoa(j))
}

// hashedLeaseName is rebootgate-<pool>-<kind><hash of s>: a name for any s.
func hashedLeaseName(pool, kind, s string) string {
	sum := sha256.Sum256([]byte(s))
	return leasePrefix(pool) + kind + hex.EncodeToString(sum[:])[:keyHashLen]
}

// isHashedLease says whether name is a hashedLeaseName of pool and kind.
func isHashedLease(pool, kind, name string) bool {
	prefix := leasePrefix(pool) + kind
	return len(name) == len(prefix)+keyHashLen && name[:len(prefix)] == prefix
}

// slotIndex parses a slot Lease name of pool; ok is false for key Leases and
// for anything else.
func slotIndex(pool, name string) (int, bool) {
	rest, found := strings.CutPrefix(name, leasePrefix(pool))
	if !found || rest == "" || (len(rest) > 1 && rest[0] == '0') {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	if err != nil || i < 0 {
		return 0, false
	}
	return i, true
}

func holderOf(l *coordinationv1.Lease) string {
	if l == nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// renewedAt is when the holder last wrote the lease, by its own clock.
func renewedAt(l *coordinationv1.Lease) time.Time {
	switch {
	case l.Spec.RenewTime != nil:
		return l.Spec.RenewTime.Time
	case l.Spec.AcquireTime != nil:
		return l.Spec.AcquireTime.Time
	}
	return time.Time{}
}

func leaseDuration(l *coordinationv1.Lease) time.Duration {
	if l.Spec.LeaseDurationSeconds == nil {
		return 0
	}
	return time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
}

// expiresAt is renewTime + leaseDurationSeconds: the instant after which the
// holder itself no longer claims the lease. A held lease without times is
// malformed (we never write one) and counts as expired.
func expiresAt(l *coordinationv1.Lease) time.Time {
	r := renewedAt(l)
	if r.IsZero() {
		return time.Time{}
	}
	return r.Add(leaseDuration(l))
}
