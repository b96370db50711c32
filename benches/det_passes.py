"""Can photos be detected at a lower resolution first, re-detecting at --det-size only where
that is needed? (issue 18). And what would make one detection pass cheaper?

1. facebatch classify --faces detect at the default 960 px and at 640 and 480 px, with a low
   score threshold (0.3) so that near-misses are visible, on three photo sets: the e2e
   benchmark's 4000x3000 photos (benches/make_corpora.py), the loose photos
   (scripts/make_loose_photos.py, one face of 64-256 px in 640-1280 px scenes) and the two
   real group photos in data/samples/photos. The faces at 960 px and score >= 0.6 (today's
   result) are the reference; a face counts as found at a coarse size when a box there
   (score >= 0.6) overlaps it with IoU > 0.4.
2. Re-detection rules, judged on the coarse pass alone: re-detect at 960 px when the coarse
   pass found no face, or found a candidate scored 0.3-0.6, or (stricter) a face under S px
   at the coarse scale. For each rule: the share of photos re-detected (the cost) and the
   reference faces lost in photos that were not (the loss).
3. One detection pass at 960x720 in ONNX Runtime, one thread: float32 against an int8 QDQ
   copy (calibrated on 80 of the photos), and batches of 1, 2 and 4 photos per call.

Usage (scripts/bench-det-passes.sh): python benches/det_passes.py --facebatch BIN
    --detector FILE.onnx --bench DIR --loose DIR --samples DIR --work DIR --out docs/det-passes
"""

import argparse
import collections
import datetime
import glob
import json
import os
import platform
import subprocess
import time

import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image

THRESHOLD, LOW = 0.6, 0.3
SIZES = [960, 640, 480]


def detect(facebatch: str, photos: str, size: int, out: str) -> tuple[dict, dict, float]:
    t = time.perf_counter()
    subprocess.run([facebatch, "--no-progress", "-q", "classify", photos, "--out", out,
                    "--faces", "detect", "--det-size", str(size), "--det-threshold", str(LOW),
                    "--max-error-rate", "1"], check=True, capture_output=True)
    wall = time.perf_counter() - t
    faces, size_of = collections.defaultdict(list), {}
    for r in pq.read_table(out).to_pylist():
        size_of[r["path"]] = (r["width"], r["height"])
        faces[r["path"]]
        if r["status"] == "ok" and r["det_score"] is not None:
            faces[r["path"]].append((r["det_score"], (r["box_x1"], r["box_y1"], r["box_x2"], r["box_y2"])))
    return faces, size_of, wall


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    i = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i
    return i / u if u > 0 else 0.0


def judge(ref: dict, coarse: dict, size_of: dict, size: int) -> dict:
    photos = []
    for p, (w, h) in size_of.items():
        r = [f for f in ref[p] if f[0] >= THRESHOLD]
        c = [f for f in coarse[p] if f[0] >= THRESHOLD]
        near = max([f[0] for f in coarse[p] if f[0] < THRESHOLD], default=0.0)
        scale = min(1.0, size / max(w, h, 1))
        smallest = min([min(b[2] - b[0], b[3] - b[1]) * scale for _, b in c], default=None)
        lost = sum(1 for f in r if not any(iou(f[1], g[1]) > 0.4 for g in c))
        photos.append({"ref": len(r), "found": len(r) - lost, "lost": lost, "none": not c,
                       "near": near, "smallest": smallest})
    rules = {}
    for name, redo in [
        ("no face", lambda x: x["none"]),
        ("no face, or a candidate scored 0.3-0.6", lambda x: x["none"] or x["near"] >= LOW),
        ("... or a face under 32 px at this size", lambda x: x["none"] or x["near"] >= LOW
         or (x["smallest"] is not None and x["smallest"] < 32)),
    ]:
        again = [x for x in photos if redo(x)]
        kept = [x for x in photos if not redo(x)]
        rules[name] = {"redetected": len(again), "photos": len(photos),
                       "faces_lost": sum(x["lost"] for x in kept)}
    ref_faces = sum(x["ref"] for x in photos)
    return {"reference_faces": ref_faces, "found": sum(x["found"] for x in photos), "rules": rules}


def prep(path: str, side: int = 960) -> np.ndarray:
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = min(1.0, side / max(w, h))
    im = im.resize((round(w * s), round(h * s)), Image.BILINEAR)
    a = np.asarray(im, dtype=np.float32)[:, :, ::-1] - np.array([104, 117, 123], np.float32)
    return np.ascontiguousarray(a.transpose(2, 0, 1)[None])


def per_call_ms(model: str, x: np.ndarray, seconds: float = 4.0) -> float:
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    s = ort.InferenceSession(model, o, providers=["CPUExecutionProvider"])
    s.run(None, {"input": x})
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        s.run(None, {"input": x})
        n += 1
    return (time.perf_counter() - t) / n * 1000


def detector_costs(detector: str, photos: list[str], work: str) -> dict:
    calib = [prep(p) for p in photos[:80]]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = list(calib)

        def get_next(self):
            return {"input": self.left.pop()} if self.left else None

    pre, q = os.path.join(work, "det-pre.onnx"), os.path.join(work, "det-int8.onnx")
    quant_pre_process(detector, pre, skip_symbolic_shape=True)
    quantize_static(pre, q, Reader(), quant_format=QuantFormat.QDQ, per_channel=False,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    x = calib[0]
    r = {"float32": [], "int8": [], "batch": {}}
    for _ in range(3):  # alternated: the machine is noisy
        r["float32"].append(per_call_ms(detector, x))
        r["int8"].append(per_call_ms(q, x))
    for b in [1, 2, 4]:
        r["batch"][b] = per_call_ms(detector, np.concatenate([x] * b)) / b
    r["input"] = list(x.shape)
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    for a in ["--facebatch", "--detector", "--bench", "--loose", "--samples", "--work", "--out"]:
        ap.add_argument(a, required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    sets = {"e2e photos (4000x3000)": a.bench, "loose photos": a.loose, "group photos": a.samples}
    res = {"sets": {}}
    for name, photos in sets.items():
        runs = {s: detect(a.facebatch, photos, s, os.path.join(a.work, f"{len(res['sets'])}-{s}.parquet"))
                for s in SIZES}
        ref, size_of, _ = runs[960]
        res["sets"][name] = {"photos": len(size_of), "wall_s": {s: r[2] for s, r in runs.items()},
                             "coarse": {s: judge(ref, runs[s][0], size_of, s) for s in SIZES[1:]},
                             "reference_faces": judge(ref, ref, size_of, 960)["reference_faces"]}
    res["detector"] = detector_costs(a.detector, sorted(glob.glob(os.path.join(a.bench, "*.jpg"))), a.work)
    res["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}"
    res["generated"] = datetime.date.today().isoformat()
    json.dump(res, open(a.out + ".json", "w"), indent=1)
    write_md(a.out + ".md", res)
    print(open(a.out + ".md").read())


def write_md(path: str, r: dict) -> None:
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    d = r["detector"]
    lines = [
        "# Detection passes: a coarse first pass, and the cost of one pass", "",
        f"Generated by `scripts/bench-det-passes.sh` on {r['generated']} ({r['machine']}). "
        "Every number below was computed by that script (benches/det_passes.py).", "",
        f"Reference: today's result, faces at 960 px with score >= {THRESHOLD}. A reference face "
        "is found at a coarse size when a box there (score >= 0.6) overlaps it with IoU > 0.4. "
        "Wall times are whole `classify --faces detect` runs (decoding at the DCT scale each size "
        "allows, detection, alignment, inference) on 2 cores.", "",
        "| photo set | photos | reference faces | size | found | wall time |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in r["sets"].items():
        lines.append(f"| {name} | {s['photos']} | {s['reference_faces']} | 960 | {s['reference_faces']} | "
                     f"{s['wall_s'][960]:.1f} s |")
        for size, c in s["coarse"].items():
            w = s["wall_s"][size]
            lines.append(f"| | | | {size} | {c['found']} ({100 * c['found'] / max(c['reference_faces'], 1):.1f}%) | {w:.1f} s |")
    lines += ["", "Re-detecting at 960 px where the coarse pass gives a reason (its faces kept "
              "otherwise): photos re-detected, and reference faces lost in the photos that were not.", "",
              "| photo set | coarse size | rule | re-detected | faces lost |", "| --- | ---: | --- | ---: | ---: |"]
    for name, s in r["sets"].items():
        for size, c in s["coarse"].items():
            for rule, v in c["rules"].items():
                lines.append(f"| {name} | {size} | {rule} | {v['redetected']} of {v['photos']} | "
                             f"{v['faces_lost']} of {c['reference_faces']} |")
    lines += ["", f"One detection pass, input {'x'.join(str(v) for v in d['input'][2:])}, ONNX Runtime "
              "on one thread (median of 3 alternated rounds):", "",
              f"- float32: {med(d['float32']):.1f} ms; int8 QDQ (MinMax on 80 of the photos): "
              f"{med(d['int8']):.1f} ms, **{med(d['float32']) / med(d['int8']):.2f}x**.",
              "- float32 per photo in batches of " + ", ".join(
                  f"{b}: {v:.1f} ms" for b, v in d["batch"].items()) + "."]
    open(path, "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
