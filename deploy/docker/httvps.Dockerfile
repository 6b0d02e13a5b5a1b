# syntax=docker/dockerfile:1
#
# httvps: a whole single node (`httvps up`: gateway, control plane and pool
# manager on the embedded store), and the same binary's admin, backup and
# restore commands. Build from the repository root:
#   docker build -f deploy/docker/httvps.Dockerfile -t httvps .
#
# The default command is `up`; any other arguments replace it:
#   docker run IMAGE                       httvps up
#   docker run IMAGE up -public-host ...   httvps up with flags
#   docker exec NAME /usr/local/bin/httvps admin tokens list
# (exec finds the admin key and CA in HTTVPS_DATA_DIR, the API on
# 127.0.0.1:9443). The runtime image is distroless: no shell, so no
# HEALTHCHECK; probe the admin listener instead:
#   GET :9090/healthz  liveness
#   GET :9090/readyz   readiness (503 from the moment a SIGTERM drain starts)
#   GET :9090/metrics  Prometheus text format
# Publish 8443 (clients); never publish 9090, and 9443 (the admin API)
# only to the host (-p 127.0.0.1:9443:9443).

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH=amd64
# What -version prints (make passes them: --build-arg VERSION=$(git describe ...)).
ARG VERSION=devel
ARG REVISION=unknown
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w -X github.com/httvps/httvps/internal/version.Version=${VERSION} -X github.com/httvps/httvps/internal/version.Commit=${REVISION}" \
    -o /out/httvps ./cmd/httvps
# An empty, nonroot-owned data directory (store, admin key, local CA,
# ACME certificates); distroless has no mkdir.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=devel
ARG REVISION=unknown
LABEL org.opencontainers.image.title="httvps" \
      org.opencontainers.image.source="https://github.com/httvps/httvps" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/httvps /usr/local/bin/httvps
COPY --from=build --chown=65532:65532 /out/data /var/lib/httvps
# Keep the data directory across container replacements (a named volume
# takes this directory's owner).
VOLUME ["/var/lib/httvps"]
# Container-friendly defaults; flags and the rest of HTTVPS_* override them.
# The control plane API listens on every address of the container (up's own
# default is loopback): publish it to the host only.
ENV HTTVPS_LISTEN=:8443 \
    HTTVPS_CONTROL_LISTEN=:9443 \
    HTTVPS_ADMIN_LISTEN=:9090 \
    HTTVPS_DATA_DIR=/var/lib/httvps \
    HTTVPS_LOG_FORMAT=json
EXPOSE 8443/tcp 9443/tcp 9090/tcp
USER nonroot:nonroot
# SIGTERM drains (close 1001 to every session, up to -drain-timeout); give
# the container at least -drain-timeout + 5 s to stop (docker stop -t 40).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/httvps"]
CMD ["up"]
