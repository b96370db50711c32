#!/usr/bin/env bash
# Cold build times and binary sizes: the full build (default features, training included)
# against the inference-only one (--no-default-features --features simd-jpeg), each from an
# empty target folder, one after the other, on a clean copy of HEAD. Crates already in
# ~/.cargo/registry are not downloaded again (what is timed is compiling).
#
#   scripts/bench-build.sh          # prints a Markdown table (docs/benchmarks.md)
#
# Takes about 40 minutes on 2 cores. Run it on an idle machine: wall time counts everything
# else that runs; CPU time (user + sys) much less so.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone --quiet . "$work/src"
cd "$work/src"
rev=$(git rev-parse --short HEAD)
row() { # NAME FEATURES...
  local name=$1
  shift
  local target="$work/target-$name"
  /usr/bin/time -f "%e %U %S" -o "$work/time-$name" \
    env CARGO_TARGET_DIR="$target" cargo build --quiet --release --locked "$@"
  read -r wall user sys < "$work/time-$name"
  local bin="$target/release/facebatch"
  local size stripped crates
  size=$(stat -c %s "$bin")
  cp "$bin" "$work/stripped" && strip "$work/stripped"
  stripped=$(stat -c %s "$work/stripped")
  crates=$(cargo tree --locked -e normal --prefix none "$@" 2> /dev/null | sed 's/ (\*)//' | sort -u | wc -l)
  printf '| %s | %s | %.1f | %.1f | %.1f | %.1f | %d |\n' "$name" "${*:-default (train, simd-jpeg)}" \
    "$(echo "$wall / 60" | bc -l)" "$(echo "($user + $sys) / 60" | bc -l)" \
    "$(echo "$size / 1048576" | bc -l)" "$(echo "$stripped / 1048576" | bc -l)" "$crates"
}
echo "Cold release builds of $rev on $(nproc) cores ($(uname -m), $(rustc --version | cut -d' ' -f2)):"
echo
echo "| build | features | wall (min) | CPU (min) | binary (MiB) | stripped (MiB) | crates |"
echo "|---|---|---:|---:|---:|---:|---:|"
row full
row inference --no-default-features --features simd-jpeg
