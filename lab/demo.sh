#!/usr/bin/env bash
# The main job on a local demo lab, from nothing (the README's first command):
#
#   lab/demo.sh          # = up: bring up the lab, run the site playbook, predict, print the status
#   lab/demo.sh down     # remove the lab hosts and the demo's files
#   lab/demo.sh lab      # only the lab: hosts, stand-ins, model image; no site run (bench/run.sh uses it)
#
# "up" sets up what it needs (Debian packages, a Docker engine, .venv, the lab images), starts
# DEMO_HOSTS (default 1) lab hosts: Debian 12 containers with systemd and sshd, reached over SSH on
# 127.0.0.1:2201, 2202, ... with a demo key, as user `lab` with sudo. It gives them their lab-only
# stand-ins (lab/demo/prepare.yml), builds the demo cog image from the cog and coglet packages on
# PyPI, pushes it to each host's registry, runs `ansible-playbook homelab.gpu.site` with
# lab/demo/inventory.yml, asks the model for a prediction and prints it. The fleet status is
# printed at the end of the site playbook and written to .cache/demo/status/status.{md,html}.
# Running it again changes nothing. DEMO_SITE_ARGS adds arguments to the site playbook run.
# DEMO_MODEL_IMAGE=0 skips building and pushing the model image (for provision-only runs).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE="$ROOT/.cache"
VENV="$ROOT/.venv"
LOGDIR="$ROOT/tests/output/logs"
DEMO_DIR="$CACHE/demo"
PREFIX=${LAB_IMAGE_PREFIX:-homelab-gpu-lab}
HOSTS=${DEMO_HOSTS:-1}
mkdir -p "$LOGDIR"
cd "$ROOT"
# shellcheck source=setup.sh
. "$ROOT/lab/setup.sh"

# The capabilities of a lab host: all but SYS_RESOURCE (--privileged fails on our engines).
LAB_RUN_ARGS=(--cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined
  --security-opt apparmor=unconfined --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw
  --tmpfs /run --tmpfs /run/lock --tmpfs /tmp)

host_name() { echo "demo-gpu-$1"; }

down() {
  local ids
  ids=$(docker ps -aq --filter label=homelab.gpu.demo=true 2>/dev/null || true)
  # shellcheck disable=SC2086  # one argument per container id
  [ -n "$ids" ] && docker rm -f $ids >/dev/null
  rm -rf "$DEMO_DIR"
  echo "demo lab removed"
}

start_hosts() {
  mkdir -p "$DEMO_DIR/ssh"
  [ -f "$DEMO_DIR/ssh/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C homelab-gpu-demo -f "$DEMO_DIR/ssh/id_ed25519"
  local i name
  for i in $(seq 1 "$HOSTS"); do
    name=$(host_name "$i")
    if [ -z "$(docker ps -q --filter "name=^${name}$")" ]; then
      docker rm -f "$name" >/dev/null 2>&1 || true
      say "starting lab host $name (ssh on 127.0.0.1:$((2200 + i)))"
      docker run -d --name "$name" --hostname "$name" --label homelab.gpu.demo=true "${LAB_RUN_ARGS[@]}" \
        -p "127.0.0.1:$((2200 + i)):22" -p "127.0.0.1:$((15000 + 10 * (i - 1))):5000" \
        -p "127.0.0.1:$((15001 + 10 * (i - 1))):5001" \
        "$PREFIX/debian12:current" >/dev/null
    fi
    docker exec -i "$name" sh -c 'install -d -m 0700 -o lab -g lab /home/lab/.ssh &&
      cat > /home/lab/.ssh/authorized_keys && chown lab:lab /home/lab/.ssh/authorized_keys &&
      chmod 0600 /home/lab/.ssh/authorized_keys' <"$DEMO_DIR/ssh/id_ed25519.pub"
  done
  for i in $(seq 1 "$HOSTS"); do
    for _ in $(seq 1 60); do
      ssh -q -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=2 \
        -i "$DEMO_DIR/ssh/id_ed25519" -p $((2200 + i)) lab@127.0.0.1 true && continue 2
      sleep 1
    done
    die "lab host $(host_name "$i") does not answer on ssh 127.0.0.1:$((2200 + i))"
  done
}

write_inventory() {
  # lab/demo/inventory.yml describes demo-gpu-1; more hosts get the same settings on their own ports
  # (each a copy of demo-gpu-1's block only).
  local inv="$DEMO_DIR/inventory.yml"
  cp lab/demo/inventory.yml "$inv"
  python3 - "$inv" "$HOSTS" <<'PY'
import sys
path, hosts = sys.argv[1], int(sys.argv[2])
text = open(path).read()
start = text.index('    demo-gpu-1:\n')
end = text.index('  vars:\n')
one = text[start:end]
blocks = []
for i in range(2, hosts + 1):
    block = one.replace('demo-gpu-1', 'demo-gpu-%d' % i).replace('2201', str(2200 + i))
    blocks.append(block.replace('15000', str(15000 + 10 * (i - 1))).replace('15001', str(15001 + 10 * (i - 1))))
open(path, 'w').write(text[:end] + ''.join(blocks) + text[end:])
PY
}

build_and_push_model() {
  say "building the demo cog image (cog + coglet from PyPI, cached)"
  PIP="$VENV/bin/pip" lab/images/cog-demo/fetch-wheels.sh
  local rootfs
  rootfs=$(docker image ls --format '{{.Repository}}:{{.Tag}}' "$PREFIX/debian12-rootfs" | head -n 1)
  [ -n "$rootfs" ] || die "no $PREFIX/debian12-rootfs image: run lab/build-images.sh"
  docker build --quiet --build-arg "BASE=$rootfs" -t "$PREFIX/cog-demo:current" lab/images/cog-demo >/dev/null
  # The controller's docker pushes through each host's published registry port; its login stays in
  # the demo directory, not in root's ~/.docker.
  export DOCKER_CONFIG="$DEMO_DIR/docker-config"
  mkdir -p "$DOCKER_CONFIG"
  local i port digest
  for i in $(seq 1 "$HOSTS"); do
    port=$((15001 + 10 * (i - 1)))
    for _ in $(seq 1 30); do
      [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/")" = 401 ] && break; sleep 1
    done
    echo demo-registry-password | docker login --username demo --password-stdin "127.0.0.1:$port" >/dev/null
    docker tag "$PREFIX/cog-demo:current" "127.0.0.1:$port/cog-demo:v1"
    digest=$(docker push "127.0.0.1:$port/cog-demo:v1" | sed -n 's/.*digest: \(sha256:[0-9a-f]\{64\}\).*/\1/p')
    [ -n "$digest" ] || die "pushing the demo image to 127.0.0.1:$port gave no digest"
    docker image rm "127.0.0.1:$port/cog-demo:v1" >/dev/null
    printf '%s' "$digest" >"$DEMO_DIR/$(host_name "$i").digest"
  done
  unset DOCKER_CONFIG
}

lab() {
  say "setting up the controller"
  setup_packages
  setup_docker
  setup_venv
  setup_tree
  lab/build-images.sh
  export HOMELAB_GPU_DEMO_DIR="$DEMO_DIR" ANSIBLE_CONFIG="$ROOT/ansible.cfg"
  start_hosts
  write_inventory
  say "lab-only stand-ins and registry on the lab hosts"
  ansible-playbook -i "$DEMO_DIR/inventory.yml" lab/demo/prepare.yml
  [ "${DEMO_MODEL_IMAGE:-1}" = 0 ] || build_and_push_model
}

up() {
  lab
  say "the main job: ansible-playbook homelab.gpu.site -i $DEMO_DIR/inventory.yml"
  # shellcheck disable=SC2086
  ansible-playbook homelab.gpu.site -i "$DEMO_DIR/inventory.yml" ${DEMO_SITE_ARGS:-} | tee "$DEMO_DIR/site.log"
  say "a prediction"
  ansible-playbook -i "$DEMO_DIR/inventory.yml" lab/demo/predict.yml | tee "$DEMO_DIR/predict.log"
  say "done"
  grep -A$((HOSTS + 1)) '^PLAY RECAP' "$DEMO_DIR/site.log" | tail -n "$HOSTS"
  echo "fleet status: $DEMO_DIR/status/status.html (and status.md); tear down: lab/demo.sh down"
}

case "${1:-up}" in
  up) up ;;
  lab) lab ;;
  down) down ;;
  *) die "usage: lab/demo.sh [up|lab|down]" ;;
esac
