package cli

import (
	"encoding/csv"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/rebootgate/rebootgate/engine/config"
)

// kuredFlag is one flag of kured (release 1.23) and how rebootgate maps it.
type kuredFlag struct {
	// Name is kured's flag name, without dashes; `rebootgate agent` has a flag by it.
	Name string
	// Maps says what rebootgate does with it (the README's migration table says the same).
	Maps string
}

// kuredFlags is every kured flag, in kured's order. `rebootgate agent` accepts each
// under kured's name and also from env KURED_<NAME_IN_UPPER_SNAKE>, the env winning as in
// kured; the tests check every one is in `rebootgate agent --help` and the README.
var kuredFlags = []kuredFlag{
	{"reboot-sentinel", "same"},
	{"reboot-sentinel-command", "same; an exit code other than 0 or 1 is an error that blocks, not \"not needed\""},
	{"period", "the sentinel check period (--sentinel-period) and the re-check period while a needed reboot is blocked (--recheck-interval); rebootgate also reacts to events at once"},
	{"ds-namespace", "with --kured-lock, the DaemonSet's namespace (rebootgate's own objects are in --namespace)"},
	{"ds-name", "with --kured-lock, the DaemonSet carrying kured's lock; otherwise unused (the lock is a Lease per pool slot)"},
	{"lock-annotation", "with --kured-lock, kured's lock annotation; otherwise unused"},
	{"lock-ttl", "safer: 0 (kured: never expires) holds the slot until the node is back, however long its reboot takes; only an agent that stopped renewing while its node is not rebooting loses the slot, after 2m (a TTL > 0 likewise, never mid-reboot)"},
	{"lock-release-delay", "same: after the reboot the node is uncordoned, and the slot released this long afterwards"},
	{"concurrency", "the default pool's concurrency (also a percentage, e.g. 10%)"},
	{"reboot-days", "the default pool's daily window: days"},
	{"start-time", "the default pool's daily window: startTime"},
	{"end-time", "the default pool's daily window: endTime"},
	{"time-zone", "the default pool's daily window: timeZone"},
	{"blocking-pod-selector", "blockers.pods.selectors"},
	{"prometheus-url", "same (firing ALERTS block; a query error blocks)"},
	{"alert-filter-regexp", "blockers.alerts.filterRegexp; given as \"\" it matches every alert name, as in kured"},
	{"alert-filter-match-only", "blockers.alerts.filterMatchOnly"},
	{"alert-firing-only", "blockers.alerts.firingOnly"},
	{"drain-grace-period", "same"},
	{"drain-timeout", "bounds the whole drain (all --drain-attempts), then --force-reboot reboots anyway, as in kured; safer: 0 (kured: no timeout) = 15m"},
	{"drain-pod-selector", "same"},
	{"skip-wait-for-delete-timeout", "same"},
	{"drain-delay", "same (wait after the cordon, before evicting)"},
	{"force-reboot", "same"},
	{"reboot-method", "same"},
	{"reboot-command", "same"},
	{"reboot-signal", "same"},
	{"reboot-delay", "same"},
	{"node-id", "same"},
	{"annotate-nodes", "same annotations and RFC 3339 times; written with the cordon (kured: when first found needed in the window) and reboot-in-progress removed when the reboot ends"},
	{"pre-reboot-node-labels", "same"},
	{"post-reboot-node-labels", "same"},
	{"prefer-no-schedule-taint", "same: set while the node waits for a slot and while it reboots; removed when the reboot ends, no longer needed, or blocked"},
	{"notify-url", "same (repeatable)"},
	{"slack-hook-url", "same (deprecated, as in kured)"},
	{"slack-username", "the name --slack-hook-url messages are posted under (when given)"},
	{"slack-channel", "accepted, no effect, as in kured since 1.7: a Slack webhook posts to its own channel"},
	{"message-template-drain", "same (%s = node name), or a Go template"},
	{"message-template-reboot", "same (%s = node name), or a Go template"},
	{"message-template-uncordon", "same (%s = node name), or a Go template"},
	{"metrics-host", "same"},
	{"metrics-port", "same; kured_reboot_required{node} is exported, beside rebootgate_reboot_required{node} and the other rebootgate_* metrics"},
	{"log-format", "same"},
}

// kuredEnvName is the env variable kured reads a flag from: KURED_ and the name in
// upper snake case.
func kuredEnvName(flag string) string {
	return "KURED_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyKuredEnv sets every kured flag whose KURED_* variable is set (even to ""), over
// the command line, as kured does. A list flag takes the whole value:
// comma-separated for --reboot-days and the label flags, one item for
// --blocking-pod-selector and --notify-url (selectors and URLs contain commas). A value
// the flag rejects is an error naming the variable.
// It returns the variables it applied, by flag name.
func applyKuredEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) (map[string]string, error) {
	applied := map[string]string{}
	for _, kf := range kuredFlags {
		env := kuredEnvName(kf.Name)
		v, ok := lookup(env)
		if !ok {
			continue
		}
		f := fs.Lookup(kf.Name)
		if f == nil {
			return nil, fmt.Errorf("kured flag --%s is not defined", kf.Name) // a programming error
		}
		if sv, isSlice := f.Value.(pflag.SliceValue); isSlice {
			items := []string{}
			switch {
			case v == "":
			case f.Value.Type() == "stringArray":
				items = []string{v}
			default:
				r, err := csv.NewReader(strings.NewReader(v)).Read()
				if err != nil {
					return nil, badInput("env %s: %q is not a comma-separated list for --%s: %v", env, v, kf.Name, err)
				}
				items = r
			}
			if err := sv.Replace(items); err != nil {
				return nil, badInput("env %s: %q is not a valid --%s: %v", env, v, kf.Name, err)
			}
			f.Changed = true
		} else if err := fs.Set(kf.Name, v); err != nil {
			return nil, badInput("env %s: %q is not a valid --%s: %v", env, v, kf.Name, unwrapFlagError(err))
		}
		applied[kf.Name] = env
	}
	return applied, nil
}

// unwrapFlagError keeps the cause of a pflag Set error (strconv's "invalid syntax"), not
// pflag's repetition of the value.
func unwrapFlagError(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

// kuredSchedule binds kured's schedule, blocker and concurrency flags; what they mean
// is config.FromKured's.
type kuredSchedule struct {
	concurrency          string
	rebootDays           []string
	startTime            string
	endTime              string
	timeZone             string
	podSelectors         []string
	alertFilterRegexp    string
	alertFilterMatchOnly bool
	alertFiringOnly      bool
	// env names the KURED_* variable a flag's value came from, for error messages.
	env map[string]string
	// kuredLock: with --config, --concurrency is allowed and sets only the holder
	// count of kured's lock.
	kuredLock bool
}

// bind adds the flags with kured's defaults.
func (k *kuredSchedule) bind(f *pflag.FlagSet) {
	f.StringVar(&k.concurrency, config.KuredConcurrency, "1", "nodes of the default pool rebooting at once: a count, or a percentage of the pool's nodes (e.g. 10%)")
	f.StringSliceVar(&k.rebootDays, config.KuredRebootDays, []string{"su", "mo", "tu", "we", "th", "fr", "sa"}, "days reboots may start: su|sun|sunday … sa|sat|saturday or 0-6, comma-separated")
	f.StringVar(&k.startTime, config.KuredStartTime, "0:00", "start of the daily reboot window (17:00, 5pm, 05:30pm); after --end-time it crosses midnight")
	f.StringVar(&k.endTime, config.KuredEndTime, "23:59:59", "end of the daily reboot window, inclusive")
	f.StringVar(&k.timeZone, config.KuredTimeZone, "UTC", "time zone of the window: an IANA name (Europe/Berlin) or Local")
	f.StringArrayVar(&k.podSelectors, config.KuredBlockingPodSelector, nil, "label selector; a running pod on the node matching it blocks the reboot (repeatable)")
	f.StringVar(&k.alertFilterRegexp, config.KuredAlertFilterRegexp, "", "alerts whose name matches this regexp do not block (see --alert-filter-match-only)")
	f.BoolVar(&k.alertFilterMatchOnly, config.KuredAlertFilterMatchOnly, false, "invert --alert-filter-regexp: only matching alerts block")
	f.BoolVar(&k.alertFiringOnly, config.KuredAlertFiringOnly, false, "only firing alerts block, not pending ones")
}

// set returns the flags given (on the command line or from env), as "--name".
func (k *kuredSchedule) set(f *pflag.FlagSet) []string {
	var out []string
	for _, name := range config.KuredScheduleFlags() {
		if f.Changed(name) {
			out = append(out, "--"+name)
		}
	}
	return out
}

// flags are the parsed flags, for config.FromKured.
func (k *kuredSchedule) flags(f *pflag.FlagSet) config.KuredFlags {
	given := map[string]bool{}
	for _, name := range config.KuredScheduleFlags() {
		given[name] = f.Changed(name)
	}
	return config.KuredFlags{
		Concurrency: k.concurrency, RebootDays: k.rebootDays, StartTime: k.startTime, EndTime: k.endTime, TimeZone: k.timeZone,
		BlockingPodSelectors: k.podSelectors, AlertFilterRegexp: k.alertFilterRegexp,
		AlertFilterMatchOnly: k.alertFilterMatchOnly, AlertFiringOnly: k.alertFiringOnly,
		Given: given, Env: k.env,
	}
}

// resolve builds and validates the config from the flags. It returns nil when none of
// them was given (the caller then uses configPath, or the default config), and an error
// when they were given together with --config: the file would silently win otherwise.
func (k *kuredSchedule) resolve(f *pflag.FlagSet, configPath string) (*config.Resolved, error) {
	set := k.set(f)
	if len(set) == 0 {
		return nil, nil
	}
	if configPath != "" && k.kuredLock && slices.Equal(set, []string{"--" + config.KuredConcurrency}) {
		return nil, nil // only the kured lock's holder count
	}
	if configPath != "" {
		return nil, badInput("--config and %s: use one (move the schedule and blockers into the config file, or drop --config)", strings.Join(set, ", "))
	}
	r, err := config.FromKured(k.flags(f))
	if err != nil {
		return nil, badInput("%w", err)
	}
	return r, nil
}
