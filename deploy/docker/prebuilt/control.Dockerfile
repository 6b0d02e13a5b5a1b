# syntax=docker/dockerfile:1
#
# httvps-control from a prebuilt static binary: what `make control-image`
# and CI/CD build. The context is the staging directory make prepares
# (bin/image): <os>_<arch>/httvps-control built with CGO_ENABLED=0 and the
# version ldflags, rootfs/ (passwd and group naming UID 65532 nonroot, the
# CA bundle for ACME, rediss:// and outline-api members, a sticky /tmp) and
# data/, an empty directory that becomes the nonroot-owned data directory
# of the embedded store. Nothing is pulled: it builds where no registry is
# reachable, with podman or docker buildx (one binary per platform, picked
# by TARGETARCH).
#
# Same runtime configuration as ../control.Dockerfile (the deploy test
# compares them): probes on :9091, only :9443 is public.

FROM scratch
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=devel
ARG REVISION=unknown
ARG CREATED=unknown
COPY rootfs/ /
COPY --chown=65532:65532 data/ /var/lib/httvps/
COPY ${TARGETOS}_${TARGETARCH}/httvps-control /usr/local/bin/httvps-control
ENV HTTVPS_LISTEN=:9443 \
    HTTVPS_ADMIN_LISTEN=:9091 \
    HTTVPS_DATA_DIR=/var/lib/httvps \
    HTTVPS_LOG_FORMAT=json
EXPOSE 9443/tcp 9091/tcp
LABEL org.opencontainers.image.title="httvps-control" \
      org.opencontainers.image.description="HTTVPS control plane: admin and client API, Outline pool manager" \
      org.opencontainers.image.source="https://github.com/httvps/httvps" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
USER 65532:65532
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/httvps-control"]
