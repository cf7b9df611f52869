package testbed

import (
	"context"
	"slices"
)

// HoldDown keeps node powered off (hold=true) once its RebootDelay has passed, for a
// reboot in progress as well as for later ones, until HoldDown(node, false): a host
// that does not come back, for as long as a test needs.
func (s *Simulator) HoldDown(node string, hold bool) {
	n := s.node(node)
	s.mu.Lock()
	n.heldDown = hold
	s.notifyLocked()
	s.mu.Unlock()
	s.log.Info("simulated node held down", "node", node, "hold", hold)
}

// waitReleased waits while n is held down (see HoldDown).
func (s *Simulator) waitReleased(ctx context.Context, n *simNode) error {
	for {
		s.mu.Lock()
		held, ch := n.heldDown, s.changed
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
