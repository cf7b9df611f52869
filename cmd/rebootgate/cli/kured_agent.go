package cli

import (
	"log/slog"
	"strings"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// prepareKured maps kured's flags that have no agent.Config field of their own:
//
//   - --period is kured's polling period. The agent reacts to watch events and only
//     re-checks on a timer while a needed reboot is blocked, so --period sets that
//     re-check period (--recheck-interval).
//   - --lock-release-delay is kured's wait between coming back and releasing the lock:
//     --soak, the wait after the reboot before uncordoning and releasing the slot.
//   - --ds-namespace, --ds-name and --lock-annotation located kured's lock; the lock is
//     now a Lease per pool slot, so they are accepted, logged and ignored. So is
//     --annotate-nodes: rebootgate always annotates.
//   - the schedule, blocker and concurrency flags make the config when there is no
//     --config (see kuredSchedule). The agent keeps it in memory rather than in a
//     generated file, so it works with a read-only root filesystem.
func (o *agentOptions) prepareKured(fs *pflag.FlagSet, log *slog.Logger) error {
	c := &o.cfg
	if fs.Changed("period") {
		if o.period <= 0 {
			return badInput("--period: %v is not positive", o.period)
		}
		if fs.Changed("recheck-interval") && c.RecheckInterval != o.period {
			return badInput("--period %v and --recheck-interval %v: they are one setting, give one", o.period, c.RecheckInterval)
		}
		c.RecheckInterval = o.period
		log.Info("--period: rebootgate is event-driven; kured's period is used only as the re-check period while a needed reboot is blocked", "period", o.period)
	}
	if fs.Changed("lock-release-delay") {
		if o.lockReleaseDelay < 0 {
			return badInput("--lock-release-delay: %v is negative", o.lockReleaseDelay)
		}
		if fs.Changed("soak") && c.Soak != o.lockReleaseDelay {
			return badInput("--lock-release-delay %v and --soak %v: they are one setting, give one", o.lockReleaseDelay, c.Soak)
		}
		c.Soak = o.lockReleaseDelay
	}
	if c.LockTTL < 0 {
		return badInput("--lock-ttl: %v is negative (0 = the default, 2m)", c.LockTTL)
	}
	var ignored []string
	for _, name := range []string{"ds-namespace", "ds-name", "lock-annotation"} {
		if fs.Changed(name) {
			ignored = append(ignored, "--"+name)
		}
	}
	if len(ignored) > 0 {
		log.Warn("kured lock flags ignored: the lock is now a coordination.k8s.io Lease per pool slot (rebootgate-<pool>-<slot>) in --namespace, not an annotation on a DaemonSet",
			"flags", strings.Join(ignored, ","), "namespace", c.Namespace)
	}
	if fs.Changed("annotate-nodes") {
		log.Info("--annotate-nodes: accepted and not needed; rebootgate always annotates nodes (rebootgate.io/phase, rebootgate.io/decision, rebootgate.io/reboot-required, ...)")
	}
	r, err := o.sched.resolve(fs, c.ConfigPath)
	if err != nil {
		return err
	}
	if r != nil {
		c.InlineConfig = r
		doc, _ := yaml.Marshal(r.Source) // a config.Config always marshals
		log.Info("config from kured flags (no --config); the equivalent config file follows",
			"flags", strings.Join(o.sched.set(fs), ","), "config", string(doc))
	}
	return nil
}
