# Example custom policy: no reboot while a backup Job runs on the node.
#
# It joins the default gate's `deny` set because it uses the same package. Load it with
# `rebootgate eval --policy examples/backup-job/backup.rego ...` or, in the agent, from a
# policy ConfigMap.
package rebootgate

# A backup Job's pod that is running, or about to (Pending), blocks the reboot: draining
# it would kill the backup halfway. Finished pods (Succeeded, Failed) do not block.
deny contains msg if {
	some pod in input.pods
	pod.ownerKind == "Job"
	pod.labels.backup == "true"
	pod.phase in backup_running_phases
	msg := sprintf("backup pod %s/%s of Job %s is %s", [pod.namespace, pod.name, pod.ownerName, pod.phase])
}

backup_running_phases := {"Running", "Pending"}
