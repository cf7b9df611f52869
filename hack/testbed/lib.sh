# Shared settings for the test bed scripts. Source, don't execute.
# shellcheck shell=bash
TESTBED_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KUBE_VERSION="${KUBE_VERSION:-v1.36.3}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
# Binaries and state live under _cache so `make clean` neither forces a rebuild
# nor orphans a running bed.
TESTBED_CACHE="${TESTBED_CACHE:-$TESTBED_ROOT/_cache/testbed}"
TESTBED_BIN="$TESTBED_CACHE/bin"
TESTBED_STATE="${TESTBED_STATE:-$TESTBED_CACHE/run}"
TESTBED_CLUSTER="${TESTBED_CLUSTER:-rebootgate}"
export KWOK_WORKDIR="$TESTBED_STATE/kwok"
PROM_PORT="${PROM_PORT:-19090}"
AM_PORT="${AM_PORT:-19093}"

log() { printf '[testbed] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
