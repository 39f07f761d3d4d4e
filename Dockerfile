# ctwa-operator container image: `docker build .` from the repository root.
#
# The context is only what .dockerignore allows: the workspace manifests and sources. The
# benches and the test-support crates are copied because Cargo.toml names them (a workspace
# member or a declared bench that is missing fails the manifest), not because the binary
# uses them. `make test` reproduces this stage from the same files (scripts/image-build.py).

# Build stage: a release build of the operator binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY fake-upstreams ./fake-upstreams
COPY testenv ./testenv
RUN cargo build --release --locked --bin ctwa-operator

# Runtime: distroless "cc" has the glibc (2.36, as the bookworm build stage) and libgcc the
# binary links against, CA certificates, no shell and no package manager; the "nonroot" tag
# runs as UID 65532. The binary bundles the time zone database and writes no files, so the
# root filesystem can be mounted read-only.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/ctwa-operator /ctwa-operator
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/ctwa-operator"]
CMD ["run"]
