#!/usr/bin/env bash
# Runs the README's main command and reads its output with the analysts' tools (pyarrow
# and DuckDB, pinned, from PyPI) to prove the Parquet contract holds outside Rust.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.cache/interop-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check pyarrow==22.0.0 duckdb==1.4.2
out=target/ci-results.parquet
rm -rf "$out" "$out.parts"
# data/samples holds one broken file on purpose: exit 1 (finished with per-image errors).
# The same command as `cargo run --release -- classify ...`; CI reuses the binary that
# `cargo test --release` just built instead of rebuilding with other feature unification.
if [ -x target/release/facebatch ]; then
  facebatch=(target/release/facebatch)
else
  facebatch=(cargo run --release --locked --)
fi
# The README's main command (one broken sample in 13, within --max-error-rate 0.1: exit 0).
"${facebatch[@]}" --no-progress classify data/samples --out "$out" --features --max-error-rate 0.1
"$venv/bin/python" scripts/check_interop.py "$out"
