# syntax=docker/dockerfile:1
# Multi-stage build: a static-ish release binary on a distroless, non-root base.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY policies ./policies
RUN cargo build --release --locked --bin stateward

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/stateward /usr/local/bin/stateward
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/stateward"]
CMD ["serve", "--tls-cert=/tls/tls.crt", "--tls-key=/tls/tls.key"]
