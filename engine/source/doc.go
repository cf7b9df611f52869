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
// gate and every policy module. One that compiles replaces the engine in force
// atomically; one that does not leaves the last good engine in force, and the failure is
// logged, counted in the metrics and reported as a Kubernetes Event: ConfigError on the
// agent's Node, PolicyError on the ConfigMap at fault. The config and the
// policy set each keep their own last good version: a broken policy does not hold back a
// good config change, nor the other way round. Until a valid engine has ever loaded,
// [Source.Current] returns an error wrapping [ErrNoValidPolicy] and [Source.Decide]
// blocks every reboot.
//
// Like OPA's kube-mgmt, each policy ConfigMap gets a status annotation,
// rebootgate.io/policy-status, holding {"status":"ok"} or
// {"status":"error","error":"ns/cm/key.rego:12: ..."}. Every agent computes the same
// status, so an agent writes only when its informer cache shows a different value, waits
// a random jitter first and checks the cache again afterwards: the first writer's change
// reaches the others' caches during their jitter, so a cluster of thousands of agents
// sends about one PATCH per change rather than one per agent. The agent whose PATCH puts
// an error status on a ConfigMap is the one that emits its PolicyError event, so events
// scale the same way.
package source
