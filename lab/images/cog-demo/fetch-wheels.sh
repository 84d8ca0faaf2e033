#!/usr/bin/env bash
# Fetch the pinned wheels of the demo cog image into wheels/ (gitignored) for an offline Docker
# build: pip inside the build would need the host's CA bundle and network. The target is the lab
# rootfs' python3 (Debian 12: CPython 3.11, x86_64, glibc 2.36). A second run only checks.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest="$here/wheels"
mkdir -p "$dest"
if [ -f "$dest/.stamp" ] && cmp -s "$dest/.stamp" "$here/requirements.txt"; then
  exit 0
fi
pip=${PIP:-pip}
command -v "$pip" >/dev/null || pip="python3 -m pip"
$pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform any \
  -r "$here/requirements.txt" -d "$dest"
cp "$here/requirements.txt" "$dest/.stamp"
echo "fetched wheels into $dest"
