# syntax=docker/dockerfile:1
# The bcos-operator image: one static (musl) binary on distroless, run as a non-root user. Build
# from the repository root:
#
#   docker build -f docker/operator.Dockerfile -t ghcr.io/bcos-rs/bcos-operator:0.1.0 .

# The toolchain the repository is built and tested with.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
# musl-gcc compiles ring's C and assembly for the musl target; protoc: bcos-sdk generates its
# gRPC code with tonic-prost-build.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=+crt-static"
WORKDIR /src
COPY . .
# The caches keep downloaded crates and compiled dependencies between builds; the binary is copied
# out of the target cache, which is not part of the image.
RUN --mount=type=cache,id=bcos-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=bcos-operator-musl-target,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl -p bcos-operator --bin bcos-operator \
 && install -D -m 0755 target/x86_64-unknown-linux-musl/release/bcos-operator /out/bcos-operator \
 && if readelf --program-headers /out/bcos-operator | grep -q INTERP; then \
      echo "bcos-operator is dynamically linked; distroless/static has no libc" >&2; exit 1; \
    fi

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bcos-operator /usr/local/bin/bcos-operator
USER 65532:65532
# /metrics, /healthz and /readyz (the chart passes --http-listen 0.0.0.0:8080).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/bcos-operator"]
