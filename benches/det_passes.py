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
4. Regional re-detection: does a face the coarse pass misses leave a trace there? A coarse
   run at 640 px with a probe threshold of 0.01 lists the candidates (score 0.01-0.6, box at
   most 64 px at the coarse scale); a reference face is covered when it lies inside the
   square of 3x a candidate's box side (the region a second pass at 960 px would search) or
   in a photo with no coarse face (which would be re-detected whole). The faces the coarse
   pass does find are only as good as their landmarks: how many labels change against the
   960 px result, and `facebatch eval` on the loose photos at each size. With the cost of a
   pass at the coarse size and of small regions (ONNX Runtime, one thread), a detection cost
   per photo is modelled for two cascades: regions for the candidates only (landmarks of the
   found faces from the coarse pass), and regions for the faces too (landmarks at 960 px).

Usage (scripts/bench-det-passes.sh): python benches/det_passes.py --facebatch BIN
    --detector FILE.onnx --bench DIR --loose DIR --loose-labels CSV --samples DIR --work DIR
    --out docs/det-passes
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
PROBE, CANDIDATE_PX, REGION = 0.01, 64, 3.0


def detect(facebatch: str, photos: str, size: int, out: str,
           threshold: float = LOW) -> tuple[dict, dict, float]:
    t = time.perf_counter()
    subprocess.run([facebatch, "--no-progress", "-q", "classify", photos, "--out", out,
                    "--faces", "detect", "--det-size", str(size), "--det-threshold", str(threshold),
                    "--max-faces", "512", "--max-error-rate", "1"], check=True, capture_output=True)
    wall = time.perf_counter() - t
    faces, size_of = collections.defaultdict(list), {}
    for r in pq.read_table(out).to_pylist():
        size_of[r["path"]] = (r["width"], r["height"])
        faces[r["path"]]
        if r["status"] == "ok" and r["det_score"] is not None:
            faces[r["path"]].append((r["det_score"], (r["box_x1"], r["box_y1"], r["box_x2"], r["box_y2"]),
                                     r["label"]))
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
        smallest = min([min(b[2] - b[0], b[3] - b[1]) * scale for _, b, *_ in c], default=None)
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


def side(b) -> float:
    return max(b[2] - b[0], b[3] - b[1])


def within(f, c, k: float) -> bool:
    cx, cy, half = (c[0] + c[2]) / 2, (c[1] + c[3]) / 2, side(c) * k / 2
    return f[0] >= cx - half and f[2] <= cx + half and f[1] >= cy - half and f[3] <= cy + half


def regional(ref: dict, probe: dict, labelled: dict, size_of: dict, size: int, cost: dict) -> dict:
    """Candidates of a coarse probe run, the reference faces they cover, the labels of the faces
    the coarse pass finds against the reference (`labelled`: the coarse run at the usual
    threshold), and the modelled detector time of the two cascades (`cost`: pass_costs)."""
    full, coarse_ms = cost["passes"]["720x960"], cost["passes"]["480x640"]
    r = {"photos": len(size_of), "whole": 0, "candidates": 0, "lost": 0, "uncovered": 0, "large": 0,
         "matched": 0, "changed": 0, "capped": 0, "ms_candidates": 0.0, "ms_refined": 0.0}
    for p, (w, h) in size_of.items():
        ref_faces = [f for f in ref[p] if f[0] >= THRESHOLD]
        found = [f for f in probe[p] if f[0] >= THRESHOLD]
        coarse, scale = min(1.0, size / max(w, h, 1)), min(1.0, 960 / max(w, h, 1))
        for f in ref_faces:
            m = [g for g in labelled[p] if g[0] >= THRESHOLD and iou(f[1], g[1]) > 0.4]
            if m:
                g = max(m, key=lambda g: iou(f[1], g[1]))
                r["matched"] += 1
                r["changed"] += g[2] != f[2]
        if not found:
            r["whole"] += 1
            r["ms_candidates"] += coarse_ms + full
            r["ms_refined"] += coarse_ms + full
            continue
        cands = [f for f in probe[p] if f[0] < THRESHOLD and side(f[1]) * coarse <= CANDIDATE_PX]
        r["candidates"] += len(cands)

        def regions(faces: list) -> float:
            return sum(region_ms(cost, max(128.0, REGION * side(f[1]) * scale)) for f in faces)

        # Regions that would cost more than a whole pass are replaced by one.
        r["capped"] += regions(cands + found) > full
        r["ms_candidates"] += coarse_ms + min(full, regions(cands))
        r["ms_refined"] += coarse_ms + min(full, regions(cands + found))
        for f in ref_faces:
            if any(iou(f[1], g[1]) > 0.4 for g in found):
                continue
            r["lost"] += 1
            if not any(within(f[1], c[1], REGION) for c in cands):
                r["uncovered"] += 1
                r["large"] += side(f[1]) * coarse > CANDIDATE_PX
    return r


def evaluate(facebatch: str, labels: str, size: int) -> dict:
    out = subprocess.run([facebatch, "--no-progress", "-q", "eval", labels, "--faces", "detect",
                          "--det-size", str(size), "--json"], check=True, capture_output=True, text=True)
    d = json.loads(out.stdout)
    return {"accuracy": d["accuracy"], "n": d["n"], "no_face": d["faces"]["no_face"],
            "end_to_end": d["faces"]["end_to_end_accuracy"]}


def pass_costs(detector: str) -> dict:
    """ms per detector call on one thread: the full and coarse passes, and square regions
    (fitted as a + b * side^2 for the model)."""
    o = {f"{h}x{w}": per_call_ms(detector, np.random.rand(1, 3, h, w).astype(np.float32) * 100, 2.0)
         for h, w in [(720, 960), (480, 640)]}
    sq = {n: per_call_ms(detector, np.random.rand(1, 3, n, n).astype(np.float32) * 100, 2.0)
          for n in [128, 192, 256]}
    b, a = np.polyfit([n * n for n in sq], list(sq.values()), 1)
    return {"passes": o, "squares": sq, "a": float(a), "b": float(b)}


def region_ms(c: dict, side_px: float) -> float:
    return c["a"] + c["b"] * side_px * side_px


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
    for a in ["--facebatch", "--detector", "--bench", "--loose", "--loose-labels", "--samples", "--work",
              "--out"]:
        ap.add_argument(a, required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    sets = {"e2e photos (4000x3000)": a.bench, "loose photos": a.loose, "group photos": a.samples}
    res = {"sets": {}, "pass_costs": pass_costs(a.detector)}
    for name, photos in sets.items():
        runs = {s: detect(a.facebatch, photos, s, os.path.join(a.work, f"{len(res['sets'])}-{s}.parquet"))
                for s in SIZES}
        ref, size_of, _ = runs[960]
        probe = detect(a.facebatch, photos, 640, os.path.join(a.work, f"{len(res['sets'])}-640-probe.parquet"),
                       PROBE)[0]
        res["sets"][name] = {"photos": len(size_of), "wall_s": {s: r[2] for s, r in runs.items()},
                             "coarse": {s: judge(ref, runs[s][0], size_of, s) for s in SIZES[1:]},
                             "reference_faces": judge(ref, ref, size_of, 960)["reference_faces"],
                             "regional": regional(ref, probe, runs[640][0], size_of, 640,
                                                                  res["pass_costs"])}
    res["loose_eval"] = {s: evaluate(a.facebatch, a.loose_labels, s) for s in [960, 640]}
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
    c = r["pass_costs"]
    full, coarse = c["passes"]["720x960"], c["passes"]["480x640"]
    lines += ["", "## Regional re-detection", "",
              f"A coarse run at 640 px with a probe threshold of {PROBE}: candidates are its boxes scored "
              f"{PROBE}-{THRESHOLD} and at most {CANDIDATE_PX} px at that scale. A reference face missed at "
              f"640 px is covered when it lies inside the square of {REGION:g}x a candidate's side (a region a "
              "second pass at 960 px would search; at least 128 px there), or when the photo has no coarse "
              "face (re-detected whole). Labels: the faces found at 640 px against the same faces at 960 px.", "",
              "| photo set | photos re-detected whole | candidates | faces missed at 640 px | of them not covered (larger than 64 px at 640) | faces found at 640 px | labels changed |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, s in r["sets"].items():
        g = s["regional"]
        lines.append(f"| {name} | {g['whole']} of {g['photos']} | {g['candidates']} | {g['lost']} | "
                     f"{g['uncovered']} ({g['large']}) | {g['matched']} | {g['changed']} ({100 * g['changed'] / max(g['matched'], 1):.1f}%) |")
    ev = r["loose_eval"]
    lines += ["", "`facebatch eval --faces detect` on the loose photos (their labels):", ""]
    for size, e in ev.items():
        lines.append(f"- `--det-size {size}`: accuracy on the {e['n']} faces found {100 * e['accuracy']:.2f}%, "
                     f"{e['no_face']} photos without a face, end to end {100 * e['end_to_end']:.2f}%.")
    sq = ", ".join(f"{n}x{n}: {v:.2f} ms" for n, v in c["squares"].items())
    lines += ["", f"Detector calls on one thread, random input (the model's costs): 720x960 {full:.1f} ms, 480x640 {coarse:.1f} ms; squares {sq} "
              f"(fitted: {c['a']:.2f} ms + {1000 * c['b']:.4f} ms per 1,000 pixels).", "",
              "Modelled detector time per photo (ms, one thread): today one pass at 960 px; a cascade is the "
              "640 px pass, a whole 960 px pass for photos without a coarse face, and one region per candidate "
              f"(the square of {REGION:g}x its side at 960 px, at least 128 px; landmarks of the found faces from "
              "640 px), or also one region per found face (landmarks from 960 px). A photo whose regions would "
              "cost more than a whole 960 px pass gets the whole pass instead.", "",
              "| photo set | today | cascade, candidates only | cascade, faces refined too | photos whose regions cost more than a pass |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for name, s in r["sets"].items():
        g, n = s["regional"], s["regional"]["photos"]
        cands, refined = g["ms_candidates"] / n, g["ms_refined"] / n
        lines.append(f"| {name} | {full:.1f} | {cands:.1f} ({full / cands:.2f}x) | {refined:.1f} "
                     f"({full / refined:.2f}x) | {g['capped']} of {n} |")
    open(path, "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
