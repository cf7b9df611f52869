#!/usr/bin/env bash
# Starts the rebootgate test bed, or reuses the running one:
#   - a kwok cluster (binary runtime: etcd, kube-apiserver, kube-controller-manager,
#     kube-scheduler, kwok-controller built from source by build.sh), on 127.0.0.1;
#   - NODES simulated nodes with AKS-like labels in two pools and three zones;
#   - Prometheus and Alertmanager (Debian packages) on 127.0.0.1 with configs the
#     project owns, Prometheus sending alerts to Alertmanager.
# Idempotent. Writes $TESTBED_STATE/env (KEY=value lines for the Go test harness)
# and prints KUBECONFIG=<absolute path> as its last line.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODES="${NODES:-6}"
[[ "$NODES" =~ ^[0-9]+$ ]] || die "NODES must be a number, got '$NODES'"

mkdir -p "$TESTBED_STATE"
exec 9>"$TESTBED_STATE/.lock"
flock -w 900 9 || die "another testbed-up/down is running (lock $TESTBED_STATE/.lock)"

KUBECONFIG_PATH="$TESTBED_STATE/kubeconfig"
CLUSTER_DIR="$KWOK_WORKDIR/clusters/$TESTBED_CLUSTER"
KWOKCTL="$TESTBED_BIN/kwokctl"

apt_install() {
  local pkgs=("$@")
  log "installing Debian packages: ${pkgs[*]}"
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo -n)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  # policy-rc.d in CI images keeps the packaged services from starting; we never use them.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
}

ensure_tools() {
  local missing=()
  command -v kubectl >/dev/null || missing+=(kubectl)
  command -v prometheus >/dev/null || missing+=(prometheus)
  command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
  command -v flock >/dev/null || missing+=(util-linux)
  command -v curl >/dev/null || missing+=(curl)
  if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
  # Packaged services would listen on all interfaces; keep them off if apt started them.
  if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    systemctl stop prometheus prometheus-alertmanager prometheus-node-exporter >/dev/null 2>&1 || true
  fi
  "$(dirname "${BASH_SOURCE[0]}")/build.sh" all
}

kube() { kubectl --kubeconfig "$KUBECONFIG_PATH" "$@"; }

cluster_healthy() {
  [[ -f "$KUBECONFIG_PATH" ]] && kube get --raw /readyz >/dev/null 2>&1
}

ensure_cluster() {
  if cluster_healthy; then
    log "cluster $TESTBED_CLUSTER already running"
    return 0
  fi
  if [[ -d "$CLUSTER_DIR" ]]; then
    log "removing stale cluster state"
    "$KWOKCTL" delete cluster --name "$TESTBED_CLUSTER" >&2 || rm -rf "$CLUSTER_DIR"
  fi
  log "creating kwok cluster $TESTBED_CLUSTER"
  "$KWOKCTL" --v WARN create cluster --name "$TESTBED_CLUSTER" \
    --config "$TESTBED_ROOT/hack/testbed/kwok.yaml" \
    --runtime binary \
    --kube-apiserver-binary "$TESTBED_BIN/kube-apiserver" \
    --kube-controller-manager-binary "$TESTBED_BIN/kube-controller-manager" \
    --kube-scheduler-binary "$TESTBED_BIN/kube-scheduler" \
    --etcd-binary "$TESTBED_BIN/etcd" \
    --kwok-controller-binary "$TESTBED_BIN/kwok" \
    --kube-authorization \
    --kubeconfig "" \
    --wait 2m >&2 9>&-
  cp "$CLUSTER_DIR/kubeconfig.yaml" "$KUBECONFIG_PATH.tmp" && mv "$KUBECONFIG_PATH.tmp" "$KUBECONFIG_PATH"
  local deadline=$((SECONDS + 120))
  until cluster_healthy; do
    ((SECONDS < deadline)) || die "kube-apiserver not ready after 120s; logs in $CLUSTER_DIR/logs"
    sleep 1
  done
  # The default ServiceAccount must exist before pods can be created.
  deadline=$((SECONDS + 120))
  until kube -n default get serviceaccount default >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "default ServiceAccount not created after 120s"
    sleep 1
  done
}

# node_manifest INDEX prints one simulated Node. Names, labels and node info follow
# AKS: pools "system" (first third, at least one) and "user", zones eastus-1..3.
node_manifest() {
  local i=$1 nsystem=$2 pool idx zone name
  if ((i < nsystem)); then pool=system; idx=$i; else pool=user; idx=$((i - nsystem)); fi
  zone="eastus-$(( (idx % 3) + 1 ))"
  name=$(printf 'aks-%s-31415926-vmss%06d' "$pool" "$idx")
  local mode=$pool
  cat <<YAML
---
apiVersion: v1
kind: Node
metadata:
  name: $name
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    testbed.rebootgate.io/managed: "true"
    type: kwok
    agentpool: $pool
    kubernetes.azure.com/agentpool: $pool
    kubernetes.azure.com/mode: $mode
    kubernetes.azure.com/cluster: MC_rebootgate_testbed_eastus
    kubernetes.azure.com/os-sku: Ubuntu
    kubernetes.azure.com/node-image-version: AKSUbuntu-2204gen2containerd-202509.23.0
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    kubernetes.io/hostname: $name
    beta.kubernetes.io/arch: amd64
    beta.kubernetes.io/os: linux
    node.kubernetes.io/instance-type: Standard_D4ds_v5
    topology.kubernetes.io/region: eastus
    topology.kubernetes.io/zone: $zone
spec:
  providerID: azure:///subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/mc_rebootgate_testbed_eastus/providers/Microsoft.Compute/virtualMachineScaleSets/aks-$pool-31415926-vmss/virtualMachines/$idx
status:
  allocatable:
    cpu: 3860m
    memory: 12880Mi
    pods: "110"
    ephemeral-storage: 119703055367
  capacity:
    cpu: "4"
    memory: 16364Mi
    pods: "110"
    ephemeral-storage: 129886128Ki
  nodeInfo:
    architecture: amd64
    bootID: $(cat /proc/sys/kernel/random/uuid)
    machineID: $(cat /proc/sys/kernel/random/uuid | tr -d -)
    systemUUID: $(cat /proc/sys/kernel/random/uuid)
    containerRuntimeVersion: containerd://1.7.28-1
    kernelVersion: 5.15.0-1092-azure
    kubeProxyVersion: $KUBE_VERSION
    kubeletVersion: $KUBE_VERSION
    operatingSystem: linux
    osImage: Ubuntu 22.04.5 LTS
YAML
}

ensure_nodes() {
  local nsystem=$(( NODES / 3 )); ((nsystem >= 1)) || nsystem=1
  ((NODES > 0)) || nsystem=0
  local want=() i
  local manifest="$TESTBED_STATE/nodes.yaml"
  : >"$manifest"
  local existing
  existing="$(kube get nodes -l testbed.rebootgate.io/managed=true -o name | sed 's#^node/##')"
  for ((i = 0; i < NODES; i++)); do
    local m name
    m="$(node_manifest "$i" "$nsystem")"
    name="$(sed -n 's/^  name: //p' <<<"$m" | head -1)"
    want+=("$name")
    # Existing nodes keep their boot ID and any changes tests made.
    grep -qx "$name" <<<"$existing" || printf '%s\n' "$m" >>"$manifest"
  done
  if [[ -s "$manifest" ]]; then
    log "creating nodes"
    kube create -f "$manifest" >&2
  fi
  local n
  for n in $existing; do
    if ! printf '%s\n' "${want[@]}" | grep -qx "$n"; then
      log "deleting node $n (NODES=$NODES)"
      kube delete node "$n" --wait=false >&2
    fi
  done
  if ((NODES > 0)); then
    kube wait --for=condition=Ready node -l testbed.rebootgate.io/managed=true --timeout=120s >&2 \
      || die "nodes did not become Ready"
  fi
}

# start_daemon NAME PIDFILE LOG CMD... starts CMD detached unless PIDFILE names a
# live process running the same binary.
daemon_alive() {
  local pidfile=$1 bin=$2 pid
  [[ -f "$pidfile" ]] || return 1
  pid="$(cat "$pidfile")"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" | head -1 | grep -q "$bin"
}

start_daemon() {
  local pidfile=$1 logfile=$2; shift 2
  # 9>&-: daemons must not inherit (and hold) the bed's lock.
  setsid nohup "$@" >"$logfile" 2>&1 </dev/null 9>&- &
  echo $! >"$pidfile"
}

wait_http() {
  local url=$1 what=$2 deadline=$((SECONDS + 60))
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    ((SECONDS < deadline)) || die "$what not ready at $url after 60s"
    sleep 0.5
  done
}

ensure_monitoring() {
  local pdir="$TESTBED_STATE/prometheus" adir="$TESTBED_STATE/alertmanager"
  mkdir -p "$pdir/rules" "$pdir/targets" "$pdir/data" "$adir/data"
  sed -e "s/@AM_PORT@/$AM_PORT/g" -e "s/@PROM_PORT@/$PROM_PORT/g" \
    "$TESTBED_ROOT/hack/testbed/prometheus.yml" >"$pdir/prometheus.yml"
  cp "$TESTBED_ROOT/hack/testbed/alertmanager.yml" "$adir/alertmanager.yml"
  if ! daemon_alive "$adir/pid" prometheus-alertmanager; then
    log "starting Alertmanager on 127.0.0.1:$AM_PORT"
    start_daemon "$adir/pid" "$adir/alertmanager.log" prometheus-alertmanager \
      --config.file="$adir/alertmanager.yml" \
      --storage.path="$adir/data" \
      --web.listen-address="127.0.0.1:$AM_PORT" \
      --web.external-url="http://127.0.0.1:$AM_PORT" \
      --cluster.listen-address=""
  fi
  if ! daemon_alive "$pdir/pid" prometheus; then
    log "starting Prometheus on 127.0.0.1:$PROM_PORT"
    start_daemon "$pdir/pid" "$pdir/prometheus.log" prometheus \
      --config.file="$pdir/prometheus.yml" \
      --storage.tsdb.path="$pdir/data" \
      --storage.tsdb.retention.time=1d \
      --web.listen-address="127.0.0.1:$PROM_PORT" \
      --web.external-url="http://127.0.0.1:$PROM_PORT" \
      --web.enable-lifecycle
  else
    curl -fsS -X POST "http://127.0.0.1:$PROM_PORT/-/reload" >/dev/null || true
  fi
  wait_http "http://127.0.0.1:$AM_PORT/-/ready" Alertmanager
  wait_http "http://127.0.0.1:$PROM_PORT/-/ready" Prometheus
}

write_env() {
  cat >"$TESTBED_STATE/env.tmp" <<ENV
KUBECONFIG=$KUBECONFIG_PATH
TESTBED_CLUSTER=$TESTBED_CLUSTER
TESTBED_KUBE_VERSION=$KUBE_VERSION
PROMETHEUS_URL=http://127.0.0.1:$PROM_PORT
ALERTMANAGER_URL=http://127.0.0.1:$AM_PORT
PROMETHEUS_RULES_DIR=$TESTBED_STATE/prometheus/rules
PROMETHEUS_TARGETS_DIR=$TESTBED_STATE/prometheus/targets
ENV
  mv "$TESTBED_STATE/env.tmp" "$TESTBED_STATE/env"
}

start=$SECONDS
ensure_tools
ensure_cluster
ensure_nodes
ensure_monitoring
write_env
log "ready in $((SECONDS - start))s: $(kube get nodes --no-headers 2>/dev/null | wc -l) nodes, Prometheus http://127.0.0.1:$PROM_PORT, Alertmanager http://127.0.0.1:$AM_PORT"
echo "KUBECONFIG=$KUBECONFIG_PATH"
