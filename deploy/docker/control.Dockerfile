# syntax=docker/dockerfile:1
#
# httvps-control: the control plane API and Outline pool manager.
# Build from the repository root:
#   docker build -f deploy/docker/control.Dockerfile -t httvps-control .
#
# The runtime image is distroless: no shell, so no HEALTHCHECK; probe the
# admin listener instead:
#   GET :9091/healthz  liveness  (never touches the store)
#   GET :9091/readyz   readiness (the store answers a ping within 2 s)
#   GET :9091/metrics  Prometheus text format, without the admin key
# Never publish 9091 to the internet; publish only 9443 (the API).

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
    -o /out/httvps-control ./cmd/httvps-control
# An empty, nonroot-owned directory for the embedded store (single node,
# no -redis); distroless has no mkdir.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=devel
ARG REVISION=unknown
LABEL org.opencontainers.image.title="httvps-control" \
      org.opencontainers.image.source="https://github.com/httvps/httvps" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/httvps-control /usr/local/bin/httvps-control
COPY --from=build --chown=65532:65532 /out/data /var/lib/httvps
# Container-friendly defaults; flags and the rest of HTTVPS_* override them.
# With -redis (HTTVPS_REDIS) the data directory is unused.
ENV HTTVPS_LISTEN=:9443 \
    HTTVPS_ADMIN_LISTEN=:9091 \
    HTTVPS_DATA_DIR=/var/lib/httvps \
    HTTVPS_LOG_FORMAT=json
EXPOSE 9443/tcp 9091/tcp
USER nonroot:nonroot
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/httvps-control"]
