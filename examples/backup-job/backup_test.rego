# Tests for backup.rego, run together with the default gate:
#   opa test -v policies examples/backup-job
package backup_test

# A complete input on which the default gate allows the reboot (see policies/INPUT.md).
allowed_input := {
	"node": {
		"name": "node-1", "labels": {}, "annotations": {}, "taints": [],
		"unschedulable": false, "ready": true,
		"nodeInfo": {
			"kernelVersion": "", "osImage": "", "bootID": "", "kubeletVersion": "",
			"containerRuntimeVersion": "", "architecture": "", "operatingSystem": "",
			"machineID": "", "systemUUID": "",
		},
		"conditions": [],
		"image": {
			"label": "kubernetes.azure.com/node-image-version", "value": "", "parsed": false,
			"error": "", "family": "", "sku": "", "os": "", "generation": "", "arch": "",
			"runtime": "", "build": "", "date": "", "patch": 0,
		},
	},
	"pool": {"name": "default", "concurrency": "1", "conditions": []},
	"pods": [],
	"alerts": [],
	"errors": {"alerts": ""},
	"time": {"rfc3339": "2026-11-23T10:00:00Z", "ns": time.parse_rfc3339_ns("2026-11-23T10:00:00Z")},
	"schedule": {"windows": [], "nextAllowed": "2026-11-23T10:00:00Z"},
	"params": {
		"windows": [], "blackouts": [], "podSelectors": [],
		"alerts": {"filterRegexp": "", "filterMatchOnly": false, "firingOnly": false, "blockSilenced": false},
		"nodeImage": {"families": [], "minDate": ""},
		"holdAnnotation": "rebootgate.io/hold",
		"custom": {},
	},
}

pod(name, phase, owner_kind, labels) := {
	"namespace": "backups", "name": name, "labels": labels, "phase": phase,
	"ownerKind": owner_kind, "ownerName": "nightly",
}

# The whole gate's verdict (default gate plus this policy) with these pods on the node.
deny_with_pods(pods) := d if {
	d := data.rebootgate.deny with input as object.union(allowed_input, {"pods": pods})
}

test_no_pods_allowed if {
	count(deny_with_pods([])) == 0
}

test_running_backup_job_blocks if {
	deny_with_pods([pod("nightly-x7k2p", "Running", "Job", {"backup": "true"})]) == {
		"backup pod backups/nightly-x7k2p of Job nightly is Running",
	}
}

test_pending_backup_job_blocks if {
	deny_with_pods([pod("nightly-x7k2p", "Pending", "Job", {"backup": "true"})]) == {
		"backup pod backups/nightly-x7k2p of Job nightly is Pending",
	}
}

test_finished_backup_job_does_not_block if {
	count(deny_with_pods([pod("a", "Succeeded", "Job", {"backup": "true"})])) == 0
	count(deny_with_pods([pod("b", "Failed", "Job", {"backup": "true"})])) == 0
}

test_other_pods_do_not_block if {
	count(deny_with_pods([pod("a", "Running", "Job", {"backup": "false"})])) == 0
	count(deny_with_pods([pod("b", "Running", "Job", {})])) == 0
	count(deny_with_pods([pod("c", "Running", "CronJob", {"backup": "true"})])) == 0
	count(deny_with_pods([pod("d", "Running", "ReplicaSet", {"backup": "true"})])) == 0
}

test_each_backup_pod_named if {
	deny_with_pods([
		pod("a", "Running", "Job", {"backup": "true"}),
		pod("b", "Pending", "Job", {"backup": "true"}),
		pod("c", "Running", "ReplicaSet", {"app": "web"}),
	]) == {
		"backup pod backups/a of Job nightly is Running",
		"backup pod backups/b of Job nightly is Pending",
	}
}

# The policy adds to the default gate's reasons; it does not replace them.
test_joins_default_gate if {
	inp := object.union(allowed_input, {
		"pods": [pod("a", "Running", "Job", {"backup": "true"})],
		"node": {"annotations": {"rebootgate.io/hold": "migration"}},
	})
	data.rebootgate.deny with input as inp == {
		"backup pod backups/a of Job nightly is Running",
		`node is on hold: annotation rebootgate.io/hold="migration"`,
	}
}
