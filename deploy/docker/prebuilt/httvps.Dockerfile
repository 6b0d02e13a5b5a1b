# syntax=docker/dockerfile:1
#
# httvps from a prebuilt static binary: what `make httvps-image` and CI/CD
# build. The context is the staging directory make prepares (bin/image):
# <os>_<arch>/httvps built with CGO_ENABLED=0 and the version ldflags,
# rootfs/ (passwd and group naming UID 65532 nonroot, the CA bundle for
# ACME and outline-api members, a sticky /tmp) and data/, an empty
# directory that becomes the nonroot-owned data directory (store, admin
# key, local CA). Nothing is pulled: it builds where no registry is
# reachable, with podman or docker buildx (one binary per platform, picked
# by TARGETARCH).
#
# Same runtime configuration as ../httvps.Dockerfile (the deploy test
# compares them): `up` unless other arguments are given, probes on :9090,
# only :8443 is public.

FROM scratch
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=devel
ARG REVISION=unknown
ARG CREATED=unknown
COPY rootfs/ /
COPY --chown=65532:65532 data/ /var/lib/httvps/
COPY ${TARGETOS}_${TARGETARCH}/httvps /usr/local/bin/httvps
VOLUME ["/var/lib/httvps"]
ENV HTTVPS_LISTEN=:8443 \
    HTTVPS_CONTROL_LISTEN=:9443 \
    HTTVPS_ADMIN_LISTEN=:9090 \
    HTTVPS_DATA_DIR=/var/lib/httvps \
    HTTVPS_LOG_FORMAT=json
EXPOSE 8443/tcp 9443/tcp 9090/tcp
LABEL org.opencontainers.image.title="httvps" \
      org.opencontainers.image.description="HTTVPS single node (httvps up): gateway, control plane and pool manager on the embedded store" \
      org.opencontainers.image.source="https://github.com/httvps/httvps" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
USER 65532:65532
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/httvps"]
CMD ["up"]
