#!/usr/bin/env bash
# What the README's test command costs after its main command: a cold `cargo build
# --release` (what `cargo run --release` builds), then `cargo test --release --no-run` in
# the same target folder. The second step should only compile the dev-dependencies and the
# test binaries; if a dev-dependency changes the features of a shared crate, it recompiles
# that crate and everything above it (docs/benchmarks.md, "Test build after the run build").
#
#   scripts/bench-test-build.sh [REV]    # default HEAD; prints one Markdown table row
#
# Takes 15-30 minutes on 2 cores; run it on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:-HEAD}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone --quiet . "$work/src"
cd "$work/src"
git checkout --quiet "$rev"
short=$(git rev-parse --short HEAD)
export CARGO_TARGET_DIR="$work/target" CARGO_TERM_COLOR=never
step() { # NAME CARGO-ARGS...
  local name=$1
  shift
  /usr/bin/time -f "%e %U %S" -o "$work/time-$name" cargo "$@" 2> "$work/log-$name"
}
step build build --release --locked
step test test --release --locked --no-run
read -r bwall buser bsys < "$work/time-build"
read -r twall tuser tsys < "$work/time-test"
bunits=$(grep -c '^ *Compiling ' "$work/log-build" || true)
tunits=$(grep -c '^ *Compiling ' "$work/log-test" || true)
# Crates the test step compiled again although the build step had compiled them.
again=$(grep -h '^ *Compiling ' "$work/log-test" | awk '{print $2" "$3}' | sort -u \
  | comm -12 - <(grep -h '^ *Compiling ' "$work/log-build" | awk '{print $2" "$3}' | sort -u) | wc -l)
printf '| %s | %.1f (%.1f CPU) | %d | %.1f (%.1f CPU) | %d | %d |\n' "$short" \
  "$(echo "$bwall / 60" | bc -l)" "$(echo "($buser + $bsys) / 60" | bc -l)" "$bunits" \
  "$(echo "$twall / 60" | bc -l)" "$(echo "($tuser + $tsys) / 60" | bc -l)" "$tunits" "$again"
