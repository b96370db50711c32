#!/usr/bin/env bash
# Redraws the report figures of every shipped model with today's plotting code, from the
# history and test report saved beside them (facebatch visualize --replot): loss.png and
# accuracy.png from train_log.csv and epochs.csv, confusion.png, groups-<column>.png and
# reliability.png from test_report.json. The PNGs are regenerated evidence, never edited.
#
#   scripts/replot-reports.sh              # every shipped version's reports folder (and its
#                                          # stage1/) that holds train_log.csv, epochs.csv or
#                                          # test_report.json; models/wip/ (runs in progress,
#                                          # never a version) is left alone
#   scripts/replot-reports.sh models/wip/dlib-ft/reports   # a run in progress, named
#   scripts/replot-reports.sh DIR...       # only these reports folders
#
# Needs the release binary (cargo build --release --locked; override with FACEBATCH=path).
# It takes a few seconds a folder.
set -euo pipefail

cd "$(dirname "$0")/.."
facebatch=${FACEBATCH:-./target/release/facebatch}
if [ ! -x "$facebatch" ]; then
    echo "replot-reports: $facebatch not found; run cargo build --release --locked first" >&2
    exit 2
fi

if [ $# -gt 0 ]; then
    dirs=("$@")
else
    mapfile -t dirs < <(git ls-files 'models/*/reports/*' \
        | grep -v '^models/wip/' \
        | grep -E '/(train_log\.csv|epochs\.csv|test_report\.json)$' \
        | xargs -n1 dirname | sort -u)
fi
if [ ${#dirs[@]} -eq 0 ]; then
    echo "replot-reports: no reports folder with a history or a test report found" >&2
    exit 1
fi

for dir in "${dirs[@]}"; do
    echo "== $dir"
    "$facebatch" visualize --replot "$dir"
done
