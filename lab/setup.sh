# shellcheck shell=bash
# Set-up shared by tests/run.sh and lab/demo.sh: Debian packages, a Docker engine, the pinned
# virtualenv .venv/ and the collection seen as ansible_collections/homelab/gpu. Each step does
# nothing when its result is already there, so a second run is fast.
# Expects ROOT, CACHE, VENV and LOGDIR to be set by the caller.

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 2; }

APT_PACKAGES=(docker.io debootstrap openssh-client python3-venv rsync git iproute2 curl ca-certificates
  chromium)  # chromium: the fleet report HTML is tested in a real headless browser

setup_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing Debian packages ${missing[*]}; run as root or install them"
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$LOGDIR/apt.log" 2>&1 \
    || { tail -n 30 "$LOGDIR/apt.log"; die "apt-get install failed"; }
}

setup_docker() {
  docker info >/dev/null 2>&1 && return 0
  say "no Docker engine answers: starting dockerd (no systemd here)"
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl start docker || true
  else
    # setsid: its own session, so that the end of the shell or job that started it does not stop it.
    setsid nohup dockerd >"$LOGDIR/dockerd.log" 2>&1 &
  fi
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return 0; sleep 1; done
  tail -n 30 "$LOGDIR/dockerd.log" 2>/dev/null
  die "dockerd did not come up"
}

setup_venv() {
  local want; want=$(sha256sum <requirements-dev.txt | cut -c1-16)
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.stamp" 2>/dev/null)" = "$want" ]; then return 0; fi
  say "creating virtualenv .venv from requirements-dev.txt"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed"
  "$VENV/bin/pip" install -q --upgrade pip >"$LOGDIR/pip.log" 2>&1
  "$VENV/bin/pip" install -q -r requirements-dev.txt >>"$LOGDIR/pip.log" 2>&1 \
    || { tail -n 30 "$LOGDIR/pip.log"; die "pip install failed"; }
  echo "$want" >"$VENV/.stamp"
}

# The collection seen as ansible_collections/homelab/gpu: a symlink for ansible, molecule and
# pytest; ansible-test gets a copy of the tracked and new files (it refuses symlinked roots).
setup_tree() {
  mkdir -p "$CACHE/collections/ansible_collections/homelab"
  ln -sfn "$ROOT" "$CACHE/collections/ansible_collections/homelab/gpu"
  export ANSIBLE_COLLECTIONS_PATH="$CACHE/collections"
  export PATH="$VENV/bin:$PATH"
  export ANSIBLE_HOME="$CACHE/ansible-home" ANSIBLE_LOCAL_TEMP="$CACHE/ansible-tmp"
  export PY_COLORS=0 ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 NO_COLOR=1
}

