#!/usr/bin/env bash
# Build the lab host images locally, cached by content. No registry is contacted:
# the root filesystem comes from Debian's archive through debootstrap and `docker import`,
# every later layer from a Dockerfile in lab/images/<name>/ built FROM it.
#
# Each image is tagged <repo>:<content hash> and re-tagged <repo>:current. The hash covers
# everything that goes into the image (this script's recipe, the build context and the
# parent's hash), so an unchanged image is never rebuilt and a changed one always is.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
MIRROR=${LAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
PREFIX=${LAB_IMAGE_PREFIX:-homelab-gpu-lab}
# Packages of the root filesystem. Kept minimal: what a real freshly installed server has
# that Ansible relies on (python3, sudo, sshd) and systemd as PID 1.
BASE_PACKAGES=systemd,systemd-sysv,dbus,openssh-server,python3,python3-apt,sudo,ca-certificates,iproute2,procps,gnupg,curl,kmod,less

log() { printf '[lab] %s\n' "$*" >&2; }

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

hash_of() {  # hash_of <text> <files...>
  local text=$1; shift
  { printf '%s\n' "$text"; for f in "$@"; do printf '%s\n' "${f#"$here"/}"; cat "$f"; done; } | sha256sum | cut -c1-16
}

build_rootfs() {
  local recipe="debootstrap --variant=minbase --include=$BASE_PACKAGES $SUITE $MIRROR"
  local tag; tag=$(hash_of "$recipe" "$here/build-images.sh")
  local ref="$PREFIX/debian12-rootfs:$tag"
  if image_exists "$ref"; then
    log "rootfs $ref is cached"
  else
    command -v debootstrap >/dev/null || { log "debootstrap is missing: apt-get install debootstrap"; exit 1; }
    local dir; dir=$(mktemp -d /var/tmp/lab-rootfs.XXXXXX)
    log "debootstrap $SUITE from $MIRROR into $dir (a few minutes, once)"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$dir" "$MIRROR" >"$dir.log" 2>&1 \
      || { tail -n 30 "$dir.log" >&2; rm -rf "$dir"; exit 1; }
    # Same sources as a real Debian 12 host, so apt works inside the lab host.
    printf 'deb %s %s main\ndeb %s %s-updates main\n' "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" >"$dir/etc/apt/sources.list"
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    tar -C "$dir" -c . | docker import - "$ref" >/dev/null
    rm -rf "$dir" "$dir.log"
    log "imported $ref"
  fi
  echo "$ref"
}

build_layer() {  # build_layer <name> <parent ref>
  local name=$1 parent=$2 ctx="$here/images/$1"
  local files; mapfile -t files < <(find "$ctx" -type f | LC_ALL=C sort)
  local tag; tag=$(hash_of "parent=$parent" "${files[@]}")
  local ref="$PREFIX/$name:$tag"
  if image_exists "$ref"; then
    log "$ref is cached"
  else
    log "building $ref"
    docker build --quiet --build-arg "BASE=$parent" -t "$ref" "$ctx" >/dev/null
  fi
  docker tag "$ref" "$PREFIX/$name:current"
  echo "$ref"
}

rootfs=$(build_rootfs)
debian12=$(build_layer debian12 "$rootfs")
build_layer debian12-docker "$debian12" >/dev/null
log "images ready: $PREFIX/debian12:current $PREFIX/debian12-docker:current"
