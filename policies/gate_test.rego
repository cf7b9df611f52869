# Tests for the default gate (gate.rego). Run: opa test -v --coverage policies
#
# Every test starts from `base`, an input on which the gate allows the reboot, and
# changes only what it is about with object.union (objects merge, arrays are replaced).
package rebootgate_test

# ---------------------------------------------------------------------------
# Fixture and helpers

base := {
	"node": {
		"name": "aks-system-0",
		"labels": {"kubernetes.azure.com/node-image-version": "AKSUbuntu-2204gen2containerd-202509.23.0"},
		"annotations": {"other": "x"},
		"taints": [],
		"unschedulable": false,
		"ready": true,
		"nodeInfo": {
			"kernelVersion": "5.15.0", "osImage": "Ubuntu 22.04", "bootID": "b1", "kubeletVersion": "v1.33.2",
			"containerRuntimeVersion": "containerd://1.7", "architecture": "amd64", "operatingSystem": "linux",
			"machineID": "m1", "systemUUID": "u1",
		},
		"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": ""}],
		"addresses": [
			{"type": "InternalIP", "address": "10.224.0.4"},
			{"type": "InternalIP", "address": "fd00:10:224::4"},
			{"type": "Hostname", "address": "aks-system-0.internal"},
		],
		"image": {
			"label": "kubernetes.azure.com/node-image-version",
			"value": "AKSUbuntu-2204gen2containerd-202509.23.0",
			"parsed": true, "error": "",
			"family": "AKSUbuntu", "sku": "2204gen2containerd", "os": "2204", "generation": "gen2", "arch": "",
			"runtime": "containerd", "build": "202509.23.0", "date": "2025-09-23", "patch": 0,
		},
	},
	"pool": {"name": "default", "concurrency": "1", "conditions": []},
	"pods": [{
		"namespace": "default", "name": "web-1", "labels": {"app": "web", "tier": "web"},
		"phase": "Running", "ownerKind": "ReplicaSet", "ownerName": "web-5d9c",
	}],
	"alerts": [],
	"errors": {"alerts": ""},
	"time": at("2026-11-23T10:00:00-08:00"), # a Monday
	"schedule": {"windows": [], "nextAllowed": "2026-11-23T10:00:00-08:00"},
	"params": {
		"windows": [],
		"blackouts": [],
		"podSelectors": [],
		"alerts": {
			"filterRegexp": "", "filterMatchOnly": false, "firingOnly": false, "blockSilenced": false,
			"nodeLabels": ["node", "instance", "kubernetes_node"],
		},
		"nodeImage": {"families": [], "minDate": ""},
		"holdAnnotation": "rebootgate.io/hold",
		"custom": {},
	},
}

# deny_for is the gate's verdict on base changed by patch.
deny_for(patch) := d if {
	d := data.rebootgate.deny with input as object.union(base, patch)
}

at(ts) := {"rfc3339": ts, "ns": time.parse_rfc3339_ns(ts)}

# "HH:MM:SS" to seconds after midnight, as Go normalises startTime/endTime.
seconds(hms) := (((to_number(p[0]) * 60) + to_number(p[1])) * 60) + to_number(p[2]) if p := split(hms, ":")

daily(days, start, end, tz) := {
	"kind": "daily", "days": days, "timeZone": tz,
	"startTime": start, "endTime": end, "startSeconds": seconds(start), "endSeconds": seconds(end),
}

cron(days, tz) := {
	"kind": "cron", "schedule": "0 2 * * sat", "duration": "4h0m0s", "durationSeconds": 14400,
	"days": days, "timeZone": tz,
}

cron_state(i, active) := {
	"index": i, "kind": "cron", "active": active,
	"openedAt": "", "closesAt": "", "nextOpening": "2026-11-28T02:00:00+01:00",
}

daily_state(i) := {"index": i, "kind": "daily", "nextOpening": "2026-11-24T09:00:00-08:00"}

# The schedule entry Go writes for daily window w at ts, with the window's bounds on ts's
# local date. Computed here from the wall clock, which is right on days without an offset
# change in w's zone; the daylight-saving tests give Go's bounds explicitly.
daily_state_at(i, w, ts) := object.union(daily_state(i), {
	"startNs": midnight + (w.startSeconds * s_ns),
	"endNs": ((midnight + (w.endSeconds * s_ns)) + s_ns) - 1,
}) if {
	ns := time.parse_rfc3339_ns(ts)
	[h, m, s] := time.clock([ns, w.timeZone])
	midnight := (ns - (ns % s_ns)) - (((((h * 60) + m) * 60) + s) * s_ns)
}

s_ns := 1000000000

# One daily window checked at ts, with nextAllowed "" so messages carry no parenthesis.
daily_at(w, ts) := daily_with(w, ts, daily_state_at(0, w, ts))

# The same with the bounds Go computes on a daylight-saving change day.
daily_bounds_at(w, ts, start, end) := daily_with(w, ts, object.union(daily_state(0), {
	"startNs": time.parse_rfc3339_ns(start),
	"endNs": time.parse_rfc3339_ns(end),
}))

daily_with(w, ts, state) := deny_for({
	"time": at(ts),
	"params": {"windows": [w]},
	"schedule": {"windows": [state], "nextAllowed": ""},
})

closed := {"outside every reboot window"}

weekdays := ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]

# ---------------------------------------------------------------------------
# The base fixture itself

test_base_is_allowed if {
	count(deny_for({})) == 0
}

# ---------------------------------------------------------------------------
# Daily windows (kured semantics)

# kured's README example: a Thursday night is outside a Mon/Tue window crossing midnight...
test_kured_example_denied if {
	w := daily(["Monday", "Tuesday"], "21:00:00", "05:00:00", "America/Los_Angeles")
	daily_at(w, "2019-04-04T00:49:00-07:00") == closed
}

# ...and inside once Thursday is allowed: the weekday is that of the instant checked.
test_kured_example_thursday_allowed if {
	w := daily(["Monday", "Tuesday", "Thursday"], "21:00:00", "05:00:00", "America/Los_Angeles")
	count(daily_at(w, "2019-04-04T00:49:00-07:00")) == 0
}

# The window opened on Monday night, but Tuesday 01:00 is checked as a Tuesday.
test_crossing_midnight_uses_weekday_of_instant if {
	w := daily(["Monday"], "21:00:00", "05:00:00", "UTC")
	daily_at(w, "2026-11-24T01:00:00Z") == closed
	count(daily_at(w, "2026-11-23T23:00:00Z")) == 0
}

test_crossing_midnight_edges if {
	w := daily(weekdays, "21:00:00", "05:00:00", "America/Los_Angeles")
	count(daily_at(w, "2019-04-04T21:00:00-07:00")) == 0
	count(daily_at(w, "2019-04-04T05:00:00.999-07:00")) == 0
	daily_at(w, "2019-04-04T05:00:01-07:00") == closed
	daily_at(w, "2019-04-04T20:59:59-07:00") == closed
	daily_at(w, "2019-04-04T12:00:00-07:00") == closed
}

test_daily_inside_and_outside if {
	w := daily(weekdays, "09:00:00", "17:00:00", "America/Los_Angeles")
	count(daily_at(w, "2019-04-04T12:00:00-07:00")) == 0
	daily_at(w, "2019-04-04T11:59:00Z") == closed # 04:59 in Los Angeles
	daily_at(w, "2019-04-05T08:59:59-07:00") == closed
	daily_at(w, "2019-04-06T12:00:00-07:00") == closed # Saturday
}

# Inclusive at both ends; the end covers its whole second.
test_daily_edges_inclusive if {
	w := daily(weekdays, "09:00:00", "17:00:00", "America/Los_Angeles")
	count(daily_at(w, "2019-04-05T09:00:00-07:00")) == 0
	count(daily_at(w, "2019-04-05T17:00:00.999999999-07:00")) == 0
	daily_at(w, "2019-04-05T17:00:01-07:00") == closed
}

test_start_equals_end_is_one_second if {
	w := daily(weekdays, "12:00:00", "12:00:00", "UTC")
	count(daily_at(w, "2026-11-23T12:00:00.5Z")) == 0
	daily_at(w, "2026-11-23T11:59:59Z") == closed
	daily_at(w, "2026-11-23T12:00:01Z") == closed
}

# The weekday and the clock are read in the window's zone, not UTC.
test_daily_time_zone if {
	w := daily(["Sunday"], "23:00:00", "23:59:59", "America/Los_Angeles")
	count(daily_at(w, "2026-11-23T07:30:00Z")) == 0 # Sunday 23:30 in Los Angeles
	daily_at(daily(["Sunday"], "23:00:00", "23:59:59", "UTC"), "2026-11-23T07:30:00Z") == closed
}

# kured: no reboot days at all means the window never opens.
test_daily_empty_days_never_open if {
	daily_at(daily([], "00:00:00", "23:59:59", "UTC"), "2026-11-28T12:00:00Z") == closed
}

# A start later than the end by a fraction of a second ("17:00:00.5" to "17:00:00") crosses
# midnight in kured: Go says so in crossesMidnight, and the window covers the whole day.
test_crosses_midnight_by_a_fraction_of_a_second if {
	w := object.union(daily(weekdays, "17:00:00", "17:00:00", "UTC"), {"crossesMidnight": true})
	count(daily_at(w, "2026-11-23T12:00:00Z")) == 0
	count(daily_at(w, "2026-11-23T17:00:00.5Z")) == 0
	daily_at(daily(weekdays, "17:00:00", "17:00:00", "UTC"), "2026-11-23T12:00:00Z") == closed
}

# kured's quirk: at the very last nanosecond of its end second a midnight-crossing window
# is not "before the end", so it is judged against the next start and is closed.
test_crossing_midnight_last_nanosecond if {
	w := daily(weekdays, "21:00:00", "05:00:00", "UTC")
	count(daily_at(w, "2026-11-24T05:00:00.999999998Z")) == 0
	daily_at(w, "2026-11-24T05:00:00.999999999Z") == closed
}

# Without the bounds from Go a daily window never opens (fail closed).
test_daily_without_bounds_is_closed if {
	w := daily(weekdays, "09:00:00", "17:00:00", "UTC")
	count(daily_at(w, "2026-11-23T12:00:00Z")) == 0
	daily_with(w, "2026-11-23T12:00:00Z", daily_state(0)) == closed
}

# Daylight-saving change days, with the bounds Go's time.Date gives, as in kured (Go's
# engine/decision fuzz test checks the whole path against engine/schedule at random
# instants and windows).
every_day := ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]

# Europe/Berlin springs forward at 02:00 on 2026-03-29: a 02:30 start is 03:30, so a window
# 02:30-03:15 does not open that day; the next day it does.
test_dst_skipped_start_berlin if {
	w := daily(every_day, "02:30:00", "03:15:00", "Europe/Berlin")
	daily_bounds_at(w, "2026-03-29T03:10:00+02:00", "2026-03-29T03:30:00+02:00", "2026-03-29T03:15:00.999999999+02:00") == closed
	count(daily_at(w, "2026-03-30T03:10:00+02:00")) == 0
}

# Europe/Berlin falls back at 03:00 on 2026-10-25: an end of 02:30 is the second 02:30 (CET),
# so 00:00-02:30 is open through the first pass of 02:30-03:00 (CEST) as well.
test_dst_repeated_end_berlin if {
	w := daily(every_day, "00:00:00", "02:30:00", "Europe/Berlin")
	count(daily_bounds_at(w, "2026-10-25T02:45:00+02:00", "2026-10-25T00:00:00+02:00", "2026-10-25T02:30:00.999999999+01:00")) == 0
	daily_bounds_at(w, "2026-10-25T02:45:00+01:00", "2026-10-25T00:00:00+02:00", "2026-10-25T02:30:00.999999999+01:00") == closed
}

# On the 25-hour day, today's start less 24 hours is 00:30, not yesterday's 23:30...
test_dst_crossing_midnight_start_moves_berlin if {
	w := daily(every_day, "23:30:00", "04:00:00", "Europe/Berlin")
	daily_bounds_at(w, "2026-10-25T00:15:00+02:00", "2026-10-25T23:30:00+01:00", "2026-10-25T04:00:00.999999999+01:00") == closed
	count(daily_bounds_at(w, "2026-10-25T00:45:00+02:00", "2026-10-25T23:30:00+01:00", "2026-10-25T04:00:00.999999999+01:00")) == 0
}

# ...and today's end plus 24 hours is 23:30 the same day, not 00:30 the next.
test_dst_crossing_midnight_end_moves_berlin if {
	w := daily(every_day, "22:00:00", "00:30:00", "Europe/Berlin")
	count(daily_bounds_at(w, "2026-10-25T23:15:00+01:00", "2026-10-25T22:00:00+01:00", "2026-10-25T00:30:00.999999999+02:00")) == 0
	daily_bounds_at(w, "2026-10-25T23:45:00+01:00", "2026-10-25T22:00:00+01:00", "2026-10-25T00:30:00.999999999+02:00") == closed
}

# West of UTC a skipped start comes out earlier: America/New_York springs forward at 02:00
# on 2026-03-08, and a 02:30 start is 01:30 EST.
test_dst_skipped_start_new_york if {
	w := daily(every_day, "02:30:00", "03:30:00", "America/New_York")
	count(daily_bounds_at(w, "2026-03-08T01:45:00-05:00", "2026-03-08T01:30:00-05:00", "2026-03-08T03:30:00.999999999-04:00")) == 0
	daily_bounds_at(w, "2026-03-08T01:15:00-05:00", "2026-03-08T01:30:00-05:00", "2026-03-08T03:30:00.999999999-04:00") == closed
}

# Australia/Lord_Howe moves by 30 minutes (02:00 to 02:30 on 2026-10-04): 02:15-02:20 is
# 02:45-02:50 that day.
test_dst_half_hour_lord_howe if {
	w := daily(every_day, "02:15:00", "02:20:00", "Australia/Lord_Howe")
	count(daily_bounds_at(w, "2026-10-04T02:47:00+11:00", "2026-10-04T02:45:00+11:00", "2026-10-04T02:50:00.999999999+11:00")) == 0
	daily_bounds_at(w, "2026-10-04T02:44:00+11:00", "2026-10-04T02:45:00+11:00", "2026-10-04T02:50:00.999999999+11:00") == closed
}

test_next_allowed_in_message if {
	deny_for({
		"params": {"windows": [daily(["Sunday"], "09:00:00", "17:00:00", "America/Los_Angeles")]},
		"schedule": {"windows": [daily_state(0)], "nextAllowed": "2026-11-29T09:00:00-08:00"},
	}) == {"outside every reboot window (next allowed 2026-11-29T09:00:00-08:00)"}
}

# ---------------------------------------------------------------------------
# Cron windows and the union of windows

cron_with(days, active) := deny_for({
	"params": {"windows": [cron(days, "Europe/Berlin")]},
	"schedule": {"windows": [cron_state(0, active)], "nextAllowed": ""},
})

test_cron_active_allows if {
	count(cron_with([], true)) == 0
}

test_cron_inactive_denies if {
	cron_with([], false) == closed
}

# Go applies a cron window's days to the weekday of each opening, so `active` is the
# whole answer: a Saturday-only run still open on Monday (base time) stays open.
test_cron_days_not_rechecked if {
	count(cron_with(["Saturday"], true)) == 0
	cron_with(["Monday"], false) == closed
}

# The schedule entry is found by its index, not by position.
test_cron_state_matched_by_index if {
	deny_for({
		"params": {"windows": [
			daily(["Sunday"], "09:00:00", "10:00:00", "UTC"),
			cron([], "UTC"),
		]},
		"schedule": {"windows": [cron_state(1, true), daily_state(0)], "nextAllowed": ""},
	}) == set()
	deny_for({
		"params": {"windows": [cron([], "UTC")]},
		"schedule": {"windows": [cron_state(1, true)], "nextAllowed": ""},
	}) == closed
}

union_with(daily_open, cron_active) := deny_for({
	"params": {"windows": [
		daily(weekdays, "09:00:00", "17:00:00", "America/Los_Angeles"),
		cron([], "Europe/Berlin"),
	]},
	"schedule": {
		"windows": [
			daily_state_at(0, daily(weekdays, "09:00:00", "17:00:00", "America/Los_Angeles"), daily_open),
			cron_state(1, cron_active),
		],
		"nextAllowed": "",
	},
	"time": at(daily_open),
})

test_union_of_windows if {
	count(union_with("2026-11-23T10:00:00-08:00", false)) == 0 # daily open
	count(union_with("2026-11-23T20:00:00-08:00", true)) == 0 # cron open
	union_with("2026-11-23T20:00:00-08:00", false) == closed # neither
}

test_unknown_window_kind_is_closed if {
	deny_for({
		"params": {"windows": [{"kind": "monthly", "days": [], "timeZone": "UTC"}]},
		"schedule": {"windows": [], "nextAllowed": ""},
	}) == closed
}

# ---------------------------------------------------------------------------
# Blackouts: [start, end)

holidays := {
	"name": "holidays",
	"start": "2026-12-24T00:00:00+01:00", "end": "2026-12-27T00:00:00+01:00",
	"startNs": time.parse_rfc3339_ns("2026-12-24T00:00:00+01:00"),
	"endNs": time.parse_rfc3339_ns("2026-12-27T00:00:00+01:00"),
}

blackout_at(b, ts) := deny_for({"params": {"blackouts": [b]}, "time": at(ts)})

test_blackout_inside_denies if {
	blackout_at(holidays, "2026-12-25T12:00:00Z") == {`blackout "holidays" until 2026-12-27T00:00:00+01:00`}
}

test_blackout_is_half_open if {
	blackout_at(holidays, "2026-12-24T00:00:00+01:00") == {`blackout "holidays" until 2026-12-27T00:00:00+01:00`}
	count(blackout_at(holidays, "2026-12-27T00:00:00+01:00")) == 0
	count(blackout_at(holidays, "2026-12-23T23:59:59+01:00")) == 0
}

test_unnamed_blackout_message if {
	b := object.union(holidays, {"name": ""})
	blackout_at(b, "2026-12-25T12:00:00Z") == {"blackout from 2026-12-24T00:00:00+01:00 until 2026-12-27T00:00:00+01:00"}
}

# ---------------------------------------------------------------------------
# Blocking pods

selector(text, reqs) := {"selector": text, "requirements": reqs}

req(key, op, values) := {"key": key, "operator": op, "values": values}

pod(name, phase, labels) := {
	"namespace": "default", "name": name, "labels": labels,
	"phase": phase, "ownerKind": "Job", "ownerName": "backup",
}

pods_deny(selectors, pods) := deny_for({"params": {"podSelectors": selectors}, "pods": pods})

# Does a Running pod with these labels match a selector with this one requirement?
blocks(r, labels) if count(pods_deny([selector("s", [r])], [pod("p", "Running", labels)])) == 1

test_pod_matching_selector_blocks if {
	pods_deny(
		[selector("app=blocker", [req("app", "In", ["blocker"])])],
		[pod("backup-1", "Running", {"app": "blocker"}), pod("web-2", "Running", {"app": "web"})],
	) == {`pod default/backup-1 matches blocking selector "app=blocker"`}
}

test_pod_phases if {
	sel := [selector("app=blocker", [req("app", "In", ["blocker"])])]
	count(pods_deny(sel, [pod("p", "Pending", {"app": "blocker"})])) == 1
	count(pods_deny(sel, [pod("p", "Unknown", {"app": "blocker"})])) == 1
	count(pods_deny(sel, [pod("p", "Succeeded", {"app": "blocker"})])) == 0
	count(pods_deny(sel, [pod("p", "Failed", {"app": "blocker"})])) == 0
}

test_operator_in if {
	blocks(req("app", "In", ["a", "b"]), {"app": "b"})
	not blocks(req("app", "In", ["a", "b"]), {"app": "c"})
	not blocks(req("app", "In", ["a"]), {})
}

test_operator_not_in if {
	blocks(req("app", "NotIn", ["a"]), {"app": "b"})
	blocks(req("app", "NotIn", ["a"]), {}) # a missing key matches
	not blocks(req("app", "NotIn", ["a"]), {"app": "a"})
}

test_operator_exists if {
	blocks(req("app", "Exists", []), {"app": ""})
	not blocks(req("app", "Exists", []), {"other": "x"})
}

test_operator_does_not_exist if {
	blocks(req("app", "DoesNotExist", []), {"other": "x"})
	not blocks(req("app", "DoesNotExist", []), {"app": "a"})
}

test_operator_gt if {
	blocks(req("n", "Gt", ["5"]), {"n": "6"})
	blocks(req("n", "Gt", ["-1"]), {"n": "0"})
	not blocks(req("n", "Gt", ["5"]), {"n": "5"})
	not blocks(req("n", "Gt", ["5"]), {"n": "6.5"}) # not an integer
	not blocks(req("n", "Gt", ["5"]), {"n": "six"})
	not blocks(req("n", "Gt", ["5"]), {})
}

test_operator_lt if {
	blocks(req("n", "Lt", ["+5"]), {"n": "4"})
	not blocks(req("n", "Lt", ["5"]), {"n": "5"})
	not blocks(req("n", "Lt", ["5"]), {"n": "x"})
}

# Every requirement of one selector must match (AND).
test_selector_requires_all if {
	sel := selector("app=blocker,tier notin (web)", [req("app", "In", ["blocker"]), req("tier", "NotIn", ["web"])])
	count(pods_deny([sel], [pod("p", "Running", {"app": "blocker"})])) == 1
	count(pods_deny([sel], [pod("p", "Running", {"app": "blocker", "tier": "db"})])) == 1
	count(pods_deny([sel], [pod("p", "Running", {"app": "blocker", "tier": "web"})])) == 0
}

# Any one selector blocks (OR); each matching pair is named.
test_selectors_are_alternatives if {
	pods_deny(
		[selector("app=a", [req("app", "In", ["a"])]), selector("app", [req("app", "Exists", [])])],
		[pod("p1", "Running", {"app": "a"}), pod("p2", "Running", {"app": "b"})],
	) == {
		`pod default/p1 matches blocking selector "app=a"`,
		`pod default/p1 matches blocking selector "app"`,
		`pod default/p2 matches blocking selector "app"`,
	}
}

test_empty_selector_matches_every_pod if {
	pods_deny([selector("", [])], [pod("p", "Running", {})]) == {`pod default/p matches blocking selector ""`}
}

test_pod_without_labels_field if {
	p := object.remove(pod("p", "Running", {}), ["labels"])
	count(pods_deny([selector("!app", [req("app", "DoesNotExist", [])])], [p])) == 1
}

test_unsupported_operator_fails_closed if {
	pods_deny([selector("app ~ x", [req("app", "Like", ["x"])])], [pod("p", "Running", {"app": "x"})]) == {
		`blocking selector "app ~ x" has unsupported operator "Like"`,
	}
}

# ---------------------------------------------------------------------------
# Alerts

alert(name, state, silenced) := {
	"name": name, "state": state, "labels": {"alertname": name},
	"silenced": silenced, "source": "prometheus",
}

alert_params(overrides) := object.union(base.params.alerts, overrides)

alerts_deny(alerts, overrides) := deny_for({"alerts": alerts, "params": {"alerts": alert_params(overrides)}})

test_each_alert_named if {
	alerts_deny([alert("HighLoad", "firing", false), alert("DiskFull", "pending", false)], {}) == {
		"alert HighLoad is firing",
		"alert DiskFull is pending",
	}
}

test_same_alert_twice_one_message if {
	alerts_deny([alert("HighLoad", "firing", false), alert("HighLoad", "firing", false)], {}) == {"alert HighLoad is firing"}
}

test_firing_only_ignores_pending if {
	alerts := [alert("HighLoad", "firing", false), alert("DiskFull", "pending", false)]
	alerts_deny(alerts, {"firingOnly": true}) == {"alert HighLoad is firing"}
}

# Alertmanager's alerts arrive as "firing" and so still block with firingOnly.
test_firing_only_keeps_alertmanager_alerts if {
	am := object.union(alert("Watchdog", "firing", false), {"source": "alertmanager"})
	alerts_deny([am], {"firingOnly": true}) == {"alert Watchdog is firing"}
}

test_filter_regexp_ignores_matching if {
	alerts := [alert("HighLoad", "firing", false), alert("DiskFull", "firing", false)]
	alerts_deny(alerts, {"filterRegexp": "^High"}) == {"alert DiskFull is firing"}
}

test_filter_match_only_keeps_matching if {
	alerts := [alert("HighLoad", "firing", false), alert("DiskFull", "firing", false)]
	alerts_deny(alerts, {"filterRegexp": "^High", "filterMatchOnly": true}) == {"alert HighLoad is firing"}
}

# filterMatchOnly without a regexp filters nothing (kured: no regexp, no filter).
test_match_only_without_regexp if {
	alerts_deny([alert("HighLoad", "firing", false)], {"filterMatchOnly": true}) == {"alert HighLoad is firing"}
}

# An invalid regexp (Go rejects it first) must not let alerts through.
test_invalid_regexp_fails_closed if {
	alerts_deny([alert("HighLoad", "firing", false)], {"filterRegexp": "("}) == {"alert HighLoad is firing"}
	alerts_deny([alert("HighLoad", "firing", false)], {"filterRegexp": "(", "filterMatchOnly": true}) == {"alert HighLoad is firing"}
}

test_silenced_alert_ignored if {
	count(alerts_deny([alert("HighLoad", "firing", true)], {})) == 0
}

test_block_silenced if {
	alerts_deny([alert("HighLoad", "firing", true)], {"blockSilenced": true}) == {
		"alert HighLoad is firing (silenced, but blockSilenced is set)",
	}
}

# Node-scoped alerts. Go resolves the node labels into a.scope (engine/alerts, with its
# own tests); the gate follows the scope.

scoped(name, kind, label, value, reason) := object.union(alert(name, "firing", false), {
	"labels": {"alertname": name, label: value},
	"scope": {"kind": kind, "label": label, "value": value, "nodes": [], "reason": reason},
})

test_alert_on_another_node_does_not_block if {
	count(alerts_deny([scoped("NodeDown", "otherNodes", "node", "aks-system-1", "")], {})) == 0
	count(alerts_deny([scoped("NodeDown", "otherNodes", "instance", "10.224.0.5:9100", "")], {})) == 0
}

test_alert_on_this_node_blocks_naming_it if {
	alerts_deny([scoped("NodeDown", "node", "node", "aks-system-0", "")], {}) == {"alert NodeDown is firing on this node (node=aks-system-0)"}
	alerts_deny([scoped("NodeDown", "node", "instance", "10.224.0.4:9100", "")], {}) == {"alert NodeDown is firing on this node (instance=10.224.0.4:9100)"}
}

test_cluster_wide_alert_blocks_every_node if {
	alerts_deny([scoped("NodeDown", "cluster", "", "", "")], {}) == {"alert NodeDown is firing"}
}

# An instance that resolves to no node (a pod's address), or cannot be resolved without
# the node index, blocks every node, saying why.
test_unresolved_alert_blocks_saying_why if {
	why := "instance=1.2.3.4:8080 names no node of the cluster (no node has that name or address), so it blocks every node"
	alerts_deny([scoped("PodCrashing", "unresolved", "instance", "1.2.3.4:8080", why)], {}) == {sprintf("alert PodCrashing is firing (%s)", [why])}
}

# An alert without a scope (an input written by hand, or before scopes existed), or with
# a kind the gate does not know, blocks every node rather than none.
test_alert_without_known_scope_blocks if {
	alerts_deny([labelled("NodeDown", {"node": "aks-system-1"})], {}) == {"alert NodeDown is firing"}
	alerts_deny([scoped("NodeDown", "elsewhere", "node", "aks-system-1", "")], {}) == {"alert NodeDown is firing"}
}

labelled(name, labels) := object.union(alert(name, "firing", false), {"labels": labels})

# Scoping runs after kured's filters and silences, which stay as they were.
test_scoped_alert_filters_and_silences if {
	here := scoped("NodeDown", "node", "node", "aks-system-0", "")
	count(alerts_deny([object.union(here, {"state": "pending"})], {"firingOnly": true})) == 0
	count(alerts_deny([here], {"filterRegexp": "^Node"})) == 0
	silenced := object.union(here, {"silenced": true})
	count(alerts_deny([silenced], {})) == 0
	alerts_deny([silenced], {"blockSilenced": true}) == {"alert NodeDown is firing on this node (node=aks-system-0) (silenced, but blockSilenced is set)"}
	silenced_elsewhere := object.union(scoped("NodeDown", "otherNodes", "node", "aks-system-1", ""), {"silenced": true})
	count(alerts_deny([silenced_elsewhere], {"blockSilenced": true})) == 0
}

test_alert_gatherer_error_fails_closed if {
	deny_for({"errors": {"alerts": "query ALERTS: connection refused"}}) == {"alerts could not be checked: query ALERTS: connection refused"}
}

# ---------------------------------------------------------------------------
# Node image

image_deny(image, constraints) := deny_for({
	"node": {"image": object.union(base.node.image, image)},
	"params": {"nodeImage": object.union(base.params.nodeImage, constraints)},
})

unparsed := {
	"value": "", "parsed": false, "error": "", "family": "", "sku": "", "os": "",
	"generation": "", "runtime": "", "build": "", "date": "",
}

test_image_families if {
	count(image_deny({}, {"families": ["AKSAzureLinux", "AKSUbuntu"]})) == 0
	image_deny({}, {"families": ["AKSAzureLinux", "Mariner"]}) == {
		`node image AKSUbuntu-2204gen2containerd-202509.23.0 family "AKSUbuntu" not in allowed families ["AKSAzureLinux", "Mariner"]`,
	}
}

test_image_min_date if {
	count(image_deny({}, {"minDate": "2025-09-23"})) == 0
	image_deny({}, {"minDate": "2025-10-01"}) == {
		"node image AKSUbuntu-2204gen2containerd-202509.23.0 is dated 2025-09-23, before the minimum 2025-10-01",
	}
}

test_image_without_date if {
	image_deny({"value": "AKSWindows-23H2-gen2", "build": "", "date": ""}, {"minDate": "2025-01-01"}) == {
		"node image AKSWindows-23H2-gen2 carries no build date, but the minimum date is 2025-01-01",
	}
	count(image_deny({"value": "AKSWindows-23H2-gen2", "build": "", "date": ""}, {})) == 0
}

test_image_label_absent if {
	image_deny(unparsed, {"minDate": "2025-01-01"}) == {
		"node image label kubernetes.azure.com/node-image-version is absent, but node-image constraints are set",
	}
	image_deny(unparsed, {"families": ["AKSUbuntu"]}) == {
		"node image label kubernetes.azure.com/node-image-version is absent, but node-image constraints are set",
	}
	count(image_deny(unparsed, {})) == 0
}

test_image_unparseable if {
	bad := object.union(unparsed, {"value": "custom-image", "error": `no "-" separated build`})
	image_deny(bad, {"families": ["AKSUbuntu"]}) == {
		`node image custom-image could not be parsed (no "-" separated build), but node-image constraints are set`,
	}
}

# ---------------------------------------------------------------------------
# Hold annotation

test_hold_annotation_denies if {
	deny_for({"node": {"annotations": {"rebootgate.io/hold": "kernel bisect, ask bob"}}}) == {
		`node is on hold: annotation rebootgate.io/hold="kernel bisect, ask bob"`,
	}
	deny_for({"node": {"annotations": {"rebootgate.io/hold": ""}}}) == {`node is on hold: annotation rebootgate.io/hold=""`}
}

test_hold_annotation_disabled if {
	count(deny_for({
		"node": {"annotations": {"rebootgate.io/hold": "x"}},
		"params": {"holdAnnotation": ""},
	})) == 0
}

# ---------------------------------------------------------------------------
# Everything at once: each check reports independently.

test_all_reasons_together if {
	deny_for({
		"node": {"annotations": {"rebootgate.io/hold": "yes"}},
		"pods": [pod("backup-1", "Running", {"app": "blocker"})],
		"alerts": [alert("HighLoad", "firing", false)],
		"errors": {"alerts": "timeout"},
		"time": at("2026-12-25T12:00:00Z"),
		"schedule": {"windows": [cron_state(0, false)], "nextAllowed": "2026-12-27T02:00:00+01:00"},
		"params": {
			"windows": [cron([], "Europe/Berlin")],
			"blackouts": [holidays],
			"podSelectors": [selector("app=blocker", [req("app", "In", ["blocker"])])],
			"nodeImage": {"families": ["AKSAzureLinux"], "minDate": "2026-01-01"},
		},
	}) == {
		"outside every reboot window (next allowed 2026-12-27T02:00:00+01:00)",
		`blackout "holidays" until 2026-12-27T00:00:00+01:00`,
		`pod default/backup-1 matches blocking selector "app=blocker"`,
		"alert HighLoad is firing",
		"alerts could not be checked: timeout",
		`node image AKSUbuntu-2204gen2containerd-202509.23.0 family "AKSUbuntu" not in allowed families ["AKSAzureLinux"]`,
		"node image AKSUbuntu-2204gen2containerd-202509.23.0 is dated 2025-09-23, before the minimum 2026-01-01",
		`node is on hold: annotation rebootgate.io/hold="yes"`,
	}
}
