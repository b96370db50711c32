#!/usr/bin/env python3
"""Reads a facebatch classify output with the analysts' tools (pyarrow and DuckDB) and
checks the output contract. Exit status 0 when everything holds.

    python scripts/check_interop.py results.parquet
"""
import hashlib
import json
import os
import sys

import duckdb
import pyarrow.parquet as pq


def main(path: str) -> int:
    table = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in (pq.read_metadata(path).metadata or {}).items()}
    card = json.loads(meta["facebatch.model_card"])
    labels = card["labels"]
    expected = (
        ["root", "path", "face_index", "status", "error", "error_kind", "label", "confidence"]
        + [f"p_{l}" for l in labels]
        + ["face_count", "crop", "det_score", "box_x1", "box_y1", "box_x2", "box_y2", "landmarks"]
        + ["width", "height", "bytes", "modified", "model"]
    )
    names = table.schema.names
    assert names[: len(expected)] == expected, names
    assert str(table.schema.field("confidence").type) == "float", table.schema
    for l in labels:
        assert str(table.schema.field(f"p_{l}").type) == "float"
    # Every row names the model that made it (a union of several versions' outputs).
    models = set(table.column("model").to_pylist())
    assert models == {f"{meta['facebatch.model_name']}/{meta['facebatch.model_version']}"}, models
    assert os.path.isabs(meta["facebatch.base"]), meta["facebatch.base"]
    for key in ["facebatch.version", "facebatch.run_id", "facebatch.started_at", "facebatch.finished_at", "facebatch.model_sha256"]:
        assert meta.get(key), key
    if "members" in card:
        # An ensemble's identity hashes its members' files and combining step
        # (docs/model-card.md); the file carries the card it ran.
        sha = meta["facebatch.model_sha256"]
        assert len(sha) == 64 and all(c in "0123456789abcdef" for c in sha), sha
        # Every member's file as shipped in this checkout (models/NAME/VERSION/).
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        folder = os.path.join(repo, "models", card["name"], meta["facebatch.model_version"])
        for m in card["members"]:
            with open(os.path.join(folder, m["onnx"]["file"]), "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == m["onnx"]["sha256"], m["name"]
    else:
        assert meta["facebatch.model_sha256"] == card["onnx"]["sha256"]

    con = duckdb.connect()
    rows = con.execute(
        f"select status, count(*) from read_parquet('{path}') group by status order by status"
    ).fetchall()
    by_status = dict(rows)
    assert set(by_status) <= {"ok", "no_face", "error"}, by_status
    bad = con.execute(
        f"select count(*) from read_parquet('{path}') where (status = 'error') != (error is not null) "
        f"or (status = 'error') != (error_kind is not null) "
        f"or (status = 'ok') != (label is not null) "
        f"or (status = 'ok') != (face_index is not null) "
        f"or (status = 'no_face' and face_count != 0) "
        f"or (crop = 'aligned') != (det_score is not null) "
        f"or (crop = 'aligned' and len(landmarks) != 10)"
    ).fetchone()[0]
    assert bad == 0, f"{bad} rows break the status/error/label/face contract"
    # One row per file unless faces were detected; face_index runs 0..face_count-1.
    bad = con.execute(
        f"select count(*) from (select root, path, count(*) n, max(face_count) c, "
        f"count(distinct face_index) d from read_parquet('{path}') group by root, path) "
        f"where n > 1 and (n != c or d != n)"
    ).fetchone()[0]
    assert bad == 0, f"{bad} files with inconsistent face rows"
    faces = json.loads(meta["facebatch.faces"])
    assert faces["mode"] in ("auto", "detect", "whole"), faces
    top = con.execute(
        f"select label, count(*) n, round(avg(confidence), 3) from read_parquet('{path}') "
        f"where status = 'ok' group by label order by label"
    ).fetchall()
    files = con.execute(f"select count(distinct (root, path)) from read_parquet('{path}')").fetchone()[0]
    print(f"pyarrow: {table.num_rows} rows ({files} files), {len(names)} columns; duckdb: {by_status}; per label: {top}; faces: {faces['mode']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
