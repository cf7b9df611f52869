// Package plan forecasts a rollout: when each node that needs a reboot will reboot
// under a config, when each pool will be done, and which nodes never will, and why.
//
// Simulate is the pure, event-driven simulation of the pools' windows, blackouts,
// concurrency and slot keys; Forecast prepares its input from the nodes with the
// decision engine and assembles the result. Neither does I/O nor reads the clock.
package plan
