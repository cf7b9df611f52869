// Package detect answers "does this node need a reboot?".
//
// Two detectors implement [Detector], following kured's --reboot-sentinel and
// --reboot-sentinel-command flags:
//
//   - [FileSentinel]: a file whose existence means "reboot needed" (kured's default
//     /var/run/reboot-required). It is watched with fsnotify through its parent
//     directory, because the file itself is created and removed, and the directory may
//     not exist yet; a periodic fallback check catches what inotify misses (some
//     bind mounts and network or overlay filesystems never deliver events, and inotify
//     instances can run out on busy hosts, in which case only the fallback runs).
//   - [CommandSentinel]: a command run, optionally through nsenter in PID 1's mount
//     namespace, at a fixed period. Exit 0 means "reboot needed" and exit 1 "not
//     needed", as in kured. Unlike kured, any other exit code, a signal, a timeout or a
//     command that cannot be started is an error: the [State] carries Err and never
//     Needed, so that the agent reports it (events, metrics) instead of silently
//     treating the node as up to date. [SplitCommand] splits kured's string form.
//
// [FromKured] builds the detector that kured's two flags describe.
//
// A detector's Run sends the first observed [State] and then only changes (see
// [State.Same]), never duplicates. Check observes once, for eval and status. Time is
// read from a k8s.io/utils/clock clock so that tests drive the periods with a fake one.
package detect
