// Package testbed is the harness for rebootgate's end-to-end suites. It drives
// the local test bed built by hack/testbed (`make testbed-up`): a real
// kube-apiserver, controller manager and scheduler built from source, kwok
// simulating the kubelets of AKS-like nodes, and real Prometheus and
// Alertmanager, everything on 127.0.0.1.
//
// A suite uses it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testbed.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		bed := testbed.Shared(t)
//		ns := bed.Namespace(t)
//		...
//	}
//
// Main skips the suite unless REBOOTGATE_E2E is set, starts the bed or reuses a
// running one, and tears it down afterwards if it started it.
//
// The package offers clients (Bed.Client), object builders (NewNode, NewPod,
// NewDeployment, NewPDB), wait helpers with deadlines (Poll and the Wait*
// methods), alert control (FireAlert, ClearAlert, Silence, ExpireSilence) and a
// node simulator (NewSimulator) that runs one agent process per simulated node
// and simulates a reboot whenever the agent runs its reboot hook, recording
// when each host was down (DownIntervals). For fault injection, the bed's own
// processes can be paused, stopped and started again (APIServer, Prometheus).
package testbed
