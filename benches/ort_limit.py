"""How close is classify's inference to this machine's limit? (docs/benchmarks.md)

In one run, on the default model (64x64 input, about 39.5 M multiply-adds per pass):
- single-thread float32 GEMM (numpy's OpenBLAS, 2048^3): what one core can do at best;
- ONNX Runtime, batch 64, spinning off: one session with 1 intra-op thread; one session
  with one thread per core; one one-thread session per core in separate processes (what
  facebatch's inference workers and the Python peer's processes do).

Usage: python benches/ort_limit.py [MODEL_DIR | FILE.onnx]   (with .cache/baseline-venv)
(a model folder means its model.onnx; name the card's int8 file to measure that copy)
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

_ARG = sys.argv[1] if len(sys.argv) > 1 else "models/facebatch-gender/v4"
MODEL = _ARG if _ARG.endswith(".onnx") else os.path.join(_ARG, "model.onnx")
# Multiply-adds per pass of the compact network, layer by layer (src/train/net.rs COMPACT_PLAN):
# 3x3 convs 3->16 @64x64, 16->32 @32x32, 32->64 and 64->64 @16x16, 64->128 and 128->128 @8x8,
# 128->256 @4x4, then dense 256->128->2.
MACS = (64 * 64 * 3 * 16 + 32 * 32 * 16 * 32 + 16 * 16 * (32 * 64 + 64 * 64)
        + 8 * 8 * (64 * 128 + 128 * 128) + 4 * 4 * 128 * 256) * 9 + 256 * 128 + 128 * 2
BATCH, PASSES = 64, 3072


def session(threads: int) -> ort.InferenceSession:
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(MODEL, o, providers=["CPUExecutionProvider"])


def passes_per_s(threads: int) -> float:
    s = session(threads)
    x = np.random.default_rng(0).random((BATCH, 3, 64, 64), dtype=np.float32)
    name = s.get_inputs()[0].name
    s.run(None, {name: x})
    t = time.perf_counter()
    for _ in range(PASSES // BATCH):
        s.run(None, {name: x})
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
    cores = os.cpu_count() or 1
    r = {"cores": cores, "mflop_per_pass": 2 * MACS / 1e6, "gemm_gflops_1_thread": gemm_gflops(),
         "ort_1_session_1_thread": passes_per_s(1),
         "ort_1_session_all_threads": passes_per_s(cores)}
    with mp.get_context("spawn").Pool(cores) as pool:
        r["ort_sessions_per_core_processes"] = sum(pool.map(passes_per_s, [1] * cores))
    r["ort_gflops_1_thread"] = r["ort_1_session_1_thread"] * r["mflop_per_pass"] / 1e3
    print(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
