# syntax=docker/dockerfile:1
# Multi-stage build: a static-ish release binary on a distroless, non-root base.
FROM rust:1-bookworm AS build
WORKDIR /src
# The commit `stateward --version` names (.git is not in the build context):
#   docker build --build-arg STATEWARD_GIT_COMMIT=$(git rev-parse --short HEAD) .
ARG STATEWARD_GIT_COMMIT=unknown
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
COPY policies ./policies
COPY docs/rules.md ./docs/rules.md
RUN cargo build --release --locked --bin stateward

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/stateward /usr/local/bin/stateward
USER 65532:65532
# glibc's malloc: a fixed mmap threshold returns the cluster caches' list pages to the system
# once decoded (docs/cluster.md); the chart's Deployment sets the same, and the binary
# sets it itself when GLIBC_TUNABLES names no mmap_threshold (kept here to be explicit).
ENV GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/stateward"]
CMD ["serve", "--tls-cert=/tls/tls.crt", "--tls-key=/tls/tls.key"]
