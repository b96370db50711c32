#!/usr/bin/env bash
# Trains the default model shipped in models/ from the shared data. Run by hand (about an
# hour on 2 cores); CI never runs it. Re-running with --resume continues an interrupted run.
#
#   scripts/train-default.sh [extra facebatch train flags, e.g. --resume]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${FACEBATCH_SHARED_DATA:-../shared/data}
OUT=${OUT:-models/facebatch-gender/v2}
cargo build --release --locked
exec ./target/release/facebatch train \
  --labels-csv "$DATA/utkface/labels.csv" --label-column gender \
  "$DATA/seed-faces" \
  --out "$OUT" --name facebatch-gender \
  --arch compact --epochs 20 --batch-size 32 --lr 2e-3 --weight-decay 1e-4 \
  --label-smoothing 0.05 --patience 6 --seed 42 --align \
  --group-by age:15 --group-by source \
  --licence-note "UTKFace (https://susanqq.github.io/UTKFace/): non-commercial research purposes only. The model is trained on it and inherits that restriction." \
  --licence-note "seed-faces: the 399 face crops of the original blog post, redistributed in ../shared; terms as given by their author." \
  "$@"
