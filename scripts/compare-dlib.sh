#!/usr/bin/env bash
# Compares a trained facebatch model with the CC0 dlib gender-v1 baseline on the model's own
# held-out test images (MODEL_DIR/splits/test.csv), split into UTKFace adults (age >= 15),
# UTKFace children (age < 15) and seed faces, and writes a markdown page plus the raw JSONs
# (OUT_MD's folder / OUT_MD's stem / *.json, e.g. docs/comparison/*.json).
#
#   scripts/compare-dlib.sh MODEL_DIR [OUT_MD]      # OUT_MD defaults to docs/comparison.md
#
# Needs the release binary (cargo build --release; override with FACEBATCH=path) and python3
# for the baseline venv (scripts/baseline/setup.sh, pinned, idempotent; BASELINE_VENV=dir to
# move it). Lists and scratch files go to .cache/compare-dlib/.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
cd "$(dirname "$0")/.."
model_dir=$1
out_md=${2:-docs/comparison.md}
facebatch=${FACEBATCH:-./target/release/facebatch}
venv=${BASELINE_VENV:-.cache/baseline-venv}

[ -f "$model_dir/card.json" ] || { echo "compare-dlib: $model_dir/card.json not found" >&2; exit 1; }
[ -f "$model_dir/splits/test.csv" ] || { echo "compare-dlib: $model_dir/splits/test.csv not found" >&2; exit 1; }
[ -x "$facebatch" ] || { echo "compare-dlib: $facebatch not found; run cargo build --release --locked" >&2; exit 1; }
mkdir -p "$(dirname "$out_md")"

dlib_model=$(scripts/baseline/setup.sh)

cmd="scripts/compare-dlib.sh $(printf '%q' "$model_dir")"
[ $# -lt 2 ] || cmd+=" $(printf '%q' "$out_md")"

exec "$venv/bin/python" scripts/baseline/compare.py \
    --model-dir "$model_dir" --out "$out_md" --dlib-model "$dlib_model" \
    --facebatch "$facebatch" --command "$cmd"
