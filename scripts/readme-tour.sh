#!/usr/bin/env bash
# Regenerates the README's five-minute tour: runs every command shown in a marked console
# block and pastes its real output (stdout and stderr, as a terminal shows them) under it,
# so the README cannot drift from what a user sees. Only what `keep` drops is replaced by
# one "..." line per gap; nothing else is edited.
#
#   scripts/readme-tour.sh            # rewrites README.md in place; review with git diff
#
# Timings, run ids and dates differ from run to run, so the output is not compared in CI;
# tests/install_cli.rs checks that every console block of the tour is one of these steps,
# and tests/tour_cli.rs runs the same steps (binary only, outside the checkout) in CI.
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
# and every NAME has a `step` below. The tour runs as a new user runs it: the release binary
# on PATH as `facebatch`, in a temporary folder outside the checkout, on the samples built
# into the binary (`facebatch samples`), so no step needs the repository's layout or the
# shared face collections. Needs: the release binary (built here), Python with DuckDB
# (.cache/interop-venv, made by scripts/ci-interop.sh) and Ray (.cache/ray-venv, made by
# scripts/scale-out-test.sh). About a minute on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
for venv in .cache/interop-venv .cache/ray-venv; do
  [ -x "$venv/bin/python" ] || { echo "readme-tour: needs $venv (see the header of this script)" >&2; exit 2; }
done

cargo build --release --locked --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The user's folder, outside the checkout (a fixed name, so the README shows a path a
# reader can follow; it starts empty, as on a fresh machine): `facebatch` is the binary just built, `python`
# has DuckDB, then Ray for the Ray step, and the Ray driver is the repository's
# pipelines/ray_classify.py, downloaded beside the data.
home=/tmp/facebatch-tour
rm -rf "$home"
mkdir -p "$work/bin" "$home"
cp "$repo/target/release/facebatch" "$work/bin/facebatch"
cp "$repo/pipelines/ray_classify.py" "$home/"
# A wrapper, not a link: a venv's python finds its packages from the path it is run as.
use_python() { printf '#!/bin/sh\nexec %q "$@"\n' "$repo/$1/bin/python" > "$work/bin/python"; chmod +x "$work/bin/python"; }
use_python .cache/interop-venv
export PATH="$work/bin:$PATH" NO_COLOR=1 RAY_USAGE_STATS_ENABLED=0

# step NAME COMMAND [KEEP]: runs COMMAND with bash in the user's folder; KEEP, an extended
# regex, keeps only the output lines that match it (each run of dropped lines becomes one
# "..."). A command that fails stops the script: the tour shows commands that work.
step() {
  local name=$1 cmd=$2 keep=${3:-}
  echo "readme-tour: $name: $cmd" >&2
  local status=0
  (cd "$home" && bash -c "$cmd") > "$work/raw" 2>&1 || status=$?
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

step samples 'facebatch samples --out samples'
step classify 'facebatch classify samples --out results.parquet --max-error-rate 0.1'
step duckdb "python -c \"import duckdb; duckdb.sql(\\\"select path, face_index i, status, label, round(confidence, 3) conf, round(det_score, 3) score, round(box_x1) x1, round(box_y1) y1, round(box_x2) x2, round(box_y2) y2 from 'results.parquet' where path not like 'photos/solvay%' order by path, i\\\").show(max_width=200)\""
step boxes 'facebatch visualize samples/photos/retreat-2017.jpg --out figures --boxes'
step report 'facebatch report results.parquet --out report'
# What the page's "Download corrections.csv" saves after three choices: the lakeside
# photo's first face given the other label, its second confirmed, its third not a face.
python3 - "$home" <<'PY'
import json, pathlib, sys
home = pathlib.Path(sys.argv[1])
text = (home / "report/data.js").read_text().strip()
data = json.loads(text.removeprefix("window.FACEBATCH_REPORT = ").removesuffix(";"))
faces = sorted((r for r in data["rows"] if r["status"] == "ok" and "retreat" in r["path"]), key=lambda r: r["face_index"])
other = {"female": "male", "male": "female"}
rows = ["path,label,verdict,id"]
for face, (label, verdict) in zip(faces, [(other[faces[0]["label"]], "corrected"), (faces[1]["label"], "confirmed"), ("not_a_face", "not_a_face")]):
    rows.append(f"{data['report_dir']}/faces/{face['id']}.png,{label},{verdict},{face['id']}")
(home / "Downloads").mkdir(exist_ok=True)
(home / "Downloads/corrections.csv").write_text("\n".join(rows) + "\n")
PY
step import 'facebatch report --import Downloads/corrections.csv --out report'
step eval 'facebatch eval samples/labels.csv --group-by age:15,60 --group-by source'
step train 'facebatch train samples/faces report/corrections.csv --out mine --epochs 3 --batch-size 4' \
  'INFO|test split|precision|female|male|accuracy|faces \(|confusion|model written'
step maps 'facebatch visualize samples/faces/female/face367.bmp --out vis' \
  'INFO|^relu1|^pool1|^relu2|^relu7|^probabilities'
step job 'facebatch run samples/nightly.toml --date 2026-11-28'
more job 'facebatch run samples/nightly.toml --date 2026-11-28'
more job 'facebatch run samples/nightly.toml --date 2026-11-29'
step man 'facebatch man run | man -l - | head -n 24'
use_python .cache/ray-venv
step ray 'python ray_classify.py --shards 4 --max-error-rate 0.5 --out labels/ -- samples --faces whole'

# The figures the README shows, as the tour drew them.
cp "$home/figures/retreat-2017.boxes.png" docs/figures/

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
