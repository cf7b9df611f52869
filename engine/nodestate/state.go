package nodestate

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Phase is where a node is in its reboot lifecycle (package pipeline).
type Phase string

// Phases, in order. The empty phase means no reboot is in progress.
const (
	PhaseIdle      Phase = ""
	PhaseCordoning Phase = "Cordoning"
	PhaseDraining  Phase = "Draining"
	PhaseRebooting Phase = "Rebooting"
	PhaseVerifying Phase = "Verifying"
)

// Phases lists every non-idle phase, for metrics.
var Phases = []Phase{PhaseCordoning, PhaseDraining, PhaseRebooting, PhaseVerifying}

// State is the reboot lifecycle's progress as recorded on the Node: [StateOf] reads
// it, [State.Annotations] writes it.
type State struct {
	Phase        Phase
	Since        time.Time
	BootIDBefore string
	// CordonedByUs is true only when rebootgate made the node unschedulable; a node an
	// admin cordoned stays cordoned.
	CordonedByUs bool
	Slot         string
	// Pool and SlotValue identify the slot's semaphore (see AnnotationPool).
	Pool      string
	SlotValue string
	// StartedAt is the cordon (see AnnotationStartedAt).
	StartedAt time.Time
	// Attempts counts reboot requests; RequestedAt is the last one.
	Attempts    int
	RequestedAt time.Time
	LastReboot  time.Time
	// LoopBackoffUntil ends the reboot-loop protection (AnnotationLoopBackoffUntil).
	LoopBackoffUntil time.Time
	// LastDuration is the last completed reboot's duration (AnnotationLastDuration).
	LastDuration time.Duration
	// Failures and RetryAfter are the failure back-off (see AnnotationFailures).
	Failures   int
	RetryAfter time.Time
	// DrainForced: the drain failed and the reboot went ahead (see
	// AnnotationDrainForced).
	DrainForced bool
}

// StateOf reads the state from a Node's annotations.
func StateOf(n *corev1.Node) State {
	a := n.Annotations
	s := State{
		Phase:        Phase(a[AnnotationPhase]),
		BootIDBefore: a[AnnotationBootIDBefore],
		CordonedByUs: a[AnnotationCordonedByUs] == "true",
		DrainForced:  a[AnnotationDrainForced] == "true",
		Slot:         a[AnnotationSlot],
		Pool:         a[AnnotationPool],
		SlotValue:    a[AnnotationSlotValue],
	}
	s.Since, _ = time.Parse(time.RFC3339, a[AnnotationPhaseSince])
	s.LastReboot, _ = time.Parse(time.RFC3339, a[AnnotationLastReboot])
	s.LoopBackoffUntil, _ = time.Parse(time.RFC3339, a[AnnotationLoopBackoffUntil])
	s.RequestedAt, _ = time.Parse(time.RFC3339, a[AnnotationRequestedAt])
	s.StartedAt, _ = time.Parse(time.RFC3339, a[AnnotationStartedAt])
	s.RetryAfter, _ = time.Parse(time.RFC3339, a[AnnotationRetryAfter])
	s.LastDuration, _ = time.ParseDuration(a[AnnotationLastDuration])
	s.Attempts, _ = strconv.Atoi(a[AnnotationAttempts])
	s.Failures, _ = strconv.Atoi(a[AnnotationFailures])
	return s
}

// Annotations renders the state as the annotations of a JSON merge patch: every key
// of the State is present, and nil values delete the key.
func (s State) Annotations() map[string]*string {
	str := func(v string) *string {
		if v == "" {
			return nil
		}
		return &v
	}
	ts := func(t time.Time) *string {
		if t.IsZero() {
			return nil
		}
		return str(t.UTC().Format(time.RFC3339))
	}
	out := map[string]*string{
		AnnotationPhase:            str(string(s.Phase)),
		AnnotationPhaseSince:       ts(s.Since),
		AnnotationBootIDBefore:     str(s.BootIDBefore),
		AnnotationSlot:             str(s.Slot),
		AnnotationPool:             str(s.Pool),
		AnnotationSlotValue:        str(s.SlotValue),
		AnnotationRequestedAt:      ts(s.RequestedAt),
		AnnotationStartedAt:        ts(s.StartedAt),
		AnnotationLastReboot:       ts(s.LastReboot),
		AnnotationLoopBackoffUntil: ts(s.LoopBackoffUntil),
		AnnotationRetryAfter:       ts(s.RetryAfter),
		AnnotationCordonedByUs:     nil,
		AnnotationAttempts:         nil,
		AnnotationFailures:         nil,
		AnnotationLastDuration:     nil,
		AnnotationDrainForced:      nil,
	}
	if s.DrainForced {
		out[AnnotationDrainForced] = str("true")
	}
	if s.LastDuration > 0 {
		out[AnnotationLastDuration] = str(s.LastDuration.String())
	}
	if s.CordonedByUs {
		out[AnnotationCordonedByUs] = str("true")
	}
	if s.Attempts > 0 {
		out[AnnotationAttempts] = str(strconv.Itoa(s.Attempts))
	}
	if s.Failures > 0 {
		out[AnnotationFailures] = str(strconv.Itoa(s.Failures))
	}
	return out
}

// Patch is a JSON merge patch of a Node, as the agent's lifecycle writes it.
// ResourceVersion, when set, makes the patch fail with a conflict if the Node changed
// since it was read, so read-modify-write of lists (taints) never clobbers a
// concurrent change.
type Patch struct {
	Metadata PatchMeta  `json:"metadata"`
	Spec     *PatchSpec `json:"spec,omitempty"`
}

// PatchMeta is a Patch's metadata: annotations and labels with a nil value are
// deleted.
type PatchMeta struct {
	ResourceVersion string             `json:"resourceVersion,omitempty"`
	Annotations     map[string]*string `json:"annotations,omitempty"`
	Labels          map[string]*string `json:"labels,omitempty"`
}

// PatchSpec is a Patch's spec; a nil field is left as it is.
type PatchSpec struct {
	Unschedulable *bool           `json:"unschedulable,omitempty"`
	Taints        *[]corev1.Taint `json:"taints,omitempty"`
}

// Bytes encodes the patch.
func (p *Patch) Bytes() ([]byte, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encoding node patch: %w", err)
	}
	return data, nil
}
