package nodestate

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var at = time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)

// fullState sets every field of State, so a field the codec forgets shows.
func fullState() State {
	return State{Phase: PhaseRebooting, Since: at.Add(3 * time.Minute), BootIDBefore: "b00t-1", CordonedByUs: true, Slot: "rebootgate-user-0",
		Pool: "user", SlotValue: "zone-a", StartedAt: at, Attempts: 2, RequestedAt: at.Add(4 * time.Minute), LastReboot: at.Add(-48 * time.Hour),
		LoopBackoffUntil: at.Add(-47 * time.Hour), LastDuration: 9*time.Minute + 30*time.Second, Failures: 1, RetryAfter: at.Add(-time.Hour), DrainForced: true}
}

// applied is n's annotations after the merge patch's annotations a.
func applied(n map[string]string, a map[string]*string) map[string]string {
	out := map[string]string{}
	for k, v := range n {
		out[k] = v
	}
	for k, v := range a {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = *v
		}
	}
	return out
}

func TestStateRoundTrips(t *testing.T) {
	want := fullState()
	if v := reflect.ValueOf(want); true {
		for i := range v.NumField() {
			if v.Field(i).IsZero() {
				t.Fatalf("fullState leaves %s zero: the round trip would not cover it", v.Type().Field(i).Name)
			}
		}
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Annotations: applied(map[string]string{"other": "kept"}, want.Annotations())}}
	if got := StateOf(n); !reflect.DeepEqual(got, want) {
		t.Errorf("StateOf(Annotations(s)) =\n%+v\nwant\n%+v", got, want)
	}
	// Back to idle: the patch of the zero State deletes every key the full one wrote.
	n.Annotations = applied(n.Annotations, State{}.Annotations())
	if !reflect.DeepEqual(n.Annotations, map[string]string{"other": "kept"}) {
		t.Errorf("after the idle State's patch, annotations = %v; want only the foreign one", n.Annotations)
	}
	if got := StateOf(n); !reflect.DeepEqual(got, State{}) {
		t.Errorf("StateOf(idle) = %+v", got)
	}
}

// The patches as the pipeline wrote them before the codec moved here (captured from
// pipeline.State.annotations and nodePatch at fa0cc5e): Nodes mid-reboot, and the
// agents that wrote them, must keep agreeing with this package.
const (
	goldenFullPatch = `{"metadata":{"resourceVersion":"42","annotations":{"rebootgate.io/boot-id-before":"b00t-1","rebootgate.io/cordoned-by-rebootgate":"true","rebootgate.io/drain-forced":"true","rebootgate.io/failures":"1","rebootgate.io/last-reboot":"2026-11-21T08:00:00Z","rebootgate.io/last-reboot-duration":"9m30s","rebootgate.io/loop-backoff-until":"2026-11-21T09:00:00Z","rebootgate.io/phase":"Rebooting","rebootgate.io/phase-since":"2026-11-23T08:03:00Z","rebootgate.io/reboot-attempts":"2","rebootgate.io/reboot-requested-at":"2026-11-23T08:04:00Z","rebootgate.io/reboot-started-at":"2026-11-23T08:00:00Z","rebootgate.io/retry-after":"2026-11-23T07:00:00Z","rebootgate.io/slot":"rebootgate-user-0","rebootgate.io/slot-pool":"user","rebootgate.io/slot-value":"zone-a"}},"spec":{"unschedulable":true}}`
	goldenIdlePatch = `{"metadata":{"annotations":{"rebootgate.io/boot-id-before":null,"rebootgate.io/cordoned-by-rebootgate":null,"rebootgate.io/drain-forced":null,"rebootgate.io/failures":null,"rebootgate.io/last-reboot":null,"rebootgate.io/last-reboot-duration":null,"rebootgate.io/loop-backoff-until":null,"rebootgate.io/phase":null,"rebootgate.io/phase-since":null,"rebootgate.io/reboot-attempts":null,"rebootgate.io/reboot-requested-at":null,"rebootgate.io/reboot-started-at":null,"rebootgate.io/retry-after":null,"rebootgate.io/slot":null,"rebootgate.io/slot-pool":null,"rebootgate.io/slot-value":null}}}`
)

func TestPatchIsTodays(t *testing.T) {
	for _, c := range []struct {
		name  string
		patch *Patch
		want  string
	}{
		{"full", &Patch{Metadata: PatchMeta{ResourceVersion: "42", Annotations: fullState().Annotations()}, Spec: &PatchSpec{Unschedulable: new(true)}}, goldenFullPatch},
		{"idle", &Patch{Metadata: PatchMeta{Annotations: State{}.Annotations()}}, goldenIdlePatch},
	} {
		got, err := c.patch.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("%s patch:\n%s\nwant\n%s", c.name, got, c.want)
		}
	}
}

// Decision annotations as today's agent writes them (captured from the agent's
// reportedDecision at fa0cc5e), and as an older agent wrote them (no slotKey, at).
const (
	goldenBlocked = `{"allowed":false,"pool":"user","slotKey":"zone-a","reasons":[{"source":"policy","message":"outside every reboot window"},{"source":"condition/quiet","message":"2 alerts firing"}],"at":"2026-11-23T08:00:00Z","nextAllowed":"2026-11-23T22:00:00Z","dryRun":true}`
	goldenAllowed = `{"allowed":true,"pool":"user","reasons":null,"at":"2026-11-23T22:00:05Z"}`
	olderAgent    = `{"allowed":false,"pool":"user","reasons":[{"source":"policy","message":"outside every reboot window"}]}`
)

func withDecision(raw string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnotationDecision: raw}}}
}

func TestDecisionDecodesTodaysAnnotation(t *testing.T) {
	for _, c := range []struct {
		raw       string
		want      Decision
		reencodes bool
	}{
		{goldenBlocked, Decision{Allowed: false, Pool: "user", SlotKey: "zone-a", Reasons: []Reason{
			{Source: "policy", Message: "outside every reboot window"}, {Source: "condition/quiet", Message: "2 alerts firing"},
		}, At: "2026-11-23T08:00:00Z", NextAllowed: "2026-11-23T22:00:00Z", DryRun: true}, true},
		{goldenAllowed, Decision{Allowed: true, Pool: "user", At: "2026-11-23T22:00:05Z"}, true},
		{olderAgent, Decision{Pool: "user", Reasons: []Reason{{Source: "policy", Message: "outside every reboot window"}}}, false},
	} {
		got, found, err := DecisionOf(withDecision(c.raw))
		if err != nil || !found {
			t.Fatalf("DecisionOf(%s) = found %v, %v", c.raw, found, err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("DecisionOf(%s) =\n%+v\nwant\n%+v", c.raw, got, c.want)
		}
		// The agent writes the annotation by encoding a Decision: the same bytes.
		if b, err := json.Marshal(c.want); err != nil || (c.reencodes && string(b) != c.raw) {
			t.Errorf("encoding %+v = %s, %v; want %s", c.want, b, err, c.raw)
		}
	}
}

func TestDecisionOfMissingOrUnreadable(t *testing.T) {
	if _, found, err := DecisionOf(&corev1.Node{}); found || err != nil {
		t.Errorf("no annotation: found %v, err %v; want not found", found, err)
	}
	if _, found, err := DecisionOf(withDecision("")); found || err != nil {
		t.Errorf("empty annotation: found %v, err %v; want not found", found, err)
	}
	_, found, err := DecisionOf(withDecision(`{"allowed":`))
	if !found || err == nil || !strings.Contains(err.Error(), AnnotationDecision) {
		t.Errorf("truncated annotation: found %v, err %v; want found and an error naming %s", found, err, AnnotationDecision)
	}
}

func TestRebootRequiredSince(t *testing.T) {
	cond := func(s corev1.ConditionStatus) corev1.NodeCondition {
		return corev1.NodeCondition{Type: ConditionRebootRequired, Status: s, LastTransitionTime: metav1.NewTime(at.Add(-time.Hour))}
	}
	for _, c := range []struct {
		name      string
		ann       map[string]string
		conds     []corev1.NodeCondition
		wantSince time.Time
		wantNeed  bool
	}{
		{"annotation", map[string]string{AnnotationRebootRequired: at.Format(time.RFC3339)}, []corev1.NodeCondition{cond(corev1.ConditionTrue)}, at, true},
		{"unparsable annotation: needed, since unknown", map[string]string{AnnotationRebootRequired: "soon"}, nil, time.Time{}, true},
		{"condition only", nil, []corev1.NodeCondition{cond(corev1.ConditionTrue)}, at.Add(-time.Hour), true},
		{"condition False", nil, []corev1.NodeCondition{cond(corev1.ConditionFalse)}, time.Time{}, false},
		{"nothing", nil, nil, time.Time{}, false},
	} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Annotations: c.ann}, Status: corev1.NodeStatus{Conditions: c.conds}}
		since, need := RebootRequiredSince(n)
		if !since.Equal(c.wantSince) || need != c.wantNeed {
			t.Errorf("%s: RebootRequiredSince = %v, %v; want %v, %v", c.name, since, need, c.wantSince, c.wantNeed)
		}
	}
}

func TestHolderStatusOf(t *testing.T) {
	node := func(a map[string]string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Annotations: a}}
	}
	for _, c := range []struct {
		name string
		n    *corev1.Node
		want HolderStatus
	}{
		{"idle", node(nil), HolderStatus{Exists: true}},
		{"mid-reboot", node(map[string]string{AnnotationPhase: string(PhaseDraining), AnnotationPhaseSince: at.Format(time.RFC3339)}), HolderStatus{Exists: true, Busy: true, Since: at}},
		{"mid-reboot, malformed since", node(map[string]string{AnnotationPhase: string(PhaseRebooting), AnnotationPhaseSince: "x"}), HolderStatus{Exists: true, Busy: true}},
		{"since without a phase", node(map[string]string{AnnotationPhaseSince: at.Format(time.RFC3339)}), HolderStatus{Exists: true}},
	} {
		if got := HolderStatusOf(c.n); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: HolderStatusOf = %+v; want %+v", c.name, got, c.want)
		}
	}
}

// TestKeysAreDistinct reads the package's exported constants: two Node keys
// (Annotation*, Label*) or two condition types with the same value would make two
// meanings share one key on the Node.
func TestKeysAreDistinct(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	keys, conds := map[string]string{}, map[string]string{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), e.Name(), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					var into map[string]string
					switch n := name.Name; {
					case strings.HasPrefix(n, "Annotation"), strings.HasPrefix(n, "Label"):
						into = keys
					case strings.HasPrefix(n, "Condition") && n != "ConditionWriter":
						into = conds
					default:
						continue
					}
					value := stringValue(t, vs.Values[i])
					if other, dup := into[value]; dup {
						t.Errorf("%s and %s are both %q", other, name.Name, value)
					}
					into[value] = name.Name
				}
			}
		}
	}
	// Guards the parse itself: the package holds 23 Node keys and 6 condition types.
	if len(keys) < 23 || len(conds) < 6 {
		t.Errorf("found %d keys and %d condition types; the parse missed some", len(keys), len(conds))
	}
}

// stringValue is the value of a constant written as "x" or T("x").
func stringValue(t *testing.T, e ast.Expr) string {
	t.Helper()
	if c, ok := e.(*ast.CallExpr); ok && len(c.Args) == 1 {
		e = c.Args[0]
	}
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		t.Fatalf("constant %#v is not a string literal", e)
	}
	v, err := strconv.Unquote(lit.Value)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
