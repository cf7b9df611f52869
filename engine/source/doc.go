// Package source decides which config and which Rego policies are in force for the
// agent, and keeps that answer current.
//
// The config comes from a file, normally a mounted ConfigMap volume. The kubelet updates
// such a volume by swapping a `..data` symlink, so the file's directory is watched with
// fsnotify, backed by a periodic re-read for the events a watch can miss.
//
// Policies come from ConfigMaps labelled rebootgate.io/policy=rego in a list of
// namespaces, read through namespace-scoped informers filtered by that label (thousands
// of agents share the apiserver's watch cache, so nothing is listed cluster-wide). Each
// data key ending in .rego is a module named <namespace>/<configmap>/<key>, so a compile
// error reads `ns/cm/key.rego:12: ...`.
//
// On every change a new decision.Engine is built from the config, the embedded default
// gate and every policy module. While the latest config and policies load,
// [Source.Current] returns that engine. While they do not, it returns an error and no
// new reboot may start: the update that failed may have been a restriction (a
// blackout, a lower concurrency, a deny module), and restrictive changes win at once, so
// an update that does not load is treated as the most restrictive one. [Source.Decide]
// then denies with source "config" and the load error (`config <path>: ...` or `policy
// ConfigMaps: <ns>/<configmap>/<key>:<line>: ...`). The last engine that compiled stays
// available from [Source.LastGood] for what a reboot already past the cordon needs to
// finish (its re-checks, its health gate), and only for that. The config and the
// policy set each keep their own last good version: a broken policy does not hold back
// a good config change for that purpose, nor the other way round.
//
// A failure is logged, counted in the metrics, reported as a Kubernetes Event
// (ConfigError or PolicyError) on the agent's own Node, and summed up in [Source.Status],
// which the agent writes on its Node as a condition. The source writes nothing itself:
// an agent's token is on every node, and a grant to patch ConfigMaps would let one node
// rewrite the fleet's policies. The summarizer, a single writer, puts its PolicyError
// events on the ConfigMap at fault instead ([Config].PolicyEventsOnConfigMaps).
package source
