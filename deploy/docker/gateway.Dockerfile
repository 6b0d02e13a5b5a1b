# syntax=docker/dockerfile:1
#
# httvps-gateway: the edge gateway (TLS + WebSocket, relay to Outline).
# Build from the repository root:
#   docker build -f deploy/docker/gateway.Dockerfile -t httvps-gateway .
#
# The runtime image is distroless: no shell, no sleep, no curl. There is
# therefore no HEALTHCHECK; orchestrators probe the admin listener instead:
#   GET :9090/healthz  liveness  (200 while the process serves HTTP)
#   GET :9090/readyz   readiness (503 from the moment a SIGTERM drain starts)
#   GET :9090/metrics  Prometheus text format
# Never publish 9090 to the internet; publish only 8443.

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
    -o /out/httvps-gateway ./cmd/httvps-gateway

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=devel
ARG REVISION=unknown
LABEL org.opencontainers.image.title="httvps-gateway" \
      org.opencontainers.image.source="https://github.com/httvps/httvps" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/httvps-gateway /usr/local/bin/httvps-gateway
# Container-friendly defaults; flags and the rest of HTTVPS_* override them.
# Unprivileged: listen on 8443 and map 443 to it in front (Service, -p 443:8443).
ENV HTTVPS_LISTEN=:8443 \
    HTTVPS_ADMIN_LISTEN=:9090 \
    HTTVPS_LOG_FORMAT=json
EXPOSE 8443/tcp 9090/tcp
USER nonroot:nonroot
# SIGTERM drains (close 1001 to every session, up to -drain-timeout); give
# the container at least -drain-timeout + 5 s to stop (docker stop -t 40).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/httvps-gateway"]
