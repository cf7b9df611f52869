package plan

import (
	"container/heap"
	"slices"
	"time"

	"github.com/rebootgate/rebootgate/engine/schedule"
)

// PoolSpec is a pool as the simulation sees it.
type PoolSpec struct {
	Name      string
	Windows   []schedule.Window
	Blackouts []schedule.Blackout
	// Slots is how many of the pool's nodes may reboot at once (0: paused).
	Slots int
	// SlotsPerKey is how many nodes sharing a slot-key value may reboot at once; 0
	// means no limit per value (a pool without a slot key). Nodes whose Key is ""
	// have no limit per value either.
	SlotsPerKey int
}

// Job is one node's reboot. Jobs of a pool are started in the order of the slice
// (the queue's order), each as soon as a slot and its key allow, at an instant the
// pool's windows and blackouts allow.
type Job struct {
	Node string
	// Pool indexes the pools given to Simulate.
	Pool int
	// Key is the node's slot-key value ("" without a slot key).
	Key      string
	Duration time.Duration
	// NotBefore is the earliest start (a failure back-off); zero for none.
	NotBefore time.Time
	// Running marks a reboot already in progress at the start of the simulation,
	// begun at Started: it holds its slot until Started+Duration (at the earliest
	// the simulation's start).
	Running bool
	Started time.Time
}

// Outcome is when a job's reboot is predicted to run. Scheduled is false when it
// does not start within the horizon.
type Outcome struct {
	Scheduled  bool
	Start, End time.Time
}

// Simulate forecasts when each job reboots, from at until at+horizon. Pools are
// independent. It is event-driven: time jumps from one event to the next (a reboot's
// end, a back-off's end, the next instant the schedule allows), so the cost grows
// with the number of jobs, not with the length of the horizon.
//
// The rules are the agent's: a reboot starts only at an instant the pool's windows
// and blackouts allow, when one of the pool's slots is free and, with a slot key,
// fewer than SlotsPerKey nodes with the same value reboot; once started it runs to
// its end even past the window's end (the agent does not stop a reboot it has asked
// the host for); its slot is free again at its end.
func Simulate(pools []PoolSpec, jobs []Job, at time.Time, horizon time.Duration) []Outcome {
	out := make([]Outcome, len(jobs))
	byPool := make([][]int, len(pools))
	for i := range jobs {
		byPool[jobs[i].Pool] = append(byPool[jobs[i].Pool], i)
	}
	for p := range pools {
		if len(byPool[p]) > 0 {
			simulatePool(&pools[p], jobs, byPool[p], out, at, at.Add(horizon))
		}
	}
	return out
}

// keyState is one slot-key value's queue and its running count.
type keyState struct {
	queue   []int // job indices in queue order, from head on
	head    int
	running int
}

func (k *keyState) next() (int, bool) {
	if k.head < len(k.queue) {
		return k.queue[k.head], true
	}
	return 0, false
}

// sim is one pool's simulation state.
type sim struct {
	pool    *PoolSpec
	jobs    []Job
	rank    map[int]int // job index → place in the queue
	keys    map[string]*keyState
	ready   readyHeap // keys that may start a node, by their head's place (lazily updated)
	ends    endHeap   // running reboots by end
	later   []int     // jobs waiting for NotBefore, by NotBefore
	free    int
	waiting int // queued or later
}

func simulatePool(p *PoolSpec, jobs []Job, idx []int, out []Outcome, at, limit time.Time) {
	s := &sim{pool: p, jobs: jobs, rank: make(map[int]int, len(idx)), keys: map[string]*keyState{}, free: p.Slots}
	for r, j := range idx {
		s.rank[j] = r
		job := &jobs[j]
		k := s.key(job.Key)
		switch {
		case job.Running:
			end := job.Started.Add(job.Duration)
			if end.Before(at) {
				end = at
			}
			out[j] = Outcome{Scheduled: true, Start: job.Started, End: end}
			s.free--
			k.running++
			heap.Push(&s.ends, endItem{end: end, job: j})
		case job.NotBefore.After(at):
			s.later = append(s.later, j)
			s.waiting++
		default:
			k.queue = append(k.queue, j)
			s.waiting++
		}
	}
	slices.SortStableFunc(s.later, func(a, b int) int { return jobs[a].NotBefore.Compare(jobs[b].NotBefore) })
	for key, k := range s.keys {
		s.offer(key, k)
	}
	t := at
	for s.waiting > 0 && !t.After(limit) {
		s.release(t)
		s.admit(t)
		if s.free > 0 && s.ready.Len() > 0 {
			allowed, ok := schedule.NextAllowed(t, p.Windows, p.Blackouts, limit.Sub(t))
			if !ok {
				return
			}
			if allowed.After(t) {
				t = allowed
				continue
			}
			s.start(t, out)
		}
		next, ok := s.nextEvent()
		if !ok {
			return // nothing will free a slot: a paused pool
		}
		t = next
	}
}

func (s *sim) key(v string) *keyState {
	k := s.keys[v]
	if k == nil {
		k = &keyState{}
		s.keys[v] = k
	}
	return k
}

// offer puts a key on the ready heap when it may start its head.
func (s *sim) offer(v string, k *keyState) {
	j, ok := k.next()
	if !ok || s.full(v, k) {
		return
	}
	heap.Push(&s.ready, readyItem{rank: s.rank[j], job: j, key: v})
}

// full reports whether value v may start no more reboots.
func (s *sim) full(v string, k *keyState) bool {
	return v != "" && s.pool.SlotsPerKey > 0 && k.running >= s.pool.SlotsPerKey
}

// release frees the slots of the reboots that ended by t.
func (s *sim) release(t time.Time) {
	for s.ends.Len() > 0 && !s.ends[0].end.After(t) {
		e := heap.Pop(&s.ends).(endItem)
		v := s.jobs[e.job].Key
		k := s.keys[v]
		k.running--
		s.free++
		s.offer(v, k)
	}
}

// admit queues the jobs whose back-off ended by t, in their place.
func (s *sim) admit(t time.Time) {
	for len(s.later) > 0 && !s.jobs[s.later[0]].NotBefore.After(t) {
		j := s.later[0]
		s.later = s.later[1:]
		v := s.jobs[j].Key
		k := s.key(v)
		q := k.queue[k.head:]
		pos, _ := slices.BinarySearchFunc(q, s.rank[j], func(e, r int) int { return s.rank[e] - r })
		k.queue = slices.Insert(k.queue, k.head+pos, j)
		s.offer(v, k)
	}
}

// start begins reboots at t, first in the queue first, while slots are free.
func (s *sim) start(t time.Time, out []Outcome) {
	for s.free > 0 && s.ready.Len() > 0 {
		r := heap.Pop(&s.ready).(readyItem)
		k := s.keys[r.key]
		if j, ok := k.next(); !ok || j != r.job || s.full(r.key, k) {
			continue // stale: the key's head or count changed since it was offered
		}
		k.head++
		k.running++
		s.free--
		s.waiting--
		end := t.Add(s.jobs[r.job].Duration)
		out[r.job] = Outcome{Scheduled: true, Start: t, End: end}
		heap.Push(&s.ends, endItem{end: end, job: r.job})
		s.offer(r.key, k)
	}
}

// nextEvent is the next instant something changes: a reboot ends or a back-off does.
func (s *sim) nextEvent() (time.Time, bool) {
	var next time.Time
	ok := false
	if s.ends.Len() > 0 {
		next, ok = s.ends[0].end, true
	}
	if len(s.later) > 0 {
		if nb := s.jobs[s.later[0]].NotBefore; !ok || nb.Before(next) {
			next, ok = nb, true
		}
	}
	return next, ok
}

type readyItem struct {
	rank, job int
	key       string
}

type readyHeap []readyItem

func (h readyHeap) Len() int           { return len(h) }
func (h readyHeap) Less(i, j int) bool { return h[i].rank < h[j].rank }
func (h readyHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *readyHeap) Push(x any)        { *h = append(*h, x.(readyItem)) }
func (h *readyHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

type endItem struct {
	end time.Time
	job int
}

type endHeap []endItem

func (h endHeap) Len() int { return len(h) }
func (h endHeap) Less(i, j int) bool {
	if c := h[i].end.Compare(h[j].end); c != 0 {
		return c < 0
	}
	return h[i].job < h[j].job
}
func (h endHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *endHeap) Push(x any)   { *h = append(*h, x.(endItem)) }
func (h *endHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
