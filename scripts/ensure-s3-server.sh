#!/usr/bin/env bash
# A real local S3 server for the object-store tests: moto's server (PyPI moto 5.2.6, its S3
# service) in .cache/s3-venv, every package pinned, wheels only. Prints the path of its
# `moto_server`; the tests start it on a random loopback port (tests/objects_cli.rs).
#   FACEBATCH_MOTO_SERVER=$(scripts/ensure-s3-server.sh) cargo test --test objects_cli
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.cache/s3-venv
# moto[s3] and the server's Flask, then everything they pull in: a fresh venv is the same venv.
pins=(
  moto==5.2.6 Flask==3.1.3 flask-cors==6.0.5
  blinker==1.9.0 boto3==1.44.18 botocore==1.44.18 certifi==2026.10.19.post1 cffi==2.1.1
  charset-normalizer==3.5.3 click==8.5.1 cryptography==51.0.1 idna==3.21
  itsdangerous==2.2.0 Jinja2==3.1.6 jmespath==1.1.0 MarkupSafe==3.0.4
  py-partiql-parser==0.6.3 pycparser==3.12 python-dateutil==2.9.0.post0 PyYAML==6.0.4
  requests==2.34.2 responses==0.26.3 s3transfer==0.19.3 six==1.17.0 urllib3==2.8.0
  Werkzeug==3.1.9 xmltodict==1.0.4
)
if [ ! -x "$venv/bin/python" ]; then
  python=${PYTHON:-python3}
  "$python" -m venv "$venv" >&2
fi
if ! "$venv/bin/python" - "${pins[@]}" <<'PY'; then
import sys
from importlib.metadata import PackageNotFoundError, version

def have(pin: str) -> bool:
    name, want = pin.split("==")
    try:
        return version(name) == want
    except PackageNotFoundError:
        return False

sys.exit(0 if all(have(p) for p in sys.argv[1:]) else 1)
PY
  echo "ensure-s3-server: installing the pinned packages into $venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: "${pins[@]}" >&2
fi
realpath "$venv/bin/moto_server"
