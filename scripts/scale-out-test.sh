#!/usr/bin/env bash
# Scale-out tests with the real binary (run by .ci/run after `cargo test`, not by it: they
# need Python 3.11+ with venv and PyPI): shards, the Ray driver on a real two-node local Ray
# cluster (one task killed mid-run), the Slurm array script and the Kubernetes Indexed
# Job's command, cron and systemd (pipelines/tests/test_scale_out.py). Each must give
# exactly the rows of one unsharded run.
#
#   scripts/scale-out-test.sh [FACEBATCH_BIN] [pytest args...]
#
# The binary: the first argument, else $FACEBATCH_BIN, else target/release/facebatch.
# Python packages come pinned from PyPI into .cache/ray-venv (made with python3 >= 3.11
# once; pip is skipped when the pins are already installed).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-${FACEBATCH_BIN:-target/release/facebatch}}
if [ $# -gt 0 ]; then shift; fi
[ -x "$bin" ] || { echo "scale-out-test: no facebatch binary at $bin (build it first)" >&2; exit 2; }

venv=.cache/ray-venv
# Pinned: the direct needs first, then everything they pull in, so a fresh venv is the
# same venv (ray 2.60.0 is the newest ray with a CPython 3.11 manylinux x86_64 wheel).
pins=(
  ray==2.60.0 pyarrow==22.0.0 pytest==9.2.0 pillow==13.0.0 PyYAML==6.0.4
  attrs==26.1.0 certifi==2026.10.19.post1 charset-normalizer==3.5.3 click==8.5.1
  filelock==4.3.1 idna==3.20 iniconfig==2.3.1 jsonschema==4.26.0
  jsonschema-specifications==2025.9.1 msgpack==1.2.4 packaging==26.4 pluggy==1.7.0
  protobuf==7.36.2 Pygments==2.21.0 referencing==0.37.0 requests==2.34.2
  rpds-py==2026.9.1 typing_extensions==4.16.0 urllib3==2.8.0
)

if [ ! -x "$venv/bin/python" ]; then
  python=${PYTHON:-python3}
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "scale-out-test: needs Python 3.11 or newer ($python is older)" >&2; exit 2; }
  "$python" -m venv "$venv"
fi
# Installed versions against the pins, without importing anything (fast).
if ! "$venv/bin/python" - "${pins[@]}" <<'EOF'; then
import sys
from importlib.metadata import PackageNotFoundError, version

def have(pin: str) -> bool:
    name, want = pin.split("==")
    try:
        return version(name) == want
    except PackageNotFoundError:
        return False

sys.exit(0 if all(have(p) for p in sys.argv[1:]) else 1)
EOF
  echo "scale-out-test: installing the pinned packages into $venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: "${pins[@]}"
fi

export FACEBATCH_BIN
FACEBATCH_BIN=$(realpath "$bin")
# No usage-stats reporting from the test clusters.
export RAY_USAGE_STATS_ENABLED=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
"$venv/bin/python" -m pytest -p no:cacheprovider -q pipelines/tests/test_scale_out.py "$@" \
  | tee "$log" || status=$?
# pytest's closing line, e.g. "6 passed in 92.31s": nothing may be skipped, failed or errored.
summary=$(grep -E '[0-9]+ passed' "$log" | tail -n 1 || true)
if [ "$status" -eq 0 ] && { [ -z "$summary" ] || grep -qE 'skipped|failed|error|deselected' <<< "$summary"; } && [ $# -eq 0 ]; then
  echo "scale-out-test: every scale-out test must run and pass: ${summary:-no summary line}" >&2
  status=1
fi
exit "$status"
