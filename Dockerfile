# syntax=docker/dockerfile:1
#
# gatehouse container image.
#
#   docker build -t gatehouse:0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)" .
#   docker run --rm -p 8443:8443 -v "$PWD/my-config:/etc/gatehouse:ro" gatehouse:0.1.0
#
# The builder runs exactly the release build that tests/chart/test_dockerfile.py checks
# for: `cargo build --release --locked` (Cargo.lock is authoritative, as in .ci/run).
# The runtime stage is distroless: glibc, libgcc and CA certificates (for https:// JWKS,
# discovery, introspection and upstreams), no shell and no package manager, the binary and
# its licence only, run as a numeric non-root user. The binary links glibc (libc, libm,
# libgcc_s), so the base is distroless "cc" of the builder's Debian release, not "static".

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
# `gatehouse --version` names the commit; the build context has no .git, so it is given.
ARG REVISION=""
# Reproducible builds: the build date stamped into the binary (seconds since 1970).
ARG SOURCE_DATE_EPOCH
ENV GATEHOUSE_BUILD_COMMIT=${REVISION}
WORKDIR /src
# The build context is limited by .dockerignore to what the release build reads.
COPY . .
RUN cargo build --release --locked

FROM ${RUNTIME_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="gatehouse" \
      org.opencontainers.image.description="Authenticating edge proxy for HTTP and WebSocket backends" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"
COPY --from=builder /src/target/release/gatehouse /usr/local/bin/gatehouse
COPY LICENSE /usr/share/doc/gatehouse/LICENSE
# Read by `gatehouse health` (and by `run` when no --config is given): run with another
# file by setting this variable, so that the health check reads the same one.
ENV GATEHOUSE_CONFIG=/etc/gatehouse/gatehouse.toml
USER 10001:10001
# 8443: the public listener (listen.addr); 9090: the admin listener (admin.addr), which the
# image's config must bind to 0.0.0.0 to be reachable from outside (the Helm chart does so).
EXPOSE 8443 9090
# No shell and no curl: the binary probes the admin listener's /healthz itself (loopback,
# so it works with the default admin.addr = 127.0.0.1:9090 too). Kubernetes ignores this;
# the Helm chart sets its own probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/gatehouse", "health", "--timeout", "3s"]
ENTRYPOINT ["gatehouse"]
CMD ["run","--config","/etc/gatehouse/gatehouse.toml"]
