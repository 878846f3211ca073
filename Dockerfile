# forge-manager: one static binary and a CA bundle, nothing else. Built by
# `make image` (hack/image.sh) once per platform, from a context holding that
# platform's binary and hack/ca-certificates.crt: no RUN step, so no shell is
# ever needed and no platform is emulated.
FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="forge-manager" \
      org.opencontainers.image.description="Keeps exactly one Cardano block producer forging in a Kubernetes StatefulSet" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/forge-manager/forge-manager"
# Debian's Mozilla roots (hack/ca-certificates.sh) where Go's crypto/x509
# looks first on Linux, for an https:// HEALTH_CHECK_ENDPOINT. 0.22 MB.
COPY hack/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY forge-manager /forge-manager
# The same numeric UID as cardano-node in the shipped manifests: signals and
# 0600 key files need one owner.
USER 10001:10001
ENTRYPOINT ["/forge-manager"]
CMD ["run"]
