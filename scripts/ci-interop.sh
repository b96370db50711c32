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

# A two-day dataset (`facebatch run`, one new file on day two) read the way analysts read
# one: DuckDB's `read_parquet('DIR/*/*.parquet', hive_partitioning=true)` (issue 30: the
# fingerprint index under _index/ must not be reached by that glob), then pyarrow.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r data/samples "$work/photos"
cat > "$work/job.toml" <<TOML
name = "interop"
inputs = ["photos"]
output = "labels"
model = "builtin"
[classify]
max_error_rate = 0.1
TOML
"${facebatch[@]}" --no-progress -q run "$work/job.toml" --date 2026-12-01
cp data/samples/faces/female/face367.bmp "$work/photos/faces/female/new.bmp"
"${facebatch[@]}" --no-progress -q run "$work/job.toml" --date 2026-12-02
"$venv/bin/python" scripts/check_dataset_interop.py "$work/labels"
