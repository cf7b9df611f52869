// Package facts holds what the engine knows about one node when it decides: the Node,
// the pods bound to it and the alerts of the cluster. It also reads these facts from
// files (kubectl output, Prometheus and Alertmanager API responses) for offline use.
package facts
