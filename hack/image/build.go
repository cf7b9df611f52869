package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type config struct {
	out, debs, rootfs, packages string
	arches                      []string
	repository, version         string
	revision                    string
	epoch                       time.Time
}

// variant is one image: its name, the Dockerfile stage that builds the same image with
// Docker, the base image that stage starts FROM (which this one stands in for), and its
// user. Entrypoint and command are the same for both.
type variant struct {
	name, stage, base, user, tagSuffix, description string
}

var variants = []variant{
	{
		name: "rebootgate", stage: "rebootgate", base: "gcr.io/distroless/static-debian12:nonroot",
		user: "65532:65532", tagSuffix: "",
		description: "rebootgate agent (static, non-root by default): reboots Kubernetes nodes behind a CEL/Rego policy gate; signal reboot method",
	},
	{
		name: "rebootgate-nsenter", stage: "rebootgate-nsenter", base: "debian:bookworm-slim",
		user: "", tagSuffix: "-nsenter",
		description: "rebootgate agent with nsenter (Debian): reboots Kubernetes nodes behind a CEL/Rego policy gate; command reboot method",
	},
}

var (
	entrypoint = []string{"/usr/local/bin/rebootgate"}
	cmd        = []string{"agent"}
	imageEnv   = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
)

// labels are the OCI annotations both images carry as labels (the Dockerfile sets the
// same with LABEL).
func labels(v variant, version, revision string, created time.Time) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       v.name,
		"org.opencontainers.image.description": v.description,
		"org.opencontainers.image.source":      "https://github.com/rebootgate/rebootgate",
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.revision":    revision,
		"org.opencontainers.image.created":     created.UTC().Format(time.RFC3339),
	}
}

func platform(arch string) v1.Platform {
	p := v1.Platform{OS: "linux", Architecture: arch}
	if arch == "arm64" {
		p.Variant = "v8"
	}
	return p
}

// pkgSpec is one line of packages.txt.
type pkgSpec struct {
	name    string
	images  []string
	include []string
}

func readPackages(path string) ([]pkgSpec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []pkgSpec
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) < 2 || len(fields) > 3 {
			return nil, fmt.Errorf("%s: bad line %q", path, sc.Text())
		}
		p := pkgSpec{name: fields[0], images: strings.Split(fields[1], ",")}
		if len(fields) == 3 {
			p.include = strings.Split(fields[2], ",")
		}
		out = append(out, p)
	}
	return out, sc.Err()
}

// debPackage is a line of debs.sh's versions.txt.
type debPackage struct{ name, version, arch, sha256 string }

func readVersions(path string) (map[string]debPackage, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w (run hack/image/debs.sh)", err)
	}
	out := map[string]debPackage{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 {
			return nil, fmt.Errorf("%s: bad line %q", path, line)
		}
		out[f[0]] = debPackage{f[0], f[1], f[2], f[3]}
	}
	return out, nil
}

// baseTree is the image's first layer: the Debian packages of the variant and the files a
// distroless base has (users, groups, /tmp, the CA bundle, nsswitch.conf).
func baseTree(v variant, pkgs []pkgSpec, debs string) (tree, error) {
	t := tree{}
	// Merged /usr, as in Debian's bookworm images.
	for _, d := range []string{"usr/bin", "usr/sbin", "usr/lib"} {
		t.dir(d, 0o755, 0, 0)
	}
	for _, l := range []string{"bin", "sbin", "lib"} {
		t.symlink(l, "usr/"+l)
	}
	for _, p := range pkgs {
		if !slices.Contains(p.images, imageKind(v)) {
			continue
		}
		if err := t.addDir(filepath.Join(debs, p.name), p.include, true); err != nil {
			return nil, err
		}
	}
	if _, ok := t["usr/lib64"]; ok {
		t.symlink("lib64", "usr/lib64")
	}
	if _, ok := t["usr/bin/dash"]; ok {
		t.symlink("usr/bin/sh", "dash") // dash's postinst makes /bin/sh
	}
	t.file("etc/passwd", 0o644, []byte(strings.Join([]string{
		"root:x:0:0:root:/root:/sbin/nologin",
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin",
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin",
		""}, "\n")))
	t.file("etc/group", 0o644, []byte(strings.Join([]string{
		"root:x:0:", "tty:x:5:", "staff:x:50:", "nogroup:x:65534:", "nonroot:x:65532:", ""}, "\n")))
	t.file("etc/nsswitch.conf", 0o644, []byte("passwd: files\ngroup: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n"))
	t.dir("root", 0o700, 0, 0)
	t.dir("home/nonroot", 0o700, 65532, 65532)
	t.dir("tmp", 0o1777, 0, 0)
	t.dir("run", 0o755, 0, 0)
	t.symlink("var/run", "../run")
	// The CA bundle update-ca-certificates would make: every certificate the package
	// ships, in path order.
	var certs []string
	for p, e := range t {
		if strings.HasPrefix(p, "usr/share/ca-certificates/") && strings.HasSuffix(p, ".crt") && e.typ == tar.TypeReg {
			certs = append(certs, p)
		}
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("no certificates from ca-certificates")
	}
	sort.Strings(certs)
	var bundle bytes.Buffer
	for _, c := range certs {
		data := t[c].data
		bundle.Write(data)
		if !bytes.HasSuffix(data, []byte("\n")) {
			bundle.WriteByte('\n')
		}
	}
	t.file("etc/ssl/certs/ca-certificates.crt", 0o644, bundle.Bytes())
	return t, nil
}

func imageKind(v variant) string {
	if v.name == "rebootgate" {
		return "static"
	}
	return "nsenter"
}

// appTree is the second layer: build-static's root (the binary and /usr/bin/kured).
func appTree(rootfs string) (tree, error) {
	t := tree{}
	if err := t.addDir(rootfs, nil, false); err != nil {
		return nil, err
	}
	if e, ok := t["usr/local/bin/rebootgate"]; !ok || e.typ != tar.TypeReg {
		return nil, fmt.Errorf("%s has no usr/local/bin/rebootgate (run make build-static)", rootfs)
	}
	return t, nil
}

type result struct {
	name   string
	digest v1.Hash
	index  v1.ImageIndex
	images map[string]v1.Image // by architecture
	trees  map[string]tree     // base and app merged, by architecture
}

func layerOf(gz []byte) (v1.Layer, error) {
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// buildImage assembles one variant for one architecture.
func buildImage(cfg config, v variant, arch string, pkgs []pkgSpec) (v1.Image, tree, error) {
	base, err := baseTree(v, pkgs, filepath.Join(cfg.debs, arch))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s base: %w", v.name, arch, err)
	}
	app, err := appTree(fmt.Sprintf(cfg.rootfs, arch))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", v.name, arch, err)
	}
	img := empty.Image
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	created := v1.Time{Time: cfg.epoch}
	for _, l := range []struct {
		t  tree
		by string
	}{
		{base, fmt.Sprintf("hack/image: base files standing in for %s (Debian packages: hack/image/packages.txt)", v.base)},
		{app, "hack/image: make build-static (usr/local/bin/rebootgate, usr/bin/kured)"},
	} {
		_, gz, err := l.t.layer(cfg.epoch)
		if err != nil {
			return nil, nil, err
		}
		layer, err := layerOf(gz)
		if err != nil {
			return nil, nil, err
		}
		img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{Created: created, CreatedBy: l.by}})
		if err != nil {
			return nil, nil, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, nil, err
	}
	cf = cf.DeepCopy()
	p := platform(arch)
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = created
	cf.Config = v1.Config{
		Entrypoint: entrypoint, Cmd: cmd, User: v.user, Env: imageEnv, WorkingDir: "/",
		Labels: labels(v, cfg.version, cfg.revision, cfg.epoch),
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, nil, err
	}
	merged := tree{}
	for k, e := range base {
		merged[k] = e
	}
	for k, e := range app {
		merged[k] = e
	}
	return img, merged, nil
}

func build(cfg config, log *slog.Logger) ([]result, error) {
	pkgs, err := readPackages(cfg.packages)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cfg.out, "sbom"), 0o755); err != nil {
		return nil, err
	}
	var results []result
	var digests bytes.Buffer
	for _, v := range variants {
		r := result{name: v.name, images: map[string]v1.Image{}, trees: map[string]tree{}}
		idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
		for _, arch := range cfg.arches {
			img, merged, err := buildImage(cfg, v, arch, pkgs)
			if err != nil {
				return nil, err
			}
			p := platform(arch)
			idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
			r.images[arch], r.trees[arch] = img, merged
			versions, err := readVersions(filepath.Join(cfg.debs, arch, "versions.txt"))
			if err != nil {
				return nil, err
			}
			sbom, err := spdx(cfg, v, arch, img, merged, pkgs, versions)
			if err != nil {
				return nil, fmt.Errorf("%s %s SBOM: %w", v.name, arch, err)
			}
			if err := os.WriteFile(filepath.Join(cfg.out, "sbom", fmt.Sprintf("%s-%s.spdx.json", v.name, arch)), sbom, 0o644); err != nil {
				return nil, err
			}
			tag, err := name.NewTag(fmt.Sprintf("%s:%s%s", cfg.repository, cfg.version, v.tagSuffix))
			if err != nil {
				return nil, err
			}
			if err := tarball.WriteToFile(filepath.Join(cfg.out, fmt.Sprintf("%s-%s.tar", v.name, arch)), tag, img); err != nil {
				return nil, fmt.Errorf("%s %s tarball: %w", v.name, arch, err)
			}
		}
		dir := filepath.Join(cfg.out, "oci", v.name)
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
		lp, err := layout.Write(dir, empty.Index)
		if err != nil {
			return nil, err
		}
		ref := fmt.Sprintf("%s:%s%s", cfg.repository, cfg.version, v.tagSuffix)
		if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": ref,
		})); err != nil {
			return nil, fmt.Errorf("%s layout: %w", v.name, err)
		}
		if r.digest, err = idx.Digest(); err != nil {
			return nil, err
		}
		r.index = idx
		fmt.Fprintf(&digests, "%s %s\n", v.name, r.digest)
		log.Info("image built", "image", ref, "digest", r.digest, "layout", dir, "arches", strings.Join(cfg.arches, ","))
		results = append(results, r)
	}
	if err := os.WriteFile(filepath.Join(cfg.out, "digests.txt"), digests.Bytes(), 0o644); err != nil {
		return nil, err
	}
	return results, nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
