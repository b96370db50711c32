#!/usr/bin/env python3
"""Run facebatch over a Ray cluster: one Ray task per shard, retried on failure.

Two forms (docs/operations.md, section "Ray"):

    # classify folders into a dataset folder, 16 shards
    python pipelines/ray_classify.py --facebatch /opt/facebatch/bin/facebatch \\
        --shards 16 --address auto --out /mnt/out/run-2025-06-01/ \\
        -- /mnt/photos --faces auto

    # a job file (scheduled runs), 16 shards of one date's partition
    python pipelines/ray_classify.py --facebatch /opt/facebatch/bin/facebatch \\
        --shards 16 --address auto --job pipelines/nightly.toml --date 2025-06-01

Every task runs `facebatch classify ... --out DIR/ --shard k/N` (or `facebatch run JOB
--shard k/N --date D`) as a child process. facebatch makes a shard exactly-once by itself:
the part file is staged under `DIR/_staging/`, renamed into place when complete, and then
marked by `DIR/_SUCCESS-KKKKK-of-NNNNN.json`; a shard with a marker does nothing when run
again, and a killed shard's staging is resumed by its next attempt. So this driver only has
to (1) run each shard until it succeeds, which Ray's task retries do, and (2) make sure a
killed attempt never keeps running beside its retry: the child is tied to its Ray worker
with PR_SET_PDEATHSIG, so it dies with it.

Exit status: 0 when every shard finished with at most --max-error-rate of its images as
per-image error rows; 1 when a shard failed after its retries, a marker is missing, or a
shard has more error rows than that (facebatch's exit 1: finished and marked, so it is not
retried); 2 on bad usage.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The Ray this driver is tested with (scripts/scale-out-test.sh pins the same).
RAY_VERSION = "2.60.0"

# facebatch's exit statuses: 0 done, 1 done but with more per-image error rows than
# --max-error-rate (the marker is written: finished, so not retried, but reported), 2 fatal,
# 130 interrupted.
SUCCESS_CODES = (0, 1)
OVER_ERROR_RATE = 1
PR_SET_PDEATHSIG = 1
TAIL_LINES = 25


def shard_tag(k: int, n: int) -> str:
    return f"{k:05d}-of-{n:05d}"


def marker_name(k: int, n: int) -> str:
    return f"_SUCCESS-{shard_tag(k, n)}.json"


def part_name(k: int, n: int) -> str:
    return f"part-{shard_tag(k, n)}.parquet"


class UsageError(ValueError):
    """Bad command-line arguments (exit 2)."""


class ShardFailed(RuntimeError):
    """One attempt of a shard failed; raising it lets Ray retry the task."""


def _die_with_parent_hook():
    """A preexec_fn that makes the child get SIGKILL when its parent (the Ray worker) dies.

    libc and prctl are resolved here, in the parent: between fork and exec the child must
    not load libraries or allocate (the Ray worker has many threads). The parent's pid is
    checked after prctl, in case the parent died before the death signal was armed.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    sigkill = int(signal.SIGKILL)

    def hook() -> None:
        if prctl(PR_SET_PDEATHSIG, sigkill, 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent:
            os._exit(126)

    return hook


def _tail(path: str, lines: int = TAIL_LINES) -> str:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64 * 1024))
        text = f.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def _log_attempt(path: str | None, record: dict[str, Any]) -> None:
    """Appends one JSON line to the attempt log (one short O_APPEND write: safe to share)."""
    if not path:
        return
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def run_shard(
    argv: list[str],
    k: int,
    n: int,
    workdir: str | None,
    dataset_dir: str | None,
    attempt_log: str | None,
) -> dict[str, Any]:
    """Runs one shard to completion and returns its marker. The body of the Ray task.

    `argv` already holds `--shard k/N`. Raises ShardFailed on any exit status other than 0
    or 1, or when the marker is missing afterwards, so that Ray retries the shard.
    """
    cwd = workdir if workdir and os.path.isdir(workdir) else None
    host = socket.gethostname()
    started = time.time()
    _log_attempt(
        attempt_log,
        {"event": "start", "shard": f"{k}/{n}", "host": host, "pid": os.getpid(), "time": started},
    )
    with tempfile.NamedTemporaryFile(
        prefix=f"facebatch-{shard_tag(k, n)}-", suffix=".log", delete=False
    ) as log:
        log_path = log.name
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent_hook(),
            )
            try:
                code = proc.wait()
            finally:
                # Cancelled or interrupted: never leave the child running without us.
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        tail = _tail(log_path)
    finally:
        os.unlink(log_path)
    seconds = round(time.time() - started, 3)
    _log_attempt(
        attempt_log,
        {
            "event": "exit",
            "shard": f"{k}/{n}",
            "host": host,
            "pid": os.getpid(),
            "code": code,
            "time": time.time(),
        },
    )
    if code not in SUCCESS_CODES:
        raise ShardFailed(f"shard {k}/{n} on {host}: facebatch exited {code}\n{tail}")
    marker: dict[str, Any] = {}
    if dataset_dir is not None:
        path = Path(cwd or ".", dataset_dir, marker_name(k, n))
        try:
            marker = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ShardFailed(
                f"shard {k}/{n} on {host}: exited {code} but its marker {path} is unreadable: {e}\n{tail}"
            ) from e
    return {"shard": f"{k}/{n}", "code": code, "host": host, "seconds": seconds, "marker": marker}


@dataclass
class Plan:
    """What every task runs, less the shard."""

    base: list[str]  # facebatch argv up to the subcommand's arguments
    dataset_dir: str | None  # where the markers are, relative to workdir (or absolute)

    def argv(self, k: int, n: int) -> list[str]:
        return [*self.base, "--shard", f"{k}/{n}"]


def job_dataset_dir(job: str, date: str, workdir: str) -> str | None:
    """The partition folder a job file's run writes for `date`: `<output>/<partition>/`.

    As facebatch reads the job file: a relative `output` is relative to the job file's
    folder, and `partition` (default `dt={date}`) may use `{date}` and `{name}`. None when
    the job file cannot be read here: then the tasks' exit statuses are all there is to go
    by, and the report has no counts.
    """
    path = Path(workdir, job)
    try:
        spec = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    output, name = spec.get("output"), spec.get("name", "")
    partition = spec.get("partition", "dt={date}")
    if not isinstance(output, str) or not isinstance(partition, str) or not isinstance(name, str):
        return None
    out = Path(output)
    if not out.is_absolute():
        out = path.parent / out
    return str(out / partition.replace("{date}", date).replace("{name}", name)) + "/"


def plan(args: argparse.Namespace, rest: list[str], workdir: str) -> Plan:
    base = [args.facebatch, "--no-progress"]
    if args.job:
        if rest:
            raise UsageError(f"--job takes no arguments after --: {rest}")
        date = args.date or dt.datetime.now(dt.timezone.utc).date().isoformat()
        # The job file's [classify] table sets device and threads (`run` takes no options
        # beyond --shard and --date): set `device = "cuda"` there to go with --num-gpus.
        base += ["run", args.job, "--date", date]
        if args.max_error_rate is not None:
            base += ["--max-error-rate", str(args.max_error_rate)]
        return Plan(base, job_dataset_dir(args.job, date, workdir))
    if not args.out or not rest:
        raise UsageError("give --job JOB.toml, or --out DIR/ -- INPUT... [classify options]")
    if any(
        a == "--shard" or a.startswith("--shard=") or a == "--out" or a.startswith("--out=") for a in rest
    ):
        raise UsageError("--shard and --out are set by the driver; remove them after --")
    out = args.out if args.out.endswith("/") else args.out + "/"
    base += ["classify", *rest, "--out", out]
    if args.num_gpus:
        base += ["--device", "cuda"]
    if not any(a == "--threads" or a.startswith("--threads=") for a in rest):
        base += ["--threads", str(args.cpus_per_task)]
    if args.max_error_rate is not None:
        base += ["--max-error-rate", str(args.max_error_rate)]
    return Plan(base, out)


def check_dataset_dir(dataset_dir: str | None, n: int, workdir: str) -> str | None:
    """A dataset folder must hold the shards of one N only: parts of another N overlap."""
    if dataset_dir is None:
        return None
    d = Path(workdir, dataset_dir)
    if not d.is_dir():
        return None
    other = sorted(
        p.name for p in d.glob("part-*-of-*.parquet") if not p.name.endswith(f"-of-{n:05d}.parquet")
    )
    if other:
        return (
            f"{d} already holds parts of a run with another shard count ({other[0]}, ...); use a new folder"
        )
    return None


def report(results: dict[int, dict[str, Any]], failures: dict[int, str], n: int) -> str:
    """The per-shard table, from the markers, and the total."""
    counts = ("files", "rows", "errors", "unchanged")
    head = "".join(f"{c:>10}" for c in counts)
    lines = [f"{'shard':>11}  {'status':<7}{head}{'seconds':>9}  host"]
    total = dict.fromkeys(counts, 0)
    for k in range(n):
        if k not in results:
            why = (failures.get(k) or "not run").splitlines()[0]
            lines.append(f"{f'{k}/{n}':>11}  FAILED  {why}")
            continue
        r, m = results[k], results[k]["marker"]
        for c in counts:
            total[c] += int(m.get(c, 0))
        if r["code"] == OVER_ERROR_RATE:
            status = "ERRORS"
        else:
            status = "ok*" if int(m.get("errors", 0)) > 0 else "ok"
        cells = "".join(f"{m.get(c, '?'):>10}" for c in counts)
        lines.append(f"{r['shard']:>11}  {status:<7}{cells}{r['seconds']:>9.1f}  {r['host']}")
    cells = "".join(f"{total[c]:>10}" for c in counts)
    lines.append(f"{'total':>11}  {f'{len(results)}/{n}':<7}{cells}")
    if any(line.split()[1] == "ok*" for line in lines[1:-1]):
        lines.append("ok* = with per-image error rows within --max-error-rate (status = 'error')")
    if any(line.split()[1] == "ERRORS" for line in lines[1:-1]):
        lines.append("ERRORS = finished, with more per-image error rows than --max-error-rate")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1 :]
    else:
        rest = []
    p = argparse.ArgumentParser(
        prog="ray_classify.py",
        description="Run facebatch shards as Ray tasks (docs/operations.md, section Ray).",
        epilog="Classify form: --out DIR/ -- INPUT... [classify options]. "
        "Job form: --job JOB.toml [--date D].",
    )
    p.add_argument(
        "--facebatch", default="facebatch", help="the facebatch binary, at the same path on every node"
    )
    p.add_argument("--shards", type=int, required=True, help="N: the number of shards (Ray tasks)")
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster address (auto, ray://..., host:port); default: RAY_ADDRESS or a local Ray",
    )
    p.add_argument(
        "--num-gpus",
        type=float,
        default=0,
        help="GPUs per task; in the classify form non-zero also passes --device cuda "
        '(a job file sets device = "cuda" in [classify])',
    )
    p.add_argument(
        "--cpus-per-task",
        type=int,
        default=1,
        help="CPUs per task (also facebatch's --threads in the classify form)",
    )
    p.add_argument("--max-retries", type=int, default=3, help="retries of a failed or killed shard")
    p.add_argument(
        "--max-error-rate",
        type=float,
        default=None,
        help="passed to facebatch: a shard with more of its images as error rows than this "
        "fraction makes the run exit 1 (default: facebatch's, or the job file's)",
    )
    p.add_argument(
        "--workdir",
        default=os.getcwd(),
        help="where tasks run facebatch (relative paths start here); default: this folder",
    )
    p.add_argument(
        "--attempt-log",
        default=None,
        help="append one JSON line per attempt start and exit to this file (a shared path)",
    )
    p.add_argument("--job", default=None, help="a job file: run `facebatch run JOB --shard k/N --date D`")
    p.add_argument(
        "--date",
        default=None,
        help="the job's partition date, YYYY-MM-DD (default: today, UTC), the same for every shard",
    )
    p.add_argument("--out", default=None, help="classify form: the dataset folder (DIR/)")
    args = p.parse_args(argv)
    if args.shards < 1:
        p.error("--shards must be at least 1")
    if args.max_retries < 0:
        p.error("--max-retries must be 0 or more")
    if args.job and args.out:
        p.error("give either --job or --out, not both")
    if args.date and not args.job:
        p.error("--date goes with --job")
    if args.cpus_per_task < 1:
        p.error("--cpus-per-task must be at least 1")
    if args.max_error_rate is not None and not 0 <= args.max_error_rate <= 1:
        p.error("--max-error-rate must be within 0..1")
    return args, rest


def main(argv: list[str] | None = None) -> int:
    args, rest = parse_args(sys.argv[1:] if argv is None else argv)
    workdir = os.path.abspath(args.workdir)
    n = args.shards
    try:
        the_plan = plan(args, rest, workdir)
    except UsageError as e:
        print(f"ray_classify: {e}", file=sys.stderr)
        return 2
    problem = check_dataset_dir(the_plan.dataset_dir, n, workdir)
    if problem:
        print(f"ray_classify: {problem}", file=sys.stderr)
        return 2

    try:
        import ray  # imported here so --help and usage errors work without Ray
    except ImportError:
        print(
            f"ray_classify: Ray is not installed for {sys.executable}; install the pinned "
            f"version with: {sys.executable} -m pip install 'ray=={RAY_VERSION}'",
            file=sys.stderr,
        )
        return 2

    ray.init(address=args.address, log_to_driver=False)
    task = ray.remote(run_shard).options(
        max_retries=args.max_retries,
        retry_exceptions=True,
        num_cpus=args.cpus_per_task,
        num_gpus=args.num_gpus,
    )
    refs = {
        k: task.remote(the_plan.argv(k, n), k, n, workdir, the_plan.dataset_dir, args.attempt_log)
        for k in range(n)
    }
    results: dict[int, dict[str, Any]] = {}
    failures: dict[int, str] = {}
    pending = {ref: k for k, ref in refs.items()}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            k = pending.pop(ref)
            try:
                results[k] = ray.get(ref)
            except Exception as e:  # a RayTaskError or a lost worker, after every retry
                cause = getattr(e, "cause", None)  # RayTaskError wraps the task's exception
                failures[k] = str(cause) if isinstance(cause, ShardFailed) else f"{type(e).__name__}: {e}"
    ray.shutdown()

    # Every finished shard returned its marker; check them against the folder, if visible.
    missing = [k for k, r in results.items() if the_plan.dataset_dir and not r["marker"]]
    if the_plan.dataset_dir and Path(workdir, the_plan.dataset_dir).is_dir():
        d = Path(workdir, the_plan.dataset_dir)
        missing += [k for k in results if not (d / marker_name(k, n)).is_file() and k not in missing]
    for k in missing:
        failures[k] = f"no marker {marker_name(k, n)}"
        results.pop(k, None)

    print(report(results, failures, n))
    if the_plan.dataset_dir:
        print(f"dataset: {Path(workdir, the_plan.dataset_dir)}")
    for k in sorted(failures):
        print(f"\nshard {k}/{n} failed: {failures[k]}", file=sys.stderr)
    over = sorted(k for k, r in results.items() if r["code"] == OVER_ERROR_RATE)
    for k in over:
        print(f"shard {k}/{n}: more per-image error rows than --max-error-rate", file=sys.stderr)
    return 1 if failures or over else 0


if __name__ == "__main__":
    sys.exit(main())
