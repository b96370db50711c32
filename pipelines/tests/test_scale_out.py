"""Scale-out recipes against the real facebatch binary, real Ray and real Parquet.

Run through scripts/scale-out-test.sh (pinned venv; FACEBATCH_BIN names the binary):

- `--shard K/N`: the union of N shard runs is exactly one unsharded run; each file is in
  the shard that the documented hash (FNV-1a + fmix64) names; a finished shard is not touched again.
- pipelines/ray_classify.py on a two-node local Ray cluster, with one task's Ray worker
  SIGKILLed after the shard wrote a checkpoint: Ray retries it, the retry resumes, and no
  row is lost or repeated.
- pipelines/slurm/facebatch-array.sbatch run with bash for every array index, and
  pipelines/k8s/indexed-job.yaml's container command run for every completion index.
- The cron line and the systemd units: the flock keeps runs from overlapping.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("FACEBATCH_BIN", REPO / "target/release/facebatch")).resolve()
MODEL = REPO / "models/facebatch-gender/v3"
DRIVER = REPO / "pipelines/ray_classify.py"
SBATCH = REPO / "pipelines/slurm/facebatch-array.sbatch"
K8S_JOB = REPO / "pipelines/k8s/indexed-job.yaml"
CRON = REPO / "pipelines/cron/facebatch-nightly.cron"
SERVICE = REPO / "pipelines/systemd/facebatch-nightly.service"
TIMER = REPO / "pipelines/systemd/facebatch-nightly.timer"

# Fast, deterministic classify options: no face detection, one thread, small batches.
WHOLE = ["--faces", "whole", "--model", str(MODEL), "--threads", "1", "--batch-size", "2"]
COLUMNS = ["root", "path", "status", "label", "confidence"]
Key = tuple[str, str]


# ---------------------------------------------------------------- helpers


def path_hash(rel: str) -> int:
    """FNV-1a, 64 bits, of the relative path with `/` separators, then MurmurHash3's
    fmix64 finaliser (docs/operations.md)."""
    h = 0xCBF29CE484222325
    for b in rel.replace("\\", "/").encode():
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    for m in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53):
        h = ((h ^ (h >> 33)) * m) & 0xFFFFFFFFFFFFFFFF
    return h ^ (h >> 33)


def tag(k: int, n: int) -> str:
    return f"{k:05d}-of-{n:05d}"


def facebatch(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), "--no-progress", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def explain(r: subprocess.CompletedProcess[str]) -> str:
    return f"{r.args!r} exited {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


def make_photos(root: Path, generated: int) -> list[str]:
    """Real sample faces (with their broken file), `generated` JPEGs and PNGs in nested
    folders (some names non-ASCII, with spaces) and one more broken file. Returns the
    relative paths, sorted."""
    samples = REPO / "data/samples/faces"
    for src in sorted(samples.rglob("*")):
        if src.is_file():
            dst = root / "samples" / src.relative_to(samples)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    folders = ["gen", "gen/a", "gen/b/c", "gen/ünïcödé dir"]
    for i in range(generated):
        d = root / folders[i % len(folders)]
        d.mkdir(parents=True, exist_ok=True)
        img = Image.new("RGB", (96, 112), ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256))
        draw = ImageDraw.Draw(img)
        draw.ellipse((18, 14, 78, 98), fill=(224, 172, 105))
        draw.ellipse((32, 40, 42, 50), fill=(20, 20, 20))
        draw.ellipse((54, 40, 64, 50), fill=(20, 20, 20))
        draw.arc((34, 60, 62, 84), 20, 160, fill=(120, 30, 30), width=3)
        # Some texture, so that no JPEG is tiny (several kB, like real face crops).
        noise = Image.effect_noise((96, 112), 40 + i).convert("RGB")
        img = Image.blend(img, noise, 0.2)
        if i % 3:
            img.save(d / f"face {i:03d}.jpg", quality=90)
        else:
            img.save(d / f"face-{i:03d}.png")
    (root / "gen" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def read_rows(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path, columns=COLUMNS).to_pylist()


def key(row: dict[str, Any]) -> Key:
    return (row["root"], row["path"])


def assert_exactly(rows: list[dict[str, Any]], full: dict[Key, dict[str, Any]], where: str) -> None:
    """`rows` hold every row of the full run once: none twice, none missing, none extra,
    with the same status and label."""
    counts = Counter(key(r) for r in rows)
    twice = sorted(k for k, c in counts.items() if c > 1)
    assert not twice, f"{where}: rows written more than once: {twice[:5]}"
    missing, extra = sorted(set(full) - set(counts)), sorted(set(counts) - set(full))
    assert not missing, f"{where}: {len(missing)} rows missing, e.g. {missing[:5]}"
    assert not extra, f"{where}: {len(extra)} rows not in the full run, e.g. {extra[:5]}"
    for r in rows:
        f = full[key(r)]
        assert (r["status"], r["label"]) == (f["status"], f["label"]), f"{where}: {r} differs from {f}"
        if f["confidence"] is not None:
            assert r["confidence"] == pytest.approx(f["confidence"], abs=1e-4), f"{where}: {r} vs {f}"


def dataset_rows(d: Path, n: int) -> list[dict[str, Any]]:
    """The rows of a dataset folder that must hold exactly shards 0..n-1, each with its
    marker, and nothing else (no leftover staging)."""
    names = sorted(p.name for p in d.iterdir())
    expected = sorted(
        [f"part-{tag(k, n)}.parquet" for k in range(n)] + [f"_SUCCESS-{tag(k, n)}.json" for k in range(n)]
    )
    assert names == expected, f"{d}: {names}"
    rows: list[dict[str, Any]] = []
    for k in range(n):
        part = read_rows(d / f"part-{tag(k, n)}.parquet")
        marker = json.loads((d / f"_SUCCESS-{tag(k, n)}.json").read_text())
        assert marker["shard"] == f"{k}/{n}"
        assert marker["file"] == f"part-{tag(k, n)}.parquet"
        assert marker["rows"] == len(part), marker
        assert marker["errors"] == sum(r["status"] == "error" for r in part), marker
        for field in ("run_id", "model_sha256", "finished_at"):
            assert marker[field], f"marker {field} is empty: {marker}"
        for r in part:
            assert path_hash(r["path"]) % n == k, (
                f"{r['path']} is in shard {k}/{n}, hash says {path_hash(r['path']) % n}"
            )
        rows += part
    # What analysts read: a pyarrow dataset of the folder skips the `_` files.
    assert pads.dataset(d, format="parquet").count_rows() == len(rows)
    return rows


def snapshot(d: Path) -> dict[str, tuple[int, str]]:
    return {
        p.relative_to(d).as_posix(): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def write_job(path: Path, photos: Path, output: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"""name = "scale-out-test"
inputs = [{json.dumps(str(photos))}]
output = {json.dumps(str(output))}
model = {json.dumps(str(MODEL.parent))}
model_version = "{MODEL.name}"

[classify]
faces = "whole"
threads = 1
batch_size = 2
# Two broken files in about 40: a shard of a few files may be half errors.
max_error_rate = 0.5
"""
    )
    return path


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    rels = make_photos(root, generated=32)
    assert len(rels) >= 40
    return root


@pytest.fixture(scope="module")
def full_run(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[Key, dict[str, Any]]:
    """One unsharded run of `photos` in dataset mode: the reference."""
    out = tmp_path_factory.mktemp("full")
    r = facebatch("classify", str(photos), "--out", f"{out}/", *WHOLE)
    assert r.returncode == 1, "two broken files make per-image errors: " + explain(r)
    rows = dataset_rows(out, 1)
    rels = sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*") if p.is_file())
    assert sorted(r["path"] for r in rows) == rels
    assert {r["root"] for r in rows} == {str(photos)}
    assert sum(r["status"] == "error" for r in rows) == 2
    return {key(r): r for r in rows}


# ---------------------------------------------------------------- shards


def test_shards_add_up_to_the_unsharded_run(
    photos: Path, full_run: dict[Key, dict[str, Any]], tmp_path: Path
) -> None:
    n = 3
    out = tmp_path / "sharded"
    codes = []
    for k in range(n):
        r = facebatch("classify", str(photos), "--out", f"{out}/", "--shard", f"{k}/{n}", *WHOLE)
        assert r.returncode in (0, 1), explain(r)
        codes.append(r.returncode)
    assert_exactly(dataset_rows(out, n), full_run, "3 shards")

    # A finished shard again: nothing happens, nothing is rewritten, and it exits as its
    # run did (1 when its error rows are over --max-error-rate).
    before = snapshot(out)
    r = facebatch("classify", str(photos), "--out", f"{out}/", "--shard", f"1/{n}", *WHOLE)
    assert r.returncode == codes[1], explain(r)
    assert "already complete" in r.stdout, explain(r)
    assert snapshot(out) == before


# ---------------------------------------------------------------- Ray


@dataclass
class Victim:
    shard: int
    child: int  # the facebatch process
    worker: int  # its parent, the Ray worker
    checkpoint_rows: int  # rows already in the shard's staged checkpoint parts


def processes() -> dict[int, tuple[int, list[str]]]:
    """pid -> (parent pid, argv) of the running processes."""
    procs: dict[int, tuple[int, list[str]]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":
            continue
        procs[int(d.name)] = (int(fields[1]), [a.decode(errors="replace") for a in argv if a])
    return procs


def shard_process(n: int, k: int, out: Path) -> tuple[int, int] | None:
    """(pid, parent pid) of the facebatch process running shard k/n into `out`."""
    for pid, (ppid, argv) in processes().items():
        if argv and argv[0] == str(BIN) and f"{k}/{n}" in argv and f"{out}/" in argv:
            return pid, ppid
    return None


def alive(pid: int) -> bool:
    return pid in processes()


def kill_a_shard_mid_run(out: Path, n: int, driver: subprocess.Popen[bytes], timeout: float = 180) -> Victim:
    """Waits for a running shard whose staging holds a checkpoint part, then SIGKILLs the
    Ray worker running it (the facebatch process's parent)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert driver.poll() is None, "the driver ended before a shard could be killed mid-run"
        for parts in sorted((out / "_staging").glob(f"part-*-of-{n:05d}.parquet.parts")):
            try:
                checkpoints = [
                    p for p in parts.iterdir() if p.name.startswith("part-") and p.suffix == ".parquet"
                ]
            except FileNotFoundError:
                continue
            k = int(parts.name[len("part-") :][:5])
            found = shard_process(n, k, out) if checkpoints else None
            if found is None or (out / f"_SUCCESS-{tag(k, n)}.json").exists():
                continue
            child, worker = found
            worker_argv = " ".join(processes().get(worker, (0, []))[1])
            assert "ray::" in worker_argv or "default_worker" in worker_argv, (
                f"parent of facebatch: {worker_argv}"
            )
            rows = sum(pq.read_metadata(p).num_rows for p in checkpoints)
            os.kill(worker, signal.SIGKILL)
            return Victim(k, child, worker, rows)
        time.sleep(0.01)
    raise AssertionError("no shard was seen running with a checkpoint part")


def test_ray_driver_retries_a_killed_shard_without_losing_or_repeating_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray.cluster_utils import Cluster

    # Ray also kills a dead worker's process group when it can; switched off here, so that
    # the driver's own guarantee (PR_SET_PDEATHSIG) is what the test sees. It is what holds
    # when the raylet cannot clean up, or with Ray versions or settings that do not.
    monkeypatch.setenv("RAY_process_group_cleanup_enabled", "0")
    monkeypatch.setenv("RAY_kill_child_processes_on_worker_exit", "0")
    n = 4
    photos = tmp_path / "photos"
    # Enough images that a shard runs for a second or so after its first checkpoint
    # (--checkpoint-rows 2): time to see it running and kill it.
    rels = make_photos(photos, generated=800)
    out = tmp_path / "out"
    attempts = tmp_path / "attempts.jsonl"
    log = tmp_path / "driver.log"
    mb = 1024 * 1024
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "object_store_memory": 100 * mb},
    )
    driver = None
    try:
        cluster.add_node(num_cpus=1, object_store_memory=100 * mb)
        cluster.wait_for_nodes()
        with open(log, "wb") as log_file:
            driver = subprocess.Popen(
                [
                    sys.executable, str(DRIVER),
                    "--facebatch", str(BIN),
                    "--shards", str(n),
                    "--address", cluster.address,
                    "--max-retries", "3",
                    "--attempt-log", str(attempts),
                    "--max-error-rate", "0.5",
                    "--out", f"{out}/",
                    "--", str(photos), *WHOLE, "--checkpoint-rows", "2",
                ],
                cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT,
            )  # fmt: skip
            victim = kill_a_shard_mid_run(out, n, driver)
            print(f"killed {victim}")
            # The child dies with its worker (PR_SET_PDEATHSIG) at once, rather than going on
            # (for a second or more: it has written 2 of ~200 rows) beside the retry.
            deadline = time.monotonic() + 0.5
            while alive(victim.child) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not alive(victim.child), "facebatch outlived its killed Ray worker"
            code = driver.wait(timeout=300)
        # The job file form on the same cluster: `facebatch run JOB --shard k/3 --date D`.
        job = write_job(tmp_path / "jobs/nightly.toml", photos, tmp_path / "datasets")
        job_run = subprocess.run(
            [sys.executable, str(DRIVER), "--facebatch", str(BIN), "--shards", "3"]
            + ["--address", cluster.address, "--job", str(job), "--date", "2026-01-04"]
            + ["--max-error-rate", "0.5"],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.wait()
        cluster.shutdown()
    output = log.read_text(errors="replace")
    assert code == 0, f"driver exited {code}:\n{output}"
    assert victim.checkpoint_rows > 0

    # Ray ran the killed shard again: two starts, and only the second one exited.
    events = [json.loads(line) for line in attempts.read_text().splitlines()]
    starts = Counter(e["shard"] for e in events if e["event"] == "start")
    exits = Counter(e["shard"] for e in events if e["event"] == "exit")
    assert starts[f"{victim.shard}/{n}"] >= 2, events
    assert all(starts[f"{k}/{n}"] >= 1 and exits[f"{k}/{n}"] == 1 for k in range(n)), events
    assert {e["code"] for e in events if e["event"] == "exit"} <= {0, 1}, events

    # Every input exactly once over the four parts.
    rows = dataset_rows(out, n)
    assert Counter(r["path"] for r in rows) == Counter(rels), "each photo must be in exactly one row"
    for line in (f"{k}/{n}" for k in range(n)):
        assert line in output, output
    assert re.search(rf"^\s*total\s+4/4\s+{len(rels)}\s+{len(rels)}\s+2\s+0$", output, re.M), output

    # The job file form.
    assert job_run.returncode == 0, explain(job_run)
    job_rows = dataset_rows(tmp_path / "datasets/dt=2026-01-04", 3)
    assert Counter(r["path"] for r in job_rows) == Counter(rels)
    assert re.search(rf"^\s*total\s+3/3\s+{len(rels)}\s+{len(rels)}\s+2\s+0$", job_run.stdout, re.M), explain(
        job_run
    )

    # The same folder with another shard count would overlap: the driver refuses it.
    again = subprocess.run(
        [sys.executable, str(DRIVER), "--facebatch", str(BIN), "--shards", "3", "--out", f"{out}/"]
        + ["--", str(photos), *WHOLE],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert again.returncode == 2 and "another shard count" in again.stderr, explain(again)


def test_ray_driver_without_ray_says_how_to_install_it(tmp_path: Path) -> None:
    """Regression (issue 16, item 14): a Python without Ray got a raw ModuleNotFoundError."""
    photos = tmp_path / "photos"
    make_photos(photos, generated=2)
    # `sys.modules["ray"] = None` makes `import ray` fail as it does where Ray is missing.
    no_ray = (
        "import runpy, sys; sys.modules['ray'] = None; sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    r = subprocess.run(
        [sys.executable, "-c", no_ray, str(DRIVER), "--facebatch", str(BIN), "--shards", "2"]
        + ["--out", f"{tmp_path / 'out'}/", "--", str(photos), *WHOLE],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2, explain(r)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, explain(r)
    pins = re.search(r"\bray==([0-9.]+)", (REPO / "scripts/scale-out-test.sh").read_text())
    assert pins, "scripts/scale-out-test.sh pins ray"
    assert f"pip install 'ray=={pins.group(1)}'" in r.stderr, explain(r)


# ---------------------------------------------------------------- Slurm


def sbatch_array() -> range:
    m = re.search(r"^#SBATCH --array=(\d+)-(\d+)\s*$", SBATCH.read_text(), re.M)
    assert m, "the sbatch script declares a contiguous --array range"
    return range(int(m.group(1)), int(m.group(2)) + 1)


def sbatch(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "FACEBATCH_BIN": str(BIN), "FACEBATCH_WORKDIR": str(REPO), **env}
    return subprocess.run(["bash", str(SBATCH)], env=full_env, capture_output=True, text=True, timeout=300)


def test_slurm_array_tasks_add_up_to_the_unsharded_run(
    photos: Path, full_run: dict[Key, dict[str, Any]], tmp_path: Path
) -> None:
    ids = sbatch_array()
    n = len(ids)
    assert n > 1

    # The job file form, as submitted: every index of the declared array.
    job = write_job(tmp_path / "jobs/nightly.toml", photos, tmp_path / "datasets")
    for i in ids:
        array = {
            "SLURM_ARRAY_TASK_ID": str(i),
            "SLURM_ARRAY_TASK_MIN": str(ids[0]),
            "SLURM_ARRAY_TASK_COUNT": str(n),
        }
        r = sbatch(
            {**array, "SLURM_ARRAY_JOB_ID": "4242", "FACEBATCH_JOB": str(job), "FACEBATCH_DATE": "2026-01-02"}
        )
        assert r.returncode == 0, explain(r)
    partition = tmp_path / "datasets/dt=2026-01-02"
    assert_exactly(dataset_rows(partition, n), full_run, "Slurm array, job file")

    # The classify form, on an array that does not start at 0 (--array=10-17).
    out = tmp_path / "slurm-classify"
    classify_env = {
        "FACEBATCH_INPUTS": str(photos),
        "FACEBATCH_OUT": str(out),
        "FACEBATCH_ARGS": shlex.join([*WHOLE, "--max-error-rate", "0.5"]),
    }
    for i in range(10, 10 + n):
        array = {
            "SLURM_ARRAY_TASK_ID": str(i),
            "SLURM_ARRAY_TASK_MIN": "10",
            "SLURM_ARRAY_TASK_COUNT": str(n),
        }
        r = sbatch({**array, **classify_env})
        assert r.returncode == 0, explain(r)
    assert_exactly(dataset_rows(out, n), full_run, "Slurm array from 10, classify")

    # Resubmitting some indices (`sbatch --array=3,5` with FACEBATCH_SHARDS): shard 3 lost
    # its files and is made again; shard 5 is complete and left alone.
    (out / f"part-{tag(3, n)}.parquet").unlink()
    (out / f"_SUCCESS-{tag(3, n)}.json").unlink()
    five = snapshot(out)[f"part-{tag(5, n)}.parquet"]
    for i in (3, 5):
        array = {"SLURM_ARRAY_TASK_ID": str(i), "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_COUNT": "2"}
        r = sbatch({**array, **classify_env, "FACEBATCH_SHARDS": str(n)})
        assert r.returncode == 0, explain(r)
    assert snapshot(out)[f"part-{tag(5, n)}.parquet"] == five
    assert_exactly(dataset_rows(out, n), full_run, "Slurm resubmission of 3 and 5")


# ---------------------------------------------------------------- Kubernetes


def k8s_expand(arg: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion in command and args ($$ escapes; unknown stays)."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        arg,
    )


def test_kubernetes_indexed_job_pods_add_up_to_the_unsharded_run(
    photos: Path, full_run: dict[Key, dict[str, Any]], tmp_path: Path
) -> None:
    date = "2026-01-03"
    manifest = yaml.safe_load(K8S_JOB.read_text().replace("__DATE__", date))
    assert (manifest["apiVersion"], manifest["kind"]) == ("batch/v1", "Job")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", manifest["metadata"]["name"])
    assert len(manifest["metadata"]["name"]) <= 63
    spec = manifest["spec"]
    assert spec["completionMode"] == "Indexed"
    n = spec["completions"]
    assert isinstance(n, int) and n > 1
    assert 1 <= spec["parallelism"] <= n
    assert spec["backoffLimitPerIndex"] >= 1
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    # The image of the Dockerfile, whose user is 10001: not root.
    assert container["image"].endswith("/facebatch:0.1.0")
    assert container["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["JOB_COMPLETIONS"] == str(n), "JOB_COMPLETIONS must equal spec.completions"
    fatal = [r for r in spec["podFailurePolicy"]["rules"] if r["action"] == "FailIndex"]
    assert (
        fatal
        # 2 fatal, 1 over max_error_rate: neither helped by a retry.
        and fatal[0]["onExitCodes"]["values"] == [1, 2]
        and fatal[0]["onExitCodes"]["containerName"] == container["name"]
    )

    # The pod's command, run here: the binary from this build, the job ConfigMap mounted at
    # /jobs as a folder, the image's working directory as this checkout (models/).
    jobs = tmp_path / "jobs"
    write_job(jobs / "nightly.toml", photos, tmp_path / "datasets")
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "/jobs" in mounts
    argv = [k8s_expand(a, env) for a in container["command"] + container.get("args", [])]
    assert argv[0] == "facebatch" and "--shard" in argv and argv[argv.index("--shard") + 1] == "auto"
    argv = [str(BIN)] + [str(jobs / a[len("/jobs/") :]) if a.startswith("/jobs/") else a for a in argv[1:]]

    def pod_run(index: int | None) -> subprocess.CompletedProcess[str]:
        pod_env = {**os.environ, **env}
        if index is not None:
            pod_env["JOB_COMPLETION_INDEX"] = str(index)
        return subprocess.run(argv, cwd=REPO, env=pod_env, capture_output=True, text=True, timeout=300)

    # Without the index (not an Indexed Job pod): fatal, exit 2, with the reason.
    r = pod_run(None)
    assert r.returncode == 2 and "JOB_COMPLETION_INDEX" in r.stderr, explain(r)
    codes = []
    for i in range(n):
        r = pod_run(i)
        assert r.returncode in (0, 1), explain(r)
        codes.append(r.returncode)
    partition = tmp_path / f"datasets/dt={date}"
    before = snapshot(partition)
    assert_exactly(dataset_rows(partition, n), full_run, "Kubernetes Indexed Job")
    # A retried pod of a finished index: nothing rewritten, the same exit status.
    r = pod_run(n - 1)
    assert r.returncode == codes[n - 1], explain(r)
    assert snapshot(partition) == before


# ---------------------------------------------------------------- cron and systemd


def test_cron_and_systemd_run_the_job_and_never_overlap(
    photos: Path, full_run: dict[Key, dict[str, Any]], tmp_path: Path
) -> None:
    # Lay out /srv/facebatch as the units expect it, under tmp_path.
    srv = tmp_path / "srv/facebatch"
    write_job(srv / "pipelines/nightly.toml", photos, tmp_path / "datasets")
    lock = tmp_path / "facebatch-nightly.lock"
    logfile = tmp_path / "nightly.log"

    def local(command: str) -> str:
        command = command.replace("/srv/facebatch", str(srv))
        command = command.replace("/run/lock/facebatch-nightly.lock", str(lock))
        command = command.replace("/var/log/facebatch/nightly.log", str(logfile))
        command = command.replace("/usr/local/bin/facebatch", str(BIN))
        return re.sub(r"(?<=[\s])facebatch(?= --no-progress)", str(BIN), command)

    entries = [
        line
        for line in CRON.read_text().splitlines()
        if line.strip() and not line.startswith("#") and not re.match(r"^[A-Z_]+=", line)
    ]
    assert len(entries) == 1, entries
    fields = entries[0].split(None, 6)
    minute, hour, _, _, _, user, command = fields
    assert minute.isdigit() and hour.isdigit() and user == "facebatch", fields
    assert "%" not in command, "cron turns % into a newline"
    assert "flock -n" in command and "/run/lock/facebatch-nightly.lock" in command

    service = SERVICE.read_text()
    exec_start = re.search(r"^ExecStart=(.*)$", service, re.M)
    assert exec_start and "flock -n -E 75 /run/lock/facebatch-nightly.lock" in exec_start.group(1)
    # 75 (locked out) is a success; 1 (more error rows than max_error_rate) is a failure.
    success = re.search(r"^SuccessExitStatus=(.*)$", service, re.M)
    assert success and success.group(1).split() == ["75"], service
    timer = TIMER.read_text()
    assert re.search(r"^Persistent=true$", timer, re.M) and re.search(r"^OnCalendar=", timer, re.M)
    if shutil.which("systemd-analyze"):
        r = subprocess.run(
            ["systemd-analyze", "verify", SERVICE.name, TIMER.name],
            cwd=SERVICE.parent,
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0 and not r.stderr.strip(), explain(r)

    today_dir = tmp_path / "datasets"
    # A run still holding the lock: the cron entry exits 75 and runs nothing.
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        r = subprocess.run(["sh", "-c", local(command)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 75, explain(r)
        assert not today_dir.exists(), "a locked-out run must not start"
    r = subprocess.run(["sh", "-c", local(command)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, explain(r) + logfile.read_text()
    # The job's output holds its partition and, beside it, the fingerprint index.
    (partition,) = (p for p in today_dir.iterdir() if not p.name.startswith("_"))
    assert partition.name.startswith("dt=")
    assert (today_dir / "_index/seen-00000-of-00001.index").is_file()
    assert_exactly(dataset_rows(partition, 1), full_run, "cron run")

    # The systemd unit's command on the same date: the same lock, and a finished run is a no-op.
    before = snapshot(today_dir)
    r = subprocess.run(
        shlex.split(local(exec_start.group(1))), cwd=srv, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, explain(r)
    assert snapshot(today_dir) == before
