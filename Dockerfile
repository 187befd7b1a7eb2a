# syntax=docker/dockerfile:1
#
# gatehouse container image.
#
#   docker build -t gatehouse:0.1.0 .
#   docker run --rm -p 8443:8443 -v "$PWD/my-config:/etc/gatehouse:ro" gatehouse:0.1.0
#
# The builder runs exactly the release build that tests/chart/test_dockerfile.py checks
# for: `cargo build --release --locked` (Cargo.lock is authoritative, as in .ci/run).
# The runtime stage is Debian slim with CA certificates (for https:// JWKS, discovery,
# introspection and upstreams), a non-root user and the binary only.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /src
# The build context is limited by .dockerignore to what the release build reads.
COPY . .
RUN cargo build --release --locked

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates is left unpinned on purpose: it should follow Debian's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 gatehouse \
    && useradd --system --uid 10001 --gid gatehouse --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin gatehouse \
    && mkdir -p /etc/gatehouse
COPY --from=builder /src/target/release/gatehouse /usr/local/bin/gatehouse
USER 10001:10001
# 8443: the public listener (listen.addr); 9090: the admin listener (admin.addr), which the
# image's config must bind to 0.0.0.0 to be reachable (the Helm chart does so).
EXPOSE 8443 9090
ENTRYPOINT ["gatehouse"]
CMD ["run","--config","/etc/gatehouse/gatehouse.toml"]
