#!/usr/bin/env python3
"""The Python peer of the end-to-end speed benchmark: `facebatch classify` done the way a
strong Python engineer would do it, with Pillow, numpy, ONNX Runtime and pyarrow.

    python benches/peer.py INPUT --out OUT.parquet --model MODEL_DIR --faces whole|detect|auto
        [--workers N] [--batch-size B] [--det-size PX] [--det-threshold T]

Run it with the baseline venv (scripts/baseline/setup.sh). It reproduces facebatch's
processing from the model card (docs/model-card.md) and the Rust sources:

- INPUT is walked recursively in sorted order (jpg jpeg png bmp webp tif tiff).
- A pool of worker processes (one per core by default) each builds its ONNX Runtime
  sessions once (one intra-op thread each, as facebatch) and handles chunks of files:
  decode, find faces, preprocess, classify in batches of up to B faces, and send back only
  the result rows.
- Decoding uses Pillow's JPEG draft mode: the smallest DCT scale (1/1, 1/2, 1/4, 1/8)
  whose image is still at least as large as what is needed next (the model's crop for
  `whole`, the detector's input for `detect`). EXIF orientation is applied.
- `whole`: the card's `input` transform (src/vision/decode.rs: largest centred crop with the
  input's aspect, resize with the card's filter).
- `detect`: RetinaFace MobileNet-0.25 (the detector facebatch provisions into its cache)
  decoded as src/vision/detect.rs does (priors, variances 0.1/0.2, score threshold, greedy NMS at
  0.4, minimum face side 16 px, at most 64 faces); each face aligned as src/vision/align.rs does
  (least-squares similarity onto the card's template, supersampled bilinear warp with edge
  replication); faces ordered left to right. `auto`: as `detect`, but a small image (long
  side <= 320 px) without a face is taken whole.
- Every network the card lists (an ensemble card's `members`, or a flat card's one
  network) gets its own crop: `whole` fits the image to each member's input, `detect` warps
  each face onto each member's template at its size, with its border (edge replication,
  or black beyond the photo as dlib's chips have).
- Normalisation x = pixel * scale / std - mean / std (NCHW float32); with a member's
  `test_time_flip`, the mirrored crop is classified too and the probabilities averaged.
  Each member's probabilities are taken from its `probs` output, put in the card's label
  order and calibrated with its temperature; an ensemble's are then combined as
  src/model/classifier.rs does: the weighted mean, the threshold's log-odds shift, the
  combined temperature.
- Output: one Parquet row per face (zstd), or per image for `no_face` and `error`, written
  to OUT.tmp and renamed to OUT. One summary line goes to stdout.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from multiprocessing import Pool

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageOps

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MAX_PIXELS = 64 * 1024 * 1024  # facebatch's decompression-bomb guard
EXIF_ORIENTATION = 0x0112
CROP_MAX_SIDE = 320  # `auto`: images up to this long side are face crops
FILTERS = {"triangle": Image.BILINEAR, "nearest": Image.NEAREST, "catmull_rom": Image.BICUBIC}
ROW_GROUP_ROWS = 65_536

# RetinaFace decoding (src/vision/detect.rs).
DET_MEANS_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
DET_STEPS = (8, 16, 32)
DET_SIZES = ((16.0, 32.0), (64.0, 128.0), (256.0, 512.0))
DET_VARIANCES = (np.float32(0.1), np.float32(0.2))
DET_NMS_IOU = np.float32(0.4)
DET_MIN_FACE = np.float32(16.0)
DET_MAX_FACES = 64


@dataclass(frozen=True)
class Member:
    """One network of the card (an ensemble card's member, or a flat card itself)."""

    model: str
    output: str  # the output that holds the probabilities
    order: tuple[int, ...]  # for each card label, its index in this network's output
    width: int
    height: int
    mul: tuple[float, float, float]  # scale / std
    add: tuple[float, float, float]  # -mean / std
    stretch: bool
    resample: int
    flip: bool
    template: tuple[tuple[float, float], ...] | None
    black_border: bool
    temperature: float | None


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs, read from the card and the command line."""

    labels: tuple[str, ...]
    members: tuple[Member, ...]
    weights: tuple[float, ...]
    combines: bool  # several members, or a threshold or temperature after them
    threshold: tuple[int, float] | None  # (label index, probability) of the decision
    temperature: float | None  # of the combined probabilities
    mode: str
    detector: str | None
    det_size: int
    det_threshold: float
    batch_size: int


def load_member(model: str, m: dict, labels: list[str]) -> Member:
    spec = m["input"]
    if (spec["layout"], spec["channel_order"], spec["dtype"]) != ("NCHW", "RGB", "float32"):
        sys.exit(f"unsupported model input {spec['layout']} {spec['channel_order']} {spec['dtype']}")
    std = np.array(spec["std"], dtype=np.float32)
    mul = np.float32(spec["scale"]) / std
    add = -np.array(spec["mean"], dtype=np.float32) / std
    own = m.get("labels") or labels
    outputs = m.get("outputs") or [{"name": "probs"}]
    output = next((o["name"] for o in outputs if o.get("role") == "probs"),
                  next((o["name"] for o in outputs if o["name"] == "probs"), outputs[0]["name"]))
    alignment = m.get("alignment")
    calibration = m.get("calibration") or {}
    return Member(
        model=os.path.join(model, m["onnx"]["file"]),
        output=output,
        order=tuple(own.index(label) for label in labels),
        width=spec["width"],
        height=spec["height"],
        mul=tuple(float(v) for v in mul),
        add=tuple(float(v) for v in add),
        stretch=spec["fit"] == "stretch",
        resample=FILTERS[spec["filter"]],
        flip=bool(m.get("test_time_flip", False)),
        template=tuple(map(tuple, alignment["template"])) if alignment else None,
        black_border=bool(alignment) and alignment.get("border") == "black",
        temperature=calibration.get("temperature"),
    )


def load_settings(args: argparse.Namespace) -> Settings:
    with open(os.path.join(args.model, "card.json")) as f:
        card = json.load(f)
    labels = list(card["labels"])
    # A flat (format 1) card is one network; format 2 lists `members` (docs/model-card.md).
    members = tuple(load_member(args.model, m, labels) for m in card.get("members") or [card])
    combine = card.get("combine") or {}
    n = len(members)
    weights = combine.get("weights") if combine.get("rule") == "weighted" else None
    weights = tuple(weights) if weights else (1.0 / n,) * n
    threshold = combine.get("threshold")
    temperature = (combine.get("calibration") or {}).get("temperature")
    aligned = all(m.template for m in members)
    mode = args.faces or ("auto" if aligned else "whole")
    if mode != "whole" and not aligned:
        sys.exit("the model card has no alignment; use --faces whole")
    return Settings(
        labels=tuple(labels),
        members=members,
        weights=weights,
        combines=n > 1 or threshold is not None or temperature is not None,
        threshold=(labels.index(threshold["label"]), float(threshold["value"])) if threshold else None,
        temperature=temperature,
        mode=mode,
        detector=find_detector() if mode != "whole" else None,
        det_size=args.det_size,
        det_threshold=args.det_threshold,
        batch_size=args.batch_size,
    )


def find_detector() -> str:
    """The RetinaFace ONNX file facebatch provisioned into its cache (src/onnx/runtime.rs)."""
    cache = os.environ.get("FACEBATCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "facebatch")
    found = sorted(glob.glob(os.path.join(cache, "retinaface-b7a7acab55e1", "*.onnx")))
    if not found:
        sys.exit(f"no RetinaFace model in {cache}/retinaface-b7a7acab55e1; run facebatch once with --faces detect")
    return found[0]


def walk(root: str) -> list[tuple[str, str]]:
    """(path, path relative to `root`) of every image file under `root`, in sorted order."""
    if not os.path.isdir(root):
        return [(root, os.path.basename(root))]
    found: list[tuple[str, str]] = []

    def visit(folder: str, prefix: str) -> None:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                visit(e.path, f"{prefix}{e.name}/")
            elif os.path.splitext(e.name)[1].lower() in EXTENSIONS:
                found.append((e.path, prefix + e.name))

    visit(root, "")
    return found


def center_crop_size(w: int, h: int, tw: int, th: int) -> tuple[int, int]:
    """Largest cw x ch inside w x h with aspect tw:th (integer maths, as facebatch)."""
    if w * th > h * tw:
        return min(max(h * tw // th, 1), w), h
    return w, min(max(w * th // tw, 1), h)


def round_half_away(x: float) -> int:
    return math.floor(x + 0.5)


def detector_size(w: int, h: int, max_side: int) -> tuple[int, int]:
    """The detector input size for a w x h image (f32 maths, as facebatch)."""
    long = max(w, h)
    if long <= max_side:
        return w, h
    scale = np.float32(max_side) / np.float32(long)
    return (max(1, round_half_away(float(np.float32(w) * scale))),
            max(1, round_half_away(float(np.float32(h) * scale))))


# Priors and NMS (src/vision/detect.rs), in float32 like the Rust code.

_priors: dict[tuple[int, int], np.ndarray] = {}


def priors(h: int, w: int) -> np.ndarray:
    """(cx, cy, w, h) of every anchor, normalised, in the network's output order."""
    if (h, w) not in _priors:
        parts = []
        for step, sizes in zip(DET_STEPS, DET_SIZES):
            rows, cols = -(-h // step), -(-w // step)
            cx = (np.arange(cols, dtype=np.float32) + np.float32(0.5)) * np.float32(step) / np.float32(w)
            cy = (np.arange(rows, dtype=np.float32) + np.float32(0.5)) * np.float32(step) / np.float32(h)
            p = np.empty((rows, cols, len(sizes), 4), dtype=np.float32)
            p[..., 0] = cx[None, :, None]
            p[..., 1] = cy[:, None, None]
            p[..., 2] = np.array(sizes, dtype=np.float32) / np.float32(w)
            p[..., 3] = np.array(sizes, dtype=np.float32) / np.float32(h)
            parts.append(p.reshape(-1, 4))
        _priors[(h, w)] = np.concatenate(parts)
    return _priors[(h, w)]


def nms(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Greedy NMS; indices of the kept boxes, highest score first."""
    order = np.argsort(-scores, kind="stable")
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.maximum(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0)
        ih = np.maximum(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0)
        inter = iw * ih
        union = areas[i] + areas[rest] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
        order = rest[iou <= DET_NMS_IOU]
    return np.array(keep, dtype=np.intp)


# Alignment (src/vision/align.rs), in float64 like the Rust code.

def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, float, float, float]:
    """Least-squares (a, b, tx, ty): x' = a x - b y + tx, y' = b x + a y + ty (Umeyama, 2-D)."""
    sm, dm = src.mean(axis=0), dst.mean(axis=0)
    x, u = src - sm, dst - dm
    den = float((x * x).sum())
    if den <= 1e-12:
        return 1.0, 0.0, float(dm[0] - sm[0]), float(dm[1] - sm[1])
    a = float((x[:, 0] * u[:, 0] + x[:, 1] * u[:, 1]).sum()) / den
    b = float((x[:, 0] * u[:, 1] - x[:, 1] * u[:, 0]).sum()) / den
    return a, b, float(dm[0] - (a * sm[0] - b * sm[1])), float(dm[1] - (b * sm[0] + a * sm[1]))


def warp(img: np.ndarray, landmarks: np.ndarray, template: np.ndarray,
         width: int, height: int, black_border: bool = False) -> np.ndarray:
    """Warps `img` (h, w, 3 uint8) so `landmarks` land on `template`: inverse mapping,
    bilinear sampling with edge replication (or, with `black_border`, samples beyond the
    photo counted as black), ss x ss supersampling when shrinking."""
    a, b, tx, ty = similarity(landmarks, template)
    ss = int(min(max(math.ceil(1.0 / max(math.sqrt(a * a + b * b), 1e-9)), 1), 8))
    det = a * a + b * b
    ia, ib = a / det, -b / det
    sub = (np.arange(ss) + 0.5) / ss
    u = (np.arange(width)[:, None] + sub[None, :]).reshape(-1) - tx
    v = (np.arange(height)[:, None] + sub[None, :]).reshape(-1) - ty
    x = ia * u[None, :] - ib * v[:, None] - 0.5
    y = ib * u[None, :] + ia * v[:, None] - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    h, w = img.shape[:2]
    xa = np.clip(x0, 0, w - 1).astype(np.intp)
    xb = np.clip(x0 + 1, 0, w - 1).astype(np.intp)
    ya = np.clip(y0, 0, h - 1).astype(np.intp)
    yb = np.clip(y0 + 1, 0, h - 1).astype(np.intp)
    top = img[ya, xa] * (1.0 - fx) + img[ya, xb] * fx
    bottom = img[yb, xa] * (1.0 - fx) + img[yb, xb] * fx
    samples = top * (1.0 - fy) + bottom * fy
    if black_border:
        inside = (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)
        samples = samples * inside[..., None]
    mean = samples.reshape(height, ss, width, ss, 3).sum(axis=(1, 3)) * (1.0 / (ss * ss))
    return np.clip(np.floor(mean + 0.5), 0, 255).astype(np.uint8)


def temperature(probs: np.ndarray, t: float) -> np.ndarray:
    """Each row's probabilities at temperature t (src/model/calibration.rs)."""
    if abs(t - 1.0) < 1e-12 or t <= 0:
        return probs
    logs = np.log(np.maximum(probs.astype(np.float64), 1e-12)) / t
    e = np.exp(logs - logs.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def shift_threshold(probs: np.ndarray, k: int, t: float) -> np.ndarray:
    """Moves label k's decision boundary to probability t: its odds times (1 - t) / t,
    renormalised (src/model/calibration.rs)."""
    p = probs.astype(np.float64)
    p[:, k] *= (1.0 - t) / t
    return (p / np.maximum(p.sum(axis=1, keepdims=True), 1e-30)).astype(np.float32)


def session(path: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


class Worker:
    """One process's sessions and the per-image pipeline."""

    def __init__(self, s: Settings):
        self.s = s
        self.models = [session(m.model) for m in s.members]
        self.inputs = [m.get_inputs()[0].name for m in self.models]
        self.detector = session(s.detector) if s.detector else None
        if self.detector:
            self.detector_input = self.detector.get_inputs()[0].name
        self.templates = [np.array(m.template, dtype=np.float64) if m.template else None
                          for m in s.members]

    # Decoding

    def needed_size(self, w: int, h: int) -> tuple[int, int]:
        """The smallest decoded size (EXIF-oriented) that loses nothing downstream."""
        need = (0, 0)
        if self.s.mode != "whole":
            need = detector_size(w, h, self.s.det_size)
        if self.s.mode != "detect":
            for m in self.s.members:
                cw, ch = (w, h) if m.stretch else center_crop_size(w, h, m.width, m.height)
                crop = (-(-w * m.width // cw), -(-h * m.height // ch))
                need = (max(need[0], crop[0]), max(need[1], crop[1]))
        return need

    def decode(self, path: str) -> tuple[Image.Image, float, int, int]:
        """The EXIF-oriented RGB image, decoded at the smallest sufficient JPEG scale; the
        scale (original pixels per decoded pixel) and the original oriented size."""
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ValueError(f"{w}x{h} exceeds the pixel limit of {MAX_PIXELS}")
            transposed = im.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
            if transposed:
                w, h = h, w
            need = self.needed_size(w, h)
            stored_width = im.size[0]
            drafted = im.draft("RGB", need[::-1] if transposed else need)
            # draft() returns the original frame in decoded pixels: (0, 0, W / s, H / s).
            scale = stored_width / drafted[1][2] if drafted else 1.0
            ImageOps.exif_transpose(im, in_place=True)  # also decodes
            rgb = im if im.mode == "RGB" else im.convert("RGB")
        return rgb, scale, w, h

    # Faces

    def whole(self, img: Image.Image, scale: float, w: int, h: int) -> list[np.ndarray]:
        """The image fitted to each member's input (its centred crop and filter)."""
        crops = []
        for m in self.s.members:
            cw, ch = (w, h) if m.stretch else center_crop_size(w, h, m.width, m.height)
            x0, y0 = (w - cw) // 2, (h - ch) // 2
            box = (x0 / scale, y0 / scale, (x0 + cw) / scale, (y0 + ch) / scale)
            crops.append(np.asarray(img.resize((m.width, m.height), m.resample, box=box)))
        return crops

    def detect(self, img: Image.Image, scale: float, w: int,
               h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes (n, 4), scores (n,), landmarks (n, 5, 2) in original pixels, best first."""
        dw, dh = detector_size(w, h, self.s.det_size)
        src = img
        if (w / scale, h / scale) != (dw, dh):
            src = img.resize((dw, dh), Image.BILINEAR, box=(0, 0, w / scale, h / scale))
        x = (np.asarray(src, dtype=np.float32)[..., ::-1] - DET_MEANS_BGR).transpose(2, 0, 1)
        loc, conf, lms = (o[0] for o in self.detector.run(
            ["loc", "conf", "landmarks"], {self.detector_input: np.ascontiguousarray(x)[None]}))
        p = priors(dh, dw)
        hit = conf[:, 1] >= np.float32(self.s.det_threshold)
        p, loc, lms, scores = p[hit], loc[hit], lms[hit].reshape(-1, 5, 2), conf[hit, 1]
        v0, v1 = DET_VARIANCES
        cx = p[:, 0] + loc[:, 0] * v0 * p[:, 2]
        cy = p[:, 1] + loc[:, 1] * v0 * p[:, 3]
        bw = p[:, 2] * np.exp(loc[:, 2] * v1)
        bh = p[:, 3] * np.exp(loc[:, 3] * v1)
        size = np.array([dw, dh], dtype=np.float32)
        ratio = np.array([np.float32(w) / np.float32(dw), np.float32(h) / np.float32(dh)])
        half = np.stack([bw, bh], axis=1) / np.float32(2.0)
        centre = np.stack([cx, cy], axis=1)
        boxes = np.concatenate([(centre - half) * size * ratio, (centre + half) * size * ratio], axis=1)
        points = (p[:, None, :2] + lms * v0 * p[:, None, 2:]) * size * ratio
        keep = nms(boxes, scores)
        keep = keep[np.minimum(boxes[keep, 2] - boxes[keep, 0], boxes[keep, 3] - boxes[keep, 1])
                    >= DET_MIN_FACE][:DET_MAX_FACES]
        return boxes[keep], scores[keep], points[keep]

    def faces(self, path: str) -> list[tuple[list[np.ndarray], float | None, list[float] | None]]:
        """(one crop per member, det score, box) of every face in `path`, left to right;
        [] for none."""
        img, scale, w, h = self.decode(path)
        if self.s.mode == "whole":
            return [(self.whole(img, scale, w, h), None, None)]
        boxes, scores, points = self.detect(img, scale, w, h)
        if not len(boxes):
            if self.s.mode == "auto" and max(w, h) <= CROP_MAX_SIDE:
                return [(self.whole(img, scale, w, h), None, None)]
            return []
        pixels = np.asarray(img)
        order = np.argsort(boxes[:, 0], kind="stable")
        return [([warp(pixels, points[i].astype(np.float64) / scale, t, m.width, m.height,
                       m.black_border) for m, t in zip(self.s.members, self.templates)],
                 float(scores[i]), boxes[i].tolist())
                for i in order]

    # Classification

    def member_probs(self, k: int, crops: list[np.ndarray]) -> np.ndarray:
        """Member k's calibrated probabilities (n, classes) in the card's label order."""
        m, model, name = self.s.members[k], self.models[k], self.inputs[k]
        mul, add = np.array(m.mul, dtype=np.float32), np.array(m.add, dtype=np.float32)
        out = []
        for i in range(0, len(crops), self.s.batch_size):
            x = np.stack(crops[i:i + self.s.batch_size]).astype(np.float32) * mul + add
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
            n = len(x)
            if m.flip:
                x = np.concatenate([x, x[..., ::-1]])
            probs = model.run([m.output], {name: x})[0]
            out.append((probs[:n] + probs[n:]) / np.float32(2.0) if m.flip else probs)
        probs = np.concatenate(out)[:, list(m.order)]
        return temperature(probs, m.temperature) if m.temperature else probs

    def classify(self, faces: list[list[np.ndarray]]) -> np.ndarray:
        """Probabilities (n, classes) of faces given as one crop per member, as the card
        defines them (src/model/classifier.rs): each member calibrated, the weighted mean,
        then the threshold's shift and the combined temperature."""
        s = self.s
        members = [self.member_probs(k, [f[k] for f in faces]) for k in range(len(s.members))]
        if not s.combines:
            return members[0]
        probs = np.zeros_like(members[0], dtype=np.float32)
        for w, p in zip(s.weights, members):
            probs += (np.float64(w) * p.astype(np.float64)).astype(np.float32)
        if s.threshold:
            probs = shift_threshold(probs, *s.threshold)
        return temperature(probs, s.temperature) if s.temperature else probs

    def run(self, files: list[tuple[str, str]]) -> list[tuple]:
        """Result rows for a chunk of files: (path, face_index, status, label, confidence,
        probabilities, det_score, box, error)."""
        found = []
        for path, rel in files:
            try:
                found.append((rel, self.faces(path), None))
            except Exception as e:
                found.append((rel, None, str(e) or type(e).__name__))
        crops = [crop for _, faces, _ in found if faces for crop, _, _ in faces]
        probs = self.classify(crops) if crops else None
        rows, k = [], 0
        for rel, faces, error in found:
            if error is not None:
                rows.append((rel, None, "error", None, None, None, None, None, error))
            elif not faces:
                rows.append((rel, None, "no_face", None, None, None, None, None, None))
            else:
                for i, (_, score, box) in enumerate(faces):
                    p = probs[k]
                    best = int(np.argmax(p))
                    rows.append((rel, i, "ok", self.s.labels[best], float(p[best]),
                                 p.tolist(), score, box, None))
                    k += 1
        return rows


_worker: Worker


def init_worker(settings: Settings) -> None:
    global _worker
    _worker = Worker(settings)


def process(files: list[tuple[str, str]]) -> list[tuple]:
    return _worker.run(files)


class Sink:
    """Parquet output: row groups of up to ROW_GROUP_ROWS rows, written to OUT.tmp."""

    def __init__(self, out: str, labels: tuple[str, ...]):
        self.labels = labels
        f32 = pa.float32()
        self.schema = pa.schema(
            [pa.field("path", pa.string(), nullable=False), ("face_index", pa.int32()),
             pa.field("status", pa.string(), nullable=False), ("label", pa.string()),
             ("confidence", f32)]
            + [(f"p_{label}", f32) for label in labels]
            + [("det_score", f32), ("box_x1", f32), ("box_y1", f32), ("box_x2", f32),
               ("box_y2", f32), ("error", pa.string())])
        self.out, self.tmp = out, out + ".tmp"
        self.writer = pq.ParquetWriter(self.tmp, self.schema, compression="zstd")
        self.rows: list[tuple] = []
        self.count = 0

    def add(self, rows: list[tuple]) -> None:
        self.rows.extend(rows)
        self.count += len(rows)
        if len(self.rows) >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        path, index, status, label, conf, probs, score, box, error = zip(*self.rows)
        columns = [path, index, status, label, conf]
        columns += [[p[c] if p else None for p in probs] for c in range(len(self.labels))]
        columns += [score]
        columns += [[b[c] if b else None for b in box] for c in range(4)]
        columns += [error]
        self.writer.write_table(pa.Table.from_arrays(
            [pa.array(c, type=f.type) for c, f in zip(columns, self.schema)], schema=self.schema))
        self.rows = []

    def close(self) -> None:
        self.flush()
        self.writer.close()
        os.replace(self.tmp, self.out)

    def abort(self) -> None:
        self.writer.close()
        os.remove(self.tmp)


def main() -> None:
    started = time.perf_counter()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="folder (walked recursively) or image file")
    ap.add_argument("--out", required=True, help="Parquet file to write")
    ap.add_argument("--model", required=True, help="model directory (card.json, model.onnx)")
    ap.add_argument("--faces", choices=["whole", "detect", "auto"],
                    help="default: auto when the card has alignment, else whole")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--det-size", type=int, default=960, help="detector input long side")
    ap.add_argument("--det-threshold", type=float, default=0.6)
    args = ap.parse_args()
    settings = load_settings(args)
    files = walk(args.input)
    # Chunks of up to one batch of files, small enough that every worker gets several
    # (the slowest chunk decides when the run ends).
    chunk = max(1, min(args.batch_size, math.ceil(len(files) / (4 * args.workers))))
    chunks = [files[i:i + chunk] for i in range(0, len(files), chunk)]
    sink = Sink(args.out, settings.labels)
    try:
        with Pool(args.workers, initializer=init_worker, initargs=(settings,)) as pool:
            for rows in pool.imap(process, chunks):
                sink.add(rows)
    except BaseException:
        sink.abort()
        raise
    sink.close()
    seconds = time.perf_counter() - started
    print(f"peer: {len(files)} images, {sink.count} rows in {seconds:.1f} s "
          f"({len(files) / seconds:.1f} images/s)")


if __name__ == "__main__":
    main()
