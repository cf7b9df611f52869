#!/usr/bin/env bash
# Builds (once) and caches the test bed's binaries from the Go module proxy:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler (from
# k8s.io/kubernetes at KUBE_VERSION) and kwok + kwokctl (at KWOK_VERSION).
# Binaries land in $TESTBED_CACHE/bin; a stamp file per version makes later
# runs a no-op.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build_kube() {
  local stamp="$TESTBED_BIN/.kube-$KUBE_VERSION"
  if [[ -f "$stamp" ]]; then
    for b in etcd kube-apiserver kube-controller-manager kube-scheduler; do
      [[ -x "$TESTBED_BIN/$b" ]] || { rm -f "$stamp"; break; }
    done
  fi
  [[ -f "$stamp" ]] && return 0
  log "building etcd and Kubernetes $KUBE_VERSION control plane from source (first run only; ~8 min on 2 cores)"
  local mod="$TESTBED_CACHE/kube-build-$KUBE_VERSION"
  mkdir -p "$mod" "$TESTBED_BIN"
  local minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  local staging="v0.${KUBE_VERSION#v1.}"
  if [[ ! -f "$mod/.tidy-ok" ]]; then
    (
      cd "$mod"
      rm -f go.mod go.sum
      cat > tools.go <<'GO'
//go:build tools

// Package tools pins the control-plane commands built for the rebootgate test bed.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
      go mod init rebootgate.local/testbed-kube >/dev/null 2>&1
      GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" >/dev/null
      local kmod
      kmod="$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
      {
        echo "require k8s.io/kubernetes $KUBE_VERSION"
        echo "replace ("
        sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/.*#\t\1 => \1 '"$staging"'#p' "$kmod"
        echo ")"
      } >> go.mod
      GOFLAGS=-mod=mod go mod tidy
      touch .tidy-ok
    )
  fi
  local ldflags=""
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ldflags+=" -X '$pkg.gitVersion=$KUBE_VERSION' -X '$pkg.gitMajor=1' -X '$pkg.gitMinor=$minor' -X '$pkg.gitTreeState=clean' -X '$pkg.buildDate=1970-01-01T00:00:00Z'"
  done
  (
    cd "$mod"
    export CGO_ENABLED=0
    # nice keeps the build polite next to other work; TESTBED_BUILD_P=1 bounds memory further.
    nice -n 10 go build -p "${TESTBED_BUILD_P:-$(nproc)}" -trimpath -ldflags "-s -w $ldflags" -o "$TESTBED_BIN/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
    nice -n 10 go build -p "${TESTBED_BUILD_P:-$(nproc)}" -trimpath -ldflags "-s -w $ldflags" -o "$TESTBED_BIN/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager
    nice -n 10 go build -p "${TESTBED_BUILD_P:-$(nproc)}" -trimpath -ldflags "-s -w $ldflags" -o "$TESTBED_BIN/kube-scheduler" k8s.io/kubernetes/cmd/kube-scheduler
    nice -n 10 go build -p "${TESTBED_BUILD_P:-$(nproc)}" -trimpath -ldflags "-s -w" -o "$TESTBED_BIN/etcd" go.etcd.io/etcd/server/v3
  )
  touch "$stamp"
}

build_kwok() {
  local stamp="$TESTBED_BIN/.kwok-$KWOK_VERSION"
  if [[ -f "$stamp" && -x "$TESTBED_BIN/kwok" && -x "$TESTBED_BIN/kwokctl" ]]; then return 0; fi
  log "building kwok and kwokctl $KWOK_VERSION (first run only)"
  mkdir -p "$TESTBED_BIN"
  GOBIN="$TESTBED_BIN" GOFLAGS= CGO_ENABLED=0 nice -n 10 go install -p "${TESTBED_BUILD_P:-$(nproc)}" -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
  touch "$stamp"
}

case "${1:-all}" in
  kube) build_kube ;;
  kwok) build_kwok ;;
  all) build_kwok; build_kube ;;
  *) echo "usage: $0 [all|kube|kwok]" >&2; exit 2 ;;
esac
