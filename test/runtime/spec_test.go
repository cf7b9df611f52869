package runtime

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func ptr[T any](v T) *T { return &v }

// The translation follows the CRI's rules: the chart's signal-mode context gives CAP_KILL
// alone, no_new_privs, a read-only root and masked /proc paths; privileged gives every
// capability this process has and no masking; $(VAR) in args expands from the env; the
// image's user applies unless runAsUser is set; volume mounts keep readOnly.
func TestSpecTranslation(t *testing.T) {
	rootfs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc", "passwd"), []byte("root:x:0:0::/root:/bin/sh\nnonroot:x:65532:65532::/home/nonroot:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := ImageConfig{Entrypoint: []string{"/usr/local/bin/rebootgate"}, Cmd: []string{"agent"}, User: "nonroot", Env: []string{"PATH=/usr/bin"}}
	pod := &corev1.PodSpec{HostPID: true}
	pc := PodContext{
		PodName: "p", Namespace: "ns1", NodeName: "n1",
		Volumes:      map[string]string{"sentinel": "/host/run"},
		PIDNamespace: "/proc/42/ns/pid", NetNamespace: "/proc/43/ns/net",
	}
	signal := corev1.Container{
		Name: "agent",
		Args: []string{"agent", "--policy-namespace=$(POD_NAMESPACE)", "--x=$$(KEEP)"},
		Env: []corev1.EnvVar{{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}},
		SecurityContext: &corev1.SecurityContext{
			Privileged: ptr(false), AllowPrivilegeEscalation: ptr(false), ReadOnlyRootFilesystem: ptr(true),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			RunAsUser:      ptr(int64(0)), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"KILL"}},
		},
		VolumeMounts: []corev1.VolumeMount{{Name: "sentinel", MountPath: "/sentinel", ReadOnly: true}},
		Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("20m")},
		},
	}
	s, err := Spec(signal, pod, img, rootfs, pc)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/usr/local/bin/rebootgate", "agent", "--policy-namespace=ns1", "--x=$(KEEP)"}; !slices.Equal(s.Process.Args, want) {
		t.Errorf("args %q, want %q", s.Process.Args, want)
	}
	if !slices.Contains(s.Process.Env, "NODE_NAME=n1") || !slices.Contains(s.Process.Env, "PATH=/usr/bin") {
		t.Errorf("env %q lacks NODE_NAME=n1 or the image's PATH", s.Process.Env)
	}
	if s.Process.User.UID != 0 || s.Process.User.GID != 0 {
		t.Errorf("user %+v, want root (runAsUser 0 over the image's nonroot)", s.Process.User)
	}
	if c := s.Process.Capabilities; !slices.Equal(c.Effective, []string{"CAP_KILL"}) || !slices.Equal(c.Bounding, []string{"CAP_KILL"}) || len(c.Inheritable)+len(c.Ambient) != 0 {
		t.Errorf("capabilities %+v, want CAP_KILL alone", c)
	}
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno || len(s.Linux.Seccomp.Syscalls) == 0 {
		t.Errorf("RuntimeDefault gave no default-deny seccomp filter: %+v", s.Linux.Seccomp)
	}
	if !s.Process.NoNewPrivileges || !s.Root.Readonly || len(s.Linux.MaskedPaths) == 0 {
		t.Errorf("no_new_privs %v, read-only root %v, masked paths %v", s.Process.NoNewPrivileges, s.Root.Readonly, s.Linux.MaskedPaths)
	}
	ns := map[specs.LinuxNamespaceType]string{}
	for _, n := range s.Linux.Namespaces {
		ns[n.Type] = n.Path
	}
	if ns[specs.PIDNamespace] != pc.PIDNamespace || ns[specs.NetworkNamespace] != pc.NetNamespace {
		t.Errorf("namespaces %v: hostPID must join %s, the pod's network %s", ns, pc.PIDNamespace, pc.NetNamespace)
	}
	i := slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/sentinel" })
	if i < 0 || s.Mounts[i].Source != "/host/run" || !slices.Contains(s.Mounts[i].Options, "ro") {
		t.Errorf("the sentinel mount is not /host/run read-only: %+v", s.Mounts)
	}
	if *s.Linux.Resources.Memory.Limit != 256<<20 || *s.Linux.Resources.CPU.Shares != 20 {
		t.Errorf("resources %+v %+v", *s.Linux.Resources.Memory.Limit, *s.Linux.Resources.CPU.Shares)
	}

	// The image's user when nothing overrides it; privileged: every capability we hold.
	priv := corev1.Container{Name: "agent", SecurityContext: &corev1.SecurityContext{Privileged: ptr(true)}}
	s, err = Spec(priv, pod, img, rootfs, pc)
	if err != nil {
		t.Fatal(err)
	}
	if s.Process.User.UID != 65532 || s.Process.User.GID != 65532 {
		t.Errorf("user %+v, want the image's nonroot 65532:65532", s.Process.User)
	}
	if !slices.Equal(s.Process.Capabilities.Effective, ownCaps()) || len(s.Linux.MaskedPaths) != 0 || s.Process.NoNewPrivileges || s.Linux.Seccomp != nil {
		t.Errorf("privileged: capabilities %v (want %v), masked %v, no_new_privs %v, seccomp %v",
			s.Process.Capabilities.Effective, ownCaps(), s.Linux.MaskedPaths, s.Process.NoNewPrivileges, s.Linux.Seccomp != nil)
	}
	// runAsNonRoot with a root user is refused, as the kubelet does.
	bad := corev1.Container{Name: "agent", SecurityContext: &corev1.SecurityContext{RunAsNonRoot: ptr(true), RunAsUser: ptr(int64(0))}}
	if _, err := Spec(bad, pod, img, rootfs, pc); err == nil {
		t.Error("runAsNonRoot with uid 0 was accepted")
	}
}
