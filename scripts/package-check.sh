#!/usr/bin/env bash
# `cargo package`: the crate must stay under crates.io's 10 MiB limit (models/ holds every
# version and checkpoints: Cargo.toml's `include` takes only the default model's ONNX and
# card), and must build from its own files alone. cargo's own verify step would build it
# again in the dev profile from nothing; instead the packaged crate is unpacked and built
# with the inference-only release build's target folder, so only facebatch itself compiles.
#
#   scripts/package-check.sh     # prints the .crate, its size and the unpacked build
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/slim}
cargo package --quiet --locked --allow-dirty --no-verify
crate=$(ls -t "$CARGO_TARGET_DIR"/package/facebatch-*.crate | head -n1)
bytes=$(stat -c %s "$crate")
limit=$((10 * 1024 * 1024))
echo "$crate: $bytes bytes ($((bytes * 100 / limit))% of the crates.io limit)"
if [ "$bytes" -ge "$limit" ]; then
  echo "package-check: $crate is over the crates.io limit of $limit bytes" >&2
  exit 1
fi
unpacked=$(mktemp -d)
trap 'rm -rf "$unpacked"' EXIT
tar -xzf "$crate" -C "$unpacked"
cargo build --quiet --release --locked --no-default-features --features simd-jpeg \
  --manifest-path "$unpacked"/facebatch-*/Cargo.toml
echo "the packaged crate builds from its own files"
