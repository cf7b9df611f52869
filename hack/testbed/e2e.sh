#!/usr/bin/env bash
# Runs the e2e suites (every Go package under test/) against the test bed. Starts
# the bed when it is not running and then tears it down afterwards; a bed that
# was already running is reused and left running.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

started=0
if [[ -f "$TESTBED_STATE/kubeconfig" ]] && kubectl --kubeconfig "$TESTBED_STATE/kubeconfig" get --raw /readyz >/dev/null 2>&1 \
  && curl -fsS -o /dev/null "http://127.0.0.1:$PROM_PORT/-/ready" 2>/dev/null; then
  log "reusing the running test bed"
else
  started=1
  trap '"$TESTBED_ROOT/hack/testbed/down.sh"' EXIT
fi
# Always run up.sh: cheap when the bed runs, and it repairs a half-started one.
"$TESTBED_ROOT/hack/testbed/up.sh" >/dev/null

cd "$TESTBED_ROOT"
# -p 1: suites share one cluster and its nodes, so packages run one at a time.
REBOOTGATE_E2E=1 TESTBED_KEEP=1 ${GO:-go} test -p 1 -count=1 -timeout "${E2E_TIMEOUT:-45m}" ${E2E_FLAGS:-} ${E2E_PACKAGES:-./test/...}
if ((started)); then log "e2e passed; tearing the bed down"; fi
