#!/usr/bin/env bash
# Fetches the Debian packages the images are assembled from (hack/image/packages.txt),
# for amd64 and arm64, with `apt-get download`, and unpacks each with `dpkg-deb -x` into
# DIR/<arch>/<package>/. DIR/<arch>/versions.txt lists "package version arch sha256", the
# SBOM's and the build's record of what went in. Packages already unpacked at the
# candidate version are kept, so a rebuild fetches nothing.
# arm64 packages need the arm64 architecture in dpkg (added here, then apt-get update).
set -euo pipefail
DIR="${1:?usage: debs.sh DIR}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ARCHES="${ARCHES:-amd64 arm64}"
mapfile -t PKGS < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$HERE/packages.txt" | awk '{print $1}' | sort -u)

log() { printf '[image] %s\n' "$*" >&2; }
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo -n)

updated=0
apt_update() {
  ((updated)) && return 0
  log "apt-get update"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  updated=1
}
for arch in $ARCHES; do
  if [[ "$arch" != "$(dpkg --print-architecture)" ]] && ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    log "adding the $arch architecture to dpkg"
    "${sudo[@]}" dpkg --add-architecture "$arch"
    updated=0
    apt_update
  fi
done
# apt-cache needs the lists once on a fresh machine.
apt-cache show "tzdata" >/dev/null 2>&1 || apt_update

candidate() { apt-cache policy "$1" | awk '/Candidate:/ {print $2}'; }

for arch in $ARCHES; do
  out="$DIR/$arch"
  mkdir -p "$out/.debs"
  : > "$out/versions.txt.tmp"
  for pkg in "${PKGS[@]}"; do
    # Architecture-independent packages (Architecture: all) have no pkg:arch candidate.
    spec="$pkg:$arch"
    ver="$(candidate "$spec")"
    if [[ -z "$ver" || "$ver" == "(none)" ]]; then spec="$pkg"; ver="$(candidate "$spec")"; fi
    if [[ -z "$ver" || "$ver" == "(none)" ]]; then
      apt_update
      spec="$pkg:$arch"
      ver="$(candidate "$spec")"
      if [[ -z "$ver" || "$ver" == "(none)" ]]; then spec="$pkg"; ver="$(candidate "$spec")"; fi
    fi
    [[ -n "$ver" && "$ver" != "(none)" ]] || { log "error: no candidate for $pkg:$arch"; exit 1; }
    stamp="$out/$pkg/.version"
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$ver" ]]; then
      log "fetching $pkg:$arch $ver"
      rm -rf "$out/$pkg" "$out/.debs/${pkg}_"*
      # _apt cannot write into root-owned folders: download in a world-writable one.
      tmp="$(mktemp -d)"
      chmod 0777 "$tmp"
      (cd "$tmp" && apt-get download -qq "$spec=$ver" >&2)
      mv "$tmp"/*.deb "$out/.debs/"
      rmdir "$tmp"
      deb="$(ls "$out/.debs/${pkg}_"*.deb)"
      mkdir -p "$out/$pkg"
      dpkg-deb -x "$deb" "$out/$pkg"
      printf '%s\n' "$ver" > "$stamp"
    fi
    deb="$(ls "$out/.debs/${pkg}_"*.deb)"
    darch="$(dpkg-deb -f "$deb" Architecture)"
    [[ "$darch" == "$arch" || "$darch" == all ]] || { log "error: $deb is for $darch, not $arch"; exit 1; }
    printf '%s %s %s %s\n' "$pkg" "$ver" "$darch" "$(sha256sum "$deb" | cut -d' ' -f1)" >> "$out/versions.txt.tmp"
  done
  mv "$out/versions.txt.tmp" "$out/versions.txt"
done
log "packages unpacked under $DIR"
