package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"
)

// defaultCaps is containerd's default capability set for a container that is neither
// privileged nor changes its capabilities (oci.DefaultCapabilities, as the CRI plugin
// uses it).
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// allCaps is every capability up to CAP_CHECKPOINT_RESTORE (40), in number order: what a
// privileged container gets. Index i is capability number i.
var allCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
	"CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
	"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
	"CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
	"CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// CapMask is the bit mask of capability names, as /proc/<pid>/status prints CapEff.
func CapMask(names []string) uint64 {
	var m uint64
	for _, n := range names {
		if i := slices.Index(allCaps, n); i >= 0 {
			m |= 1 << i
		}
	}
	return m
}

// CapNames lists the capabilities of a mask.
func CapNames(mask uint64) []string {
	var out []string
	for i, n := range allCaps {
		if mask&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// ownCaps are the capabilities in this process's bounding set: what containerd gives a
// privileged container (every capability the runtime itself may pass on).
func ownCaps() []string {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return slices.Clone(allCaps)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			if m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil {
				return CapNames(m)
			}
		}
	}
	return slices.Clone(allCaps)
}

// capsFor is what the CRI gives a container: every capability when privileged, else the
// default set with securityContext.capabilities.drop removed ("ALL" drops all) and add
// added.
func capsFor(sc *corev1.SecurityContext) []string {
	if sc != nil && sc.Privileged != nil && *sc.Privileged {
		return ownCaps()
	}
	caps := slices.Clone(defaultCaps)
	if sc == nil || sc.Capabilities == nil {
		return caps
	}
	for _, d := range sc.Capabilities.Drop {
		if strings.EqualFold(string(d), "ALL") {
			caps = nil
			break
		}
		caps = slices.DeleteFunc(caps, func(c string) bool { return c == "CAP_"+strings.ToUpper(string(d)) })
	}
	for _, a := range sc.Capabilities.Add {
		c := "CAP_" + strings.ToUpper(string(a))
		if strings.EqualFold(string(a), "ALL") {
			return ownCaps()
		}
		if !slices.Contains(caps, c) {
			caps = append(caps, c)
		}
	}
	return caps
}

// ImageConfig is the part of an image's config a container uses.
type ImageConfig struct {
	Entrypoint, Cmd, Env []string
	User, WorkingDir     string
}

// PodContext is what the kubelet knows beyond the pod spec: the node, names, the
// environment of the Services, and where each volume is on the host.
type PodContext struct {
	PodName, Namespace, NodeName string
	// ServiceEnv is KUBERNETES_SERVICE_HOST and the like.
	ServiceEnv []string
	// Volumes maps a volume name to its directory (or file) on the host, made by the
	// launcher: emptyDir folders, hostPath resolved in the stand-in host.
	Volumes map[string]string
	// KubeletFiles are /etc/hosts, /etc/hostname, /etc/resolv.conf, /dev/termination-log
	// and the ServiceAccount's token folder: container path → host path.
	KubeletFiles map[string]string
	// PIDNamespace is the stand-in host's PID namespace (hostPID), NetNamespace the
	// pod's network namespace.
	PIDNamespace, NetNamespace string
	// CgroupsPath is the cgroup of the container.
	CgroupsPath string
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand replaces $(VAR) with the container's env value, as the kubelet does in command
// and args ($$ escapes; unknown references stay as they are).
func expand(s string, env map[string]string) string {
	s = strings.ReplaceAll(s, "$$", "\x00")
	s = varRef.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := env[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
	return strings.ReplaceAll(s, "\x00", "$")
}

// user resolves the container's uid and gid: runAsUser/runAsGroup of the container, then
// of the pod, then the image's user ("uid[:gid]" or a name from its /etc/passwd); the gid
// of a uid without a group is its passwd entry's, else 0.
func user(c corev1.Container, pod *corev1.PodSpec, img ImageConfig, rootfs string) (uid, gid uint32, err error) {
	var u, g *int64
	if pod.SecurityContext != nil {
		u, g = pod.SecurityContext.RunAsUser, pod.SecurityContext.RunAsGroup
	}
	if c.SecurityContext != nil {
		if c.SecurityContext.RunAsUser != nil {
			u = c.SecurityContext.RunAsUser
		}
		if c.SecurityContext.RunAsGroup != nil {
			g = c.SecurityContext.RunAsGroup
		}
	}
	passwd, _ := os.ReadFile(filepath.Join(rootfs, "etc", "passwd"))
	lookup := func(field int, val string) []string {
		for _, line := range strings.Split(string(passwd), "\n") {
			f := strings.Split(line, ":")
			if len(f) >= 4 && f[field] == val {
				return f
			}
		}
		return nil
	}
	if u == nil {
		name, grp, _ := strings.Cut(img.User, ":")
		switch n, perr := strconv.ParseUint(name, 10, 32); {
		case name == "":
			uid = 0
		case perr == nil:
			uid = uint32(n)
		default:
			f := lookup(0, name)
			if f == nil {
				return 0, 0, fmt.Errorf("image user %q is not in the image's /etc/passwd", name)
			}
			n, _ := strconv.ParseUint(f[2], 10, 32)
			uid = uint32(n)
		}
		if grp != "" && g == nil {
			n, perr := strconv.ParseUint(grp, 10, 32)
			if perr != nil {
				return 0, 0, fmt.Errorf("image group %q: only numeric groups are supported", grp)
			}
			return uid, uint32(n), nil
		}
	} else {
		uid = uint32(*u)
	}
	if g != nil {
		return uid, uint32(*g), nil
	}
	if f := lookup(2, strconv.FormatUint(uint64(uid), 10)); f != nil {
		n, _ := strconv.ParseUint(f[3], 10, 32)
		return uid, uint32(n), nil
	}
	return uid, 0, nil
}

// seccompType is the container's seccomp profile type, else the pod's.
func seccompType(c corev1.Container, pod *corev1.PodSpec) corev1.SeccompProfileType {
	if c.SecurityContext != nil && c.SecurityContext.SeccompProfile != nil {
		return c.SecurityContext.SeccompProfile.Type
	}
	if pod.SecurityContext != nil && pod.SecurityContext.SeccompProfile != nil {
		return pod.SecurityContext.SeccompProfile.Type
	}
	return ""
}

// Spec translates one container of a pod into an OCI runtime spec, as containerd's CRI
// plugin would: process (args, env, user, capabilities, no_new_privs), read-only root,
// the default mounts, the kubelet's files, the container's volume mounts, masked and
// read-only /proc paths unless privileged, hostPID as the stand-in host's PID namespace,
// the pod's network namespace, the RuntimeDefault seccomp profile, and the memory limit
// and CPU shares of its resources.
// rootfs is the unpacked image (the spec's root.path).
func Spec(c corev1.Container, pod *corev1.PodSpec, img ImageConfig, rootfs string, pc PodContext) (*specs.Spec, error) {
	sc := c.SecurityContext
	privileged := sc != nil && sc.Privileged != nil && *sc.Privileged

	// Environment: the image's, the Services', then the container's (later wins).
	envMap := map[string]string{}
	var envOrder []string
	setEnv := func(k, v string) {
		if _, ok := envMap[k]; !ok {
			envOrder = append(envOrder, k)
		}
		envMap[k] = v
	}
	for _, e := range img.Env {
		k, v, _ := strings.Cut(e, "=")
		setEnv(k, v)
	}
	setEnv("HOSTNAME", pc.PodName)
	for _, e := range pc.ServiceEnv {
		k, v, _ := strings.Cut(e, "=")
		setEnv(k, v)
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			setEnv(e.Name, expand(e.Value, envMap))
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "spec.nodeName":
				setEnv(e.Name, pc.NodeName)
			case "metadata.namespace":
				setEnv(e.Name, pc.Namespace)
			case "metadata.name":
				setEnv(e.Name, pc.PodName)
			default:
				return nil, fmt.Errorf("env %s: fieldRef %s is not supported here", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		default:
			return nil, fmt.Errorf("env %s: only values and fieldRef are supported here", e.Name)
		}
	}
	var env []string
	for _, k := range envOrder {
		env = append(env, k+"="+envMap[k])
	}

	// Command line: command replaces the entrypoint, args the image's cmd.
	argv := slices.Clone(img.Entrypoint)
	args := img.Cmd
	if len(c.Command) > 0 {
		argv, args = nil, nil
		for _, a := range c.Command {
			argv = append(argv, expand(a, envMap))
		}
	}
	if len(c.Args) > 0 {
		args = nil
		for _, a := range c.Args {
			args = append(args, expand(a, envMap))
		}
	}
	argv = append(argv, args...)
	if len(argv) == 0 {
		return nil, fmt.Errorf("container %s: no command", c.Name)
	}

	uid, gid, err := user(c, pod, img, rootfs)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", c.Name, err)
	}
	if sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot && uid == 0 {
		return nil, fmt.Errorf("container %s: runAsNonRoot and the user is root (the kubelet refuses to start it)", c.Name)
	}
	caps := capsFor(sc)
	noNewPrivs := !privileged && sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation

	cwd := img.WorkingDir
	if c.WorkingDir != "" {
		cwd = c.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	s := &specs.Spec{
		Version: "1.0.2",
		Process: &specs.Process{
			Args: argv, Env: env, Cwd: cwd,
			User: specs.User{UID: uid, GID: gid},
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			NoNewPrivileges: noNewPrivs,
		},
		Root: &specs.Root{
			Path:     rootfs,
			Readonly: sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem,
		},
		Hostname: pc.PodName,
		Linux: &specs.Linux{
			CgroupsPath: pc.CgroupsPath,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.MountNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.NetworkNamespace, Path: pc.NetNamespace},
			},
			Resources: &specs.LinuxResources{},
		},
	}
	if pod.HostPID {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: pc.PIDNamespace})
	} else {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	if privileged {
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	} else {
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
		s.Linux.MaskedPaths = []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
			"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
			"/proc/scsi", "/sys/firmware"}
		s.Linux.ReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
	}
	// seccompProfile: RuntimeDefault is the runtime's default profile; Docker's (moby's)
	// stands in for containerd's, which is derived from it, built for this spec's
	// capabilities as both do. Unset is Unconfined, as the kubelet's default is.
	if !privileged {
		switch profile := seccompType(c, pod); profile {
		case "", corev1.SeccompProfileTypeUnconfined:
		case corev1.SeccompProfileTypeRuntimeDefault:
			if s.Linux.Seccomp, err = seccomp.GetDefaultProfile(s); err != nil {
				return nil, fmt.Errorf("container %s: the default seccomp profile: %w", c.Name, err)
			}
		default:
			return nil, fmt.Errorf("container %s: seccompProfile %s is not supported here", c.Name, profile)
		}
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		limit := q.Value()
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit}
	}
	if q, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
		shares := uint64(q.MilliValue() * 1024 / 1000)
		shares = max(shares, 2)
		s.Linux.Resources.CPU = &specs.LinuxCPU{Shares: &shares}
	}

	sysOpts := []string{"nosuid", "noexec", "nodev", "ro"}
	if privileged {
		sysOpts[3] = "rw"
	}
	s.Mounts = []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: sysOpts},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", sysOpts[3]}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
	}
	kubelet := make([]string, 0, len(pc.KubeletFiles))
	for dst := range pc.KubeletFiles {
		kubelet = append(kubelet, dst)
	}
	slices.Sort(kubelet)
	for _, dst := range kubelet {
		opts := []string{"rbind", "rprivate", "rw"}
		if strings.Contains(dst, "serviceaccount") {
			opts[2] = "ro"
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: dst, Type: "bind", Source: pc.KubeletFiles[dst], Options: opts})
	}
	for _, vm := range c.VolumeMounts {
		src, ok := pc.Volumes[vm.Name]
		if !ok {
			return nil, fmt.Errorf("container %s: volume %s has no host directory", c.Name, vm.Name)
		}
		if vm.SubPath != "" {
			src = filepath.Join(src, vm.SubPath)
		}
		opts := []string{"rbind", "rprivate", "rw"}
		if vm.ReadOnly {
			opts[2] = "ro"
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: vm.MountPath, Type: "bind", Source: src, Options: opts})
	}
	return s, nil
}
