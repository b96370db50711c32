#!/usr/bin/env python3
"""Peak memory of `facebatch classify` on very large images, against --threads and
--decode-memory (issue 13: twelve 8192x8192 16-bit PNGs once took 2.7 GB with 2 threads).

Writes N large 16-bit RGB PNGs (flat colour, so they are small on disk and quick to write),
then runs classify on them under /usr/bin/time and reports each run's peak RSS. Standard
library only; run by hand, never in CI:

    scripts/bench_decode_memory.py [--images 12] [--side 8192] [--out docs/decode-memory.md]
"""

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def png_rgb16(path: Path, side: int, shade: int) -> None:
    """A side x side 16-bit RGB PNG of one colour, streamed row by row."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + struct.pack(">HHH", shade, 65535 - shade, shade // 2) * side
    comp = zlib.compressobj(1)
    idat = bytearray()
    for _ in range(side):
        idat += comp.compress(row)
    idat += comp.flush()
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 16, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", bytes(idat)))
        f.write(chunk(b"IEND", b""))


def peak_rss_mib(cmd: list) -> tuple:
    """Runs cmd under /usr/bin/time; returns (peak RSS in MiB, exit code)."""
    with tempfile.NamedTemporaryFile("r") as t:
        p = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", t.name, *cmd],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return int(t.read().strip().splitlines()[-1]) / 1024, p.returncode


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--side", type=int, default=8192)
    ap.add_argument("--binary", default=str(REPO / "target/release/facebatch"))
    ap.add_argument("--out", help="write the table as Markdown here too")
    ap.add_argument("--label", default="this build", help="names the binary in the table")
    ap.add_argument(
        "--no-budget", action="store_true", help="only default settings (a build without --decode-memory)"
    )
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fb-decode-mem-"))
    try:
        photos = work / "photos"
        photos.mkdir()
        for i in range(a.images):
            png_rgb16(photos / f"big{i:02d}.png", a.side, 1000 * (i + 1))
        decoded = a.side * a.side * (6 + 3) / 2**20
        rows = []
        configs = [(2, None), (2, 512), (4, None), (4, 512), (8, None), (8, 512)]
        if a.no_budget:
            configs = [c for c in configs if c[1] is None]
        for threads, budget in configs:
            cmd = [
                a.binary, "--no-progress", "-q", "classify", str(photos),
                "--out", str(work / "o.parquet"), "--faces", "whole",
                "--max-pixels", str(a.side * a.side), "--threads", str(threads),
            ]
            if budget:
                cmd += ["--decode-memory", str(budget)]
            rss, code = peak_rss_mib(cmd)
            rows.append((threads, budget or ("1024" if not a.no_budget else "none"), rss, code))
            print(f"{a.label}: threads {threads}  --decode-memory {rows[-1][1]}  peak RSS {rss:7.0f} MiB  exit {code}", flush=True)
        text = [
            f"{a.images} PNGs, {a.side}x{a.side} 16-bit RGB (one decode: {decoded:.0f} MiB "
            "for the 16-bit buffer and its 8-bit copy), `--faces whole`:",
            "",
            "| build | --threads | --decode-memory (MiB) | peak RSS (MiB) | exit |",
            "|---|---:|---:|---:|---:|",
        ]
        text += [f"| {a.label} | {t} | {b} | {r:.0f} | {c} |" for t, b, r, c in rows]
        if a.out:
            Path(a.out).write_text("\n".join(text) + "\n")
        print("\n".join(text))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
