package config

import (
	"errors"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// Names of kured's schedule, blocker and concurrency flags (kured's own, without
// dashes), which KuredFlags holds.
const (
	KuredConcurrency          = "concurrency"
	KuredRebootDays           = "reboot-days"
	KuredStartTime            = "start-time"
	KuredEndTime              = "end-time"
	KuredTimeZone             = "time-zone"
	KuredBlockingPodSelector  = "blocking-pod-selector"
	KuredAlertFilterRegexp    = "alert-filter-regexp"
	KuredAlertFilterMatchOnly = "alert-filter-match-only"
	KuredAlertFiringOnly      = "alert-firing-only"
)

// KuredScheduleFlags are the names of KuredFlags' flags, in the order errors name them.
func KuredScheduleFlags() []string {
	return []string{
		KuredConcurrency, KuredRebootDays, KuredStartTime, KuredEndTime, KuredTimeZone,
		KuredBlockingPodSelector, KuredAlertFilterRegexp, KuredAlertFilterMatchOnly, KuredAlertFiringOnly,
	}
}

// kuredWindowFlags make the daily window; without any of them the pool may reboot at
// any time (kured's defaults mean the same).
var kuredWindowFlags = []string{KuredRebootDays, KuredStartTime, KuredEndTime, KuredTimeZone}

// matchEveryName is the filter an explicitly empty --alert-filter-regexp stands for.
const matchEveryName = ".*"

// KuredFlags are kured's schedule, blocker and concurrency flags, with kured's syntax.
// They make one pool, "default", owning every node, with one daily window, and the
// global blockers: the config a kured user had, without writing a config file.
type KuredFlags struct {
	Concurrency          string
	RebootDays           []string
	StartTime            string
	EndTime              string
	TimeZone             string
	BlockingPodSelectors []string
	AlertFilterRegexp    string
	AlertFilterMatchOnly bool
	AlertFiringOnly      bool
	// Given names the flags given (on the command line or from env), by flag name: a
	// window is made only when a window flag was given, and an empty
	// --alert-filter-regexp given explicitly matches every alert name, as in kured.
	Given map[string]bool
	// Env names the KURED_* variable a flag's value came from, by flag name, for the
	// errors.
	Env map[string]string
}

// KuredConfig is the RebootGateConfig the flags stand for, not yet validated.
func KuredConfig(k KuredFlags) *Config {
	concurrency := intstr.Parse(strings.TrimSpace(k.Concurrency))
	pool := Pool{Name: DefaultPoolName, Selector: "true", Concurrency: &concurrency}
	for _, name := range kuredWindowFlags {
		if k.Given[name] {
			days := Days(k.RebootDays)
			if len(days) == 0 {
				// An empty --reboot-days is no day at all, as in kured (never), while a
				// window without days means every day.
				days = Days{""}
			}
			pool.Windows = []Window{{Days: days, StartTime: k.StartTime, EndTime: k.EndTime, TimeZone: k.TimeZone}}
			break
		}
	}
	filter := k.AlertFilterRegexp
	if filter == "" && k.Given[KuredAlertFilterRegexp] {
		// kured compiles the empty regexp given explicitly, and it matches every name.
		filter = matchEveryName
	}
	return &Config{
		APIVersion: APIVersion,
		Kind:       Kind,
		Pools:      []Pool{pool},
		Blockers: Blockers{
			Pods: PodBlockers{Selectors: k.BlockingPodSelectors},
			Alerts: AlertBlockers{
				FilterRegexp: filter, FilterMatchOnly: k.AlertFilterMatchOnly, FiringOnly: k.AlertFiringOnly,
				// kured blocks every node on every alert, whatever its labels.
				NodeLabels: &[]string{},
			},
		},
	}
}

// FromKured builds and validates the config kured's flags stand for (KuredConfig). Its
// errors are the config's field errors named after the flags, keeping the config's
// messages (which quote the bad value): `--start-time: "5:00pm" is not a time (...)`,
// or `--start-time (env KURED_START_TIME): ...` when the value came from env.
func FromKured(k KuredFlags) (*Resolved, error) {
	r, err := Resolve(KuredConfig(k))
	if err != nil {
		return nil, kuredFlagErrors(err, k.Env)
	}
	return r, nil
}

// kuredFieldFlags maps a KuredConfig's field paths to the flags that set them.
var kuredFieldFlags = []struct {
	path *regexp.Regexp
	flag string
}{
	{regexp.MustCompile(`^pools\[0\]\.concurrency$`), KuredConcurrency},
	{regexp.MustCompile(`^pools\[0\]\.windows\[0\]\.days$`), KuredRebootDays},
	{regexp.MustCompile(`^pools\[0\]\.windows\[0\]\.startTime$`), KuredStartTime},
	{regexp.MustCompile(`^pools\[0\]\.windows\[0\]\.endTime$`), KuredEndTime},
	{regexp.MustCompile(`^pools\[0\]\.windows\[0\]\.timeZone$`), KuredTimeZone},
	{regexp.MustCompile(`^blockers\.pods\.selectors\[\d+\]$`), KuredBlockingPodSelector},
	{regexp.MustCompile(`^blockers\.alerts\.filterRegexp$`), KuredAlertFilterRegexp},
}

// kuredFlagErrors renames the field errors of err after the flags.
func kuredFlagErrors(err error, env map[string]string) error {
	var list ErrorList
	if !errors.As(err, &list) {
		return err
	}
	out := make(ErrorList, 0, len(list))
	for _, fe := range list {
		path := fe.Path
		for _, m := range kuredFieldFlags {
			if m.path.MatchString(path) {
				path = "--" + m.flag
				if v, ok := env[m.flag]; ok {
					path += " (env " + v + ")"
				}
				break
			}
		}
		out = append(out, &FieldError{Path: path, Msg: fe.Msg})
	}
	return out
}
