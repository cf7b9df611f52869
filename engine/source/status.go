package source

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// FieldManager names this package's writes in managedFields.
const FieldManager = "rebootgate-agent"

// Status is the value of StatusAnnotation, as kube-mgmt writes it.
type Status struct {
	// Status is "ok" or "error".
	Status string `json:"status"`
	// Error is the ConfigMap's compile errors, each `ns/cm/key.rego:line: code: message`.
	Error string `json:"error,omitempty"`
}

// StatusValue is the annotation value for a ConfigMap whose modules fail with errMsg, or
// are ok when errMsg is empty.
func StatusValue(errMsg string) string {
	st := Status{Status: "ok"}
	if errMsg != "" {
		st = Status{Status: "error", Error: errMsg}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // Rego messages quote <, > and &; keep them readable
	if err := enc.Encode(st); err != nil {
		panic(err) // two strings always encode
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

// statusWriter holds the statuses this agent computed and the writes it has scheduled.
// The Run goroutine sets them; writer goroutines read them after their jitter.
type statusWriter struct {
	mu sync.Mutex
	// desired maps ns/name to the annotation value for the set hashed setHash.
	desired map[string]string
	// errMsgs maps ns/name to the error of each ConfigMap whose status is an error.
	errMsgs map[string]string
	setHash string
	// consequence ends a PolicyError event: what is in force instead.
	consequence string
	// pending marks ConfigMaps with a writer waiting out its jitter.
	pending map[string]bool
	// written is what this agent already wrote to each ConfigMap. An agent writes a
	// value for a given policy set once: if another agent then writes something else
	// (an older or newer agent version during a rollout can disagree), writing again
	// would make each write an informer event that sets every agent of the other side
	// writing again, forever. Two sides each writing once is bounded.
	written map[string]writeMark
}

type writeMark struct{ setHash, value string }

func (w *statusWriter) init() {
	w.desired = map[string]string{}
	w.errMsgs = map[string]string{}
	w.pending = map[string]bool{}
	w.written = map[string]writeMark{}
}

// setDesired records each ConfigMap's error message ("" for ok) for the set setHash,
// and what stays in force when there are errors.
func (w *statusWriter) setDesired(errMsgs map[string]string, setHash, consequence string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.setHash, w.consequence = setHash, consequence
	clear(w.desired)
	clear(w.errMsgs)
	for key, msg := range errMsgs {
		w.desired[key] = StatusValue(msg)
		if msg != "" {
			w.errMsgs[key] = msg
		}
	}
	for key := range w.written {
		if _, ok := w.desired[key]; !ok {
			delete(w.written, key) // the ConfigMap is gone or no longer labelled
		}
	}
}

// reconcileStatuses schedules a write for each ConfigMap whose cached annotation is not
// the status this agent computed. Called only from Run, after a load.
func (s *Source) reconcileStatuses(ctx context.Context, wg *sync.WaitGroup, set *policySet) {
	w := &s.status
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.setHash != set.hash {
		return // not computed for these modules; cannot happen right after a load
	}
	for key, cm := range set.configMaps {
		want, ok := w.desired[key]
		if !ok || cm.Annotations[StatusAnnotation] == want || w.pending[key] ||
			w.written[key] == (writeMark{set.hash, want}) {
			continue
		}
		w.pending[key] = true
		wg.Go(func() { s.writeStatus(ctx, key) })
	}
}

// writeStatus waits a random jitter, then writes the ConfigMap's status unless the cache
// shows that another agent already has, or that the policies changed meanwhile (the load
// that change triggers decides again).
//
// The agent whose write puts an error status on the ConfigMap also emits the
// PolicyError event there. Every agent compiles the same modules to the same error, so
// an event from each would be thousands of copies of one message on one object; tying
// the event to the write makes it about one per change, like the write.
func (s *Source) writeStatus(ctx context.Context, key string) {
	w := &s.status
	if s.jitter > 0 {
		t := s.clock.NewTimer(rand.N(s.jitter))
		select {
		case <-ctx.Done():
			t.Stop()
			w.mu.Lock()
			delete(w.pending, key)
			w.mu.Unlock()
			return
		case <-t.C():
		}
	}
	set := s.collectPolicies()
	w.mu.Lock()
	delete(w.pending, key)
	cm, exists := set.configMaps[key]
	want, known := w.desired[key]
	mark := writeMark{set.hash, want}
	errMsg, consequence := w.errMsgs[key], w.consequence
	if !exists || !known || set.hash != w.setHash || cm.Annotations[StatusAnnotation] == want || w.written[key] == mark {
		w.mu.Unlock()
		return
	}
	w.written[key] = mark
	w.mu.Unlock()

	// A merge patch of the one annotation: no read-modify-write, so no conflicts with
	// other agents or with whoever edits the policies.
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{StatusAnnotation: want}},
	})
	if err != nil {
		panic(err) // strings always encode
	}
	_, err = s.client.CoreV1().ConfigMaps(cm.Namespace).Patch(ctx, cm.Name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: FieldManager})
	switch {
	case err == nil:
		s.log.Info("policy status written", "configMap", key, "status", want)
		if errMsg != "" {
			ref := &corev1.ObjectReference{
				Kind: "ConfigMap", APIVersion: "v1",
				Namespace: cm.Namespace, Name: cm.Name, UID: cm.UID,
			}
			s.recorder.Eventf(ref, corev1.EventTypeWarning, ReasonPolicyError, "%s; %s", errMsg, consequence)
		}
	case apierrors.IsNotFound(err):
		// Deleted meanwhile; the informer will drop it.
	default:
		s.log.Warn("writing policy status; retrying on the next reload", "configMap", key, "error", err)
		w.mu.Lock()
		if w.written[key] == mark {
			delete(w.written, key)
		}
		w.mu.Unlock()
	}
}
