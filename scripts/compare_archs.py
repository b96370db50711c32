#!/usr/bin/env python3
"""Architecture choice by accuracy per cost, on a fixed short training budget.

    python scripts/compare_archs.py --out docs/networks.md [--images 8600] [--epochs 4]

Usually run through scripts/compare-archs.sh (which builds facebatch and sets up the
baseline venv for onnxruntime). Every candidate is trained from scratch with the same data
(a seeded, label-stratified subset of every shared source), seed, sampler, augmentation and
epochs; only the network and its input size differ. Each is then scored on its test split
through ONNX Runtime twice, with and without test-time flip averaging, and its inference
cost is measured here (one ONNX Runtime session, one thread, batch 64) and computed
(multiply-accumulates from the card). Writes the page and its raw JSON beside it.
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
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (name, arch, input side)
CANDIDATES = [
    ("compact-64", "compact", 64),
    ("compact-88", "compact", 88),
    ("residual-64", "residual", 64),
    ("separable-96", "separable", 96),
]
# The shipped v3's cost per face: compact at 64 px, two passes (flip averaging).
BUDGET_MFLOP = 158.1


def log(msg: str) -> None:
    print(f"compare-archs: {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str]) -> str:
    log(" ".join(cmd))
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def ort_us_per_pass(onnx: str, side: int, passes: int = 1536) -> float:
    """Median microseconds per face of one ONNX Runtime pass (1 thread, batch 64)."""
    import numpy as np
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    s = ort.InferenceSession(onnx, o, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((64, 3, side, side), dtype=np.float32)
    name = s.get_inputs()[0].name
    s.run(None, {name: x})
    rounds = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(passes // 64 // 5 or 1):
            s.run(None, {name: x})
        rounds.append((time.perf_counter() - t) / ((passes // 64 // 5 or 1) * 64))
    rounds.sort()
    return rounds[len(rounds) // 2] * 1e6


def evaluate(facebatch: str, model: str) -> dict:
    out = run([facebatch, "--no-progress", "-q", "eval", os.path.join(model, "splits", "test.csv"),
               "--model", model, "--json", "--group-by", "source"])
    return json.loads(out)


def summary(report: dict) -> dict:
    groups = report.get("groups", {}).get("source", {})
    per_source = {k: g["accuracy"] for k, g in groups.items()}
    return {
        "n": report["n"],
        "accuracy": report["accuracy"],
        "mean_per_source": sum(per_source.values()) / max(len(per_source), 1),
        "per_source": per_source,
        "ece": (report.get("calibration") or {}).get("ece"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--images", type=int, default=8600)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--data", default=os.environ.get("FACEBATCH_SHARED_DATA", "../shared/data"))
    ap.add_argument("--facebatch", default="./target/release/facebatch")
    ap.add_argument("--work", default="target/compare-archs")
    ap.add_argument("--only", help="comma-separated candidate names")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite the page from the raw results.json of an earlier run")
    args = ap.parse_args()
    os.chdir(REPO)
    raw_dir = os.path.splitext(args.out)[0]
    os.makedirs(raw_dir, exist_ok=True)
    if args.render_only:
        saved = json.load(open(os.path.join(raw_dir, "results.json")))
        args.images, args.epochs = saved["images"], saved["epochs"]
        write_page(args, saved["results"])
        return
    results = []
    for name, arch, side in CANDIDATES:
        if args.only and name not in args.only.split(","):
            continue
        out = os.path.join(args.work, name)
        shutil.rmtree(out, ignore_errors=True)
        start = time.time()
        run([args.facebatch, "--no-progress", "-q", "train",
             "--labels-csv", f"{args.data}/utkface/labels.csv",
             "--labels-csv", f"{args.data}/more-faces/labels.csv", "--label-column", "gender",
             f"{args.data}/seed-faces",
             "--arch", arch, "--input-size", str(side), "--max-images", str(args.images),
             "--epochs", str(args.epochs), "--patience", str(args.epochs), "--batch-size", "32",
             "--lr", "2e-3", "--seed", "7", "--align", "--sampler", "balanced",
             "--group-by", "source", "--out", out])
        seconds = time.time() - start
        card = json.load(open(os.path.join(out, "card.json")))
        with_flip = summary(card["metrics"]["test"])
        # The same weights without flip averaging: a copy whose card says so (the card's
        # sha256 check covers model.onnx, which is unchanged).
        noflip = out + "-noflip"
        shutil.rmtree(noflip, ignore_errors=True)
        os.makedirs(noflip)
        shutil.copy(os.path.join(out, "model.onnx"), noflip)
        shutil.copytree(os.path.join(out, "splits"), os.path.join(noflip, "splits"))
        card_nf = dict(card, test_time_flip=False)
        json.dump(card_nf, open(os.path.join(noflip, "card.json"), "w"), indent=2)
        without_flip = summary(evaluate(args.facebatch, noflip))
        mflop = card["architecture"]["mflops_per_pass"]
        us = ort_us_per_pass(os.path.join(out, "model.onnx"), side)
        r = {
            "name": name, "arch": arch, "input": side,
            "parameters": card["architecture"]["parameters"],
            "onnx_bytes": card["onnx"]["bytes"],
            "mflop_per_pass": mflop, "ort_us_per_pass": us,
            "train_seconds": seconds, "best_epoch": card["training"]["best_epoch"],
            "train_images": sum(card["training"]["split_counts"]["train"].values()),
            "flip": with_flip, "no_flip": without_flip,
        }
        log(json.dumps({k: r[k] for k in ("name", "mflop_per_pass", "ort_us_per_pass", "train_seconds")}))
        results.append(r)
        json.dump({"images": args.images, "epochs": args.epochs, "results": results},
                  open(os.path.join(raw_dir, "results.json"), "w"), indent=2)
    write_page(args, results)


def write_page(args, results: list[dict]) -> None:
    cpu = os.cpu_count()
    lines = [
        "# Choosing the network: accuracy per cost on a fixed budget",
        "",
        f"Generated by `scripts/compare-archs.sh` on {dt.date.today()} ({platform.machine()}, "
        f"{cpu} cores, {platform.platform()}). Raw numbers: "
        f"[{os.path.basename(os.path.splitext(args.out)[0])}/results.json]"
        f"({os.path.basename(os.path.splitext(args.out)[0])}/results.json).",
        "",
        f"Every candidate is trained **from scratch** on the same seeded, label-stratified "
        f"{args.images}-image subset of all shared sources (UTKFace, seed faces, the six "
        f"more-faces collections), {args.epochs} epochs, Adam peak lr 2e-3, batch 32, the "
        f"balanced sampler, default augmentation, seed 7, detected and aligned faces. This is "
        f"a short budget: the numbers rank the candidates, they are not what a full run reaches. "
        f"The test split is each run's own (the same images: same seed, same subset): "
        f"{results[0]['flip']['n'] if results else 0} faces, so a 95% interval is about "
        f"±{196 * (0.85 * 0.15 / max(results[0]['flip']['n'] if results else 1, 1)) ** 0.5:.1f} points "
        f"at 85%: differences under 3 points are noise.",
        "",
        f"Cost per face: MFLOP = 2 x multiply-accumulates of one pass (card "
        f"`architecture.mflops_per_pass`), doubled with flip averaging; time = one ONNX "
        f"Runtime session, one thread, batch 64, median of 5 rounds, here, while another training "
        f"shared the cores: compare rows, not absolute values. The shipped v3 "
        f"costs {BUDGET_MFLOP:.0f} MFLOP per face (compact 64 px with flip); a candidate "
        f"over that budget is marked.",
        "",
        "| network | input | params | flip | MFLOP / face | µs / face (1 thread) | accuracy | mean over sources | accuracy per 100 MFLOP above chance | within budget |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        for flip in (True, False):
            s = r["flip"] if flip else r["no_flip"]
            k = 2 if flip else 1
            mflop = r["mflop_per_pass"] * k
            lines.append(
                f"| {r['arch']} | {r['input']} | {r['parameters']:,} | {'yes' if flip else 'no'} | "
                f"{mflop:.0f} | {r['ort_us_per_pass'] * k:.0f} | {100 * s['accuracy']:.2f}% | "
                f"{100 * s['mean_per_source']:.2f}% | {100 * (s['accuracy'] - 0.5) / mflop * 100:.1f} | "
                f"{'yes' if mflop <= BUDGET_MFLOP + 0.5 else '**no**'} |"
            )
    lines += [
        "",
        "Per source (test split, with flip averaging):",
        "",
    ]
    sources = sorted({s for r in results for s in r["flip"]["per_source"]})
    lines.append("| network | " + " | ".join(sources) + " |")
    lines.append("|---|" + "---:|" * len(sources))
    for r in results:
        lines.append(f"| {r['name']} | " + " | ".join(
            f"{100 * r['flip']['per_source'].get(s, float('nan')):.1f}%" for s in sources) + " |")
    lines += [
        "",
        "Training time on this machine (wall, including detection and alignment of the subset): "
        + ", ".join(f"{r['name']} {r['train_seconds'] / 60:.1f} min" for r in results) + ".",
        "",
    ]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
