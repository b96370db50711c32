# facebatch as a container image: the inference-only binary (no burn), ONNX Runtime, the
# face detector and the built-in model, baked in. Runs with no network, as a non-root user.
#
# Build it where a registry is reachable (Docker or Podman):
#   docker build -t facebatch:0.1.0 .
#   docker run --rm --network none -v "$PWD/photos:/work/photos:ro" -v "$PWD/out:/work/out" \
#     facebatch:0.1.0 classify photos --out out/results.parquet
#
# Build it from a binary built outside (no Rust toolchain inside the build; this is how
# scripts/container.sh builds and tests it on a machine without a registry):
#   scripts/container.sh              # cargo build, setup --bundle, podman build, smoke test
#
# BASE, RUST_IMAGE: the base images (a mirror, or a local import such as
# localhost/debian-base:bookworm). BINARY_FROM: `builder` compiles inside the build;
# `prebuilt` takes dist/image/facebatch and dist/image/bundle from the build context.
ARG BASE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG BINARY_FROM=builder

# --- compile the inference-only binary and provision the bundle -------------------------
FROM ${RUST_IMAGE} AS builder
# nasm: libjpeg-turbo's SIMD decoder (the simd-jpeg feature builds without it, slower).
# Not pinned: Debian stable's versions only move for security fixes.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nasm ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --no-default-features --features simd-jpeg \
    && install -D -m 0755 target/release/facebatch /out/facebatch \
    && /out/facebatch setup --bundle /out/bundle

# --- or take them from the build context ---------------------------------------------
FROM ${BASE} AS prebuilt
COPY dist/image/facebatch /out/facebatch
COPY dist/image/bundle /out/bundle

FROM ${BINARY_FROM} AS binary

# --- the runtime image -----------------------------------------------------------------
FROM ${BASE} AS runtime
ARG UID=10001
RUN useradd --uid "${UID}" --user-group --home-dir /work --create-home --shell /usr/sbin/nologin facebatch
COPY --from=binary /out/facebatch /usr/local/bin/facebatch
COPY --from=binary /out/bundle /opt/facebatch/bundle
COPY data/samples /opt/facebatch/samples
COPY LICENSE-MIT LICENSE-APACHE README.md /opt/facebatch/
# Every run reads ONNX Runtime, the detector and the default model from the bundle, and
# never downloads (a missing piece is an error naming `facebatch setup --bundle`).
ENV FACEBATCH_BUNDLE=/opt/facebatch/bundle \
    FACEBATCH_CACHE_DIR=/work/.cache/facebatch
USER ${UID}:${UID}
WORKDIR /work
# A smoke test of the image's own contents: the README's main command on the samples (one
# truncated JPEG among them on purpose: 1 error row in 19, under the allowed rate).
RUN facebatch --no-progress classify /opt/facebatch/samples --out /tmp/smoke.parquet \
        --max-error-rate 0.1 \
    && rm -f /tmp/smoke.parquet
ENTRYPOINT ["facebatch"]
CMD ["--help"]
