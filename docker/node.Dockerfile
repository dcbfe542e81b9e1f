# syntax=docker/dockerfile:1
# The bcos-node image: one static (musl) binary on distroless, run as a non-root user. Build from
# the repository root:
#
#   docker build -f docker/node.Dockerfile -t ghcr.io/bcos-rs/bcos-node:0.1.0 .

# The toolchain the repository is built and tested with.
ARG RUST_VERSION=1.95

# RocksDB is C++, and Debian's musl-tools has a C compiler only: this image's musl-cross-make
# toolchain (gcc and g++ targeting musl, with a static libstdc++) compiles and links it.
FROM ghcr.io/rust-cross/rust-musl-cross:x86_64-musl AS musl-cross

FROM rust:${RUST_VERSION}-bookworm AS build
# protoc: bcos-sdk generates its gRPC code with tonic-prost-build. libclang: librocksdb-sys makes
# its bindings with bindgen.
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libclang-dev \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
COPY --from=musl-cross /usr/local/musl /usr/local/musl
ENV PATH=/usr/local/musl/bin:$PATH \
    CC_x86_64_unknown_linux_musl=x86_64-unknown-linux-musl-gcc \
    CXX_x86_64_unknown_linux_musl=x86_64-unknown-linux-musl-g++ \
    AR_x86_64_unknown_linux_musl=x86_64-unknown-linux-musl-ar \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=x86_64-unknown-linux-musl-gcc
# Bindings from musl's headers, not the build host's glibc ones.
ENV BINDGEN_EXTRA_CLANG_ARGS_x86_64_unknown_linux_musl=--sysroot=/usr/local/musl/x86_64-unknown-linux-musl
# Compile RocksDB from the source bundled in librocksdb-sys and link it statically.
# .cargo/config.toml points ROCKSDB_LIB_DIR at Debian's shared librocksdb for local builds, which
# cannot go into a static musl binary; librocksdb-sys checks ROCKSDB_COMPILE before it.
ENV ROCKSDB_COMPILE=1
# Static and not position-independent: musl-cross-make's gcc is not configured with
# --enable-default-pie, so its libstdc++.a is non-PIC code that a static-pie link would reject.
ENV CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static"
WORKDIR /src
COPY . .
# The caches keep downloaded crates and compiled dependencies (RocksDB's C++ takes long) between
# builds; the binary is copied out of the target cache, which is not part of the image.
RUN --mount=type=cache,id=bcos-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=bcos-node-musl-target,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl -p bcos-node --bin bcos-node \
 && install -D -m 0755 target/x86_64-unknown-linux-musl/release/bcos-node /out/bcos-node \
 && if readelf --program-headers /out/bcos-node | grep -q INTERP; then \
      echo "bcos-node is dynamically linked; distroless/static has no libc" >&2; exit 1; \
    fi

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bcos-node /usr/local/bin/bcos-node
USER 65532:65532
# p2p, Ethereum JSON-RPC (HTTP and WebSocket), gRPC, Prometheus metrics and probes.
EXPOSE 30300 8545 50051 9100
ENTRYPOINT ["/usr/local/bin/bcos-node"]
