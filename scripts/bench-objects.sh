#!/usr/bin/env bash
# Object-store benchmark: the same face crops classified from a local folder and from a real
# local S3 server (moto, scripts/ensure-s3-server.sh), in one run, at several
# --read-concurrency values. Run by hand on a quiet machine (about 5 minutes on 2 cores);
# CI never runs it. Writes docs/benchmarks-objects.md and docs/benchmarks-objects.json.
#
#   scripts/bench-objects.sh                  # N=2000 crops, ROUNDS=3
#   N=500 ROUNDS=1 scripts/bench-objects.sh /tmp/quick
#
# Crops: the first N UTKFace crops (200x200 JPEG) of ../shared/data (or
# FACEBATCH_SHARED_DATA); without them, the bundled sample faces repeated.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/benchmarks-objects}
cargo build --release --locked
moto=$(scripts/ensure-s3-server.sh)
python=$(dirname "$moto")/python
cmd="scripts/bench-objects.sh"
[ $# -lt 1 ] || cmd+=" $(printf '%q' "$1")"
exec "$python" scripts/bench_objects.py --facebatch ./target/release/facebatch \
    --moto "$moto" --data "${FACEBATCH_SHARED_DATA:-../shared/data}" \
    --n "${N:-2000}" --rounds "${ROUNDS:-3}" --concurrency "${CONCURRENCY:-1,4,16,64}" \
    --out "$out" --command "$cmd"
