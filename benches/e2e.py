"""End-to-end speed and memory of `facebatch classify` against the Python peer (benches/peer.py).

Run through scripts/bench-e2e.sh, which builds the release binary, provisions the pinned venv
and builds the two corpora (benches/make_corpora.py) first. In one run, on the same machine:

- crops: 5,000 JPEG face crops of 200x200, `--faces whole`;
- photos: 300 JPEG photos of 4000x3000 with faces on larger backgrounds, `--faces detect`.

On each corpus facebatch and the peer run alternately, ROUNDS times each (first a warm-up of
both that is not counted, so the page cache holds the corpus); the median wall time gives
images/s, and /usr/bin/time gives peak RSS. facebatch's own per-stage busy times give the
slowest stage's time alone (its busy time over the threads it ran on) and the pipeline
efficiency. Memory growth: facebatch on 10,000 and 100,000 crops (hard links to the 5,000),
peak RSS compared. Label agreement: every facebatch run's labels are compared with the first
one's, and with the peer's.

The inference limit: benches/ort_limit.py, in the same run, gives what ONNX Runtime alone
sustains for the model (one one-thread session per core, batch 64, no decoding); crops
report facebatch's rate as a share of it. It also counts the cost per face, MFLOP from the
ONNX graphs of every network the card runs (an ensemble's members summed). With --int8,
facebatch also runs with `--precision int8` (the card's int8 copies) in the same
alternation, with its own limit; for a card with a network that has no int8 copy the page
says so instead.

Writes OUT.md (a generated page) and OUT.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

import pyarrow.parquet as pq


def run_timed(cmd: list[str], env: dict | None = None) -> dict:
    """Runs cmd under /usr/bin/time; returns wall seconds, peak RSS (MB) and stdout."""
    tf = "/tmp/facebatch-bench-time.txt"
    t0 = time.perf_counter()
    res = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", tf] + cmd, capture_output=True,
                         text=True, env=env)
    wall = time.perf_counter() - t0
    if res.returncode not in (0, 1):
        sys.exit(f"bench-e2e: {' '.join(cmd)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    with open(tf) as f:
        rss_kb = int(f.read().strip().splitlines()[-1])
    return {"wall_s": wall, "peak_rss_mb": rss_kb / 1024, "stdout": res.stdout, "stderr": res.stderr}


def labels_of(path: str) -> dict:
    t = pq.read_table(path, columns=["path", "face_index", "label"]).to_pylist()
    return {(r["path"], r["face_index"]): r["label"] for r in t}


def stage_busy(stdout: str) -> dict:
    m = re.search(r"busy time per stage: (.*)", stdout)
    if not m:
        return {}
    return {k: float(v.rstrip("s")) for k, v in (p.strip().split(" ") for p in m.group(1).split(","))}


def count_images(root: str) -> int:
    n = 0
    for _, _, files in os.walk(root):
        n += sum(1 for f in files if f.lower().endswith((".jpg", ".jpeg")))
    return n


def hardlink_farm(src: str, dst: str, n: int) -> None:
    """dst/ holds n hard links cycling over src's JPEGs (built once)."""
    stamp = os.path.join(dst, ".count")
    if os.path.exists(stamp) and open(stamp).read() == str(n):
        return
    shutil.rmtree(dst, ignore_errors=True)
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(src) for f in fs if f.endswith(".jpg"))
    for i in range(n):
        sub = os.path.join(dst, f"{i // 1000:03d}")
        if i % 1000 == 0:
            os.makedirs(sub, exist_ok=True)
        os.link(files[i % len(files)], os.path.join(sub, f"{i:06d}.jpg"))
    with open(stamp, "w") as f:
        f.write(str(n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--facebatch", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--crops", required=True)
    ap.add_argument("--photos", required=True)
    ap.add_argument("--scratch", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--memory-sizes", default="10000,100000")
    ap.add_argument("--out", required=True, help="OUT.md and OUT.json are written")
    ap.add_argument("--command", required=True, help="the command line that reproduces this page")
    ap.add_argument("--int8", action="store_true", help="also run facebatch --precision int8")
    args = ap.parse_args()
    os.makedirs(args.scratch, exist_ok=True)
    peer = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer.py")
    cores = os.cpu_count() or 1
    results: dict = {"corpora": {}, "memory": {}, "agreement": {}, "limit": {}}
    card = json.load(open(os.path.join(args.model, "card.json")))
    networks = card.get("members") or [card]  # an ensemble's members, or the one network
    variants = {"float32": []}
    if args.int8:
        lacking = [m.get("name") or card["name"] for m in networks if not m.get("int8")]
        if lacking:
            # facebatch refuses --precision int8 for such a card; say so on the page.
            results["int8_not_run"] = (f"{', '.join(lacking)} has no int8 copy, so "
                                       "`--precision int8` is refused for this model")
        else:
            variants["int8"] = ["--int8"]
    limit_py = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ort_limit.py")

    def measure_limit() -> None:
        # Measured before and after the corpora; the higher (the quieter moment) is the limit.
        for v, flags in variants.items():
            print(f"bench-e2e: inference limit ({v})", file=sys.stderr)
            out = subprocess.run([sys.executable, limit_py, args.model] + flags, capture_output=True,
                                 text=True, check=True).stdout
            got = json.loads(out[out.index("{"):])
            fps = got["faces_per_s"]["ort_sessions_per_core_processes"]
            old = results["limit"].get(v, {}).get("faces_per_s", 0.0)
            if fps > old:
                results["limit"][v] = {"faces_per_s": fps, "mflops_per_face": got["mflops_per_face"],
                                       "networks": got["networks"]}

    measure_limit()

    def fb(corpus: str, faces: str, out: str, extra: list[str] = []) -> dict:
        return run_timed([args.facebatch, "--no-progress", "-q", "classify", corpus, "--out", out,
                          "--model", args.model, "--faces", faces] + extra)

    def py(corpus: str, faces: str, out: str) -> dict:
        return run_timed([sys.executable, peer, corpus, "--out", out, "--model", args.model,
                          "--faces", faces])

    for name, corpus, faces in [("crops", args.crops, "whole"), ("photos", args.photos, "detect")]:
        n = count_images(corpus)
        fo, po = os.path.join(args.scratch, f"{name}-fb.parquet"), os.path.join(args.scratch, f"{name}-py.parquet")
        print(f"bench-e2e: {name}: {n} images, warm-up", file=sys.stderr)
        io = os.path.join(args.scratch, f"{name}-fb-int8.parquet")
        fb(corpus, faces, fo)
        py(corpus, faces, po)
        base = labels_of(fo)
        fb_runs, py_runs, int8_runs = [], [], []
        for r in range(args.rounds):
            print(f"bench-e2e: {name}: round {r + 1}/{args.rounds}", file=sys.stderr)
            fb_runs.append(fb(corpus, faces, fo))
            if "int8" in variants:
                int8_runs.append(fb(corpus, faces, io, ["--precision", "int8"]))
            py_runs.append(py(corpus, faces, po))
            assert labels_of(fo) == base, "facebatch labels changed between runs"
        py_labels = labels_of(po)
        common = set(base) & set(py_labels)
        agree = sum(base[k] == py_labels[k] for k in common)
        # Thread and batch settings must not change a label.
        alt = os.path.join(args.scratch, f"{name}-fb-alt.parquet")
        fb(corpus, faces, alt, ["--threads", "1", "--batch-size", "7"])
        same_alt = labels_of(alt) == base
        # One decode thread and one inference worker on separate cores: each stage's cost
        # per item without the other stages' threads competing for its core.
        solo = stage_busy(fb(corpus, faces, alt, ["--threads", "1", "--infer-workers", "1"])["stdout"])
        fb_wall = statistics.median(r["wall_s"] for r in fb_runs)
        py_wall = statistics.median(r["wall_s"] for r in py_runs)
        busy = stage_busy(min(fb_runs, key=lambda r: r["wall_s"])["stdout"])
        parallel = {"decode", "locate", "tensorize", "infer"}
        alone = {k: v / (cores if k in parallel else 1) for k, v in busy.items()}
        slowest = max(alone, key=alone.get) if alone else None
        results["corpora"][name] = {
            "images": n, "faces_mode": faces,
            "facebatch": {"wall_s": [r["wall_s"] for r in fb_runs], "images_per_s": n / fb_wall,
                          "peak_rss_mb": max(r["peak_rss_mb"] for r in fb_runs), "busy_s": busy},
            "peer": {"wall_s": [r["wall_s"] for r in py_runs], "images_per_s": n / py_wall,
                     "peak_rss_mb": max(r["peak_rss_mb"] for r in py_runs)},
            "ratio": py_wall / fb_wall,
            "uncontended_busy_s": solo,
            "vs_limit": (n / fb_wall) / results["limit"]["float32"]["faces_per_s"],
            "slowest_stage": slowest,
            "slowest_stage_alone_s": alone.get(slowest) if slowest else None,
            "e2e_vs_slowest_stage": (alone[slowest] / fb_wall) if slowest else None,
            # The stages share the cores: all their work over all cores bounds the wall time.
            "cpu_bound_s": sum(alone.values()) if alone else None,
            "e2e_vs_all_work": (sum(alone.values()) / fb_wall) if alone else None,
        }
        if int8_runs:
            i_wall = statistics.median(r["wall_s"] for r in int8_runs)
            i_labels = labels_of(io)
            results["corpora"][name]["int8"] = {
                "wall_s": [r["wall_s"] for r in int8_runs], "images_per_s": n / i_wall,
                "ratio": py_wall / i_wall, "vs_float32": fb_wall / i_wall,
                "vs_limit": (n / i_wall) / results["limit"]["int8"]["faces_per_s"],
                "peak_rss_mb": max(r["peak_rss_mb"] for r in int8_runs),
                "busy_s": stage_busy(min(int8_runs, key=lambda r: r["wall_s"])["stdout"]),
                "labels_equal_float32": sum(base[k] == i_labels.get(k) for k in base),
                "rows": len(i_labels)}
        results["agreement"][name] = {"rows_compared": len(common), "labels_equal": agree,
                                      "facebatch_rows": len(base), "peer_rows": len(py_labels),
                                      "same_labels_threads1_batch7": same_alt}

    measure_limit()
    for name, c in results["corpora"].items():
        c["vs_limit"] = c["facebatch"]["images_per_s"] / results["limit"]["float32"]["faces_per_s"]
        if "int8" in c:
            c["int8"]["vs_limit"] = c["int8"]["images_per_s"] / results["limit"]["int8"]["faces_per_s"]
    for size in [int(s) for s in args.memory_sizes.split(",") if s]:
        farm = os.path.join(args.scratch, f"farm-{size}")
        print(f"bench-e2e: memory: {size} crops", file=sys.stderr)
        hardlink_farm(args.crops, farm, size)
        r = fb(farm, "whole", os.path.join(args.scratch, f"farm-{size}.parquet"))
        results["memory"][str(size)] = {"peak_rss_mb": r["peak_rss_mb"], "wall_s": r["wall_s"],
                                        "images_per_s": size / r["wall_s"]}

    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    results["machine"] = {"arch": platform.machine(), "cores": cores, "cpu": cpu,
                          "kernel": platform.release(), "python": platform.python_version()}
    fv = subprocess.run([args.facebatch, "--version"], capture_output=True, text=True).stdout.strip()
    results["facebatch_version"] = fv
    results["generated"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    results["command"] = args.command
    with open(args.out + ".json", "w") as f:
        json.dump(results, f, indent=2)
    write_md(args.out + ".md", results, args)
    print(f"bench-e2e: wrote {args.out}.md and {args.out}.json", file=sys.stderr)


def write_md(path: str, r: dict, args) -> None:
    m = r["machine"]
    lines = [
        "# End-to-end: facebatch against a Python peer\n",
        f"Generated {r['generated']} by `{r['command']}`. Every number below was computed by "
        "that script (benches/e2e.py); do not edit them by hand.\n",
        f"- **Machine**: {m['arch']}, {m['cores']} cores ({m['cpu']}), Linux {m['kernel']}; "
        "shared, noisy: compare the ratios, which come from the same run.",
        f"- **facebatch**: `{r['facebatch_version']}`, release build, model `{args.model}`, defaults "
        "(`--threads` = all cores for decode, detect and preprocess; as many inference workers, "
        "each with its own one-thread ONNX Runtime session; one thread per detector session).",
        f"- **Peer**: `benches/peer.py` on Python {m['python']}: Pillow with JPEG draft (DCT-scaled) "
        "decoding, numpy, onnxruntime with the same ONNX files, pyarrow; multiprocessing over all "
        "cores; on photos the same RetinaFace detector and the same 5-point alignment in numpy "
        "(each member of an ensemble on its own template), combined as the card says.",
        f"- Each side ran {args.rounds} times per corpus after an uncounted warm-up, alternating; "
        "images/s from the median wall time; peak RSS from `/usr/bin/time` (the peer's is its "
        "parent process; its workers are separate processes).\n",
        "| corpus | images | facebatch images/s | peer images/s | ratio | facebatch peak RSS | "
        "slowest stage alone | end-to-end vs slowest stage | all stages' work on all cores | end-to-end vs all work |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for name, c in r["corpora"].items():
        lines.append(
            f"| {name} (`--faces {c['faces_mode']}`) | {c['images']} | {c['facebatch']['images_per_s']:.1f} | "
            f"{c['peer']['images_per_s']:.1f} | **{c['ratio']:.2f}x** | {c['facebatch']['peak_rss_mb']:.0f} MB | "
            f"{c['slowest_stage']} {c['slowest_stage_alone_s']:.1f} s | {100 * c['e2e_vs_slowest_stage']:.0f}% | "
            f"{c['cpu_bound_s']:.1f} s | {100 * c['e2e_vs_all_work']:.0f}% |")
    lim = r.get("limit", {})
    if lim.get("float32"):
        nets = lim["float32"]["networks"]
        lines += ["", "## Cost per face\n",
                  "Counted by `benches/ort_limit.py` from the ONNX graphs (2 x the multiply-adds "
                  "of every convolution and dense layer at batch 1), times each network's passes "
                  "per face (2 with test-time flip); the card's own figure beside it.\n",
                  "| network | file | passes per face | MFLOP per pass (graph) | card's MFLOP per pass | "
                  "ORT alone, passes/s |", "| --- | --- | ---: | ---: | ---: | ---: |"]
        for n in nets:
            card_m = f"{n['card_mflops']:.1f}" if n.get("card_mflops") else "-"
            lines.append(f"| {n['name']} | `{os.path.basename(n['file'])}` | {n['passes']} | "
                         f"{n['mflops_per_pass']:.1f} | {card_m} | "
                         f"{n['ort_sessions_per_core_processes']:.0f} |")
        lines.append(f"| **per face** | | | **{lim['float32']['mflops_per_face']:.1f}** | | "
                     f"{lim['float32']['faces_per_s']:.0f} faces/s |")
    if lim:
        lines += ["", "## Against the inference limit\n",
                  "`benches/ort_limit.py` in the same run: what ONNX Runtime alone sustains for the "
                  "model, one one-thread session per core, batch 64, no decoding. The bound that "
                  "decoding leaves: the cores shared by decoding and inference at that limit, with "
                  "each crop's other work (decode, fit, tensor, sink) as measured in a run with one "
                  "decode thread and one inference worker (so no stage competes for a core).\n",
                  "| model | ORT alone, faces/s | facebatch on crops, images/s | share of the limit | "
                  "other work per crop | bound with that work | share of the limit at the bound |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        c = r["corpora"].get("crops")
        for v, l in lim.items():
            if not c:
                break
            got = c["facebatch"] if v == "float32" else c.get("int8")
            if not got:
                continue
            solo = c.get("uncontended_busy_s", {})
            other = sum(t for k, t in solo.items() if k != "infer") / c["images"]
            cores = m["cores"]
            bound = cores / (other + cores / l["faces_per_s"])
            lines.append(f"| {v} | {l['faces_per_s']:.0f} | {got['images_per_s']:.0f} | "
                         f"**{100 * got['images_per_s'] / l['faces_per_s']:.0f}%** | "
                         f"{1000 * other:.3f} ms | {bound:.0f} | {100 * bound / l['faces_per_s']:.0f}% |")
    if r.get("int8_not_run"):
        lines += ["", "## `--precision int8`\n", f"Not run: {r['int8_not_run']}."]
    if any("int8" in c for c in r["corpora"].values()):
        lines += ["", "## `--precision int8`\n",
                  "| corpus | facebatch float32 images/s | facebatch int8 images/s | int8 / float32 | "
                  "int8 / peer | labels equal to float32 |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for name, c in r["corpora"].items():
            i = c.get("int8")
            if i:
                lines.append(f"| {name} | {c['facebatch']['images_per_s']:.1f} | {i['images_per_s']:.1f} | "
                             f"{i['vs_float32']:.2f}x | {i['ratio']:.2f}x | "
                             f"{i['labels_equal_float32']} of {i['rows']} |")
    lines += ["", "Wall times (s): " + "; ".join(
        f"{n}: facebatch {', '.join(f'{w:.1f}' for w in c['facebatch']['wall_s'])}, "
        f"peer {', '.join(f'{w:.1f}' for w in c['peer']['wall_s'])}" for n, c in r["corpora"].items()), ""]
    lines += ["Stage busy times of facebatch's fastest run (s; for decode, detect, preprocess and infer "
              "the thread-seconds spent on their work, so alone on all cores they take busy / cores; "
              "the stages share the cores, so the sum of those is the least wall time the run can "
              "take): " + "; ".join(
                  f"{n}: " + ", ".join(f"{k} {v:.1f}" for k, v in c["facebatch"]["busy_s"].items())
                  for n, c in r["corpora"].items()), ""]
    lines += ["## Labels\n", "| corpus | rows compared | facebatch = peer | facebatch, `--threads 1 --batch-size 7` = default |",
              "| --- | ---: | ---: | --- |"]
    for name, a in r["agreement"].items():
        lines.append(f"| {name} | {a['rows_compared']} (facebatch {a['facebatch_rows']}, peer {a['peer_rows']}) | "
                     f"{a['labels_equal']} | {'yes' if a['same_labels_threads1_batch7'] else 'NO'} |")
    lines += ["", "## Memory\n", "| crops | peak RSS | images/s |", "| ---: | ---: | ---: |"]
    for size, v in r["memory"].items():
        lines.append(f"| {int(size):,} | {v['peak_rss_mb']:.0f} MB | {v['images_per_s']:.0f} |")
    sizes = list(r["memory"].values())
    if len(sizes) >= 2:
        lines += ["", f"Growth from the smallest to the largest run: "
                  f"{100 * (sizes[-1]['peak_rss_mb'] / sizes[0]['peak_rss_mb'] - 1):+.1f}%."]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
