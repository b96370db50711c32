#!/usr/bin/env bash
# Builds the release archive dist/facebatch-<version>-x86_64-linux.tar.gz (and its .sha256):
# the binary, the shell completions, the man pages, the licences and the README.
#
#   scripts/release.sh                  # the full build (training included)
#   scripts/release.sh --inference      # the inference-only build: ...-linux-inference.tar.gz
#
# Install from it (README, "Install"):
#   tar -xzf facebatch-0.1.0-x86_64-linux.tar.gz
#   sudo install -m 755 facebatch-0.1.0-x86_64-linux/facebatch /usr/local/bin/
#   sudo install -m 644 facebatch-0.1.0-x86_64-linux/man/*.1 /usr/local/share/man/man1/
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
features=()
suffix=""
if [ "${1:-}" = "--inference" ]; then
  features=(--no-default-features --features simd-jpeg)
  suffix="-inference"
  # Its own target folder, so that the full build's binary in target/release stays.
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target/slim}
fi
target=${CARGO_TARGET_DIR:-$repo/target}
cargo build --release --locked "${features[@]}"
bin="$target/release/facebatch"
version=$("$bin" --version | head -n1 | awk '{print $2}')
name="facebatch-$version-$(uname -m)-linux$suffix"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
dir="$stage/$name"
mkdir -p "$dir/completions" "$dir/man"
install -s -m 755 "$bin" "$dir/facebatch"
"$bin" completions bash > "$dir/completions/facebatch.bash"
"$bin" completions zsh > "$dir/completions/_facebatch"
"$bin" completions fish > "$dir/completions/facebatch.fish"
"$bin" man --out "$dir/man" > /dev/null
cp LICENSE-MIT LICENSE-APACHE README.md "$dir/"
mkdir -p dist
tar -C "$stage" --owner=0 --group=0 --sort=name -czf "dist/$name.tar.gz" "$name"
(cd dist && sha256sum "$name.tar.gz" > "$name.tar.gz.sha256")
echo "dist/$name.tar.gz ($(du -h "dist/$name.tar.gz" | cut -f1))"
