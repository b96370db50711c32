#!/usr/bin/env bash
# Trains the default model shipped in models/ from the shared data. Run by hand; CI never
# runs it. Re-running with --resume continues an interrupted run.
#
#   scripts/train-default.sh [extra facebatch train flags, e.g. --resume]
#
# The shipped v3 is a fine-tune of v2 (INIT, default models/facebatch-gender/v2; its
# checkpoints/best.bpk is committed): 12 epochs at peak lr 1e-3 with the current defaults
# (alignment zoom 1.25, scene fill), about 35 minutes on 2 cores. v2 itself was trained from
# scratch for 20 epochs at peak lr 2e-3 with zoom 1.0 and no fill (commit 567284c, 62 min).
# From scratch with today's defaults:
#
#   INIT= OUT=models/facebatch-gender/mine scripts/train-default.sh --epochs 20 --lr 2e-3
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${FACEBATCH_SHARED_DATA:-../shared/data}
OUT=${OUT:-models/facebatch-gender/v3}
INIT=${INIT-models/facebatch-gender/v2}
init=()
[ -z "$INIT" ] || init=(--init "$INIT")
cargo build --release --locked
exec ./target/release/facebatch train \
  --labels-csv "$DATA/utkface/labels.csv" --label-column gender \
  "$DATA/seed-faces" \
  --out "$OUT" --name facebatch-gender \
  --arch compact --epochs 12 --batch-size 32 --lr 1e-3 --weight-decay 1e-4 \
  --label-smoothing 0.05 --patience 12 --seed 42 --align "${init[@]}" \
  --group-by age:15 --group-by source \
  --licence-note "UTKFace (https://susanqq.github.io/UTKFace/): non-commercial research purposes only. The model is trained on it and inherits that restriction." \
  --licence-note "seed-faces: the 399 face crops of the original blog post, redistributed in ../shared; terms as given by their author." \
  "$@"
