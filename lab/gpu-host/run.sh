#!/usr/bin/env bash
# The recorded run of homelab.gpu on a lent GPU machine (Ubuntu 24.04, NVIDIA driver 580, no systemd, nothing
# reachable), whose output docs/hardware-validation.md quotes. Not part of the tests: it needs a real GPU.
#
#   lab/gpu-host/run.sh OUTDIR
#
# Expects, brought along in .whl/ (ignored by git): dk.tar.xz (Debian 13's dockerd 26.1.5, containerd, runc,
# docker-proxy, docker CLI, tini), ctl/*.whl (ansible-core and resolvelib for the machine's python3, which
# already has jinja2, PyYAML and packaging), wheels/*.whl (cog, coglet and structlog for the model image).
set -u
OUTDIR=${1:?usage: run.sh OUTDIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/lab/gpu-host"
export GPU_RUN_DIR=/tmp/gpu-run
mkdir -p "$OUTDIR" "$GPU_RUN_DIR"
cd "$ROOT" || exit 2

step() { printf '\n\n######## %s  (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
smi() {
  echo '$ nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv'
  nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv
  echo '$ nvidia-smi --query-gpu=index,name,memory.used,memory.free,memory.total --format=csv'
  nvidia-smi --query-gpu=index,name,memory.used,memory.free,memory.total --format=csv
}
play() {  # play NAME ARGS...: run ansible-playbook, show the command, the output and the wall time
  local name=$1; shift
  echo "\$ ansible-playbook $*"
  local t0; t0=$(date +%s.%N)
  python3 "$GPU_RUN_DIR/site/bin/ansible-playbook" "$@" 2>&1 | tee "$GPU_RUN_DIR/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "[ansible-playbook rc=$rc, $(python3 -c "import time; print(round(time.time()-$t0, 2))") s wall]"
}

step "machine"
uname -a; grep PRETTY /etc/os-release; nvidia-smi -L; python3 --version
export PATH=/opt/dk/bin:/usr/local/nvidia/bin:$PATH

step "Docker 26 started by hand (no systemd here), CDI on in daemon.json"
[ -x /opt/dk/bin/dockerd ] || tar -C /opt -xJf .whl/dk.tar.xz
mkdir -p /etc/docker /etc/cdi
echo '{"features": {"cdi": true}}' >/etc/docker/daemon.json
docker info >/dev/null 2>&1 || { setsid dockerd --iptables=false --ip6tables=false >/tmp/dockerd.log 2>&1 </dev/null & }
for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
docker version --format 'client {{.Client.Version}}, server {{.Server.Version}}'
docker info --format 'CDI spec dirs: {{json .CDISpecDirs}}, runtimes: {{json .Runtimes}}'

step "CDI spec: a stand-in for nvidia-ctk (not installable here), written for this machine's driver layout"
# Each GPU's device node by index and "all"; the control and UVM nodes and the driver's files
# (/usr/local/nvidia, read-only) for every container; nvidia-smi mounted where images look for it.
{
  echo 'cdiVersion: 0.5.0'
  echo 'kind: nvidia.com/gpu'
  echo 'devices:'
  for dev in /dev/nvidia[0-9]*; do
    i=${dev#/dev/nvidia}
    printf -- '- name: "%s"\n  containerEdits:\n    deviceNodes:\n    - path: %s\n' "$i" "$dev"
  done
  echo '- name: all'
  echo '  containerEdits:'
  echo '    deviceNodes:'
  for dev in /dev/nvidia[0-9]*; do echo "    - path: $dev"; done
  echo 'containerEdits:'
  echo '  env:'
  echo '  - LD_LIBRARY_PATH=/usr/local/nvidia/lib64'
  echo '  deviceNodes:'
  for dev in /dev/nvidiactl /dev/nvidia-uvm /dev/nvidia-uvm-tools; do [ -e $dev ] && echo "  - path: $dev"; done
  echo '  mounts:'
  echo '  - {hostPath: /usr/local/nvidia, containerPath: /usr/local/nvidia, options: [ro, nosuid, nodev, rbind]}'
  echo '  - {hostPath: /usr/local/nvidia/bin/nvidia-smi, containerPath: /usr/bin/nvidia-smi, options: [ro, nosuid, nodev, bind]}'
} >/etc/cdi/nvidia.yaml
cat /etc/cdi/nvidia.yaml
cp /etc/cdi/nvidia.yaml "$OUTDIR/cdi-nvidia.yaml"

step "ansible-core for the machine's python3, the collection seen as ansible_collections/homelab/gpu"
python3 -m pip install -q --no-index --no-deps --no-compile --target "$GPU_RUN_DIR/site" .whl/ctl/*.whl || exit 3
export PYTHONPATH="$GPU_RUN_DIR/site"
mkdir -p "$GPU_RUN_DIR/coll/ansible_collections/homelab"
ln -sfn "$ROOT" "$GPU_RUN_DIR/coll/ansible_collections/homelab/gpu"
export ANSIBLE_COLLECTIONS_PATH="$GPU_RUN_DIR/coll" ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
command -v sudo >/dev/null || export ANSIBLE_BECOME_METHOD=su   # root already; no sudo on this image
python3 "$GPU_RUN_DIR/site/bin/ansible-playbook" --version | head -1

step "model images: the base is this machine's own Python and PyTorch; cog and coglet from wheels"
if ! docker image inspect gpu-base:local >/dev/null 2>&1; then
  t0=$(date +%s)
  tar -C / -c --exclude=./usr/local/nvidia usr/bin usr/lib usr/lib64 usr/sbin usr/share/zoneinfo lib lib64 bin sbin \
    etc opt/torch 2>/dev/null | docker import - gpu-base:local >/dev/null
  echo "base image imported in $(( $(date +%s) - t0 )) s"
fi
rm -rf "$GPU_RUN_DIR/ctx" && cp -r "$HERE/model" "$GPU_RUN_DIR/ctx" && cp -r .whl/wheels "$GPU_RUN_DIR/ctx/wheels"
t0=$(date +%s)
DOCKER_BUILDKIT=0 docker build -q -t homelab-gpu-test/model-a:1 --build-arg WEIGHTS_GIB=4 --build-arg MODEL_NAME=model_a "$GPU_RUN_DIR/ctx"
DOCKER_BUILDKIT=0 docker build -q -t homelab-gpu-test/model-b:1 --build-arg WEIGHTS_GIB=6 --build-arg MODEL_NAME=model_b "$GPU_RUN_DIR/ctx"
DOCKER_BUILDKIT=0 docker build -q -t homelab-gpu-test/model-b:2-broken --build-arg WEIGHTS_GIB=3 \
  --build-arg FAIL_AFTER_ALLOC=1 --build-arg MODEL_NAME=model_b "$GPU_RUN_DIR/ctx"
echo "three model images built in $(( $(date +%s) - t0 )) s"
docker images 'homelab-gpu-test/*' --format '{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}'

INV=(-i "$HERE/inventory.yml")
cat >"$GPU_RUN_DIR/a.yml" <<'EOF'
cog_models:
  - {name: model_a, image: "homelab-gpu-test/model-a:1", port: 5000, gpus: [0], vram_mib: 5000, smoke_input: {n: 2048}}
EOF
# model_b takes GPU 0 for itself: exclusive stops the other managed models there (model_a is no longer listed).
cat >"$GPU_RUN_DIR/b.yml" <<'EOF'
cog_models:
  - {name: model_b, image: "homelab-gpu-test/model-b:1", port: 5001, gpus: [0], vram_mib: 7000, exclusive: true,
     smoke_input: {n: 2048}}
EOF
cat >"$GPU_RUN_DIR/b-broken.yml" <<'EOF'
cog_models:
  - {name: model_b, image: "homelab-gpu-test/model-b:2-broken", port: 5001, gpus: [0], vram_mib: 7000,
     exclusive: true, smoke_input: {n: 2048}}
EOF
# The inventory as its owner keeps it after the swap: model_a listed, stopped on purpose.
cat >"$GPU_RUN_DIR/inventory-after.yml" <<'EOF'
cog_models:
  - {name: model_a, image: "homelab-gpu-test/model-a:1", port: 5000, gpus: [0], state: stopped}
  - {name: model_b, image: "homelab-gpu-test/model-b:1", port: 5001, gpus: [0], vram_mib: 7000, exclusive: true}
EOF

step "1. provision in check mode: what each role decides on this Ubuntu 24.04 machine"
# Docker's and NVIDIA's key servers are unreachable from here: a local stand-in file takes each key's place,
# so that check mode gets past the download and every role says what it would do.
echo "stand-in: the repository's real key cannot be downloaded on this machine" >"$GPU_RUN_DIR/standin-key.asc"
play provision-check homelab.gpu.provision "${INV[@]}" --check --diff -e nvidia_container_toolkit_cdi=true \
  -e "docker_repo_key_url=file://$GPU_RUN_DIR/standin-key.asc" \
  -e "nvidia_container_toolkit_repo_key_url=file://$GPU_RUN_DIR/standin-key.asc"

step "1a. the toolkit role alone in check mode, with CDI on"
ANSIBLE_ERROR_ON_MISSING_HANDLER=false play toolkit-check "$HERE/toolkit-check.yml" "${INV[@]}" --check --diff \
  -e "nvidia_container_toolkit_repo_key_url=file://$GPU_RUN_DIR/standin-key.asc"

step "1b. the GPU-in-container check, for real: a container gets the GPU through CDI and sees the host's UUID"
play verify "$HERE/verify.yml" "${INV[@]}" -v

step "2. a model that needs more than the GPU's real free memory is refused before anything changes"
smi
FREE=$(nvidia-smi -i 0 --query-gpu=memory.free --format=csv,noheader,nounits | tr -d ' ')
TOTAL=$(nvidia-smi -i 0 --query-gpu=memory.total --format=csv,noheader,nounits | tr -d ' ')
TOO_MUCH=$(( FREE + (TOTAL - FREE) / 2 ))
echo "free $FREE MiB of $TOTAL MiB; asking for $TOO_MUCH MiB"
play refused homelab.gpu.deploy "${INV[@]}" -e "{\"cog_models\": [{\"name\": \"model_a\", \"image\": \"homelab-gpu-test/model-a:1\", \"port\": 5000, \"gpus\": [0], \"vram_mib\": $TOO_MUCH}]}"
docker ps -a --format '{{.Names}} {{.Status}}'
smi

step "3. deploy model_a: CDI device, READY, smoke prediction computed on the GPU"
play deploy-a homelab.gpu.deploy "${INV[@]}" -e "@$GPU_RUN_DIR/a.yml" -v
docker inspect model_a --format 'devices: {{json .HostConfig.DeviceRequests}} cdi: {{json .HostConfig.Devices}}'
smi
CID=$(docker inspect model_a --format '{{.Id}}')
for p in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do
  echo "GPU pid $p: ppid $(ps -o ppid= -p "$p" | tr -d ' ') cmd $(ps -o args= -p "$p" | cut -c1-80); cgroup $(cat /proc/"$p"/cgroup)"
  cp /proc/"$p"/cgroup "$OUTDIR/coglet-worker.cgroup"
done
echo "model_a container id $CID"
nvidia-smi -q -x >"$OUTDIR/h100-580-coglet-model.xml"

step "4. the status report (text; Markdown and HTML are written too)"
play status-a homelab.gpu.status "${INV[@]}" -e "@$GPU_RUN_DIR/a.yml"
cp "$GPU_RUN_DIR/status/status.html" "$OUTDIR/status-a.html"

step "5. exclusive swap: model_b (6 GiB of weights) replaces model_a on GPU 0"
smi
play swap homelab.gpu.deploy "${INV[@]}" -e "@$GPU_RUN_DIR/b.yml" -v
smi
docker ps -a --format '{{.Names}} {{.Status}}'

step "6. an upgrade of model_b whose setup() raises after putting 3 GiB on the GPU is rolled back"
# nvidia-smi sampled every 0.5 s while the play runs: the broken setup's allocation appears, then goes.
( while :; do
    printf '%s ' "$(date -u +%H:%M:%S.%N | cut -c1-11)"
    nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader | tr '\n' ';'; echo
    sleep 0.5
  done ) >"$GPU_RUN_DIR/broken-samples.txt" 2>&1 &
SAMPLER=$!
play broken homelab.gpu.deploy "${INV[@]}" -e "@$GPU_RUN_DIR/b-broken.yml"
kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null
echo "GPU compute processes sampled during the play (time, then pid, MiB per process), changes only:"
awk '{ line = $0; sub(/^[^ ]+ /, "", line); if (line != last) print; last = line }' "$GPU_RUN_DIR/broken-samples.txt"
smi
docker ps -a --format '{{.Names}} {{.Image}} {{.Status}}'
curl -s 127.0.0.1:5001/health-check | head -c 300; echo

step "7. the same run again changes nothing"
play rerun homelab.gpu.deploy "${INV[@]}" -e "@$GPU_RUN_DIR/b.yml"
smi

step "8. the status report after the swap"
play status-b homelab.gpu.status "${INV[@]}" -e "@$GPU_RUN_DIR/inventory-after.yml"
cp "$GPU_RUN_DIR/status/status.md" "$OUTDIR/status-b.md"
cp "$GPU_RUN_DIR/status/status.html" "$OUTDIR/status-b.html"

step "clean up: the model containers go, GPU memory comes back"
docker rm -f model_a model_b >/dev/null 2>&1
sleep 1
smi
