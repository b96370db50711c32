#!/usr/bin/env python3
"""One augmentation off at a time: what each is worth on the domains it is for.

    python scripts/ablate_augment.py --out docs/augmentation-ablation.md [--images 4300] [--epochs 2]

Usually run through scripts/ablate-augment.sh. Every run fine-tunes the same starting model
(--init, default v3) on the same seeded subset of every shared source, with the same seed,
sampler and schedule; the only difference is one augmentation strength set to 0 (`--augment
NAME=0`). Each run's test split is then scored on the original images and on the domain
shifts of scripts/baseline/compare_sources.py (grey, blur, JPEG 20, face at 32 px, rotated 15
degrees). A short budget: differences of a point or two are noise (the page gives the
test-set size); the table is for direction, not decimals.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "baseline"))
from compare_sources import TRANSFORMS, read_test, render_transform, write_manifest  # noqa: E402

# (name, --augment overrides)
RUNS = [
    ("all on (v4 defaults)", []),
    ("no grey-scale", ["grayscale=0"]),
    ("no blur", ["blur=0"]),
    ("no JPEG recompression", ["jpeg=0"]),
    ("no downscale-upscale", ["downscale=0"]),
    ("no gamma / colour cast", ["gamma=0", "color_cast=0"]),
    ("no occlusion", ["occlude=0"]),
    ("none of the new ones (v3's set)", ["blur=0", "jpeg=0", "downscale=0", "gamma=0", "color_cast=0",
                                          "occlude=0", "grayscale=0.15"]),
]


def log(msg: str) -> None:
    print(f"ablate: {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str]) -> str:
    log(" ".join(cmd))
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--images", type=int, default=4300)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--init", default="models/facebatch-gender/v3")
    ap.add_argument("--data", default=os.environ.get("FACEBATCH_SHARED_DATA", "../shared/data"))
    ap.add_argument("--facebatch", default="./target/release/facebatch")
    ap.add_argument("--work", default="target/ablate-augment")
    args = ap.parse_args()
    os.chdir(REPO)
    raw_dir = os.path.splitext(args.out)[0]
    os.makedirs(raw_dir, exist_ok=True)
    results = []
    scratch = tempfile.mkdtemp(prefix="facebatch-ablate-")
    shifted: dict[str, str] = {}
    for k, (name, overrides) in enumerate(RUNS):
        out = os.path.join(args.work, f"run{k}")
        shutil.rmtree(out, ignore_errors=True)
        cmd = [args.facebatch, "--no-progress", "-q", "train",
               "--labels-csv", f"{args.data}/utkface/labels.csv",
               "--labels-csv", f"{args.data}/more-faces/labels.csv", "--label-column", "gender",
               f"{args.data}/seed-faces", "--init", args.init, "--pin-splits", args.init,
               "--max-images", str(args.images), "--epochs", str(args.epochs),
               "--patience", str(args.epochs), "--batch-size", "32", "--lr", "1e-3", "--seed", "42",
               "--align", "--sampler", "balanced", "--no-calibrate", "--out", out]
        for o in overrides:
            cmd += ["--augment", o]
        start = time.time()
        run(cmd)
        seconds = time.time() - start
        test_csv = os.path.join(out, "splits", "test.csv")
        if not shifted:
            # Every run has the same test split (same subset, same seed): render the
            # shifted copies once.
            _, rows = read_test(test_csv)
            for i, r in enumerate(rows):
                r["id"] = f"t{i:05d}"
            shifted["original"] = os.path.abspath(test_csv)
            for key, _, fn, ext, _ in TRANSFORMS:
                folder = os.path.join(scratch, key)
                files = render_transform(rows, key, fn, ext, folder)
                manifest = os.path.join(folder, "test.csv")
                write_manifest(manifest, rows, files)
                shifted[key] = manifest
        scores = {}
        for key, manifest in shifted.items():
            report = json.loads(run([args.facebatch, "--no-progress", "-q", "eval", manifest,
                                     "--model", out, "--json"]))
            faces = report.get("faces") or {}
            scores[key] = {"n": report["n"] + faces.get("no_face", 0),
                           "accuracy": faces.get("end_to_end_accuracy", report["accuracy"])}
        results.append({"name": name, "overrides": overrides, "seconds": seconds, "scores": scores})
        json.dump(results, open(os.path.join(raw_dir, "results.json"), "w"), indent=2)
        log(f"{name}: " + ", ".join(f"{k} {100 * v['accuracy']:.2f}%" for k, v in scores.items()))
    shutil.rmtree(scratch, ignore_errors=True)
    write_page(args, results)


def write_page(args, results: list[dict]) -> None:
    keys = ["original"] + [t[0] for t in TRANSFORMS]
    labels = {"original": "original"} | {t[0]: t[1] for t in TRANSFORMS}
    n = results[0]["scores"]["original"]["n"] if results else 0
    lines = [
        "# Augmentation ablation",
        "",
        f"Generated by `scripts/ablate-augment.sh` on {dt.date.today()} ({platform.machine()}, "
        f"{os.cpu_count()} cores). Raw numbers: [{os.path.basename(os.path.splitext(args.out)[0])}/results.json]"
        f"({os.path.basename(os.path.splitext(args.out)[0])}/results.json).",
        "",
        f"Each row fine-tunes `{args.init}` for {args.epochs} epochs on the same seeded "
        f"{args.images}-image subset of every shared source (balanced sampler, lr 1e-3, seed 42) "
        f"with one augmentation turned off, and scores the same {n} test images (accuracy end to "
        f"end: a face not found counts as wrong) on the originals and on each domain shift. "
        f"With {n} images one image is {100 / max(n, 1):.2f} points and a 95% interval is about "
        f"±{100 * 1.96 * (0.9 * 0.1 / max(n, 1)) ** 0.5:.1f} points at 90%: read directions, "
        f"not decimals. The deltas are against the first row.",
        "",
        "| run | " + " | ".join(labels[k] for k in keys) + " | minutes |",
        "|---|" + "---:|" * (len(keys) + 1),
    ]
    base = results[0]["scores"] if results else {}
    for i, r in enumerate(results):
        cells = []
        for k in keys:
            a = r["scores"][k]["accuracy"]
            cell = f"{100 * a:.1f}%"
            if i:
                cell += f" ({100 * (a - base[k]['accuracy']):+.1f})"
            cells.append(cell)
        lines.append(f"| {r['name']} | " + " | ".join(cells) + f" | {r['seconds'] / 60:.1f} |")
    lines.append("")
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
