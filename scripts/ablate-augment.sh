#!/usr/bin/env bash
# Augmentation ablation: fine-tunes v3 on the same subset once with every augmentation and
# once per augmentation turned off, and scores each on the test split and its domain shifts
# (grey, blur, JPEG 20, face at 32 px, rotated 15 degrees). Run by hand (about 20 minutes on
# 2 cores); writes docs/augmentation-ablation.md and docs/augmentation-ablation/results.json.
#
#   scripts/ablate-augment.sh [--images N] [--epochs E] [--init MODEL_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
scripts/baseline/setup.sh > /dev/null
exec "${BASELINE_VENV:-.cache/baseline-venv}/bin/python" scripts/ablate_augment.py \
  --out docs/augmentation-ablation.md "$@"
