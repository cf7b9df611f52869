# The default rebootgate gate.
#
# `deny` is a set of human-readable reasons why this node must not reboot now.
# A node may reboot only when every CEL condition of its pool is true (checked in Go)
# and `deny` is empty. Operators' own modules in `package rebootgate` add to the same set,
# and may define nothing else in this package: every other rule here is the gate's own.
#
# The input document is described in INPUT.md and input.schema.json. Anything Rego cannot
# compute (cron, the next opening, a daily window's bounds on a date in its zone,
# node-image parsing) arrives precomputed from Go.
package rebootgate

# ---------------------------------------------------------------------------
# Reboot windows: no windows = any time; several windows = their union.

deny contains msg if {
	not in_window
	msg := concat("", ["outside every reboot window", next_allowed_suffix])
}

# nextAllowed is "" when Go found no allowed instant within a year.
next_allowed_suffix := sprintf(" (next allowed %s)", [input.schedule.nextAllowed]) if {
	input.schedule.nextAllowed != ""
} else := ""

in_window if count(input.params.windows) == 0

in_window if {
	some i, w in input.params.windows
	window_open(i, w)
}

# Daily window with kured's semantics: the weekday is that of the instant being checked,
# in the window's zone. Empty days never open (as kured). Go supplies the day's bounds
# (input.schedule.windows[i].startNs and endNs): the start and end times on the checked
# instant's local date, resolved by Go's time.Date as in kured (which decides a time in a
# skipped or repeated hour), the end extended to the last nanosecond of its second.
window_open(i, w) if {
	w.kind == "daily"
	time.weekday([input.time.ns, w.timeZone]) in w.days
	some sw in input.schedule.windows
	sw.index == i
	daily_open(w, sw.startNs, sw.endNs)
}

# Cron windows: Go evaluates the schedule, including `days` (which filter the weekday of
# each opening, so a run may continue past midnight), and tells us whether one is open.
window_open(i, w) if {
	w.kind == "cron"
	some sw in input.schedule.windows
	sw.index == i
	sw.active == true
}

# kured's test, step for step, so that it also holds on daylight-saving change days. An
# ordinary window is inclusive at both ends (start == end is one second).
daily_open(w, start, end) if {
	not crosses_midnight(w)
	start <= input.time.ns
	input.time.ns <= end
}

# A window crossing midnight: before today's end it opened at today's start less 24 hours
# (of elapsed time, not one calendar day)...
daily_open(w, start, end) if {
	crosses_midnight(w)
	input.time.ns < end
	start - day_ns <= input.time.ns
}

# ...otherwise it opens at today's start and closes at today's end plus 24 hours.
daily_open(w, start, end) if {
	crosses_midnight(w)
	input.time.ns >= end
	start <= input.time.ns
	input.time.ns <= end + day_ns
}

day_ns := 86400000000000

# kured compares the parsed times, a fraction of a second included ("17:00:00.5" is after
# "17:00:00"), so Go says whether a window crosses midnight; an input written by hand may
# leave crossesMidnight out.
crosses_midnight(w) if w.crossesMidnight

crosses_midnight(w) if w.startSeconds > w.endSeconds

# ---------------------------------------------------------------------------
# Blackouts: [start, end) in nanoseconds.

deny contains msg if {
	some b in input.params.blackouts
	b.startNs <= input.time.ns
	input.time.ns < b.endNs
	msg := blackout_message(b)
}

blackout_message(b) := sprintf("blackout %q until %s", [b.name, b.end]) if {
	b.name != ""
} else := sprintf("blackout from %s until %s", [b.start, b.end])

# ---------------------------------------------------------------------------
# Blocking pods: a pod that has not finished and matches every requirement of any one
# selector. Selectors are iterated first so that an empty list costs nothing.

deny contains msg if {
	some sel in input.params.podSelectors
	some pod in candidate_pods(sel)
	not pod.phase in finished_phases
	selector_matches(sel, object.get(pod, "labels", {}))
	msg := sprintf("pod %s/%s matches blocking selector %q", [pod.namespace, pod.name, sel.selector])
}

finished_phases := {"Succeeded", "Failed"}

# The pods worth the full check against sel. Most selectors have an In requirement
# (app=blocker) that most pods fail, so pre-filtering on it costs one lookup per pod and
# keeps the full check (several function calls) for the few candidates. The key and
# value are bound outside the lookup on purpose: that is several times cheaper in OPA.
candidate_pods(sel) := [pod | some v in r.values; pod := input.pods[_]; pod.labels[key] == v] if {
	r := first_in_requirement(sel)
	key := r.key
} else := input.pods

first_in_requirement(sel) := [r | some r in sel.requirements; r.operator == "In"][0]

# An empty requirement list matches every pod, as an empty Kubernetes selector does.
selector_matches(sel, labels) if {
	every r in sel.requirements {
		requirement_matches(r, labels)
	}
}

requirement_matches(r, labels) if {
	r.operator == "In"
	label_in(labels, r)
}

# NotIn (and !=) match a pod without the key.
requirement_matches(r, labels) if {
	r.operator == "NotIn"
	not label_in(labels, r)
}

# A helper, because `not labels[k] in vs` is undefined (not true) when k is missing.
label_in(labels, r) if labels[r.key] in r.values

requirement_matches(r, labels) if {
	r.operator == "Exists"
	has_key(labels, r.key)
}

requirement_matches(r, labels) if {
	r.operator == "DoesNotExist"
	not has_key(labels, r.key)
}

# Gt and Lt need an integer label value; anything else does not match.
requirement_matches(r, labels) if {
	r.operator == "Gt"
	integer(labels[r.key]) > integer(r.values[0])
}

requirement_matches(r, labels) if {
	r.operator == "Lt"
	integer(labels[r.key]) < integer(r.values[0])
}

has_key(obj, key) if _ = obj[key]

# strconv.ParseInt-style integers; undefined for anything else.
integer(v) := to_number(trim_prefix(v, "+")) if regex.match(`^[+-]?[0-9]+$`, v)

# Go validates selectors, so this only fires if the two disagree: fail closed, loudly.
deny contains msg if {
	some sel in input.params.podSelectors
	some r in sel.requirements
	not r.operator in selector_operators
	msg := sprintf("blocking selector %q has unsupported operator %q", [sel.selector, r.operator])
}

selector_operators := {"In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"}

# ---------------------------------------------------------------------------
# Alerts, with kured's filters plus Alertmanager silences, scoped to nodes by their node
# labels. Each blocking alert gets its own message.

deny contains msg if {
	some a in counted_alerts
	not a.silenced
	where := alert_scope(a)
	msg := sprintf("alert %s is %s%s", [a.name, a.state, where])
}

deny contains msg if {
	input.params.alerts.blockSilenced
	some a in counted_alerts
	a.silenced
	where := alert_scope(a)
	msg := sprintf("alert %s is %s%s (silenced, but blockSilenced is set)", [a.name, a.state, where])
}

# alert_scope(a) is "" for an alert that blocks every node, " on this node (label=value)"
# for one whose node labels name this node, and undefined (the alert does not block this
# node) for one whose node labels name only other nodes. Go resolves the labels
# (params.alerts.nodeLabels against this node and the cluster's node index) into
# a.scope; an unresolved one says why it blocks every node. An alert without a scope,
# or with a kind this gate does not know, blocks (fail closed).
alert_scope(a) := "" if not alert_scoped(a)

alert_scope(a) := sprintf(" on this node (%s=%s)", [a.scope.label, a.scope.value]) if a.scope.kind == "node"

alert_scope(a) := sprintf(" (%s)", [a.scope.reason]) if a.scope.kind == "unresolved"

alert_scoped(a) if a.scope.kind in {"node", "otherNodes", "unresolved"}

# The alerts that pass kured's filters. Without filters (the usual case) that is every
# alert, at no cost; the per-alert checks only run when a filter is set.
counted_alerts := input.alerts if {
	not input.params.alerts.firingOnly
	input.params.alerts.filterRegexp == ""
} else := [a |
	some a in input.alerts
	state_counts(a)
	name_counts(a)
]

# kured: firingOnly ignores every state but "firing" (Go reports Alertmanager's alerts,
# which are all firing, as "firing").
state_counts(_) if not input.params.alerts.firingOnly

state_counts(a) if a.state == "firing"

name_counts(a) if not name_skipped(a)

# kured skips an alert when filter.MatchString(name) != filterMatchOnly. An invalid
# regexp (Go rejects it first) makes regex.match undefined, so nothing is skipped: fail
# closed. (This must stay a separate rule: `not regex.match(...) != x` would not be.)
name_skipped(a) if {
	input.params.alerts.filterRegexp != ""
	regex.match(input.params.alerts.filterRegexp, a.name) != input.params.alerts.filterMatchOnly
}

# The alert gatherer failed: we cannot know, so fail closed.
deny contains msg if {
	input.errors.alerts != ""
	msg := sprintf("alerts could not be checked: %s", [input.errors.alerts])
}

# ---------------------------------------------------------------------------
# Node-image constraints. An absent or unparseable label fails any constraint that is set.

image := input.node.image

image_constrained if count(input.params.nodeImage.families) > 0

image_constrained if input.params.nodeImage.minDate != ""

deny contains msg if {
	image_constrained
	not image.parsed
	msg := unparsed_image_message
}

unparsed_image_message := sprintf("node image label %s is absent, but node-image constraints are set", [image.label]) if {
	image.value == ""
} else := sprintf("node image %s could not be parsed (%s), but node-image constraints are set", [image.value, image.error])

deny contains msg if {
	image.parsed
	families := input.params.nodeImage.families
	count(families) > 0
	not image.family in families
	msg := sprintf("node image %s family %q not in allowed families %v", [image.value, image.family, families])
}

# Dates are YYYY-MM-DD, so string order is date order. An image without a date fails.
deny contains msg if {
	image.parsed
	min_date := input.params.nodeImage.minDate
	min_date != ""
	image.date != ""
	image.date < min_date
	msg := sprintf("node image %s is dated %s, before the minimum %s", [image.value, image.date, min_date])
}

deny contains msg if {
	image.parsed
	min_date := input.params.nodeImage.minDate
	min_date != ""
	image.date == ""
	msg := sprintf("node image %s carries no build date, but the minimum date is %s", [image.value, min_date])
}

# ---------------------------------------------------------------------------
# The hold annotation: a node carrying it never reboots, whatever its value.

deny contains msg if {
	key := input.params.holdAnnotation
	key != ""
	value := input.node.annotations[key]
	msg := sprintf("node is on hold: annotation %s=%q", [key, value])
}
