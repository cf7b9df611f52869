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

# Anything left of this bed: a binary copied into its state directory, or one of the
# cached binaries (which other beds share, with TESTBED_CACHE) whose command line or
# working directory names this bed's state directory. Another bed's processes name
# their own state directory and are left alone.
left=""
for exe in /proc/[0-9]*/exe; do
  target="$(readlink "$exe" 2>/dev/null || true)"
  pid="${exe#/proc/}"; pid="${pid%/exe}"
  case "$target" in
    "$TESTBED_STATE/"*) ;;
    "$TESTBED_BIN/"*)
      cwd="$(readlink "/proc/$pid/cwd" 2>/dev/null || true)"
      [[ "$cwd" == "$TESTBED_STATE" || "$cwd" == "$TESTBED_STATE/"* ]] ||
        tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$TESTBED_STATE/" || continue
      ;;
    *) continue ;;
  esac
  left+=" $pid"
done
if [[ -n "$left" ]]; then
  log "killing leftover processes:$left"
  for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
fi
rm -rf "$TESTBED_STATE"
log "test bed stopped"
