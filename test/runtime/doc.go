// Package runtime runs the chart's pod spec for real: the image `make image` built,
// unpacked, under runc, with the agent container translated from `helm template` output
// into an OCI runtime spec (user, capabilities, read-only root, mounts, env, args) the way
// containerd's CRI plugin would, against the test bed's kube-apiserver.
//
// The node is a stand-in host: this test binary run as PID 1 of a new PID and mount
// namespace (StartStandIn). The chart's hostPID joins that PID namespace, so the agent's
// PID 1 is the stand-in, which on SIGRTMIN+5 records a reboot and hands over to the node
// simulator (test/testbed), which gives the Node a new boot ID and starts the pod again.
// Its mount namespace is the host file system with the simulator's node folder on /run
// (the chart's hostPath /var/run) and a fake systemctl that the command method reaches
// through nsenter. The pod (the simulator's "agent" process) is this test binary again as
// the pod launcher (Plan): a network namespace of its own, with the apiserver forwarded
// into it and the container ports forwarded out, emptyDirs, an overlay root per container,
// and `runc run`. The summarizer's Deployment pod runs the same way without a stand-in
// host (it uses no host path or namespace), its config ConfigMap projected into a folder.
//
// The suite needs root and runc; `make test-runtime` builds the images and runs it on the
// test bed (REBOOTGATE_RUNTIME and REBOOTGATE_E2E). Without root or runc it is skipped,
// except under CI=true, where it fails.
package runtime
