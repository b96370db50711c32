#!/usr/bin/env python3
"""Builds the two corpora of the end-to-end speed benchmark (facebatch vs benches/peer.py).

    python benches/make_corpora.py --crops .cache/bench/crops  [--n 5000] [--seed 5] [--data ../shared/data]
    python benches/make_corpora.py --photos .cache/bench/photos [--n 300] [--seed 5] [--workers N]

Run it with the baseline venv (scripts/baseline/setup.sh): Pillow and numpy.

- `--crops DIR`: n UTKFace face crops (200x200 JPEGs), a seeded sample of the sorted
  collection, copied byte for byte to DIR/<female|male>/NNNNN.jpg, with DIR/labels.csv
  (path relative to DIR, label).
- `--photos DIR`: n 4000x3000 JPEG photos (quality 90), DIR/NNNNN.jpg: a synthetic
  face-free scene (the backgrounds of scripts/make_loose_photos.py, drawn at 1000x750 and
  upscaled bicubically, plus mild per-pixel noise at full size) with 1 to 6 UTKFace crops
  pasted at random, non-overlapping places, each resized (Lanczos) to a side drawn
  log-uniformly between 200 and 900 px and feathered at its edge. DIR/labels.csv has the
  path, the number of faces and a JSON list of the faces: x, y, side (the pasted square, in
  photo pixels), label and the source crop.

Deterministic: the same data and arguments give the same bytes. Idempotent: a DIR whose
STAMP file records the same arguments is left as it is; otherwise the corpus is built in
DIR.tmp and renamed to DIR. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import shutil
import sys
import time
from multiprocessing import Pool

import numpy as np
from PIL import Image, ImageChops

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from make_loose_photos import background, feather_mask  # noqa: E402

# Bump when the output of a given set of arguments changes, so old corpora are rebuilt.
GENERATOR_VERSION = 1
PHOTO_SIZE = (4000, 3000)
BACKGROUND_REDUCTION = 4
NOISE_AMPLITUDE = 4  # uniform integer noise in [-4, 4] per channel
FACES_PER_PHOTO = (1, 6)
FACE_SIDE = (200, 900)
PLACEMENT_TRIES = 100
JPEG_QUALITY = 90


def read_labels(data: str) -> list[tuple[str, str]]:
    """(absolute path, label) of every UTKFace crop, sorted by path."""
    root = os.path.join(data, "utkface")
    with open(os.path.join(root, "labels.csv"), newline="") as f:
        rows = sorted((r["path"], r["gender"]) for r in csv.DictReader(f))
    return [(os.path.join(root, path), label) for path, label in rows]


def build_crops(tmp: str, faces: list[tuple[str, str]], n: int, seed: int) -> None:
    sample = random.Random(seed).sample(faces, n)
    for label in sorted({label for _, label in sample}):
        os.makedirs(os.path.join(tmp, label))
    rows = []
    for i, (src, label) in enumerate(sample):
        rel = f"{label}/{i:05d}.jpg"
        shutil.copyfile(src, os.path.join(tmp, rel))
        rows.append((rel, label))
        if (i + 1) % 1000 == 0 or i + 1 == n:
            print(f"crops: {i + 1}/{n}", file=sys.stderr)
    with open(os.path.join(tmp, "labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(rows)


def scene(rng: random.Random) -> Image.Image:
    """A face-free 4000x3000 scene: a small background upscaled, with mild noise."""
    W, H = PHOTO_SIZE
    small = background(rng, W // BACKGROUND_REDUCTION, H // BACKGROUND_REDUCTION)
    canvas = small.resize(PHOTO_SIZE, Image.BICUBIC)
    noise = np.random.default_rng(rng.randrange(2**32)).integers(
        0, 2 * NOISE_AMPLITUDE + 1, size=(H, W, 3), dtype=np.uint8)
    return ImageChops.add(canvas, Image.fromarray(noise, "RGB"), 1.0, -NOISE_AMPLITUDE)


def place(rng: random.Random, side: int, taken: list[tuple[int, int, int]]) -> tuple[int, int] | None:
    """A top-left corner for a side x side square that overlaps none in `taken`."""
    W, H = PHOTO_SIZE
    for _ in range(PLACEMENT_TRIES):
        x, y = rng.randint(0, W - side), rng.randint(0, H - side)
        if all(x + side <= tx or x >= tx + ts or y + side <= ty or y >= ty + ts
               for tx, ty, ts in taken):
            return x, y
    return None


# Set in each photo worker by `init_photo_worker`: (output folder, seed, UTKFace crops).
_job: tuple[str, int, list[tuple[str, str]]]


def init_photo_worker(tmp: str, seed: int, faces: list[tuple[str, str]]) -> None:
    global _job
    _job = (tmp, seed, faces)


def make_photo(index: int) -> tuple[str, list[dict]]:
    """Writes photo `index`; returns its file name and its faces."""
    tmp, seed, faces = _job
    rng = random.Random(f"facebatch-bench-photo:{seed}:{index}")
    canvas = scene(rng)
    chosen = rng.sample(faces, rng.randint(*FACES_PER_PHOTO))
    taken: list[tuple[int, int, int]] = []
    placed = []
    for src, label in chosen:
        lo, hi = FACE_SIDE
        side = round(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        corner = place(rng, side, taken)
        if corner is None:
            continue
        with Image.open(src) as im:
            face = im.convert("RGB").resize((side, side), Image.LANCZOS)
        canvas.paste(face, corner, feather_mask((side, side)))
        taken.append((*corner, side))
        placed.append({"x": corner[0], "y": corner[1], "side": side, "label": label,
                       "source": os.path.basename(src)})
    name = f"{index:05d}.jpg"
    canvas.save(os.path.join(tmp, name), quality=JPEG_QUALITY)
    return name, placed


def build_photos(tmp: str, faces: list[tuple[str, str]], n: int, seed: int, workers: int) -> None:
    rows = []
    with Pool(workers, initializer=init_photo_worker, initargs=(tmp, seed, faces)) as pool:
        for k, (name, placed) in enumerate(pool.imap(make_photo, range(n)), 1):
            rows.append((name, len(placed), json.dumps(placed)))
            if k % 25 == 0 or k == n:
                print(f"photos: {k}/{n}", file=sys.stderr)
    with open(os.path.join(tmp, "labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "faces", "boxes"])
        w.writerows(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    kind = ap.add_mutually_exclusive_group(required=True)
    kind.add_argument("--crops", metavar="DIR", help="build the face-crop corpus in DIR")
    kind.add_argument("--photos", metavar="DIR", help="build the photo corpus in DIR")
    ap.add_argument("--n", type=int, help="corpus size (default: 5000 crops, 300 photos)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--data", default="../shared/data", help="the shared data folder")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="processes for the photos (default: all cores)")
    args = ap.parse_args()
    out = os.path.abspath(args.crops or args.photos)
    n = args.n or (5000 if args.crops else 300)
    # The data folder's location is not in the stamp: its contents are what matter, and
    # those are the read-only shared collection.
    stamp = json.dumps({"kind": "crops" if args.crops else "photos", "n": n,
                        "seed": args.seed, "version": GENERATOR_VERSION}, sort_keys=True)
    stamp_path = os.path.join(out, "STAMP")
    if os.path.isfile(stamp_path):
        with open(stamp_path) as f:
            if f.read() == stamp:
                print(f"{out} is up to date", file=sys.stderr)
                return
    faces = read_labels(args.data)
    if n > len(faces) and args.crops:
        sys.exit(f"--n {n} exceeds the {len(faces)} UTKFace crops")
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    t0 = time.monotonic()
    if args.crops:
        build_crops(tmp, faces, n, args.seed)
    else:
        build_photos(tmp, faces, n, args.seed, args.workers)
    with open(os.path.join(tmp, "STAMP"), "w") as f:
        f.write(stamp)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    print(f"{out}: built in {time.monotonic() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
