package scheduletest

import "time"

// Zones are time zones with unusual transitions, for fuzz tests of window arithmetic:
// DST at midnight (Sao_Paulo, Havana, Tehran), half-hour DST (Lord_Howe), a skipped day
// (Apia), negative DST (Dublin), repeated Ramadan switches (Casablanca), a two-hour DST
// (Troll), odd offsets (Kolkata, Chatham, St_Johns) and the host's zone. Fuzz inputs
// pick one by index modulo the length, so entries are only ever appended.
var Zones = []string{
	"UTC", "America/Los_Angeles", "Europe/Berlin", "America/Sao_Paulo", "America/Havana",
	"Asia/Tehran", "Australia/Lord_Howe", "Pacific/Apia", "Europe/Dublin", "Africa/Casablanca",
	"Antarctica/Troll", "Asia/Kolkata", "Pacific/Chatham", "America/St_Johns", "Local",
}

// Instant maps any sec and nsec onto an instant from from to span seconds later: sec
// modulo span, nsec modulo one second, both made non-negative. Fuzz tests use it to
// keep their checks within years where they hold.
func Instant(sec, nsec int64, from time.Time, span int64) time.Time {
	s := sec % span
	if s < 0 {
		s += span
	}
	n := nsec % int64(time.Second)
	if n < 0 {
		n += int64(time.Second)
	}
	return time.Unix(from.Unix()+s, n)
}
