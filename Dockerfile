# forge-manager: one static binary, nothing else. Built by `make image` from
# the binary `make build` made (no RUN step, so no shell is ever needed).
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="forge-manager" \
      org.opencontainers.image.description="Keeps exactly one Cardano block producer forging in a Kubernetes StatefulSet" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/forge-manager/forge-manager"
COPY forge-manager /forge-manager
# The same numeric UID as cardano-node in the shipped manifests: signals and
# 0600 key files need one owner.
USER 10001:10001
ENTRYPOINT ["/forge-manager"]
CMD ["run"]
