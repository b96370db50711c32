#!/usr/bin/env bash
# End-to-end benchmark: facebatch classify against the Python peer (benches/peer.py) on two
# generated corpora, in the same run, plus peak RSS at 10,000 and 100,000 images. Run by
# hand on a quiet machine (about 25 minutes on 2 cores, plus 10 the first time to build the
# corpora); CI never runs it. Writes docs/benchmarks-e2e.md and docs/benchmarks-e2e.json.
#
#   scripts/bench-e2e.sh                 # ROUNDS=3 runs per side and corpus
#   ROUNDS=1 MEMORY_SIZES=10000 scripts/bench-e2e.sh /tmp/quick   # a quick look
#
# The default model (MODEL= to change it), float32 and `--precision int8` (when every network
# of the card has an int8 copy; the page says when not), the inference limit and the cost per
# face in MFLOP counted from the graphs (benches/ort_limit.py) in the same run.
#
# Corpora (benches/make_corpora.py, deterministic, built once into .cache/bench/): 5,000
# UTKFace crops of 200x200 (run with --faces whole) and 300 JPEG photos of 4000x3000 with
# 1-6 faces each on generated scenes (--faces detect). Needs ../shared/data (or
# FACEBATCH_SHARED_DATA) and python3 for the pinned venv (scripts/baseline/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/benchmarks-e2e}
data=${FACEBATCH_SHARED_DATA:-../shared/data}
venv=${BASELINE_VENV:-.cache/baseline-venv}
bench=.cache/bench
# FEATURES=... adds cargo features; CARGO_FLAGS=--no-default-features benchmarks the build
# without libjpeg-turbo's SIMD (the default build has it when nasm is installed).
features=${FEATURES:-}
# shellcheck disable=SC2086 # CARGO_FLAGS is a list of flags
cargo build --release --locked ${CARGO_FLAGS:-} ${features:+--features "$features"}
scripts/baseline/setup.sh >/dev/null
"$venv/bin/python" benches/make_corpora.py --data "$data" --crops "$bench/crops" --n 5000
"$venv/bin/python" benches/make_corpora.py --data "$data" --photos "$bench/photos" --n 300
cmd="scripts/bench-e2e.sh"
[ -z "$features" ] || cmd="FEATURES=$features $cmd"
[ -z "${CARGO_FLAGS:-}" ] || cmd="CARGO_FLAGS=$CARGO_FLAGS $cmd"
[ $# -lt 1 ] || cmd+=" $(printf '%q' "$1")"
exec "$venv/bin/python" benches/e2e.py \
    --facebatch ./target/release/facebatch --model "${MODEL:-models/facebatch-gender/v5}" --int8 \
    --crops "$bench/crops" --photos "$bench/photos" --scratch "$bench/scratch" \
    --rounds "${ROUNDS:-3}" --memory-sizes "${MEMORY_SIZES:-10000,100000}" \
    --out "$out" --command "$cmd"
