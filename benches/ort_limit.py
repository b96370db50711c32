"""How close is classify's inference to this machine's limit, and what does a face cost?
(docs/benchmarks.md, docs/benchmarks-e2e.md)

For a model folder, every network its card runs per face (one for a single-network card,
each member of an ensemble card; docs/model-card.md), in one run:
- MFLOP per pass counted from the ONNX graph itself (2 x the multiply-adds of every Conv,
  ConvTranspose, Gemm and MatMul, with the shapes ONNX shape inference gives at batch 1),
  times the passes per face (2 with the card's test-time flip), summed over the networks:
  the cost per face, against the card's own `mflops_per_pass`;
- ONNX Runtime, batch 64, spinning off, on random input of the graph's own input size: one
  session with 1 intra-op thread; one session with one thread per core; one one-thread
  session per core in separate processes (what facebatch's inference workers and the
  Python peer's processes do). The faces per second of the whole card: one face needs
  every network's passes, so 1 / sum(passes / passes_per_s);
- single-thread float32 GEMM (numpy's OpenBLAS, 2048^3): what one core can do at best.

Usage: python benches/ort_limit.py MODEL_DIR [--int8] | FILE.onnx   (with .cache/baseline-venv)
(--int8 measures each network's int8 copy named by the card, and fails when one has none;
a FILE.onnx is measured alone, one pass per face)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import shape_inference  # noqa: E402

BATCH, PASSES = 64, 3072


def networks(model: str, int8: bool) -> list[dict]:
    """(name, file, passes per face, card MFLOP per pass) of each network a face goes through."""
    if model.endswith(".onnx"):
        return [{"name": os.path.basename(model), "file": model, "passes": 1, "card_mflops": None}]
    with open(os.path.join(model, "card.json")) as f:
        card = json.load(f)
    members = card.get("members") or [card]  # a flat (format 1) card is its own one member
    out = []
    for i, m in enumerate(members):
        name = m.get("name") or card.get("name") or f"member {i}"
        entry = m.get("int8") if int8 else m.get("onnx")
        if entry is None:
            sys.exit(f"ort_limit: {name} has no {'int8' if int8 else 'onnx'} file in {model}/card.json")
        out.append({"name": name, "file": os.path.join(model, entry["file"]),
                    "passes": 2 if m.get("test_time_flip") else 1,
                    "card_mflops": (m.get("architecture") or {}).get("mflops_per_pass")})
    return out


def _dims(vi) -> list[int]:
    return [d.dim_value for d in vi.type.tensor_type.shape.dim]


def graph_mflops(path: str) -> float:
    """2 x multiply-adds of one pass at batch 1, counted from the graph's shapes."""
    m = onnx.load(path)
    inp = m.graph.input[0]
    for d in inp.type.tensor_type.shape.dim[:1]:
        d.ClearField("dim_param")
        d.dim_value = 1
    m = shape_inference.infer_shapes(m)
    shapes = {vi.name: _dims(vi) for vi in list(m.graph.value_info) + list(m.graph.input)
              + list(m.graph.output)}
    shapes.update({t.name: list(t.dims) for t in m.graph.initializer})
    # A QDQ (int8) graph's weights pass through DequantizeLinear: follow it to the initializer.
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in shapes:
            shapes.setdefault(n.output[0], shapes[n.input[0]])
    macs = 0
    for n in m.graph.node:
        if n.op_type in ("Conv", "ConvTranspose"):
            w, y = shapes.get(n.input[1]), shapes.get(n.output[0])
            if not w or not y:
                sys.exit(f"ort_limit: no shape for {n.name or n.op_type} in {path}")
            # weight (Cout, Cin/group, kh, kw): each output element takes Cin/group*kh*kw.
            macs += int(np.prod(y)) * int(np.prod(w[1:]))
        elif n.op_type in ("Gemm", "MatMul"):
            a, y = shapes.get(n.input[0]), shapes.get(n.output[0])
            if not a or not y:
                sys.exit(f"ort_limit: no shape for {n.name or n.op_type} in {path}")
            trans_a = any(at.name == "transA" and at.i for at in n.attribute)
            k = a[-2] if trans_a else a[-1]
            macs += int(np.prod(y)) * k
    return 2 * macs / 1e6


def session(path: str, threads: int) -> ort.InferenceSession:
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def passes_per_s(args: tuple[str, int]) -> float:
    path, threads = args
    s = session(path, threads)
    i = s.get_inputs()[0]
    x = np.random.default_rng(0).random((BATCH, *i.shape[1:]), dtype=np.float32)
    s.run(None, {i.name: x})
    t = time.perf_counter()
    for _ in range(PASSES // BATCH):
        s.run(None, {i.name: x})
    return PASSES / (time.perf_counter() - t)


def gemm_gflops() -> float:
    a = np.random.default_rng(1).random((2048, 2048), dtype=np.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(5))
    return 2 * 2048**3 / best / 1e9


def _timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", default="models/facebatch-gender/v5",
                    help="model folder (card.json) or one .onnx file")
    ap.add_argument("--int8", action="store_true", help="the card's int8 copies")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    nets = networks(args.model, args.int8)
    r: dict = {"model": args.model, "precision": "int8" if args.int8 else "float32",
               "cores": cores, "gemm_gflops_1_thread": gemm_gflops(), "networks": []}
    seconds_per_face = {"ort_1_session_1_thread": 0.0, "ort_1_session_all_threads": 0.0,
                        "ort_sessions_per_core_processes": 0.0}
    with mp.get_context("spawn").Pool(cores) as pool:
        for n in nets:
            n["mflops_per_pass"] = graph_mflops(n["file"])
            n["ort_1_session_1_thread"] = passes_per_s((n["file"], 1))
            n["ort_1_session_all_threads"] = passes_per_s((n["file"], cores))
            n["ort_sessions_per_core_processes"] = sum(pool.map(passes_per_s, [(n["file"], 1)] * cores))
            n["ort_gflops_1_thread"] = n["ort_1_session_1_thread"] * n["mflops_per_pass"] / 1e3
            for k in seconds_per_face:
                seconds_per_face[k] += n["passes"] / n[k]
            r["networks"].append(n)
    r["mflops_per_face"] = sum(n["mflops_per_pass"] * n["passes"] for n in nets)
    r["faces_per_s"] = {k: 1 / v for k, v in seconds_per_face.items()}
    print(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
