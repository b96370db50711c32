#!/usr/bin/env python3
"""Build the two sanity-check lists used by dlib_gender.py.

    python make_lists.py --data /work/shared/data --outdir DIR [--n 400] [--seed 0]

Writes
  DIR/utkface_adult400.csv   path,label,age  -- random.Random(seed).sample() of
                             the rows of utkface/labels.csv with age >= 15
                             (file order), gender renamed to label; paths are
                             relative to DATA/utkface.
  DIR/seed_faces.csv         path,label      -- every seed-faces/{female,male}/*.bmp,
                             sorted; paths are relative to DATA/seed-faces.
"""

from __future__ import annotations

import argparse
import csv
import os
import random


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)

    with open(os.path.join(args.data, "utkface", "labels.csv"), newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["age"]) >= 15]
    picked = random.Random(args.seed).sample(rows, args.n)
    out = os.path.join(args.outdir, f"utkface_adult{args.n}.csv")
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "age"])
        for r in picked:
            w.writerow([r["path"], r["gender"], r["age"]])
    print(out, len(picked))

    root = os.path.join(args.data, "seed-faces")
    out = os.path.join(args.outdir, "seed_faces.csv")
    n = 0
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for label in ("female", "male"):
            for name in sorted(os.listdir(os.path.join(root, label))):
                if name.lower().endswith(".bmp"):
                    w.writerow([f"{label}/{name}", label])
                    n += 1
    print(out, n)


if __name__ == "__main__":
    main()
