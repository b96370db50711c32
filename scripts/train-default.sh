#!/usr/bin/env bash
# Trains the default model shipped in models/ from the shared data. Run by hand; CI never
# runs it. Checkpoints are written after every epoch; re-running with --resume continues an
# interrupted run (and, when every epoch is done, re-exports the best one).
#
#   scripts/train-default.sh [extra facebatch train flags, e.g. --resume]
#
# v4 (the default): v3 fine-tuned on every shared source (UTKFace, the seed faces and the
# six more-faces collections) with the source- and class-balanced sampler, the photo-domain
# augmentations, and a temperature fitted on the validation split. The splits of the images
# v1-v3 were trained and tested on are kept (--pin-splits), so v4 is tested on the same
# UTKFace test images; the new sources are split 80/10/10 per source and label.
#
# Earlier versions: v3 = v2 fine-tuned 12 epochs with zoom 1.25 and scene fill (commit
# 93bd676); v2 = 20 epochs from scratch (commit 567284c). Both used UTKFace and the seed
# faces only. From scratch with today's defaults:
#
#   INIT= PIN= OUT=models/facebatch-gender/mine scripts/train-default.sh --epochs 20 --lr 2e-3
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${FACEBATCH_SHARED_DATA:-../shared/data}
OUT=${OUT:-models/facebatch-gender/v4}
INIT=${INIT-models/facebatch-gender/v3}
PIN=${PIN-models/facebatch-gender/v3}
EPOCHS=${EPOCHS:-8}
LR=${LR:-1e-3}
extra=()
[ -z "$INIT" ] || extra+=(--init "$INIT")
[ -z "$PIN" ] || extra+=(--pin-splits "$PIN")
cargo build --release --locked
exec ./target/release/facebatch train \
  --labels-csv "$DATA/utkface/labels.csv" \
  --labels-csv "$DATA/more-faces/labels.csv" --label-column gender \
  "$DATA/seed-faces" \
  --out "$OUT" --name facebatch-gender \
  --arch compact --epochs "$EPOCHS" --batch-size 32 --lr "$LR" --weight-decay 1e-4 \
  --label-smoothing 0.05 --patience "$EPOCHS" --seed 42 --align \
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
