// Package schedule decides when a node may reboot.
//
// It is a faithful port of kured's maintenance-window semantics (reboot days,
// start and end time of day, time zone; see [Daily]) extended with cron
// windows in the style of Karpenter disruption budgets ([Cron]), blackout
// periods ([Blackout]) and a search for the next permitted instant
// ([NextAllowed]).
//
// The package is pure: it performs no I/O and never reads the clock. Every
// decision takes the instant to judge as a parameter. Time-zone data is
// embedded (time/tzdata), so results do not depend on the host's zoneinfo.
//
// kured compatibility notes:
//   - Day names are matched case-insensitively (su, sun, sunday … sa, sat,
//     saturday) or given as numbers 0–6 with 0 = Sunday; see [ParseDays].
//   - Times of day accept exactly the Go layouts kured tries, in order:
//     15:04, 15:04:05, 03:04pm, 15, 03pm, 3pm; see [ParseTimeOfDay].
//   - A daily window is inclusive at both ends, the end being extended to the
//     last nanosecond of its second. A window whose start is after its end
//     crosses midnight. The weekday tested is always the weekday of the
//     instant being judged, in the window's zone.
package schedule

import _ "time/tzdata" // embed the IANA database so zones resolve identically everywhere
