#!/usr/bin/env bash
# `cargo package`: the crate must build from its own files alone (the verify step builds it,
# inference-only to share the build of the other install checks) and stay under crates.io's
# 10 MiB limit (models/ holds every version and checkpoints: Cargo.toml's `include` takes
# only the default model's ONNX and card).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/slim}
cargo package --locked --allow-dirty --no-default-features --features simd-jpeg
crate=$(ls -t "$CARGO_TARGET_DIR"/package/facebatch-*.crate | head -n1)
bytes=$(stat -c %s "$crate")
limit=$((10 * 1024 * 1024))
echo "$crate: $bytes bytes ($((bytes * 100 / limit))% of the crates.io limit)"
if [ "$bytes" -ge "$limit" ]; then
  echo "package-check: $crate is over the crates.io limit of $limit bytes" >&2
  exit 1
fi
