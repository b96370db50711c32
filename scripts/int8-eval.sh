#!/usr/bin/env bash
# int8 evaluation of the default model (issue 18): quantizes it (static QDQ, calibrated on
# 400 aligned crops of its training split), then compares accuracy per source on its test
# and validation splits (through `facebatch eval --precision`) and single-thread speed with
# float32 (benches/int8.py). Needs the shared face collections (the splits name them) and
# PyPI for the pinned quantizer. Writes docs/int8.md and docs/int8.json. Run by hand; CI
# never runs it.
#
#   scripts/int8-eval.sh                 # measure only
#   INSTALL=1 scripts/int8-eval.sh       # and, if int8 passes the rule, write model-int8.onnx
#                                        # and the card's int8 entry into the model folder
#                                        # (then rebuild: the built-in model embeds both)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${MODEL:-models/facebatch-gender/v4}
out=${1:-docs/int8}
work=.cache/int8
venv=$work/venv
cargo build --release --locked
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check onnxruntime==1.31.1 \
  onnx==1.23.2 numpy==2.4.6 pillow==13.0.0 protobuf==7.36.2 ml_dtypes==0.7.0 pyarrow==22.0.0
rm -rf "$work/calib" "$work/crops"
mkdir -p "$work/calib"
python3 - "$model" "$work/calib" <<'PY'
import csv, os, random, sys
model, dst = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(os.path.join(model, "splits", "train.csv"))))
random.Random(0).shuffle(rows)
n = 0
for r in rows:
    src = os.path.normpath(os.path.join(model, "splits", r["path"]))
    if os.path.exists(src):
        os.link(src, os.path.join(dst, f"{n:04d}{os.path.splitext(src)[1]}"))
        n += 1
    if n == 400:
        break
PY
target/release/facebatch --no-progress -q classify "$work/calib" --out "$work/calib.parquet" \
  --model "$model" --save-crops "$work/crops" --max-error-rate 1 >/dev/null
exec "$venv/bin/python" benches/int8.py --facebatch target/release/facebatch --model "$model" \
  --crops "$work/crops" --work "$work" --out "$out" ${INSTALL:+--install}
