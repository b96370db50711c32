#!/usr/bin/env python3
"""Reads a `facebatch run` dataset folder of two runs (the second adding one file) with
DuckDB's Hive glob and pyarrow's dataset reader, and checks what analysts rely on. Exit
status 0 when everything holds.

    python scripts/check_dataset_interop.py labels/
"""
import os
import sys

import duckdb
import pyarrow.dataset as ds


def main(out: str) -> int:
    assert os.path.isdir(os.path.join(out, "_index")), "a job run keeps its index"
    glob = os.path.join(out, "*", "*.parquet")
    con = duckdb.connect()
    days = con.execute(
        f"select dt::varchar, count(*), count(distinct model) from read_parquet('{glob}', "
        f"hive_partitioning=true) group by dt order by dt"
    ).fetchall()
    assert [d[0] for d in days] == ["2026-12-01", "2026-12-02"], days
    assert days[1][1] == 1, f"day two holds only the new file: {days}"
    assert all(d[2] == 1 for d in days), days
    new = con.execute(
        f"select path, status, model from read_parquet('{glob}', hive_partitioning=true) "
        f"where dt = '2026-12-02'"
    ).fetchall()
    assert new[0][0] == "faces/female/new.bmp" and new[0][1] == "ok", new
    assert new[0][2].startswith("facebatch-gender/"), new
    # pyarrow's dataset reader skips `_`-prefixed folders by itself.
    table = ds.dataset(out, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == sum(d[1] for d in days), (table.num_rows, days)
    print(f"duckdb hive glob: {days}; pyarrow dataset: {table.num_rows} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
