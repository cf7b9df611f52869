package agent

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rebootgate/rebootgate/engine/agent/nodeops"
	"github.com/rebootgate/rebootgate/engine/alerts"
	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/kuredlock"
	"github.com/rebootgate/rebootgate/engine/lock"
	"github.com/rebootgate/rebootgate/engine/notify"
)

// Config is every setting of the agent; the command line binds its flags onto it.
type Config struct {
	// NodeName is this node (kured's --node-id; from the downward API).
	NodeName string
	// Namespace holds the pools' Leases and, by default, the policy ConfigMaps.
	Namespace string
	// PolicyNamespaces hold policy ConfigMaps; default: Namespace.
	PolicyNamespaces []string
	// ConfigPath is the RebootGateConfig file (a mounted ConfigMap); empty = defaults.
	ConfigPath string
	// InlineConfig is used when ConfigPath is empty (built from kured's schedule and
	// blocker flags); nil means config.Default().
	InlineConfig *config.Resolved
	// DryRun decides and reports, and never cordons, drains or reboots.
	DryRun bool

	// SentinelPath is the file whose existence means a reboot is needed.
	SentinelPath string
	// SentinelCommand, if set, replaces the file: exit 0 = needed, 1 = not needed.
	SentinelCommand string
	// SentinelPeriod is the command's period and the file's fallback check period.
	SentinelPeriod time.Duration
	// Nsenter runs the sentinel and reboot commands in the host's mount namespace.
	Nsenter bool

	// Alerts are the Prometheus and Alertmanager endpoints; both empty = no alerts.
	Alerts alerts.Config

	// KuredLock, when set, is kured's DaemonSet-annotation lock, taken after the slot
	// and before the cordon and given back before the slot, so that kured agents in
	// the same cluster count this node's reboot (--kured-lock). Its Client may be nil:
	// the agent's is used.
	KuredLock *kuredlock.Lock

	// LockTTL is the slot Lease duration while held; LockJitter spreads waiters that
	// could not queue; LockQueueGrace is how long a waiter whose turn has come may take
	// to claim before the queue passes it over (0: lock.DefaultQueueGrace).
	LockTTL        time.Duration
	LockJitter     time.Duration
	LockQueueGrace time.Duration

	Drain nodeops.DrainOptions

	// RebootMethod is "command" or "signal".
	RebootMethod  string
	RebootCommand []string
	RebootSignal  int
	// RebootDelay waits between the drain and the reboot.
	RebootDelay    time.Duration
	RebootTimeout  time.Duration
	RebootAttempts int
	ForceReboot    bool
	ReadyTimeout   time.Duration
	Soak           time.Duration
	// LoopBackoff is the least time between two reboots of this node, so a sentinel
	// that survives a reboot cannot cause a reboot loop. Its end is recorded on the
	// Node with the reboot (rebootgate.io/loop-backoff-until), where the decision
	// reads it.
	LoopBackoff time.Duration
	// RecheckInterval re-decides while a reboot is needed but blocked (alerts and pods
	// change without telling us about time; windows do).
	RecheckInterval time.Duration
	// MaxFailures consecutive failures (failed drain, reboot not observed, sentinel
	// that survived a reboot) put the node on hold; each failure before that backs
	// off FailureBackoff, doubled per failure, up to MaxFailureBackoff.
	MaxFailures       int
	FailureBackoff    time.Duration
	MaxFailureBackoff time.Duration
	// ErrorBackoff is the first retry delay after a failed reconcile (an API error),
	// doubled per consecutive error up to MaxErrorBackoff.
	ErrorBackoff    time.Duration
	MaxErrorBackoff time.Duration
	// UnhealthyAfter: /healthz fails once every reconcile has failed for this long.
	UnhealthyAfter time.Duration
	// GuardInterval is how often a drain re-checks the gate and the slot besides on
	// every change; PollInterval paces waits with nothing to watch (health gate, soak).
	GuardInterval time.Duration
	PollInterval  time.Duration

	PreRebootLabels  map[string]string
	PostRebootLabels map[string]string
	// PreferNoScheduleTaint is a taint key (effect PreferNoSchedule) set while the node
	// waits for a slot and while it reboots (kured's --prefer-no-schedule-taint).
	PreferNoScheduleTaint string
	// KuredAnnotations writes kured's --annotate-nodes annotations.
	KuredAnnotations bool
	// MaintenanceConditions writes the node lifecycle conditions of KEP-5683
	// (MaintenancePlanned, MaintenanceInProgress, DrainInProgress, Drained).
	MaintenanceConditions bool
	// LockReleaseDelay keeps the slot this long after the node is uncordoned
	// (kured's --lock-release-delay).
	LockReleaseDelay time.Duration

	// MetricsAddress serves /metrics, /healthz and /readyz; empty disables it.
	MetricsAddress string

	// Notify configures notifications (shoutrrr URLs and message templates).
	Notify notify.Config
	// BlockedTooLong notifies once when a needed reboot stays blocked this long; 0 = never.
	BlockedTooLong time.Duration

	// APIRequests, if set, is served on /metrics (see metrics.NewAPIRequests).
	APIRequests prometheus.Collector

	// OnReady, if set, is called once, when the agent first becomes ready (informers
	// synced, config and policies read), before its first decision. The command
	// times the release of start-up's memory from it.
	OnReady func()
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.SentinelPath == "" && c.SentinelCommand == "" {
		c.SentinelPath = "/var/run/reboot-required"
	}
	if len(c.PolicyNamespaces) == 0 && c.Namespace != "" {
		c.PolicyNamespaces = []string{c.Namespace}
	}
	if c.RebootMethod == "" {
		c.RebootMethod = "command"
	}
	if len(c.RebootCommand) == 0 {
		c.RebootCommand = []string{"/bin/systemctl", "reboot"}
	}
	if c.RebootSignal == 0 {
		c.RebootSignal = 39 // SIGRTMIN+5: systemd reboots
	}
	if c.RebootTimeout == 0 {
		c.RebootTimeout = 10 * time.Minute
	}
	if c.RebootAttempts == 0 {
		c.RebootAttempts = 3
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 10 * time.Minute
	}
	if c.LoopBackoff == 0 {
		c.LoopBackoff = time.Hour
	}
	if c.RecheckInterval == 0 {
		c.RecheckInterval = time.Minute
	}
	if c.MaxFailures == 0 {
		c.MaxFailures = 3
	}
	if c.FailureBackoff == 0 {
		c.FailureBackoff = time.Minute
	}
	if c.MaxFailureBackoff == 0 {
		c.MaxFailureBackoff = time.Hour
	}
	if c.ErrorBackoff == 0 {
		c.ErrorBackoff = time.Second
	}
	if c.MaxErrorBackoff == 0 {
		c.MaxErrorBackoff = time.Minute
	}
	if c.UnhealthyAfter == 0 {
		c.UnhealthyAfter = 2 * time.Minute
	}
	if c.GuardInterval == 0 {
		c.GuardInterval = 5 * time.Second
	}
	if c.PollInterval == 0 {
		c.PollInterval = 5 * time.Second
	}
	if c.Drain.Timeout == 0 {
		// A drain that never ends would hold a cordoned node and its slot for ever.
		c.Drain.Timeout = 15 * time.Minute
	}
	if c.Drain.Attempts == 0 {
		c.Drain.Attempts = 3
	}
	if c.Drain.RetryDelay == 0 {
		c.Drain.RetryDelay = 30 * time.Second
	}
}

// Validate names the first bad setting.
func (c *Config) Validate() error {
	switch {
	case c.NodeName == "":
		return errors.New("node name: is required (--node-id or env KURED_NODE_ID / NODE_NAME)")
	case c.Namespace == "":
		return errors.New("namespace: is required (--namespace or env POD_NAMESPACE)")
	case c.RebootMethod != "command" && c.RebootMethod != "signal":
		return fmt.Errorf("reboot method: %q is not command or signal", c.RebootMethod)
	case c.RebootSignal < 1 || c.RebootSignal > 64:
		return fmt.Errorf("reboot signal: %d is not a signal number", c.RebootSignal)
	case c.RebootAttempts < 1:
		return fmt.Errorf("reboot attempts: %d is less than 1", c.RebootAttempts)
	case c.MaxFailures < 1:
		return fmt.Errorf("max failures: %d is less than 1", c.MaxFailures)
	case c.FailureBackoff < 0:
		return fmt.Errorf("failure backoff: %v is negative", c.FailureBackoff)
	case c.LockReleaseDelay < 0:
		return fmt.Errorf("lock release delay: %v is negative", c.LockReleaseDelay)
	case c.Drain.Delay < 0:
		return fmt.Errorf("drain delay: %v is negative", c.Drain.Delay)
	case c.Drain.Timeout < 0:
		return fmt.Errorf("drain timeout: %v is negative", c.Drain.Timeout)
	case c.LockTTL != 0 && c.LockTTL <= 4*lock.DefaultSkew:
		return fmt.Errorf("lock TTL: %v is not longer than %v (4 × the %v clock-skew allowance)", c.LockTTL, 4*lock.DefaultSkew, lock.DefaultSkew)
	}
	return nil
}
