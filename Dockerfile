# syntax=docker/dockerfile:1
# OneFlow's image: the release binary on a distroless base (glibc, CA
# certificates, a non-root user; no shell, no package manager). See
# docs/deploy.md.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# The caches keep the registry and the build directory between builds; the
# binary is copied out of the cached target so the layer holds it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin oneflow \
    && cp target/release/oneflow /oneflow \
    && mkdir -p /state

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /oneflow /usr/local/bin/oneflow
# The redb file's directory, owned by the image's non-root user (65532);
# unused when storage.backend is "postgres".
COPY --from=build --chown=65532:65532 /state /var/lib/oneflow
USER 65532:65532
ENV ONEFLOW__SERVER__BIND=0.0.0.0:8080 \
    ONEFLOW__SERVER__DATA_DIR=/var/lib/oneflow
VOLUME ["/var/lib/oneflow"]
EXPOSE 8080
# The binary is its own probe: the image has no shell or curl to run one.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/oneflow", "health", "--url", "http://127.0.0.1:8080"]
ENTRYPOINT ["/usr/local/bin/oneflow"]
CMD ["serve"]
