// Package nodeops is the agent's hands on its own Node and host: the [Executor] that
// carries out the steps [pipeline.Next] chooses (cordon, drain, reboot request,
// uncordon, each recording the new state on the Node in the same patch, and the
// Node's Events), the [KubectlDrainer] that evicts the node's pods through
// k8s.io/kubectl/pkg/drain, and the rebooters ([CommandRebooter], [SignalRebooter])
// that ask the host to reboot.
//
// It holds the lifecycle's I/O, so that engine/pipeline stays pure: importing the
// transition table does not pull in client-go's clientset or kubectl.
package nodeops
