#!/usr/bin/env bash
# Stops everything the test bed started (kwok cluster, Prometheus, Alertmanager,
# simulated agent processes recorded by the Go harness) and removes its state.
# Cached binaries in $TESTBED_CACHE are kept.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -d "$TESTBED_STATE" ]] || { log "nothing to stop"; exit 0; }
exec 9>"$TESTBED_STATE/.lock"
flock -w 900 9 || die "another testbed-up/down is running"

# stop_pid PIDFILE BIN: TERM, then KILL after 10s, the process group PIDFILE names,
# only if it still runs BIN (pids are reused).
stop_pid() {
  local pidfile=$1 bin=$2 pid i
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  if [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] && tr '\0' '\n' <"/proc/$pid/cmdline" | head -1 | grep -q "$bin"; then
    log "stopping $bin (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      [[ -d "/proc/$pid" ]] || break
      sleep 0.1
    done
    if [[ -d "/proc/$pid" ]]; then kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$pidfile"
}

stop_pid "$TESTBED_STATE/prometheus/pid" prometheus
stop_pid "$TESTBED_STATE/alertmanager/pid" prometheus-alertmanager

# Agent processes started by the node simulator record their process group here;
# a test binary that crashed may have left them running.
if [[ -d "$TESTBED_STATE/sim" ]]; then
  for f in "$TESTBED_STATE"/sim/*.pid; do
    [[ -e "$f" ]] || continue
    pid="$(cat "$f")"
    if [[ -n "$pid" && -d "/proc/$pid" ]] && grep -qz "^TESTBED_SIM_NODE=" "/proc/$pid/environ" 2>/dev/null; then
      log "stopping simulated agent (pid $pid)"
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  done
fi

if [[ -x "$TESTBED_BIN/kwokctl" && -d "$KWOK_WORKDIR/clusters/$TESTBED_CLUSTER" ]]; then
  log "deleting kwok cluster $TESTBED_CLUSTER"
  "$TESTBED_BIN/kwokctl" --v WARN delete cluster --name "$TESTBED_CLUSTER" >&2 9>&- || log "kwokctl delete failed; continuing"
fi

# Anything still running one of our cached binaries (or kwokctl's copies of them
# in the state directory) is ours: kill it.
left=""
for exe in /proc/[0-9]*/exe; do
  target="$(readlink "$exe" 2>/dev/null || true)"
  [[ "$target" == "$TESTBED_BIN/"* || "$target" == "$TESTBED_STATE/"* ]] || continue
  pid="${exe#/proc/}"; pid="${pid%/exe}"
  left+=" $pid"
done
if [[ -n "$left" ]]; then
  log "killing leftover processes:$left"
  for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
fi
rm -rf "$TESTBED_STATE"
log "test bed stopped"
