#!/usr/bin/env bash
# Regenerates the report's screenshots in docs/figures from real runs of the release binary,
# drawn by headless Chromium (scripts/ensure-browser.sh installs it):
#
#   report-summary.png   the summary page of a classify run on the built-in samples
#   report.png           its gallery of faces labelled female, least confident first
#   report-eval.png      the evaluation page of an `eval --predictions` report: 600 faces of
#                        the shared more-faces collection when ../shared/data is beside the
#                        checkout (every source, ages binned), else the samples' labels.csv
#
#   scripts/report-screenshots.sh     # then look at each PNG before committing
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
command -v chromium >/dev/null || { echo "report-screenshots: needs chromium (scripts/ensure-browser.sh)" >&2; exit 2; }
cargo build --release --locked --quiet
fb() { "$repo/target/release/facebatch" --no-progress -q "$@"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
fb samples --out samples >/dev/null
fb classify samples --out results.parquet --max-error-rate 0.1 >/dev/null
fb report results.parquet --out report >/dev/null
if [ -f "$repo/../shared/data/more-faces/labels.csv" ]; then
  # Every 36th face of more-faces (about 600, every source), by absolute path.
  python3 - "$repo/../shared/data/more-faces" <<'PY' > eval.csv
import csv, os, sys
root = os.path.realpath(sys.argv[1])
rows = list(csv.DictReader(open(os.path.join(root, "labels.csv"))))
w = csv.writer(sys.stdout)
w.writerow(["path", "label", "source", "age"])
for r in rows[::36]:
    w.writerow([os.path.join(root, r["path"]), r["gender"], r["source"], r["age"]])
PY
  fb eval eval.csv --group-by age:15,60 --group-by source --predictions pred.parquet >/dev/null
else
  fb eval samples/labels.csv --group-by age:15,60 --predictions pred.parquet >/dev/null
fi
fb report pred.parquet --out eval-report >/dev/null
shot() { # NAME PAGE HEIGHT
  chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --virtual-time-budget=3000 \
    --window-size=1300,"$3" --screenshot="$repo/docs/figures/$1" "file://$work/$2" 2>/dev/null
  echo "report-screenshots: docs/figures/$1"
}
shot report-summary.png report/index.html 1000
shot report.png 'report/index.html#label%3Afemale' 1000
shot report-eval.png 'eval-report/index.html#eval' 1400
