package input

import (
	"fmt"
	"strconv"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Conversion to ast.Value is written out by hand: it avoids the reflection and JSON
// round trip of ast.InterfaceToValue, which dominates a decision's cost otherwise.

func str(s string) *ast.Term { return ast.StringTerm(s) }

func boolean(b bool) *ast.Term { return ast.InternedTerm(b) }

func integer(i int64) *ast.Term {
	if i >= -1 && i <= 512 {
		return ast.InternedTerm(int(i))
	}
	return ast.NewTerm(ast.Number(strconv.FormatInt(i, 10)))
}

func obj(items ...[2]*ast.Term) *ast.Term { return ast.ObjectTerm(items...) }

// keyTerms are the document's field names, made once: OPA never mutates input terms,
// so every object can share them, which saves an allocation per field per decision.
var keyTerms = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, k := range []string{"active", "address", "addresses", "alerts", "annotations", "arch", "architecture", "blackouts", "blockSilenced", "bootID", "build", "closesAt", "concurrency", "conditions", "containerRuntimeVersion", "crossesMidnight", "custom", "date", "days", "duration", "durationSeconds", "effect", "end", "endNs", "endSeconds", "endTime", "error", "errors", "expression", "families", "family", "filterMatchOnly", "filterRegexp", "firingOnly", "generation", "holdAnnotation", "image", "index", "kernelVersion", "key", "kind", "kubeletVersion", "label", "labels", "machineID", "message", "minDate", "name", "namespace", "nextAllowed", "nextOpening", "node", "nodeImage", "nodeInfo", "nodeLabels", "ns", "openedAt", "operatingSystem", "operator", "os", "osImage", "ownerKind", "ownerName", "params", "parsed", "patch", "phase", "podSelectors", "pods", "pool", "ready", "reason", "requirements", "result", "rfc3339", "runtime", "schedule", "scope", "selector", "silenced", "sku", "source", "start", "startNs", "startSeconds", "startTime", "state", "status", "systemUUID", "taints", "time", "timeZone", "type", "unschedulable", "value", "values", "windows"} {
		m[k] = ast.StringTerm(k)
	}
	return m
}()

func item(key string, value *ast.Term) [2]*ast.Term {
	k, ok := keyTerms[key]
	if !ok {
		k = ast.StringTerm(key)
	}
	return [2]*ast.Term{k, value}
}

func stringMap(m map[string]string) *ast.Term {
	o := ast.NewObjectWithCapacity(len(m))
	for k, v := range m {
		o.Insert(str(k), str(v))
	}
	return ast.NewTerm(o)
}

func stringList(list []string) *ast.Term {
	a := make([]*ast.Term, len(list))
	for i, s := range list {
		a[i] = str(s)
	}
	return ast.ArrayTerm(a...)
}

func listOf[T any](list []T, conv func(*T) *ast.Term) *ast.Term {
	a := make([]*ast.Term, len(list))
	for i := range list {
		a[i] = conv(&list[i])
	}
	return ast.ArrayTerm(a...)
}

// Parts are pre-converted parts of a document; nil parts are converted from the
// Document's fields.
type Parts struct {
	// Params is the pool's static part (see ParamsValue), converted once per pool.
	Params *ast.Term
	Node   *ast.Term
	Pods   *ast.Term
	Alerts *ast.Term
}

// Value converts the document to an OPA value.
func (d *Document) Value(parts Parts) ast.Value {
	if parts.Node == nil {
		parts.Node = d.Node.term()
	}
	if parts.Pods == nil {
		parts.Pods = listOf(d.Pods, (*Pod).term)
	}
	if parts.Alerts == nil {
		parts.Alerts = listOf(d.Alerts, alertTerm)
	}
	return ast.NewObject(
		item("node", parts.Node),
		item("pool", d.Pool.term()),
		item("pods", parts.Pods),
		item("alerts", parts.Alerts),
		item("errors", obj(item("alerts", str(d.Errors.Alerts)), item("nodeSummary", str(d.Errors.NodeSummary)))),
		item("time", obj(item("rfc3339", str(d.Time.RFC3339)), item("ns", integer(d.Time.Ns)))),
		item("schedule", d.Schedule.term()),
		item("params", parts.Params),
		item("cluster", obj(item("nodes", d.Cluster.Nodes.term()))),
	)
}

func (c *NodeCounts) term() *ast.Term {
	return obj(
		item("known", boolean(c.Known)),
		item("nodes", integer(int64(c.Nodes))),
		item("ready", integer(int64(c.Ready))),
		item("notReady", integer(int64(c.NotReady))),
		item("cordoned", integer(int64(c.Cordoned))),
		item("disrupted", integer(int64(c.Disrupted))),
		item("maintenance", integer(int64(c.Maintenance))),
		item("unavailable", integer(int64(c.Unavailable))),
		item("rebooting", integer(int64(c.Rebooting))),
		item("unavailableOthers", integer(int64(c.UnavailableOthers))),
	)
}

func (n *Node) term() *ast.Term {
	return obj(
		item("name", str(n.Name)),
		item("labels", stringMap(n.Labels)),
		item("annotations", stringMap(n.Annotations)),
		item("taints", listOf(n.Taints, func(t *Taint) *ast.Term {
			return obj(item("key", str(t.Key)), item("value", str(t.Value)), item("effect", str(t.Effect)))
		})),
		item("unschedulable", boolean(n.Unschedulable)),
		item("ready", boolean(n.Ready)),
		item("nodeInfo", obj(
			item("kernelVersion", str(n.NodeInfo.KernelVersion)),
			item("osImage", str(n.NodeInfo.OSImage)),
			item("bootID", str(n.NodeInfo.BootID)),
			item("kubeletVersion", str(n.NodeInfo.KubeletVersion)),
			item("containerRuntimeVersion", str(n.NodeInfo.ContainerRuntimeVersion)),
			item("architecture", str(n.NodeInfo.Architecture)),
			item("operatingSystem", str(n.NodeInfo.OperatingSystem)),
			item("machineID", str(n.NodeInfo.MachineID)),
			item("systemUUID", str(n.NodeInfo.SystemUUID)),
		)),
		item("conditions", listOf(n.Conditions, func(c *Condition) *ast.Term {
			return obj(item("type", str(c.Type)), item("status", str(c.Status)), item("reason", str(c.Reason)), item("message", str(c.Message)))
		})),
		item("addresses", listOf(n.Addresses, func(a *Address) *ast.Term {
			return obj(item("type", str(a.Type)), item("address", str(a.Address)))
		})),
		item("image", n.Image.term()),
	)
}

func (i *Image) term() *ast.Term {
	return obj(
		item("label", str(i.Label)),
		item("value", str(i.Value)),
		item("parsed", boolean(i.Parsed)),
		item("error", str(i.Error)),
		item("family", str(i.Family)),
		item("sku", str(i.SKU)),
		item("os", str(i.OS)),
		item("generation", str(i.Generation)),
		item("arch", str(i.Arch)),
		item("runtime", str(i.Runtime)),
		item("build", str(i.Build)),
		item("date", str(i.Date)),
		item("patch", integer(int64(i.Patch))),
	)
}

func (p *Pool) term() *ast.Term {
	return obj(
		item("name", str(p.Name)),
		item("concurrency", str(p.Concurrency)),
		item("nodes", p.Nodes.term()),
		item("conditions", listOf(p.Conditions, func(c *ConditionResult) *ast.Term {
			return obj(
				item("name", str(c.Name)),
				item("expression", str(c.Expression)),
				item("result", boolean(c.Result)),
				item("message", str(c.Message)),
				item("error", str(c.Error)),
			)
		})),
	)
}

func (p *Pod) term() *ast.Term {
	return obj(
		item("namespace", str(p.Namespace)),
		item("name", str(p.Name)),
		item("labels", stringMap(p.Labels)),
		item("phase", str(p.Phase)),
		item("ownerKind", str(p.OwnerKind)),
		item("ownerName", str(p.OwnerName)),
	)
}

func alertTerm(a *Alert) *ast.Term {
	return obj(
		item("name", str(a.Name)),
		item("state", str(a.State)),
		item("labels", stringMap(a.Labels)),
		item("silenced", boolean(a.Silenced)),
		item("source", str(a.Source)),
		item("scope", obj(
			item("kind", str(a.Scope.Kind)),
			item("label", str(a.Scope.Label)),
			item("value", str(a.Scope.Value)),
			item("nodes", stringList(a.Scope.Nodes)),
			item("reason", str(a.Scope.Reason)),
		)),
	)
}

func (s *Schedule) term() *ast.Term {
	return obj(
		item("windows", listOf(s.Windows, func(w *WindowState) *ast.Term {
			items := []([2]*ast.Term){
				item("index", integer(int64(w.Index))),
				item("kind", str(w.Kind)),
				item("active", boolean(w.Active)),
				item("openedAt", str(w.OpenedAt)),
				item("closesAt", str(w.ClosesAt)),
				item("nextOpening", str(w.NextOpening)),
			}
			if w.Kind == KindDaily {
				items = append(items, item("startNs", integer(w.StartNs)), item("endNs", integer(w.EndNs)))
			}
			return obj(items...)
		})),
		item("nextAllowed", str(s.NextAllowed)),
	)
}

// ParamsValue converts the static parameters once; the result is shared by every
// decision of the pool (OPA never mutates input values).
func ParamsValue(p *Params) (*ast.Term, error) {
	custom := ast.NewTerm(ast.NewObject())
	if len(p.Custom) > 0 {
		v, err := ast.InterfaceToValue(p.Custom)
		if err != nil {
			return nil, fmt.Errorf("custom: %w", err)
		}
		custom = ast.NewTerm(v)
	}
	return obj(
		item("windows", listOf(p.Windows, windowTerm)),
		item("blackouts", listOf(p.Blackouts, func(b *Blackout) *ast.Term {
			return obj(
				item("name", str(b.Name)),
				item("start", str(b.Start)),
				item("end", str(b.End)),
				item("startNs", integer(b.StartNs)),
				item("endNs", integer(b.EndNs)),
			)
		})),
		item("podSelectors", listOf(p.PodSelectors, func(s *PodSelector) *ast.Term {
			return obj(
				item("selector", str(s.Selector)),
				item("requirements", listOf(s.Requirements, func(r *Requirement) *ast.Term {
					return obj(item("key", str(r.Key)), item("operator", str(r.Operator)), item("values", stringList(r.Values)))
				})),
			)
		})),
		item("alerts", obj(
			item("filterRegexp", str(p.Alerts.FilterRegexp)),
			item("filterMatchOnly", boolean(p.Alerts.FilterMatchOnly)),
			item("firingOnly", boolean(p.Alerts.FiringOnly)),
			item("blockSilenced", boolean(p.Alerts.BlockSilenced)),
			item("nodeLabels", stringList(p.Alerts.NodeLabels)),
		)),
		item("nodeImage", obj(
			item("families", stringList(p.NodeImage.Families)),
			item("minDate", str(p.NodeImage.MinDate)),
		)),
		item("holdAnnotation", str(p.HoldAnnotation)),
		item("custom", custom),
	), nil
}

// windowTerm emits only the fields of the window's kind, so policies can't mistake a
// zero value of the other kind for a setting.
func windowTerm(w *WindowParams) *ast.Term {
	items := []([2]*ast.Term){
		item("kind", str(w.Kind)),
		item("days", stringList(w.Days)),
		item("timeZone", str(w.TimeZone)),
	}
	switch w.Kind {
	case KindDaily:
		items = append(items,
			item("startTime", str(w.StartTime)),
			item("endTime", str(w.EndTime)),
			item("startSeconds", integer(int64(w.StartSeconds))),
			item("endSeconds", integer(int64(w.EndSeconds))),
			item("crossesMidnight", boolean(w.CrossesMidnight)),
		)
	case KindCron:
		items = append(items,
			item("schedule", str(w.Schedule)),
			item("duration", str(w.Duration)),
			item("durationSeconds", integer(w.DurationSeconds)),
		)
	}
	return obj(items...)
}
