# Example custom policy: no reboot while a backup Job runs on the node.
#
# It joins the default gate's `deny` set because it uses the same package. In that
# package an operator's module may only add to `deny` (`deny contains msg if {...}`):
# helper rules belong in a package of their own, such as `package rebootgate.custom.backup`,
# and `deny` refers to them as `data.rebootgate.custom.backup.<rule>`. Load it with
# `rebootgate eval --policy examples/backup-job/backup.rego ...` or, in the agent, from a
# policy ConfigMap.
package rebootgate

# A backup Job's pod that is running, or about to (Pending), blocks the reboot: draining
# it would kill the backup halfway. Finished pods (Succeeded, Failed) do not block.
deny contains msg if {
	some pod in input.pods
	pod.ownerKind == "Job"
	pod.labels.backup == "true"
	pod.phase in {"Running", "Pending"}
	msg := sprintf("backup pod %s/%s of Job %s is %s", [pod.namespace, pod.name, pod.ownerName, pod.phase])
}
