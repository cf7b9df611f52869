// Package disruption says which nodes are unavailable, for any reason, and sums them up
// per pool and for the cluster: NotReady, cordoned, carrying a "being disrupted" taint
// (Karpenter, cluster-autoscaler, AKS auto-repair, or one the operator names), or held by
// a medik8s node-maintenance Lease. Disruption budgets and circuit breakers decide from
// these sums. BuildIndex indexes every node's name and addresses in shards, so that
// agents can tell whether an alert's instance names a node. Everything here is pure:
// nodes in, counts and index out.
package disruption
