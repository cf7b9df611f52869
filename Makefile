# rebootgate — build, test and demo targets. `make test` is what CI runs.
SHELL := /usr/bin/env bash
GO ?= go
ROOT := $(CURDIR)
OUT := $(ROOT)/_output
BIN := $(OUT)/bin
export GOBIN := $(BIN)
export PATH := $(BIN):$(PATH)

# Tool versions come from go.mod so the CLI and the embedded library agree.
OPA_VERSION := $(shell $(GO) list -m -f '{{.Version}}' github.com/open-policy-agent/opa)
OPA := $(BIN)/opa

.PHONY: all build test test-unit test-policies test-e2e bench tools clean

all: build

build:
	$(GO) build -o $(BIN)/rebootgate ./cmd/rebootgate

## test: everything CI runs — unit tests with fuzz seeds, stock `opa test`, the Dockerfile
## check, the images built twice (test-image), the chart, e2e on the test bed, the chart's
## pod under runc (test-runtime), the chaos rollout.
test: test-unit test-policies image-check test-image test-chart test-e2e test-runtime test-chaos

## test-unit: the fast loop (Go unit tests; fuzz seed corpora run as ordinary tests).
test-unit:
	$(GO) vet ./...
	$(GO) test -count=1 ./cmd/... ./engine/... ./policies/... ./examples/...

$(OPA):
	$(GO) install github.com/open-policy-agent/opa@$(OPA_VERSION)

tools: $(OPA)

## test-policies: the Rego under policies/ and examples/ with the stock OPA CLI.
test-policies: $(OPA)
	$(OPA) fmt --list --fail policies examples
	$(OPA) check --strict policies examples
	$(OPA) check --strict --schema policies/input.schema.json policies examples
	$(OPA) test -v --coverage --format=json policies > $(OUT)/policies-coverage.json || { $(OPA) test -v policies; exit 1; }
	$(OPA) test -v policies
	for d in examples/*/; do if ls $$d*_test.rego >/dev/null 2>&1; then $(OPA) test -v policies $$d || exit 1; fi; done

## bench: the Go benchmarks — one decision (engine/decision: CEL and the Rego gate) and
## the slot hand-off (engine/lock). BENCH selects benchmarks (a -bench regexp),
## BENCH_COUNT runs of each (the README's decision figures are medians of 6),
## BENCHTIME per run (e.g. 200x for a quick check).
BENCH ?= .
BENCH_COUNT ?= 6
BENCHTIME ?= 1s
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count $(BENCH_COUNT) -benchtime $(BENCHTIME) ./engine/decision/ ./engine/lock/

clean:
	rm -rf $(OUT)

## Test bed (hack/testbed, test/testbed): a kwok cluster built from source, with
## Prometheus and Alertmanager, all on 127.0.0.1. See README "Test bed".
NODES ?= 6
TESTBED := $(ROOT)/hack/testbed
.PHONY: testbed-up testbed-down

## testbed-up: start (or reuse) the bed with NODES simulated nodes; last line is KUBECONFIG=<path>.
testbed-up:
	@NODES=$(NODES) GO=$(GO) $(TESTBED)/up.sh

## testbed-down: stop everything the bed started and remove its state (build cache kept).
testbed-down:
	@$(TESTBED)/down.sh

## test-e2e: e2e suites under test/ on the bed; starts it if needed and then tears it down.
test-e2e:
	@NODES=$(NODES) GO=$(GO) $(TESTBED)/e2e.sh

## test-chaos: the seeded chaos rollout (test/chaos) on the bed: a rolling reboot of 18
## simulated nodes in three pools (one keyed by zone, with a budget, a breaker and two
## summarizer replicas) while faults hit; one summary line per seed. SEEDS is a
## comma list (make test runs the default set), DURATION the fault window the rollout is
## paced to, CHAOS_FAULTS=none a fault-free run, CHAOS_TIMELINE=1 a passing seed's timeline.
## Pauses kube-apiserver: hold the bed
## to yourself (e.g. flock /tmp/rebootgate-bed.lock make test-chaos).
SEEDS ?= 1,2,3
DURATION ?= 60s
.PHONY: test-chaos
test-chaos:
	@NODES=$(NODES) GO=$(GO) E2E_FLAGS="-run TestChaosRollout -v" E2E_TIMEOUT=180m REBOOTGATE_CHAOS=1 \
		SEEDS=$(SEEDS) DURATION=$(DURATION) E2E_PACKAGES=./test/chaos $(TESTBED)/e2e.sh

## bench-rollout: a rolling reboot on the test bed: N nodes, concurrency C, reboot delay D.
N ?= 30
C ?= 1
D ?= 5s
.PHONY: bench-rollout
bench-rollout:
	@set -o pipefail; NODES=$(NODES) GO=$(GO) E2E_FLAGS="-run TestRollout -v -timeout 60m" REBOOTGATE_BENCH_ROLLOUT=1 N=$(N) C=$(C) D=$(D) \
		E2E_PACKAGES=./test/bench/rollout $(TESTBED)/e2e.sh 2>&1 | grep -E '^(rollout|per-node|idle agent|--- FAIL|FAIL|ok)'

## bench-footprint: AGENTS idle agents (the release build, as `make build-static`) on the
## test bed: each one's time from start to /readyz 200, then, after a WINDOW with no
## API request but their watches (checked), their resident memory, total and private
## (anonymous); the binary's size and its initialisers' cost (GODEBUG=inittrace=1).
## Fails above the targets (medians: 37.5 MiB total, 12 MiB private, 1 s to ready).
## REBOOTGATE_BIN=path measures another binary.
AGENTS ?= 5
WINDOW ?= 60s
.PHONY: bench-footprint
bench-footprint:
	@set -o pipefail; NODES=$(NODES) GO=$(GO) E2E_FLAGS="-run TestIdleFootprint -v -timeout 20m" REBOOTGATE_BENCH_FOOTPRINT=1 AGENTS=$(AGENTS) WINDOW=$(WINDOW) \
		E2E_PACKAGES=./test/testbed/footprint $(TESTBED)/e2e.sh 2>&1 | grep -E '^(idle-rss|footprint|binary|--- FAIL|FAIL|ok|\s+footprint_test)'

## bench-scale: N real agent processes through the node simulator, one line per run
## (`scale nodes=N concurrency=C wall=... requests-per-reboot=... idle-rss=...`), for
## SCALE_NODES (default 10,30,100) x SCALE_CONCURRENCY (default 1,5%). Each agent needs
## inotify instances, so fs.inotify.max_user_instances is raised for the run (and put
## back); SCALE_FALLBACK (default 100 nodes at 5%) then runs once more without raising
## it, to show the cost of the polling fallback. Needs root for sysctl.
SCALE_NODES ?= 10,30,100
SCALE_CONCURRENCY ?= 1,5%
SCALE_INOTIFY ?= 4096
SCALE_FALLBACK ?= 100:5%
.PHONY: bench-scale
bench-scale:
	@set -o pipefail; orig=$$(cat /proc/sys/fs/inotify/max_user_instances); \
	run() { NODES=$(NODES) GO=$(GO) E2E_FLAGS="-run TestScale -v -timeout 240m" REBOOTGATE_BENCH_SCALE=1 SCALE_NODES=$$1 SCALE_CONCURRENCY=$$2 \
		E2E_PACKAGES=./test/bench/scale $(TESTBED)/e2e.sh 2>&1 | grep --line-buffered -E '^(scale|per-node|bench-scale|--- FAIL|FAIL|ok|\s+scale_test)'; }; \
	echo "bench-scale: raising fs.inotify.max_user_instances from $$orig to $(SCALE_INOTIFY) for the run"; \
	sysctl -qw fs.inotify.max_user_instances=$(SCALE_INOTIFY); \
	run '$(SCALE_NODES)' '$(SCALE_CONCURRENCY)'; rc=$$?; \
	sysctl -qw fs.inotify.max_user_instances=$$orig; \
	if [ -n '$(SCALE_FALLBACK)' ] && [ $$rc = 0 ]; then \
		echo "bench-scale: once more at fs.inotify.max_user_instances=$$orig (not raised): agents without inotify poll every 15s"; \
		fb='$(SCALE_FALLBACK)'; run "$${fb%%:*}" "$${fb#*:}"; rc=$$?; \
	fi; exit $$rc

## demo: a live rolling reboot of 8 simulated nodes in 2 pools on the test bed.
.PHONY: demo
demo:
	$(GO) run ./test/demo

## build-static: the image's files under STATIC_ROOT (the Dockerfile runs this target and
## copies STATIC_ROOT to /): the static binary usr/local/bin/rebootgate, and usr/bin/kured,
## a relative symlink to it, which kured's DaemonSet runs (invoked as kured, the binary is
## `rebootgate agent`).
VERSION ?= dev
STATIC_ROOT ?= $(OUT)/image/rootfs
STATIC_OUT := $(STATIC_ROOT)/usr/local/bin/rebootgate
STATIC_KURED := $(STATIC_ROOT)/usr/bin/kured
.PHONY: build-static image-check
build-static:
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath \
		-ldflags "-s -w -X github.com/rebootgate/rebootgate/cmd/rebootgate/cli.Version=$(VERSION)" \
		-o $(STATIC_OUT) ./cmd/rebootgate
	mkdir -p $(dir $(STATIC_KURED))
	ln -sfn ../local/bin/rebootgate $(STATIC_KURED)

## image-check: no Docker engine here, so check the Dockerfile with BuildKit's parser (its
## stages, and that it builds STATIC_ROOT with build-static and copies it into both final
## stages) and build the same files it builds; prove the binary is static, that it decides,
## and that /usr/bin/kured is the binary and runs as `rebootgate agent`.
image-check: build-static
	cd hack/imagecheck && $(GO) run . -rootfs /out/rootfs ../../Dockerfile build rebootgate rebootgate-nsenter
	cd hack/imagecheck && $(GO) run . -static $(STATIC_OUT)
	test "$$(readlink -f $(STATIC_KURED))" = "$$(readlink -f $(STATIC_OUT))"
	$(STATIC_KURED) --help | grep -q -- '--reboot-sentinel '
	$(STATIC_OUT) eval --node examples/aks/testdata/user.yaml \
		--config examples/aks/config.yaml --at 2026-11-24T23:30:00+01:00 -o json | grep -q '"allowed": true'

## Helm chart (charts/rebootgate): helm is built from source, cached in _output/bin.
HELM_VERSION := v3.22.0
HELM := $(BIN)/helm
.PHONY: test-chart

$(HELM):
	$(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

## test-chart: helm lint and the chart's golden, RBAC and security tests, and its
## PrometheusRule through promtool (check rules; test rules, one case per alert) — no test
## bed; the chart's e2e suite, test/chart/e2e, runs in test-e2e and validates the
## ServiceMonitor and PrometheusRule against the Prometheus Operator's own CRDs.
test-chart: $(HELM)
	command -v promtool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends prometheus >/dev/null && \
		{ systemctl stop prometheus prometheus-node-exporter >/dev/null 2>&1 || true; }; }
	$(HELM) lint --strict charts/rebootgate
	HELM=$(HELM) $(GO) test -count=1 ./test/chart/

## Release images without Docker (hack/image, go-containerregistry): the default image
## (distroless/static stand-in, signal method) and the nsenter image (Debian-slim stand-in,
## command method), each for linux/amd64 and linux/arm64 as one multi-arch index, from
## Debian packages (apt-get download, hack/image/packages.txt) and build-static per
## architecture. Timestamps are SOURCE_DATE_EPOCH (the commit's time): one commit and one
## set of Debian package versions give one digest.
IMAGE_OUT ?= $(OUT)/image
IMAGE_DEBS ?= $(ROOT)/_cache/image/debs
IMAGE_ARCHES ?= amd64 arm64
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
.PHONY: image test-image test-runtime

## image: the OCI layouts _output/image/oci/<image>/, `docker load`-able tarballs
## _output/image/<image>-<arch>.tar, SPDX SBOMs _output/image/sbom/ and digests.txt.
image:
	ARCHES="$(IMAGE_ARCHES)" $(ROOT)/hack/image/debs.sh $(IMAGE_DEBS)
	for a in $(IMAGE_ARCHES); do GOARCH=$$a $(MAKE) --no-print-directory build-static VERSION=$(VERSION) STATIC_ROOT=$(IMAGE_OUT)/rootfs-$$a || exit 1; done
	cd hack/image && $(GO) run . -out $(IMAGE_OUT) -debs $(IMAGE_DEBS) -rootfs $(IMAGE_OUT)/rootfs-%s \
		-arch "$$(echo $(IMAGE_ARCHES) | tr ' ' ,)" -packages packages.txt \
		-epoch $(SOURCE_DATE_EPOCH) -version $(VERSION) -revision "$(REVISION)"

## test-image: build the images, then again into _output/image-again (binaries linked
## anew), and require the same digests; then hack/image's tests on what was built (every
## ELF's libraries are in its image, the Dockerfile and the builder agree on base, user,
## entrypoint and labels, the SBOM names the Go modules and the Debian packages).
test-image: image
	$(MAKE) --no-print-directory image IMAGE_OUT=$(OUT)/image-again
	diff $(IMAGE_OUT)/digests.txt $(OUT)/image-again/digests.txt && echo "image: reproducible: $$(tr '\n' ' ' < $(IMAGE_OUT)/digests.txt)"
	cd hack/image && IMAGE_OUT=$(IMAGE_OUT) IMAGE_DEBS=$(IMAGE_DEBS) $(GO) test -count=1 ./...

## test-runtime: the chart's pod spec under runc (test/runtime): the images of `make
## image`, a stand-in host, the test bed's kube-apiserver; a reboot by the signal and by
## the command method. Needs root; installs runc.
test-runtime: image $(HELM)
	command -v runc >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends runc >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends runc; }; }
	@NODES=$(NODES) GO=$(GO) HELM=$(HELM) IMAGE_OUT=$(IMAGE_OUT) IMAGE_TAG=$(VERSION) E2E_FLAGS="-v" REBOOTGATE_RUNTIME=1 \
		E2E_PACKAGES=./test/runtime $(TESTBED)/e2e.sh
