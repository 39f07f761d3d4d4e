# ctwa-operator container image.
#
# Build stage: a release build of the operator binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY fake-upstreams ./fake-upstreams
COPY testenv ./testenv
RUN cargo build --release --locked --bin ctwa-operator

# Runtime: distroless "cc" has glibc and libgcc that the binary links against, CA
# certificates for the upstream APIs, no shell and no package manager. The "nonroot" tag runs
# as UID 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/ctwa-operator /ctwa-operator
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/ctwa-operator"]
CMD ["run"]
