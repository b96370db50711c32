#!/usr/bin/env bash
# Trains the blog's network (--arch seed) and the default (--arch compact) on the same
# seeded UTKFace subset with the same settings, and prints both test reports. Run by hand
# (about 10 minutes on 2 cores); results are recorded in docs/benchmarks.md.
#
#   scripts/compare-archs.sh [IMAGES] [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${FACEBATCH_SHARED_DATA:-../shared/data}
IMAGES=${1:-3000}
EPOCHS=${2:-8}
OUT=${OUT:-target/compare-archs}
cargo build --release --locked
for arch in seed compact; do
  rm -rf "$OUT/$arch"
  start=$(date +%s)
  ./target/release/facebatch --no-progress -q train \
    --labels-csv "$DATA/utkface/labels.csv" --label-column gender \
    --arch "$arch" --max-images "$IMAGES" --epochs "$EPOCHS" --batch-size 32 \
    --seed 7 --group-by age:15 --out "$OUT/$arch" > "$OUT.$arch.txt"
  end=$(date +%s)
  echo "== $arch: $((end - start)) s, $(python3 -c "import json;c=json.load(open('$OUT/$arch/card.json'));print(c['architecture']['parameters'],'parameters,',c['onnx']['bytes'],'bytes')")"
  grep -E "accuracy|>=15|<15" "$OUT.$arch.txt"
done
