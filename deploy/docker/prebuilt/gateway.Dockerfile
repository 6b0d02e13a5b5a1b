# syntax=docker/dockerfile:1
#
# httvps-gateway from a prebuilt static binary: what `make gateway-image`
# and CI/CD build. The context is the staging directory make prepares
# (bin/image): <os>_<arch>/httvps-gateway built with CGO_ENABLED=0 and the
# version ldflags, and rootfs/ (passwd and group naming UID 65532 nonroot,
# the CA bundle for ACME and rediss://, a sticky /tmp). Nothing is pulled:
# it builds where no registry is reachable, with podman or docker buildx
# (one binary per platform, picked by TARGETARCH).
#
# Same runtime configuration as ../gateway.Dockerfile (the deploy test
# compares them): probes on :9090, only :8443 is public.

FROM scratch
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=devel
ARG REVISION=unknown
ARG CREATED=unknown
COPY rootfs/ /
COPY ${TARGETOS}_${TARGETARCH}/httvps-gateway /usr/local/bin/httvps-gateway
ENV HTTVPS_LISTEN=:8443 \
    HTTVPS_ADMIN_LISTEN=:9090 \
    HTTVPS_LOG_FORMAT=json
EXPOSE 8443/tcp 9090/tcp
LABEL org.opencontainers.image.title="httvps-gateway" \
      org.opencontainers.image.description="HTTVPS edge gateway: TLS + WebSocket in front of Outline servers" \
      org.opencontainers.image.source="https://github.com/httvps/httvps" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
USER 65532:65532
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/httvps-gateway"]
