// Package pipeline carries one node through a reboot: cordon, drain, reboot, verify the
// new boot ID, wait for health, uncordon and release the slot. Its progress is recorded
// on the Node itself (annotations written in the same patch as the change they
// describe), so an agent that crashes or is killed by the reboot resumes from whatever
// phase it reached. A node cordoned by an admin is never uncordoned, and a failed drain
// uncordons before the slot is released — the order kured gets wrong.
package pipeline
