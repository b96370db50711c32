#!/usr/bin/env bash
# Compares a NEW facebatch model with an OLD one and with the CC0 dlib gender-v1 baseline on the
# same test images (NEW_MODEL_DIR/splits/test.csv): accuracy per source, recall per class, accuracy
# per age band, and a domain-shift table (grey, blur, JPEG 20, face at 32 px, rotated 15 degrees).
# Writes a markdown page plus the raw results (OUT_MD's folder / OUT_MD's stem /, e.g.
# docs/comparison-sources/: eval JSONs, per-image CSVs, summary.json).
#
#   scripts/compare-sources.sh NEW_MODEL_DIR OLD_MODEL_DIR OUT_MD
#   scripts/compare-sources.sh models/facebatch-gender/v4 models/facebatch-gender/v3 docs/comparison-sources.md
#   LIMIT=10 scripts/compare-sources.sh NEW OLD /tmp/x.md   # at most 10 images per source (seeded,
#                                                           # stratified by label): a quick check
#
# Needs the release binary (cargo build --release; override with FACEBATCH=path) and python3 for
# the baseline venv (scripts/baseline/setup.sh, pinned, idempotent; BASELINE_VENV=dir to move it).
# SEED=N changes the LIMIT draw (default 0). Scratch files (lists, transformed images, Parquet) go
# to $TMPDIR/facebatch-compare-sources/, not the repository. Extra arguments after OUT_MD go to
# scripts/baseline/compare_sources.py (e.g. --test-csv PATH to score another manifest, --keep-work).
set -euo pipefail

if [ $# -lt 3 ]; then
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
cd "$(dirname "$0")/.."
new_dir=$1
old_dir=$2
out_md=$3
shift 3
facebatch=${FACEBATCH:-./target/release/facebatch}
venv=${BASELINE_VENV:-.cache/baseline-venv}
limit=${LIMIT:-0}
seed=${SEED:-0}

for d in "$new_dir" "$old_dir"; do
    [ -f "$d/card.json" ] || { echo "compare-sources: $d/card.json not found" >&2; exit 1; }
done
[ -x "$facebatch" ] || { echo "compare-sources: $facebatch not found; run cargo build --release --locked" >&2; exit 1; }
[[ $limit =~ ^[0-9]+$ ]] || { echo "compare-sources: LIMIT must be a whole number, got '$limit'" >&2; exit 1; }
[[ $seed =~ ^[0-9]+$ ]] || { echo "compare-sources: SEED must be a whole number, got '$seed'" >&2; exit 1; }
mkdir -p "$(dirname "$out_md")"

dlib_model=$(scripts/baseline/setup.sh)

cmd="scripts/compare-sources.sh $(printf '%q' "$new_dir") $(printf '%q' "$old_dir") $(printf '%q' "$out_md")"
[ $# -eq 0 ] || cmd+="$(printf ' %q' "$@")"
[ "$seed" = 0 ] || cmd="SEED=$seed $cmd"
[ "$limit" = 0 ] || cmd="LIMIT=$limit $cmd"
[ -z "${FACEBATCH:-}" ] || cmd="FACEBATCH=$(printf '%q' "$FACEBATCH") $cmd"

exec "$venv/bin/python" scripts/baseline/compare_sources.py \
    --new "$new_dir" --old "$old_dir" --out "$out_md" --dlib-model "$dlib_model" \
    --limit "$limit" --seed "$seed" --facebatch "$facebatch" --command "$cmd" "$@"
