package main

import (
	"archive/tar"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// The Dockerfile's final stages and this builder agree: each stage starts FROM the base
// its image stands in for and sets the same entrypoint, command, user and labels.
func TestDockerfileInStep(t *testing.T) {
	f, err := os.Open("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The labels as `docker build --build-arg VERSION=… REVISION=… CREATED=…` gives them.
	created := time.Date(2026, 12, 2, 8, 30, 51, 0, time.UTC)
	args := map[string]string{"VERSION": "1.2.3", "REVISION": "0123abc", "CREATED": created.Format(time.RFC3339)}
	declared := map[string]bool{}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			declared[kv.Key] = true
		}
	}
	for k := range args {
		if !declared[k] {
			t.Errorf("the Dockerfile declares no global ARG %s", k)
		}
	}
	var env []string
	for k, v := range args {
		env = append(env, k+"="+v)
	}
	lex := shell.NewLex('\\')
	expand := func(w string) (string, error) {
		out, _, err := lex.ProcessWord(w, shell.EnvsFromSlice(env))
		return out, err
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			i := slices.IndexFunc(stages, func(s instructions.Stage) bool { return s.Name == v.stage })
			if i < 0 {
				t.Fatalf("no stage %s", v.stage)
			}
			st := stages[i]
			if st.BaseName != v.base {
				t.Errorf("stage %s is FROM %s, the builder stands in for %s", v.stage, st.BaseName, v.base)
			}
			var ep, cmdLine []string
			user := ""
			labelsGot := map[string]string{}
			for _, c := range st.Commands {
				switch c := c.(type) {
				case *instructions.EntrypointCommand:
					if c.PrependShell {
						t.Errorf("ENTRYPOINT in shell form: %v", c.CmdLine)
					}
					ep = c.CmdLine
				case *instructions.CmdCommand:
					cmdLine = c.CmdLine
				case *instructions.UserCommand:
					user = c.User
				case *instructions.LabelCommand:
					if err := c.Expand(expand); err != nil {
						t.Fatal(err)
					}
					for _, kv := range c.Labels {
						labelsGot[kv.Key] = kv.Value
					}
				}
			}
			if !slices.Equal(ep, entrypoint) || !slices.Equal(cmdLine, cmd) {
				t.Errorf("stage %s: ENTRYPOINT %q CMD %q, the builder sets %q %q", v.stage, ep, cmdLine, entrypoint, cmd)
			}
			if user != v.user {
				t.Errorf("stage %s: USER %q, the builder sets %q", v.stage, user, v.user)
			}
			want := labels(v, args["VERSION"], args["REVISION"], created)
			if !maps.Equal(labelsGot, want) {
				t.Errorf("stage %s: labels\n%v\nthe builder sets\n%v", v.stage, labelsGot, want)
			}
		})
	}
}

func imageOut(t *testing.T) string {
	t.Helper()
	out := os.Getenv("IMAGE_OUT")
	if out == "" {
		out = "../../_output/image"
	}
	if _, err := os.Stat(filepath.Join(out, "digests.txt")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no built images in %s (make image): %v", out, err)
		}
		t.Skipf("no built images in %s (make image; make test-image runs these tests after it): %v", out, err)
	}
	return out
}

// flatten reads an image's file system (all layers applied) as a tree.
func flatten(t *testing.T, img v1.Image) tree {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := tree{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(path.Clean("/"+h.Name), "/"), "/")
		e := &entry{typ: h.Typeflag, mode: h.Mode, uid: h.Uid, gid: h.Gid, link: h.Linkname}
		if h.Typeflag == tar.TypeReg {
			if e.data, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
		out[name] = e
	}
	return out
}

// builtImages opens the layouts `make image` wrote and returns each platform's image.
func builtImages(t *testing.T) map[string]map[string]v1.Image {
	t.Helper()
	out := imageOut(t)
	res := map[string]map[string]v1.Image{}
	for _, v := range variants {
		p, err := layout.FromPath(filepath.Join(out, "oci", v.name))
		if err != nil {
			t.Fatal(err)
		}
		top, err := p.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		tm, err := top.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if len(tm.Manifests) != 1 {
			t.Fatalf("%s: index.json names %d manifests, want the one index", v.name, len(tm.Manifests))
		}
		idx, err := top.ImageIndex(tm.Manifests[0].Digest)
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		res[v.name] = map[string]v1.Image{}
		for _, m := range im.Manifests {
			img, err := idx.Image(m.Digest)
			if err != nil {
				t.Fatal(err)
			}
			res[v.name][m.Platform.Architecture] = img
		}
		if got := slices.Sorted(maps.Keys(res[v.name])); !slices.Equal(got, []string{"amd64", "arm64"}) {
			t.Errorf("%s: platforms %v, want amd64 and arm64", v.name, got)
		}
	}
	return res
}

var elfMachine = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
var libDirs = map[string][]string{
	"amd64": {"lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib"},
	"arm64": {"lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu", "lib", "usr/lib"},
}

// Each built image holds what its base promises and runs on its own: every ELF file is
// for the image's architecture and finds its interpreter and every library it needs
// inside the image; the entrypoint and /usr/bin/kured are the static binary.
func TestBuiltImagesContents(t *testing.T) {
	for name, byArch := range builtImages(t) {
		for arch, img := range byArch {
			t.Run(name+"/"+arch, func(t *testing.T) {
				cf, err := img.ConfigFile()
				if err != nil {
					t.Fatal(err)
				}
				v := variants[slices.IndexFunc(variants, func(v variant) bool { return v.name == name })]
				if cf.OS != "linux" || cf.Architecture != arch || cf.Config.User != v.user || !slices.Equal(cf.Config.Entrypoint, entrypoint) {
					t.Errorf("config: %s/%s user %q entrypoint %q", cf.OS, cf.Architecture, cf.Config.User, cf.Config.Entrypoint)
				}
				fs := flatten(t, img)
				for _, want := range []string{
					"etc/passwd", "etc/group", "etc/nsswitch.conf", "etc/ssl/certs/ca-certificates.crt",
					"usr/share/zoneinfo/Europe/Berlin", "etc/services", "usr/local/bin/rebootgate",
				} {
					if p, ok := fs.resolve(want); !ok || fs[p].typ != tar.TypeReg {
						t.Errorf("no file %s", want)
					}
				}
				if !strings.Contains(string(fs["etc/passwd"].data), "nonroot:x:65532:65532:") {
					t.Errorf("/etc/passwd has no nonroot 65532:\n%s", fs["etc/passwd"].data)
				}
				if e := fs["tmp"]; e == nil || e.mode&0o1777 != 0o1777 {
					t.Errorf("/tmp is not a sticky world-writable folder: %+v", e)
				}
				if p, ok := fs.resolve("usr/bin/kured"); !ok || p != "usr/local/bin/rebootgate" {
					t.Errorf("/usr/bin/kured resolves to %q, want usr/local/bin/rebootgate", p)
				}
				_, hasSh := fs.resolve("bin/sh")
				_, hasNsenter := fs.resolve("usr/bin/nsenter")
				if wantShell := name == "rebootgate-nsenter"; hasSh != wantShell || hasNsenter != wantShell {
					t.Errorf("/bin/sh %v, nsenter %v; want both %v", hasSh, hasNsenter, wantShell)
				}
				checkELFs(t, fs, arch)
			})
		}
	}
}

func checkELFs(t *testing.T, fs tree, arch string) {
	t.Helper()
	n := 0
	for p, e := range fs {
		if e.typ != tar.TypeReg || len(e.data) < 4 || string(e.data[:4]) != elf.ELFMAG {
			continue
		}
		f, err := elf.NewFile(strings.NewReader(string(e.data)))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		n++
		if f.Machine != elfMachine[arch] {
			t.Errorf("%s: %s, want %s", p, f.Machine, elfMachine[arch])
		}
		for _, prog := range f.Progs {
			if prog.Type != elf.PT_INTERP {
				continue
			}
			b, _ := io.ReadAll(prog.Open())
			interp := strings.TrimRight(string(b), "\x00")
			if _, ok := fs.resolve(interp); !ok {
				t.Errorf("%s: interpreter %s is not in the image", p, interp)
			}
		}
		libs, err := f.ImportedLibraries()
		if err != nil {
			t.Errorf("%s: %v", p, err)
		}
		// gconv's modules find their helpers beside them (RUNPATH $ORIGIN).
		dirs := append(slices.Clone(libDirs[arch]), path.Dir(p))
		for _, lib := range libs {
			if !slices.ContainsFunc(dirs, func(d string) bool { _, ok := fs.resolve(d + "/" + lib); return ok }) {
				t.Errorf("%s needs %s, which is not in the image", p, lib)
			}
		}
		f.Close()
	}
	if n == 0 {
		t.Error("no ELF file in the image")
	}
}

// Building twice from the same inputs gives the same digests, whatever the inputs' file
// times: nothing of the build machine's clock or the checkout's times gets in.
func TestBuildReproducible(t *testing.T) {
	out := imageOut(t)
	debs := os.Getenv("IMAGE_DEBS")
	if debs == "" {
		debs = "../../_cache/image/debs"
	}
	want, err := os.ReadFile(filepath.Join(out, "digests.txt"))
	if err != nil {
		t.Fatal(err)
	}
	// The same inputs `make image` used, in a copy with other file times.
	rootfs := t.TempDir()
	for _, arch := range []string{"amd64", "arm64"} {
		src := filepath.Join(out, "rootfs-"+arch)
		if err := os.CopyFS(filepath.Join(rootfs, arch), os.DirFS(src)); err != nil && !errors.Is(err, os.ErrExist) {
			// CopyFS does not copy symlinks; the kured link is made below.
			if !strings.Contains(err.Error(), "symlink") && !strings.Contains(err.Error(), "irregular") {
				t.Fatal(err)
			}
		}
		kured := filepath.Join(rootfs, arch, "usr", "bin", "kured")
		_ = os.Remove(kured)
		if err := os.MkdirAll(filepath.Dir(kured), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("../local/bin/rebootgate", kured); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(rootfs, arch, "usr", "local", "bin", "rebootgate"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := builtConfig(out)
	if err != nil {
		t.Fatal(err)
	}
	cfg.out, cfg.debs, cfg.rootfs, cfg.packages = t.TempDir(), debs, filepath.Join(rootfs, "%s"), "packages.txt"
	if _, err := build(cfg, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(cfg.out, "digests.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("rebuilt from a copy of the inputs:\n%s\nmake image built:\n%s", got, want)
	}
}

// builtConfig reads back the version, revision and time `make image` built with, from
// the default image's labels.
func builtConfig(out string) (config, error) {
	p, err := layout.FromPath(filepath.Join(out, "oci", "rebootgate"))
	if err != nil {
		return config{}, err
	}
	top, err := p.ImageIndex()
	if err != nil {
		return config{}, err
	}
	tm, err := top.IndexManifest()
	if err != nil {
		return config{}, err
	}
	ref := tm.Manifests[0].Annotations["org.opencontainers.image.ref.name"]
	idx, err := top.ImageIndex(tm.Manifests[0].Digest)
	if err != nil {
		return config{}, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return config{}, err
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		return config{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return config{}, err
	}
	l := cf.Config.Labels
	repo, _, _ := strings.Cut(ref, ":")
	return config{
		repository: repo, version: l["org.opencontainers.image.version"], revision: l["org.opencontainers.image.revision"],
		epoch: cf.Created.UTC(), arches: []string{"amd64", "arm64"},
	}, nil
}

// Each SBOM is SPDX 2.3 JSON naming the image, the Go toolchain and modules the binary
// was built from (its build info), and every Debian package of the image.
func TestSBOM(t *testing.T) {
	out := imageOut(t)
	pkgs, err := readPackages("packages.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range variants {
		for _, arch := range []string{"amd64", "arm64"} {
			data, err := os.ReadFile(filepath.Join(out, "sbom", v.name+"-"+arch+".spdx.json"))
			if err != nil {
				t.Fatal(err)
			}
			var doc spdxDoc
			if err := json.Unmarshal(data, &doc); err != nil {
				t.Fatalf("%s %s: %v", v.name, arch, err)
			}
			if doc.SPDXVersion != "SPDX-2.3" || len(doc.Relationships) == 0 {
				t.Errorf("%s %s: %s with %d relationships", v.name, arch, doc.SPDXVersion, len(doc.Relationships))
			}
			names := map[string]bool{}
			for _, p := range doc.Packages {
				names[p.Name] = true
			}
			want := []string{"github.com/rebootgate/rebootgate", "stdlib", "k8s.io/client-go", "github.com/open-policy-agent/opa", "github.com/google/cel-go"}
			for _, p := range pkgs {
				if slices.Contains(p.images, imageKind(v)) {
					want = append(want, p.name)
				}
			}
			for _, w := range want {
				if !names[w] {
					t.Errorf("%s %s: the SBOM does not name %s", v.name, arch, w)
				}
			}
		}
	}
}

// Each `docker load` tarball holds one image, tagged <repository>:<version>[-nsenter],
// whose config (and so image ID) and layers are the layout's image for that platform.
func TestDockerTarballs(t *testing.T) {
	built := builtImages(t)
	out := imageOut(t)
	cfg, err := builtConfig(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range variants {
		for arch, img := range built[v.name] {
			path := filepath.Join(out, v.name+"-"+arch+".tar")
			tag, err := name.NewTag(cfg.repository + ":" + cfg.version + v.tagSuffix)
			if err != nil {
				t.Fatal(err)
			}
			tb, err := tarball.ImageFromPath(path, &tag)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			want, err := img.ConfigName()
			if err != nil {
				t.Fatal(err)
			}
			got, err := tb.ConfigName()
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%s: image ID %s, the layout's %s/%s is %s", path, got, v.name, arch, want)
			}
			wl, _ := img.Layers()
			gl, err := tb.Layers()
			if err != nil || len(gl) != len(wl) {
				t.Fatalf("%s: %d layers (%v), want %d", path, len(gl), err, len(wl))
			}
			for i := range wl {
				wd, _ := wl[i].DiffID()
				gd, _ := gl[i].DiffID()
				if wd != gd {
					t.Errorf("%s: layer %d is %s, want %s", path, i, gd, wd)
				}
			}
		}
	}
}
