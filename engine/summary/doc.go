// Package summary publishes and reads the node summary that disruption budgets,
// circuit breakers and operators' rules decide from.
//
// One summarizer (`rebootgate summarizer`, a two-replica Deployment with leader
// election) watches every Node, stripped to what availability needs, and medik8s'
// maintenance Leases, and writes the counts of each pool and of the cluster into one
// small ConfigMap: when they change, at most every Interval, and at least every
// Heartbeat. Agents read that ConfigMap from the API server's watch cache when they
// decide, so no agent needs an informer of all nodes: the cost of a budget is one watch
// of the nodes in the whole cluster, plus one small GET per decision.
//
// The node index (every node's name and InternalIP, ExternalIP and Hostname addresses,
// which resolves alerts' instance labels) grows with the cluster, so it is not in the
// summary: the summarizer writes it in shards (disruption.BuildIndex), each in a
// ConfigMap of its own (IndexConfigMapName), only when it changes and at most every
// IndexInterval, and the summary names each shard's content hash. An agent reads
// (IndexReader) only the shard holding a value it must resolve, and again only when the
// summary names another hash for it; agents never watch the index.
//
// Each reader judges the summary's age on its own clock (Observer): from when it saw
// the summary change, as a Lease's expiry is judged, so that a stamp in the future
// cannot keep a summary fresh. A summarizer whose informers cannot list or watch says
// so in the summary's Errors (incomplete) until they recover, rather than publishing
// its last cache as complete.
package summary
