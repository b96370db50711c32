#!/usr/bin/env bash
# Regenerates the README's five-minute tour: runs every command shown in a marked console
# block and pastes its real output (stdout and stderr, as a terminal shows them) under it,
# so the README cannot drift from what a user sees. Only what `keep` drops is replaced by
# one "..." line per gap; nothing else is edited.
#
#   scripts/readme-tour.sh            # rewrites README.md in place; review with git diff
#
# Timings, run ids and dates differ from run to run, so the output is not compared in CI;
# tests/install_cli.rs checks that every console block of the tour is one of these steps.
#
# A block in README.md is
#
#   <!-- tour:NAME -->
#   ```console
#   $ COMMAND          (written by this script from the step below)
#   OUTPUT
#   ```
#   <!-- /tour:NAME -->
#
# and every NAME has a `step` below. Needs: the release binary (built here), the shared face
# collections beside the checkout (../shared/data: the eval and train steps use them),
# Python with DuckDB (.cache/interop-venv, made by scripts/ci-interop.sh) and Ray
# (.cache/ray-venv, made by scripts/scale-out-test.sh). About 3 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d ../shared/data/seed-faces ] || { echo "readme-tour: needs ../shared/data (the shared face collections)" >&2; exit 2; }
for venv in .cache/interop-venv .cache/ray-venv; do
  [ -x "$venv/bin/python" ] || { echo "readme-tour: needs $venv (see the header of this script)" >&2; exit 2; }
done

cargo build --release --locked --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# `facebatch` is the binary just built; `python` has DuckDB, then Ray for the Ray step.
mkdir -p "$work/bin"
ln -s "$PWD/target/release/facebatch" "$work/bin/facebatch"
# A wrapper, not a link: a venv's python finds its packages from the path it is run as.
use_python() { printf '#!/bin/sh\nexec %q "$@"\n' "$PWD/$1/bin/python" > "$work/bin/python"; chmod +x "$work/bin/python"; }
use_python .cache/interop-venv
export PATH="$work/bin:$PATH" CARGO_TERM_QUIET=true NO_COLOR=1 RAY_USAGE_STATS_ENABLED=0
# The tour's outputs in /tmp start empty, as on a fresh machine.
rm -rf results.parquet report /tmp/tour /tmp/vis /tmp/labels2 target/datasets/face-labels

# step NAME COMMAND [KEEP]: runs COMMAND with bash; KEEP, an extended regex, keeps only the
# output lines that match it (each run of dropped lines becomes one "..."). A command that
# fails stops the script: the tour shows commands that work.
step() {
  local name=$1 cmd=$2 keep=${3:-}
  echo "readme-tour: $name: $cmd" >&2
  local status=0
  bash -c "$cmd" > "$work/raw" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    cat "$work/raw" >&2
    echo "readme-tour: step $name exited $status" >&2
    exit 1
  fi
  {
    printf '$ %s\n' "$cmd"
    if [ -n "$keep" ]; then
      awk -v re="$keep" '$0 ~ re { print; gap = 0; next } !gap { print "..."; gap = 1 }' "$work/raw"
    else
      cat "$work/raw"
    fi
  } > "$work/$name.out"
}
more() { # NAME COMMAND [KEEP]: one more command in the block NAME
  local name=$1
  mv "$work/$name.out" "$work/$name.prev"
  step "$@"
  cat "$work/$name.prev" "$work/$name.out" > "$work/$name.both" && mv "$work/$name.both" "$work/$name.out"
}

step classify 'cargo run --release -- classify data/samples --out results.parquet --max-error-rate 0.1'
step duckdb "python -c \"import duckdb; duckdb.sql(\\\"select path, face_index i, status, label, round(confidence, 3) conf, round(det_score, 3) score, round(box_x1) x1, round(box_y1) y1, round(box_x2) x2, round(box_y2) y2 from 'results.parquet' where path not like 'photos/solvay%' order by path, i\\\").show(max_width=200)\""
step boxes 'facebatch visualize data/samples/photos/retreat-2017.jpg --out docs/figures --boxes'
step report 'facebatch report results.parquet --out report'
step eval 'facebatch eval models/facebatch-gender/v4/splits/test.csv --model models/facebatch-gender/v5 --group-by age:15,60 --group-by source'
step train 'facebatch train ../shared/data/seed-faces --out /tmp/tour --epochs 3 --batch-size 16' \
  'INFO|test split|precision|female|male|accuracy|faces \(|confusion|model written'
step maps 'facebatch visualize data/samples/faces/female/face367.bmp --out /tmp/vis' \
  'INFO|^relu1|^pool1|^relu2|^relu7|^probabilities'
step job 'facebatch run pipelines/nightly.toml --date 2026-11-28'
more job 'facebatch run pipelines/nightly.toml --date 2026-11-28'
more job 'facebatch run pipelines/nightly.toml --date 2026-11-29'
use_python .cache/ray-venv
step ray 'python pipelines/ray_classify.py --facebatch target/release/facebatch --shards 4 --max-error-rate 0.5 --out /tmp/labels2/ -- data/samples --faces whole'

python3 - "$work" <<'EOF'
import pathlib, re, sys
work = pathlib.Path(sys.argv[1])
readme = pathlib.Path("README.md")
text = readme.read_text()
names = re.findall(r"<!-- tour:([\w-]+) -->", text)
outputs = {p.stem: p.read_text() for p in work.glob("*.out")}
if sorted(names) != sorted(outputs):
    sys.exit(f"readme-tour: README blocks {sorted(names)} differ from the steps {sorted(outputs)}")
def block(m: re.Match) -> str:
    name = m.group(1)
    body = outputs[name].rstrip("\n")
    return f"<!-- tour:{name} -->\n```console\n{body}\n```\n<!-- /tour:{name} -->"
new = re.sub(r"<!-- tour:([\w-]+) -->\n```console\n.*?\n```\n<!-- /tour:\1 -->", block, text, flags=re.S)
readme.write_text(new)
print(f"readme-tour: {len(names)} blocks regenerated in README.md")
EOF
