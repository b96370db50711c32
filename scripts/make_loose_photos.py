#!/usr/bin/env python3
"""Builds "loose" labeled photos from labeled face crops: each crop is pasted at a random
size and place onto a larger synthetic background, the way a face sits in a real photo
(small, off-centre, with scenery around it).

No labeled photos of whole scenes are available here, so this is how detect-and-classify
is measured against classify-on-crops on the *same* faces (docs/default-model.md).

    python make_loose_photos.py --list TEST.csv --out DIR [--seed 7] [--limit N]
        [--group K]   # K faces per photo instead of one (for demo photos; no labels CSV)

TEST.csv is a facebatch manifest (path,label[,age,source,...]; paths relative to the CSV,
e.g. a model's splits/test.csv). Writes DIR/photos/*.jpg and DIR/labels.csv (path,label,
age,source,face_px,x,y,canvas_w,canvas_h), paths relative to DIR.

Backgrounds are smooth colour gradients with blurred shapes and sensor-like noise: scenery
without faces, so the only face in a photo is the pasted one. The crop is pasted with a
feathered rounded edge so that its square border does not give it away. Face size (the
crop's side) is drawn log-uniformly between 64 and 256 px on canvases 640-1280 px wide.
Deterministic for a given --seed.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def background(rng: random.Random, w: int, h: int) -> Image.Image:
    c1 = np.array([rng.randrange(256) for _ in range(3)], dtype=np.float32)
    c2 = np.array([rng.randrange(256) for _ in range(3)], dtype=np.float32)
    angle = rng.uniform(0, math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xx * math.cos(angle) + yy * math.sin(angle)) / (w + h)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = (c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None])
    base = Image.fromarray(img.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(base)
    for _ in range(rng.randint(4, 12)):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1, y1 = x0 + rng.randint(w // 12, w // 2), y0 + rng.randint(h // 12, h // 2)
        fill = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.rectangle([x0, y0, x1, y1], fill=fill)
        else:
            draw.ellipse([x0, y0, x1, y1], fill=fill)
    base = base.filter(ImageFilter.GaussianBlur(rng.uniform(2, 12)))
    arr = np.asarray(base).astype(np.float32)
    nrng = np.random.default_rng(rng.randrange(2**32))
    arr += nrng.normal(0, rng.uniform(2, 8), arr.shape)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")


def feather_mask(size: tuple[int, int]) -> Image.Image:
    # A rounded rectangle softened over the outer ~4% only: the crop's square border blends
    # into the scene while the face itself (which fills tight crops) stays whole.
    w, h = size
    m = max(1, round(0.03 * min(w, h)))
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).rounded_rectangle([m, m, w - 1 - m, h - 1 - m], radius=4 * m, fill=255)
    return mask.filter(ImageFilter.GaussianBlur(m))


def paste(rng: random.Random, canvas: Image.Image, face: Image.Image, side: int,
          taken: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int] | None:
    fw = side
    fh = max(1, round(face.height * side / face.width))
    face = face.resize((fw, fh), Image.BILINEAR)
    W, H = canvas.size
    for _ in range(50):
        x = rng.randint(0, W - fw)
        y = rng.randint(0, H - fh)
        box = (x, y, x + fw, y + fh)
        if all(box[2] <= t[0] or box[0] >= t[2] or box[3] <= t[1] or box[1] >= t[3]
               for t in taken):
            canvas.paste(face, (x, y), feather_mask((fw, fh)))
            return box
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--group", type=int, default=1)
    ap.add_argument("--min-face", type=int, default=64)
    ap.add_argument("--max-face", type=int, default=256)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    base = os.path.dirname(os.path.abspath(args.list))
    with open(args.list, newline="") as f:
        rows = list(csv.DictReader(f))
    if args.limit:
        rows = rows[: args.limit]
    photos = os.path.join(args.out, "photos")
    os.makedirs(photos, exist_ok=True)
    out_rows = []
    for i in range(0, len(rows), args.group):
        group = rows[i : i + args.group]
        W = rng.randint(640, 1280)
        H = W * 3 // 4
        canvas = background(rng, W, H)
        taken: list[tuple[int, int, int, int]] = []
        placed = []
        for r in group:
            face = Image.open(os.path.join(base, r["path"])).convert("RGB")
            side = round(math.exp(rng.uniform(math.log(args.min_face), math.log(args.max_face))))
            side = min(side, W // max(1, args.group), H - 1)
            box = paste(rng, canvas, face, side, taken)
            if box:
                taken.append(box)
                placed.append((r, box))
        name = f"loose-{i // args.group:05d}.jpg"
        canvas.save(os.path.join(photos, name), quality=90)
        for r, box in placed:
            out_rows.append({
                "path": f"photos/{name}", "label": r["label"], "age": r.get("age", ""),
                "source": r.get("source", ""), "face_px": box[2] - box[0],
                "x": box[0], "y": box[1], "canvas_w": W, "canvas_h": H,
            })
    if args.group == 1:
        with open(os.path.join(args.out, "labels.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(out_rows[0].keys()))
            w.writeheader()
            w.writerows(out_rows)
    print(f"{len(out_rows)} faces in {(len(rows) + args.group - 1) // args.group} photos -> {args.out}")


if __name__ == "__main__":
    main()
