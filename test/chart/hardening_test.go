package chart

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// volumesByName indexes the pod's volumes.
func volumesByName(ds *appsv1.DaemonSet) map[string]corev1.Volume {
	out := map[string]corev1.Volume{}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		out[v.Name] = v
	}
	return out
}

// allContainers is the pod's init and regular containers.
func allContainers(ds *appsv1.DaemonSet) []corev1.Container {
	spec := ds.Spec.Template.Spec
	return append(slices.Clone(spec.InitContainers), spec.Containers...)
}

func namedContainer(t *testing.T, ds *appsv1.DaemonSet, name string) corev1.Container {
	t.Helper()
	for _, c := range allContainers(ds) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no %s container", name)
	return corev1.Container{}
}

// TestSignalModeRootAgentSeesNoHostRun: in signal mode the agent runs as root (CAP_KILL
// is effective only for root), and a root process connects to the host's containerd,
// D-Bus and systemd sockets in /run whatever the mount's readOnly says (connect(2) on a
// socket ignores it). So no root container may mount a host path at all; the one
// container that mounts the sentinel's host directory (the mirror) is non-root with no
// capabilities, no privilege escalation, and mounts it read-only; the agent watches a
// memory emptyDir. The mirror cannot be made root.
func TestSignalModeRootAgentSeesNoHostRun(t *testing.T) {
	e := setup(t)
	if _, err := Template(e.helm, e.chart, Release, Namespace, "--set", "configuration.rebootMethod=signal", "--set", "sentinelMirror.runAsUser=0"); err == nil || !strings.Contains(err.Error(), "runAsUser") {
		t.Errorf("sentinelMirror.runAsUser=0: %v, want a schema error", err)
	}
	for name, args := range map[string][]string{
		"default sentinel": {"--set", "configuration.rebootMethod=signal"},
		"signal.values":    {"-f", filepath.Join("testdata", "signal.values.yaml")},
		"sentinel in /run": {"--set", "configuration.rebootMethod=signal", "--set", "configuration.rebootSentinel=/run/reboot-required"},
		"pod context root": {"--set", "configuration.rebootMethod=signal", "--set", "podSecurityContext.runAsUser=0"},
	} {
		t.Run(name, func(t *testing.T) {
			ds := daemonSet(t, e.render(t, args...))
			vols := volumesByName(ds)
			hostMounts := 0
			for _, c := range allContainers(ds) {
				for _, m := range c.VolumeMounts {
					v, ok := vols[m.Name]
					if !ok || v.HostPath == nil {
						continue
					}
					hostMounts++
					if c.Name == "agent" {
						t.Errorf("the root agent mounts host path %s at %s", v.HostPath.Path, m.MountPath)
					}
					if !m.ReadOnly {
						t.Errorf("%s mounts host path %s writable", c.Name, v.HostPath.Path)
					}
					sc := c.SecurityContext
					if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser == 0 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
						t.Errorf("%s mounts host path %s and may run as root: %+v", c.Name, v.HostPath.Path, sc)
						continue
					}
					if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
						t.Errorf("%s mounts host path %s with capabilities %+v, want drop [ALL] and none added", c.Name, v.HostPath.Path, sc.Capabilities)
					}
					if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Privileged == nil || *sc.Privileged {
						t.Errorf("%s mounts host path %s and may gain privileges: %+v", c.Name, v.HostPath.Path, sc)
					}
				}
			}
			if hostMounts != 1 {
				t.Errorf("%d host path mounts, want 1 (the mirror's)", hostMounts)
			}
			agent := agentContainer(t, ds)
			for _, m := range agent.VolumeMounts {
				if m.MountPath == "/sentinel" {
					if v := vols[m.Name]; v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory {
						t.Errorf("agent's /sentinel is %+v, want a memory emptyDir (gone with the reboot, as /run)", v.VolumeSource)
					}
				}
			}
			if sc := agent.SecurityContext; sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"KILL"}) {
				t.Errorf("agent capabilities %+v, want only KILL added", sc.Capabilities)
			}
		})
	}
}

// TestSentinelMirrorWiring: the mirror reads /host/<file> from the sentinel's host
// directory and writes /sentinel/<file> into the volume the agent watches, the path the
// agent's --reboot-sentinel names. The command method keeps kured's direct mount and
// has no mirror.
func TestSentinelMirrorWiring(t *testing.T) {
	e := setup(t)
	ds := daemonSet(t, e.render(t, "--set", "configuration.rebootMethod=signal", "--set", "configuration.rebootSentinel=/run/updates/needs-reboot"))
	vols := volumesByName(ds)
	m := namedContainer(t, ds, "sentinel-mirror")
	if len(m.Args) != 5 || m.Args[2] != "/host/needs-reboot" || m.Args[3] != "/sentinel/needs-reboot" {
		t.Fatalf("mirror args %q, want [script sentinel-mirror /host/needs-reboot /sentinel/needs-reboot period]", m.Args)
	}
	mounts := map[string]string{}
	for _, vm := range m.VolumeMounts {
		mounts[vm.MountPath] = vm.Name
	}
	if v := vols[mounts["/host"]]; v.HostPath == nil || v.HostPath.Path != "/run/updates" {
		t.Errorf("mirror's /host is %+v, want hostPath /run/updates", v.VolumeSource)
	}
	agent := agentContainer(t, ds)
	if !slices.Contains(agent.Args, "--reboot-sentinel=/sentinel/needs-reboot") {
		t.Errorf("agent args %q lack --reboot-sentinel=/sentinel/needs-reboot", agent.Args)
	}
	var shared bool
	for _, vm := range agent.VolumeMounts {
		shared = shared || (vm.MountPath == "/sentinel" && vm.Name == mounts["/sentinel"] && vm.ReadOnly)
	}
	if !shared {
		t.Errorf("agent does not mount the mirror's /sentinel volume read-only: %+v", agent.VolumeMounts)
	}

	cmd := daemonSet(t, e.render(t, "--set", "configuration.rebootMethod=command"))
	for _, c := range allContainers(cmd) {
		if c.Name == "sentinel-mirror" {
			t.Error("command method renders the sentinel mirror")
		}
	}
}

// TestSentinelMirrorScript runs the rendered mirror script with /bin/sh: the mirror file
// follows the host file's creation and removal within a period, SIGTERM ends it at once,
// and a host directory it cannot search is an exit 1 that removes the mirror file (never
// a stale "reboot needed").
func TestSentinelMirrorScript(t *testing.T) {
	e := setup(t)
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	m := namedContainer(t, daemonSet(t, e.render(t, "--set", "configuration.rebootMethod=signal", "--set", "sentinelMirror.period=1")), "sentinel-mirror")
	if !slices.Equal(m.Command, []string{"/bin/sh", "-c"}) || len(m.Args) != 5 || m.Args[4] != "1" {
		t.Fatalf("mirror command %q args %q", m.Command, m.Args)
	}
	script := m.Args[0]
	hostDir, mirrorDir := t.TempDir(), t.TempDir()
	src, dst := filepath.Join(hostDir, "reboot-required"), filepath.Join(mirrorDir, "reboot-required")
	exists := func(p string) bool { _, err := os.Lstat(p); return err == nil }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(4 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("mirror: %s not within 4s (period 1s)", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	var out bytes.Buffer
	run := exec.Command(sh, "-c", script, "sentinel-mirror", src, dst, "1")
	run.Stdout, run.Stderr = &out, &out
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- run.Wait() }()
	t.Cleanup(func() { _ = run.Process.Kill() })
	time.Sleep(1500 * time.Millisecond)
	if exists(dst) {
		t.Fatal("mirror file exists while the host file does not")
	}
	if err := os.WriteFile(src, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor("file created after the host's", func() bool { return exists(dst) })
	if err := os.Remove(src); err != nil {
		t.Fatal(err)
	}
	waitFor("file removed after the host's", func() bool { return !exists(dst) })
	if err := os.Symlink(filepath.Join(hostDir, "dangling"), src); err != nil {
		t.Fatal(err)
	}
	waitFor("file created for a dangling symlink (any entry counts, as in kured)", func() bool { return exists(dst) })

	start := time.Now()
	if err := run.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, out.String())
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("SIGTERM took %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("still running 5s after SIGTERM\n%s", out.String())
	}

	// The mirror file says "needed" from before; the host directory is gone.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out.Reset()
	bad := exec.CommandContext(ctx, sh, "-c", script, "sentinel-mirror", filepath.Join(hostDir, "gone", "reboot-required"), dst, "1")
	bad.Stdout, bad.Stderr = &out, &out
	err = bad.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("unsearchable host directory: %v, want exit 1\n%s", err, out.String())
	}
	if exists(dst) {
		t.Error("a failing mirror left the mirror file (a stale reboot-needed)")
	}
	if !strings.Contains(out.String(), "cannot search") {
		t.Errorf("output %q does not say why", out.String())
	}
}

// notifyRender renders with --set-string values and returns the DaemonSet, the agent,
// the whole DaemonSet YAML and the notify Secret (nil if none).
func notifyRender(t *testing.T, e env, set ...string) (*appsv1.DaemonSet, corev1.Container, string, *corev1.Secret) {
	t.Helper()
	var args []string
	for _, s := range set {
		args = append(args, "--set-string", s)
	}
	objs := e.render(t, args...)
	var dsYAML string
	var secret *corev1.Secret
	for _, o := range objs {
		switch o.Kind {
		case "DaemonSet":
			dsYAML = string(o.YAML)
		case "Secret":
			secret = &corev1.Secret{}
			if err := yaml.UnmarshalStrict(o.YAML, secret); err != nil {
				t.Fatal(err)
			}
		}
	}
	ds := daemonSet(t, objs)
	return ds, agentContainer(t, ds), dsYAML, secret
}

// TestNotifyURLsFromSecretNotArgs: configuration.notifyUrl, slackHookUrl and notify.urls
// land in the Secret <fullname>-notify, never in the DaemonSet (args or env values); the
// agent gets --notify-url-file on the mounted key and KURED_SLACK_HOOK_URL from a
// secretKeyRef; a URL change rolls the pods (checksum annotation).
func TestNotifyURLsFromSecretNotArgs(t *testing.T) {
	e := setup(t)
	const (
		kured = "slack://hook:TKURED-BKURED-XKURED@webhook"
		own   = "teams://OWNTOKEN@tenant/alt/owner?host=x.webhook.office.com"
		hook  = "https://hooks.slack.com/services/THOOK/BHOOK/XHOOKSECRET"
	)
	ds, agent, dsYAML, secret := notifyRender(t, e, "configuration.notifyUrl="+kured, "notify.urls[0]="+own, "configuration.slackHookUrl="+hook)
	for _, tok := range []string{"TKURED", "OWNTOKEN", "XHOOKSECRET"} {
		if strings.Contains(dsYAML, tok) {
			t.Errorf("the DaemonSet contains the token %s", tok)
		}
	}
	for _, a := range agent.Args {
		if strings.HasPrefix(a, "--notify-url=") || strings.HasPrefix(a, "--slack-hook-url=") {
			t.Errorf("args carry a URL flag: %s", a)
		}
	}
	if secret == nil {
		t.Fatal("no notify Secret rendered")
	}
	if secret.Name != Release+"-notify" || secret.Namespace != Namespace {
		t.Errorf("Secret %s/%s", secret.Namespace, secret.Name)
	}
	if got, want := string(secret.Data["urls"]), kured+"\n"+own+"\n"; got != want {
		t.Errorf("Secret urls %q, want %q", got, want)
	}
	if got := string(secret.Data["slack-hook-url"]); got != hook {
		t.Errorf("Secret slack-hook-url %q, want %q", got, hook)
	}
	if !slices.Contains(agent.Args, "--notify-url-file=/etc/rebootgate-notify/urls") {
		t.Errorf("args %q lack --notify-url-file=/etc/rebootgate-notify/urls", agent.Args)
	}
	checkNotifyVolume(t, ds, agent, Release+"-notify", "urls")
	var hookEnv *corev1.EnvVar
	for i, ev := range agent.Env {
		if ev.Name == "KURED_SLACK_HOOK_URL" {
			hookEnv = &agent.Env[i]
		}
	}
	if hookEnv == nil || hookEnv.Value != "" || hookEnv.ValueFrom == nil || hookEnv.ValueFrom.SecretKeyRef == nil ||
		hookEnv.ValueFrom.SecretKeyRef.Name != Release+"-notify" || hookEnv.ValueFrom.SecretKeyRef.Key != "slack-hook-url" {
		t.Errorf("KURED_SLACK_HOOK_URL env %+v, want a secretKeyRef to %s-notify slack-hook-url", hookEnv, Release)
	}
	sum := ds.Spec.Template.Annotations["checksum/notify"]
	if sum == "" {
		t.Error("no checksum/notify pod annotation")
	}
	ds2, _, _, _ := notifyRender(t, e, "configuration.notifyUrl="+kured, "notify.urls[0]="+own+"&x=1", "configuration.slackHookUrl="+hook)
	if ds2.Spec.Template.Annotations["checksum/notify"] == sum {
		t.Error("checksum/notify does not change with the URLs")
	}
}

// checkNotifyVolume: the agent mounts Secret secretName's key as the read-only,
// owner-only file /etc/rebootgate-notify/urls.
func checkNotifyVolume(t *testing.T, ds *appsv1.DaemonSet, agent corev1.Container, secretName, key string) {
	t.Helper()
	v, ok := volumesByName(ds)["notify"]
	if !ok || v.Secret == nil || v.Secret.SecretName != secretName || len(v.Secret.Items) != 1 ||
		v.Secret.Items[0].Key != key || v.Secret.Items[0].Path != "urls" || v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o400 {
		t.Errorf("notify volume %+v, want Secret %s item %s → urls, mode 0400", v.VolumeSource.Secret, secretName, key)
	}
	var mounted bool
	for _, m := range agent.VolumeMounts {
		mounted = mounted || (m.Name == "notify" && m.MountPath == "/etc/rebootgate-notify" && m.ReadOnly)
	}
	if !mounted {
		t.Errorf("no read-only notify mount at /etc/rebootgate-notify: %+v", agent.VolumeMounts)
	}
}

// TestNotifyExistingSecret: with notify.existingSecret the chart renders no Secret and
// mounts the named key of the user's Secret; without any URL nothing notify-related is
// rendered; kured's KURED_NOTIFY_URL in extraEnvVars wins over configuration.notifyUrl,
// as in kured.
func TestNotifyExistingSecret(t *testing.T) {
	e := setup(t)
	ds, agent, _, secret := notifyRender(t, e, "notify.existingSecret=team-hooks", "notify.existingSecretKey=shoutrrr")
	if secret != nil {
		t.Errorf("Secret %s rendered with notify.existingSecret", secret.Name)
	}
	if !slices.Contains(agent.Args, "--notify-url-file=/etc/rebootgate-notify/urls") {
		t.Errorf("args %q lack --notify-url-file", agent.Args)
	}
	checkNotifyVolume(t, ds, agent, "team-hooks", "shoutrrr")
	if _, ok := ds.Spec.Template.Annotations["checksum/notify"]; ok {
		t.Error("checksum/notify of a Secret the chart does not render")
	}

	ds, agent, _, secret = notifyRender(t, e)
	if _, ok := volumesByName(ds)["notify"]; ok || secret != nil || slices.ContainsFunc(agent.Args, func(a string) bool { return strings.HasPrefix(a, "--notify") }) {
		t.Errorf("no URLs, yet notify rendered: Secret %v, args %q", secret != nil, agent.Args)
	}

	objs := e.render(t, "-f", filepath.Join("testdata", "kured.values.yaml"))
	ds = daemonSet(t, objs)
	for _, o := range objs {
		if o.Kind == "Secret" || bytes.Contains(o.YAML, []byte("T000/B000/XXX")) {
			t.Errorf("kured values with KURED_NOTIFY_URL in extraEnvVars: %s %s renders configuration.notifyUrl", o.Kind, o.Name)
		}
	}
	if slices.ContainsFunc(agentContainer(t, ds).Args, func(a string) bool { return strings.HasPrefix(a, "--notify") }) {
		t.Errorf("kured values: args %q name a notify URL source beside KURED_NOTIFY_URL", agentContainer(t, ds).Args)
	}
}

// summarizer decodes the rendered summarizer Deployment (nil if none).
func summarizer(t *testing.T, objs []Object) *appsv1.Deployment {
	t.Helper()
	for _, o := range objs {
		if o.Kind == "Deployment" && o.Name == Release+"-summarizer" {
			var d appsv1.Deployment
			if err := yaml.UnmarshalStrict(o.YAML, &d); err != nil {
				t.Fatalf("the summarizer Deployment does not decode strictly: %v", err)
			}
			return &d
		}
	}
	return nil
}

// TestSummarizerHardened: the summarizer is an API client and nothing more, whatever the
// values do to the agent: no host namespaces or paths, non-root (pod and container), no
// privilege escalation, every capability dropped, a read-only root filesystem, seccomp
// RuntimeDefault, resource requests, the distroless image. Its tolerations let it leave
// a cordoned, draining or unreachable node (no toleration of every taint).
func TestSummarizerHardened(t *testing.T) {
	e := setup(t)
	cases := map[string][]string{
		"signal":           {"--set", "configuration.rebootMethod=signal"},
		"pod context root": {"--set", "podSecurityContext.runAsUser=0", "--set", "containerSecurityContext.runAsUser=0"},
	}
	for _, f := range valuesFiles(t) {
		cases[caseName(f)] = []string{"-f", f}
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			d := summarizer(t, e.render(t, args...))
			if d == nil {
				t.Fatal("no summarizer Deployment rendered")
			}
			spec := d.Spec.Template.Spec
			if spec.HostPID || spec.HostNetwork || spec.HostIPC {
				t.Errorf("host namespaces: pid %v network %v ipc %v", spec.HostPID, spec.HostNetwork, spec.HostIPC)
			}
			for _, v := range spec.Volumes {
				if v.HostPath != nil {
					t.Errorf("volume %s is host path %s", v.Name, v.HostPath.Path)
				}
			}
			if psc := spec.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot ||
				psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("pod securityContext %+v, want runAsNonRoot and seccomp RuntimeDefault", psc)
			}
			if len(spec.InitContainers) != 0 || len(spec.Containers) != 1 {
				t.Fatalf("%d init containers, %d containers; want only the summarizer", len(spec.InitContainers), len(spec.Containers))
			}
			c := spec.Containers[0]
			sc := c.SecurityContext
			switch {
			case sc == nil:
				t.Fatal("no container securityContext")
			case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0:
				t.Errorf("may run as root: %+v", sc)
			case sc.Privileged == nil || *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
				t.Errorf("may gain privileges: %+v", sc)
			case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0:
				t.Errorf("capabilities %+v, want drop [ALL] and none added", sc.Capabilities)
			case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
				t.Error("root filesystem writable")
			case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
				t.Errorf("seccomp %+v, want RuntimeDefault", sc.SeccompProfile)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
				t.Errorf("resource requests %v", c.Resources.Requests)
			}
			if strings.HasSuffix(c.Image, "-nsenter") {
				t.Errorf("image %s: the summarizer needs no nsenter or shell", c.Image)
			}
			for _, tol := range spec.Tolerations {
				if tol.Key == "" || tol.Key == "node.kubernetes.io/unschedulable" || tol.Key == "node.kubernetes.io/unreachable" ||
					tol.Key == "node.kubernetes.io/not-ready" {
					t.Errorf("toleration %+v keeps a replica on a cordoned, unreachable or NotReady node", tol)
				}
			}
		})
	}
}
