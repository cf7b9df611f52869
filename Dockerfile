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
# `make image` builds the same two images without Docker (hack/image, from Debian packages);
# hack/image's tests keep this file and that builder in step: the same base each stage
# stands in for, entrypoint, command, user and labels.

ARG GO_VERSION=1.26
# Labels: the version, the commit and its time (RFC 3339), as `make image` sets them.
ARG VERSION=dev
ARG REVISION=""
ARG CREATED=1970-01-01T00:00:00Z

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
ARG VERSION
ARG REVISION
ARG CREATED
# The non-root user distroless has (the sentinel mirror runs as 65532).
RUN echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >> /etc/passwd \
 && echo 'nonroot:x:65532:' >> /etc/group \
 && install -d -m 0700 -o 65532 -g 65532 /home/nonroot
COPY --from=build /out/rootfs/ /
LABEL org.opencontainers.image.title="rebootgate-nsenter" \
      org.opencontainers.image.description="rebootgate agent with nsenter (Debian): reboots Kubernetes nodes behind a CEL/Rego policy gate; command reboot method" \
      org.opencontainers.image.source="https://github.com/rebootgate/rebootgate" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
ENTRYPOINT ["/usr/local/bin/rebootgate"]
CMD ["agent"]

FROM gcr.io/distroless/static-debian12:nonroot AS rebootgate
ARG VERSION
ARG REVISION
ARG CREATED
COPY --from=build /out/rootfs/ /
LABEL org.opencontainers.image.title="rebootgate" \
      org.opencontainers.image.description="rebootgate agent (static, non-root by default): reboots Kubernetes nodes behind a CEL/Rego policy gate; signal reboot method" \
      org.opencontainers.image.source="https://github.com/rebootgate/rebootgate" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/rebootgate"]
CMD ["agent"]
