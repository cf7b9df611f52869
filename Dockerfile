# syntax=docker/dockerfile:1
# rebootgate image. Two final stages:
#   rebootgate (default, last): distroless/static, non-root — the `signal` reboot
#     method (SIGRTMIN+5 to PID 1 with hostPID and CAP_KILL) and sentinel files;
#   rebootgate-nsenter (--target rebootgate-nsenter): Debian slim, whose util-linux
#     provides nsenter — needed by the `command` reboot method and sentinel commands,
#     which run in the host's mount namespace (privileged + hostPID).
# The binary is static (CGO_ENABLED=0) and embeds the time-zone database (time/tzdata),
# so reboot windows in any IANA zone work without /usr/share/zoneinfo.
# Both stages also carry /usr/bin/kured, a symlink to the binary: invoked under that name it
# is `rebootgate agent`, so a kured DaemonSet (command /usr/bin/kured, kured's flags) runs
# with only the image swapped (examples/kured-dropin).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# The same command as `make build-static`, so `make image-check` builds what this does:
# /out/rootfs holds usr/local/bin/rebootgate and usr/bin/kured -> ../local/bin/rebootgate
# Its directories are root's and 0755, as the base images' own, which the COPY merges into.
RUN make build-static VERSION=${VERSION} STATIC_ROOT=/out/rootfs

FROM debian:bookworm-slim AS rebootgate-nsenter
COPY --from=build /out/rootfs/ /
ENTRYPOINT ["/usr/local/bin/rebootgate"]
CMD ["agent"]

FROM gcr.io/distroless/static-debian12:nonroot AS rebootgate
COPY --from=build /out/rootfs/ /
ENTRYPOINT ["/usr/local/bin/rebootgate"]
CMD ["agent"]
