#!/usr/bin/env bash
# Every install path of the README's "Install" section, from this checkout, each run the way
# a user would: from a temporary folder, away from the source tree.
#
#   scripts/ci-install.sh      # (.ci/run runs it after the tests)
#
# They share one inference-only build in target/slim (target/release keeps the full build
# that `cargo test --release` made): cargo install, cargo package, the release archive, the
# pip wheel and the container image. The full `cargo install --path .` is the same code
# with `train`, whose binary the test suite runs from temporary folders
# (tests/install_cli.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export CARGO_TARGET_DIR=$repo/target/slim
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
main_command() { # BIN: the README's main command, from an empty folder
  (cd "$(mktemp -d -p "$tmp")" && "$@" --no-progress classify "$repo/data/samples" \
    --out results.parquet --max-error-rate 0.1 && test -s results.parquet)
}

echo "== cargo install --path . (inference-only)"
cargo install --quiet --path . --locked --no-default-features --features simd-jpeg \
  --root "$tmp/cargo" --target-dir "$CARGO_TARGET_DIR"
"$tmp/cargo/bin/facebatch" --version | grep -q "inference-only"
main_command "$tmp/cargo/bin/facebatch"
if "$tmp/cargo/bin/facebatch" train x --out y 2> "$tmp/train.err"; then
  echo "ci-install: an inference-only build must refuse train" >&2
  exit 1
fi
grep -q "built without training" "$tmp/train.err"

echo "== cargo package"
scripts/package-check.sh

echo "== release archive"
archive=$(scripts/release.sh --inference | tail -n1 | cut -d' ' -f1)
tar -xzf "$archive" -C "$tmp"
dir=$(find "$tmp" -maxdepth 1 -name 'facebatch-*-linux-inference' -type d)
for f in facebatch LICENSE-MIT LICENSE-APACHE README.md completions/facebatch.bash man/facebatch-classify.1; do
  test -s "$dir/$f" || { echo "ci-install: $archive lacks $f" >&2; exit 1; }
done
main_command "$dir/facebatch"

echo "== pip wheel"
scripts/wheel.sh

echo "== container image"
scripts/container.sh
echo "ci-install: every install path works"
