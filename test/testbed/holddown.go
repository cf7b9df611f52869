package testbed

import (
	"context"
	"slices"
)

// HoldDown keeps node powered off (hold=true) once its RebootDelay has passed, for a
// reboot in progress as well as for later ones, until HoldDown(node, false): a host
// that does not come back, for as long as a test needs.
func (s *Simulator) HoldDown(node string, hold bool) {
	s.setHold(node, "simulated node held down", hold, func(n *simNode) *bool { return &n.heldDown })
}

// HoldNotReady (hold=true, FlipReady only) makes node's next reboots, and one in
// progress that has not booted yet, start its agent as soon as the host has booted
// with a new boot ID, but keep the Node NotReady (and the host down, in
// DownIntervals) until HoldNotReady(node, false): a DaemonSet pod on the host
// network runs before its node is Ready (the CNI, say, is still starting).
func (s *Simulator) HoldNotReady(node string, hold bool) {
	s.setHold(node, "simulated node held NotReady once booted", hold, func(n *simNode) *bool { return &n.heldNotReady })
}

// setHold sets the hold flag field of node, wakes the waiters and logs msg.
func (s *Simulator) setHold(node, msg string, hold bool, field func(*simNode) *bool) {
	n := s.node(node)
	s.mu.Lock()
	*field(n) = hold
	s.notifyLocked()
	s.mu.Unlock()
	s.log.Info(msg, "node", node, "hold", hold)
}

// waitReadyReleased waits while n is held NotReady (see HoldNotReady).
func (s *Simulator) waitReadyReleased(ctx context.Context, n *simNode) error {
	return s.waitWhile(ctx, func() bool { return n.heldNotReady })
}

// waitReleased waits while n is held down (see HoldDown).
func (s *Simulator) waitReleased(ctx context.Context, n *simNode) error {
	return s.waitWhile(ctx, func() bool { return n.heldDown })
}

// waitWhile waits while cond, called with s.mu held, is true.
func (s *Simulator) waitWhile(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		held, ch := cond(), s.changed
		s.mu.Unlock()
		if !held {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// MostDown is the largest number of the intervals that overlap at one instant (a
// zero To counts as still down; one ending as another begins does not overlap it),
// and the nodes down at the first such instant.
func MostDown(downs []DownInterval) (int, []string) {
	best, bestNodes := 0, []string(nil)
	for _, d := range downs {
		var nodes []string
		for _, o := range downs {
			if !o.From.After(d.From) && (o.To.IsZero() || o.To.After(d.From)) {
				nodes = append(nodes, o.Node)
			}
		}
		if len(nodes) > best {
			best, bestNodes = len(nodes), nodes
		}
	}
	slices.Sort(bestNodes)
	return best, bestNodes
}
