#!/usr/bin/env bash
# Builds the pip wheel (pyproject.toml: maturin, bindings = "bin", inference-only) into
# dist/wheels/, then installs it into a fresh virtualenv and runs the README's main command
# with it from a temporary folder.
#
#   scripts/wheel.sh            # build and test
#   pip install dist/wheels/facebatch-*.whl
#
# maturin comes pinned from PyPI into .cache/maturin-venv (python3 >= 3.8 with venv). The
# wheel is tagged for this machine's glibc (manylinux_2_36 on Debian 12); a wheel for older
# systems is built the same way on an older distribution (or with maturin --zig).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
MATURIN_VERSION=1.16.0
venv=.cache/maturin-venv
if ! "$venv/bin/maturin" --version 2>/dev/null | grep -q " $MATURIN_VERSION\$"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "maturin==$MATURIN_VERSION"
fi
# Its own target folder: the inference-only build must not replace the full build's binary
# in target/release (the tests run that one).
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target/slim}
rm -rf dist/wheels
"$venv/bin/maturin" build --release --locked --out dist/wheels --compatibility manylinux_2_36
wheel=$(ls dist/wheels/facebatch-*.whl)
echo "wheel: $wheel ($(du -h "$wheel" | cut -f1))"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install --quiet --disable-pip-version-check --no-index "$wheel"
cd "$tmp"
"$tmp/venv/bin/facebatch" --version
"$tmp/venv/bin/facebatch" --no-progress classify "$repo/data/samples" --out results.parquet \
  --max-error-rate 0.1
test -s results.parquet
echo "wheel ok: installed into a fresh venv, the main command ran from $tmp"
