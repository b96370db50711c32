#!/usr/bin/env bash
# Scale benchmark: the walk, the shard assignment, the per-file cost and the incremental
# run's state, at 10,000, 100,000 and 1,000,000 files (benches/scale.py). Run by hand; CI
# never runs it. Needs about 1.1 million free inodes the first time (the trees of empty
# files are kept in .cache/scale). Writes docs/benchmarks-scale.md and .json.
#
#   scripts/bench-scale.sh                      # 10k, 100k, 1M
#   SIZES=10000,100000 scripts/bench-scale.sh /tmp/scale-quick
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/benchmarks-scale}
cargo build --release --locked
cmd="scripts/bench-scale.sh"
[ $# -lt 1 ] || cmd+=" $(printf '%q' "$1")"
exec python3 benches/scale.py --facebatch target/release/facebatch \
  --sizes "${SIZES:-10000,100000,1000000}" --scratch .cache/scale --out "$out" --command "$cmd"
