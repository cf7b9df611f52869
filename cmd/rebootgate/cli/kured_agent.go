package cli

import (
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/kuredlock"
)

// prepareKured maps kured's flags that have no agent.Config field of their own:
//
//   - --period is kured's polling period. The agent reacts to watch events at once, so
//     --period sets what is still periodic: the sentinel check (--sentinel-period) and
//     the re-check while a needed reboot is blocked (--recheck-interval).
//   - --ds-namespace, with --ds-name and --lock-annotation, locates kured's lock, which
//     only --kured-lock takes part in. It is not the agent's namespace: a kured manifest
//     sets neither --namespace nor POD_NAMESPACE, and its --ds-namespace is kube-system,
//     where rebootgate's Leases and ConfigMaps have no business (defaultNamespace).
//   - --slack-username applies only when given: kured has not used it since 1.7.
//   - the schedule, blocker and concurrency flags make the config when there is no
//     --config (see kuredSchedule). The agent keeps it in memory rather than in a
//     generated file, so it works with a read-only root filesystem.
func (o *agentOptions) prepareKured(fs *pflag.FlagSet, log *slog.Logger) error {
	c := &o.cfg
	if fs.Changed("period") {
		if o.period <= 0 {
			return badInput("--period: %v is not positive", o.period)
		}
		for _, same := range []struct {
			flag string
			v    *time.Duration
		}{{"recheck-interval", &c.RecheckInterval}, {"sentinel-period", &c.SentinelPeriod}} {
			if fs.Changed(same.flag) && *same.v != o.period {
				return badInput("--period %v and --%s %v: --period sets both --sentinel-period and --recheck-interval; give one or the other", o.period, same.flag, *same.v)
			}
			*same.v = o.period
		}
	}
	if !fs.Changed("slack-username") {
		c.Notify.SlackUsername = ""
	}
	if c.LockTTL < 0 {
		return badInput("--lock-ttl: %v is negative (0 = the default, 2m)", c.LockTTL)
	}
	if c.LockReleaseDelay < 0 {
		return badInput("--lock-release-delay: %v is negative", c.LockReleaseDelay)
	}
	if o.kuredLock {
		owners, err := strconv.Atoi(strings.TrimSpace(o.sched.concurrency))
		if err != nil || owners < 1 {
			return badInput("--kured-lock: --concurrency %q must be a count of at least 1 (kured's lock has no percentages)", o.sched.concurrency)
		}
		c.KuredLock = &kuredlock.Lock{Namespace: o.dsNamespace, DaemonSet: o.dsName, Annotation: o.lockAnnotation, NodeID: c.NodeName, MaxOwners: owners, TTL: c.LockTTL}
		if c.DryRun {
			log.Info("--kured-lock: dry-run never takes kured's lock")
		}
	}
	if fs.Changed(config.KuredAlertFilterRegexp) && o.sched.alertFilterRegexp == "" {
		log.Info("--alert-filter-regexp is empty: as in kured, it matches every alert name, so no alert blocks (with --alert-filter-match-only, every alert blocks)")
	}
	o.sched.kuredLock = o.kuredLock
	r, err := o.sched.resolve(fs, c.ConfigPath)
	if err != nil {
		return err
	}
	if r == nil && c.ConfigPath == "" && (c.Alerts.Prometheus.URL != "" || c.Alerts.Alertmanager.URL != "") {
		// Alerts without any config: kured's drop-in, so kured's alerts, which block
		// every node whatever their labels (the default config would scope node-labelled
		// alerts to their node). A config file opts in to node-scoped alerts.
		if r, err = config.FromKured(o.sched.flags(fs)); err != nil {
			return err // the flags' defaults always resolve
		}
	}
	if r != nil {
		c.InlineConfig = r
		doc, _ := yaml.Marshal(r.Source) // a config.Config always marshals
		flags := o.sched.set(fs)
		if len(flags) == 0 {
			log.Info("alerts without --config: kured's alerts, every alert blocks every node (nodeLabels: []); a --config file gets node-scoped alerts; the equivalent config file follows",
				"config", string(doc))
			return nil
		}
		log.Info("config from kured flags (no --config); the equivalent config file follows",
			"flags", strings.Join(flags, ","), "config", string(doc))
	}
	return nil
}
