#!/usr/bin/env bash
# Detection passes (issue 18): would a coarse first pass at 640 or 480 px, re-detecting at
# --det-size only where the coarse pass gives a reason, keep every face? And what does one
# pass cost in float32, int8 and batches? And would re-detecting only regions around the
# coarse pass's low-score candidates keep faces and labels? (benches/det_passes.py). Run
# by hand on a quiet machine (about 5 minutes); CI never runs it. Writes docs/det-passes.md
# and .json.
#
#   scripts/bench-det-passes.sh [OUT]      # OUT defaults to docs/det-passes
#
# Needs the e2e photos (.cache/bench/photos: scripts/bench-e2e.sh builds them), the loose
# photos (.cache/loose: scripts/compare-loose.sh builds them) and PyPI for the pinned venv
# that scripts/int8-eval.sh uses (.cache/int8/venv).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/det-passes}
venv=.cache/int8/venv
work=.cache/det-passes
for d in .cache/bench/photos .cache/loose/photos; do
    [ -d "$d" ] || { echo "bench-det-passes: $d not found (see the header)" >&2; exit 1; }
done
cargo build --release --locked
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check onnxruntime==1.31.1 \
  onnx==1.23.2 numpy==2.4.6 pillow==13.0.0 protobuf==7.36.2 ml_dtypes==0.7.0 pyarrow==22.0.0
detector=$(target/release/facebatch setup --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["detector"])')
exec "$venv/bin/python" benches/det_passes.py --facebatch target/release/facebatch \
  --detector "$detector" --bench .cache/bench/photos --loose .cache/loose/photos \
  --loose-labels .cache/loose/labels.csv \
  --samples data/samples/photos --work "$work" --out "$out"
