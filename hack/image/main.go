// Command image builds rebootgate's release images without a Docker daemon, with
// go-containerregistry: the default image (a distroless/static stand-in, for the signal
// reboot method) and the nsenter image (a Debian-slim stand-in with nsenter, for the
// command method), each for linux/amd64 and linux/arm64 as one multi-arch index. The base
// files come from Debian packages unpacked by debs.sh (hack/image/packages.txt), the
// application files from `make build-static` run for each architecture.
//
// Output under -out: oci/<image>/ (an OCI image layout whose index.json names the
// multi-arch index), <image>-<arch>.tar (`docker load`-able), sbom/<image>-<arch>.spdx.json
// (SPDX 2.3 from the binary's Go build info and the Debian packages) and digests.txt.
//
// The build is reproducible: every timestamp is -epoch (SOURCE_DATE_EPOCH, the commit's
// time), tar entries are sorted with numeric owners, and nothing reads the clock, so one
// commit and one set of Debian package versions give one digest.
//
// It is a module of its own so go-containerregistry and BuildKit (whose Dockerfile parser
// the tests use to keep the Dockerfile in step) stay out of rebootgate's dependencies.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"
)

func main() {
	var cfg config
	var arches string
	flag.StringVar(&cfg.out, "out", "_output/image", "output directory")
	flag.StringVar(&cfg.debs, "debs", "_cache/image/debs", "Debian packages unpacked by debs.sh (DIR/<arch>/<package>/)")
	flag.StringVar(&cfg.rootfs, "rootfs", "_output/image/rootfs-%s", "build-static's root for each architecture (%s: the architecture)")
	flag.StringVar(&cfg.packages, "packages", "hack/image/packages.txt", "the package list")
	flag.StringVar(&arches, "arch", "amd64,arm64", "architectures")
	flag.StringVar(&cfg.repository, "repository", "ghcr.io/rebootgate/rebootgate", "image repository (tags of the tarballs and layouts)")
	flag.StringVar(&cfg.version, "version", "dev", "version (label and tag)")
	flag.StringVar(&cfg.revision, "revision", "", "source revision (label)")
	epoch := flag.Int64("epoch", 0, "SOURCE_DATE_EPOCH: every timestamp in the images")
	flag.Parse()
	cfg.arches = strings.Split(arches, ",")
	cfg.epoch = time.Unix(*epoch, 0).UTC()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	res, err := build(cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	for _, r := range res {
		fmt.Printf("%s %s\n", r.name, r.digest)
	}
}
