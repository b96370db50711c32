#!/usr/bin/env bash
# Picks the network by accuracy per cost on a fixed short budget: compact at 64 and 88 px,
# the residual network at 64 px and the depthwise-separable one at 96 px, each trained from
# scratch on the same seeded subset of every shared source, scored on the test split with
# and without flip averaging, with its inference cost measured. Run by hand (about 30-40
# minutes on 2 cores); writes docs/networks.md and docs/networks/results.json.
#
#   scripts/compare-archs.sh [--images N] [--epochs E] [--only compact-64,residual-64]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
scripts/baseline/setup.sh > /dev/null
exec "${BASELINE_VENV:-.cache/baseline-venv}/bin/python" scripts/compare_archs.py \
  --out docs/networks.md "$@"
