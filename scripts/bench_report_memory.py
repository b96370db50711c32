#!/usr/bin/env python3
"""Peak memory and time of `facebatch report` against the number of rows (issue 14: a report
over 100,000 rows finishes in bounded memory).

Classifies data/samples once, then writes bigger outputs by repeating its rows (each copy
under its own path, so every row is a distinct face of a real photo) and runs `report` on
each under /usr/bin/time. Needs pyarrow (scripts/ci-interop.sh's venv has it):

    .cache/interop-venv/bin/python scripts/bench_report_memory.py [--rows 1000 10000 100000]
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--binary", default=str(REPO / "target/release/facebatch"))
    ap.add_argument("--limit", type=int, default=300, help="report --limit (faces per gallery)")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fb-report-mem-"))
    try:
        base = work / "base.parquet"
        subprocess.run([a.binary, "--no-progress", "-q", "classify", str(REPO / "data/samples"),
                        "--out", str(base)], check=False, stdout=subprocess.DEVNULL)
        table = pq.read_table(base)
        meta = pq.read_metadata(base).metadata
        print("| rows | report (s) | peak RSS (MiB) | faces shown |")
        print("|---:|---:|---:|---:|")
        for n in a.rows:
            copies = -(-n // table.num_rows)
            parts = []
            for k in range(copies):
                t = table
                # Each copy is its own photo path, so rows stay distinct faces; the photos
                # they point at exist, so thumbnails are really cut.
                t = t.set_column(t.schema.get_field_index("root"), "root",
                                 pa.array([str(REPO / "data/samples")] * t.num_rows))
                parts.append(t)
            big = pa.concat_tables(parts).slice(0, n)
            out = work / f"rows{n}.parquet"
            pq.write_table(big.replace_schema_metadata(meta), out, row_group_size=65536)
            t0 = time.time()
            with tempfile.NamedTemporaryFile("r") as tf:
                p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", tf.name, a.binary,
                                    "--no-progress", "report", str(out), "--out", str(work / f"r{n}"),
                                    "--limit", str(a.limit)],
                                   capture_output=True, text=True)
                rss = int(tf.read().strip().splitlines()[-1]) / 1024
            secs = time.time() - t0
            shown = p.stdout.strip().split(" faces shown")[0].split(", ")[-1] if p.returncode == 0 else "exit %d" % p.returncode
            print(f"| {n:,} | {secs:.1f} | {rss:.0f} | {shown} |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
