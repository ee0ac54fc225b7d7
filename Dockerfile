# syntax=docker/dockerfile:1
#
# figway in a small non-root image:
#
#   docker build -t figway .
#   docker run --rm --read-only -p 8080:8080 -p 9901:9901 \
#     -v "$PWD/figway:/etc/figway:ro" figway
#
# Mount the config's *directory* (here ./figway holding figway.toml), not the
# single file: an editor saves by rename, and a single-file bind mount keeps
# showing the old inode, so figway would never see the edit. Inside a
# container, set [admin] address = "0.0.0.0:9901" to reach /metrics and the
# probes from outside it.

# --- build: the official Rust image on the same Debian release as the
# runtime image below (bookworm = Debian 12), so the binary's glibc is the
# one it runs on. Pinned to the toolchain the project is tested with.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# No debug info in the image's binary (the release profile keeps line tables
# for local profiling; with debug off cargo strips debug info, keeping the
# symbol names that panic backtraces print).
ENV CARGO_PROFILE_RELEASE_DEBUG=0
COPY . .
# PGO=1 (docker build --build-arg PGO=1 .): the profile-guided build of
# scripts/pgo.sh instead, ~18% fewer instructions a request (it installs
# nginx, wrk and rustup's llvm-tools in this stage for its training run,
# and takes about twice as long; docs/benchmarks.md, "A profile-guided
# build").
ARG PGO=0
# Cache mounts keep the registry and the build directory between builds
# (BuildKit), so a source change recompiles figway, not its dependencies;
# the binary is copied out because a cache mount is not part of the layer.
# --locked: exactly the versions of Cargo.lock, or fail.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    if [ "$PGO" = 1 ]; then \
      scripts/pgo.sh && cp target/pgo/release/figway /figway; \
    else \
      cargo build --release --locked --bin figway && cp target/release/figway /figway; \
    fi

# --- runtime: glibc, libgcc_s (Rust's unwinder) and CA certificates, no
# shell and no package manager; "nonroot" runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /figway /figway
# The proxy listener and the admin API (as set in figway.toml).
EXPOSE 8080 9901
# SIGTERM drains (/readyz 503, drain_delay, then in-flight requests get
# drain_timeout); give `docker stop -t` more than drain_delay + drain_timeout
# (docker's default is 10 s). figway is PID 1 and handles the signal itself.
STOPSIGNAL SIGTERM
USER nonroot:nonroot
# No HEALTHCHECK: Docker runs it inside the container, and distroless has no
# shell or curl to call /healthz with (figway has no self-probe subcommand).
# Orchestrators probe the admin port from outside instead: Kubernetes'
# readiness (/readyz) and liveness (/healthz) probes, which ignore
# HEALTHCHECK anyway (examples/kubernetes/deployment.yaml).
ENTRYPOINT ["/figway"]
CMD ["run", "--config", "/etc/figway/figway.toml"]
