#!/usr/bin/env bash
# Fleet-scale benchmark of the site playbook on the demo lab (a benchmark, not a timed test: it
# never fails on a slow number, it reports). See docs/PERFORMANCE.md.
#
#   bench/run.sh                 # 1, 5, 10 and 20 lab hosts (about 40 minutes on 2 cores)
#   bench/run.sh --quick         # 1 and 5 hosts (about 12 minutes)
#   bench/run.sh --sizes "1 3"   # any sizes; the first size also gets the on-host module timings
#   bench/run.sh --site-max 5    # hosts above 5 run the provision playbook only (default: 10)
#   bench/run.sh --mitogen       # also the idempotent re-runs under Mitogen's mitogen_linear strategy
#
# For each size N it removes the demo lab, brings up N lab hosts with `lab/demo.sh lab` (Debian 12
# systemd containers reached over SSH on 127.0.0.1:2201..), then records:
#   - the first converge of homelab.gpu.site (homelab.gpu.provision above --site-max),
#   - the idempotent re-run: cold (fresh SSH connections, as a user re-running later would have) and
#     warm (the ControlPersist masters of the cold run still up), with its changed count,
#   - per task per host: the mean of the per-host task durations, and wall / (tasks x hosts),
#   - the peak memory of ansible-playbook (its whole process tree, sampled from /proc, and its largest
#     process as the kernel counts it, = GNU time's "Maximum resident set size"),
#   - a raw baseline: one plain SSH session per host, all hosts at once, running the same probes by
#     hand (nvidia-smi stand-in, cat daemon.json, docker inspect of the model, curl of /health-check),
#   - for site sizes, also the idempotent provision run, so every size compares with size 1 alike,
#   - the floor: what one trivial task costs here (bench/playbooks/floor.yml: ping, ping with become, debug).
# On the first size it also times each module of an idempotent run on the host itself
# (bench/module-timing.sh) and the readiness detection latency (three model replacements with a
# known SETUP_SECONDS). Results: .cache/bench/<UTC time>/ and a table on stdout (bench/summarize.py).
# With --mitogen, each size also re-runs the same idempotent playbook, cold and warm like the plain ones,
# with ANSIBLE_STRATEGY=mitogen_linear from the Mitogen pinned in bench/mitogen-requirements.txt (its
# own virtualenv under .cache/mitogen/, never .venv). A Mitogen run that fails is recorded, not fatal:
# whether the collection's modules work under Mitogen is one of the things this option measures.
# The lab is removed at the end (lab/demo.sh down), also on failure or Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZES="1 5 10 20"
SITE_MAX=10
MITOGEN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) SIZES="1 5" ;;
    --sizes) SIZES=$2; shift ;;
    --site-max) SITE_MAX=$2; shift ;;
    --mitogen) MITOGEN=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

CACHE="$ROOT/.cache"
VENV="$ROOT/.venv"
LOGDIR="$ROOT/tests/output/logs"
DEMO_DIR="$CACHE/demo"
OUT="$CACHE/bench/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT" "$LOGDIR"
cd "$ROOT"
# shellcheck source=../lab/setup.sh
. "$ROOT/lab/setup.sh"

cleanup() { lab/demo.sh down >/dev/null 2>&1 || true; }
trap cleanup EXIT

# Mitogen in its own virtualenv, keyed by the content of its pinned requirements and the controller's
# Python, so that a new pin gets a new directory and an unchanged one is reused. The wheel is downloaded
# once into the same directory (hash-checked) and installed from there with --no-index: a later run
# needs no network. .venv and requirements-dev.txt stay as they are: Mitogen patches Ansible at run
# time, and the other tools (molecule, ansible-test) must not load it.
# Sets MITOGEN_STRATEGY_DIR to its strategy plugins (ANSIBLE_STRATEGY_PLUGINS). ansible-playbook from
# .venv imports ansible_mitogen from there: the plugin adds its own site-packages to sys.path.
setup_mitogen() {
  local req="$ROOT/bench/mitogen-requirements.txt" key dir purelib
  key=$({ cat "$req"; "$VENV/bin/python" -V; } | sha256sum | cut -c1-16)
  dir="$CACHE/mitogen/$key"
  if [ "$(cat "$dir/.stamp" 2>/dev/null)" != "$key" ]; then
    say "installing Mitogen into $dir (bench/mitogen-requirements.txt)"
    rm -rf "$dir/venv"
    mkdir -p "$dir/wheels"
    if ! ls "$dir/wheels"/mitogen-*.whl >/dev/null 2>&1; then
      "$VENV/bin/pip" download -q --require-hashes --no-deps --only-binary :all: -r "$req" -d "$dir/wheels" \
        >"$LOGDIR/pip-mitogen.log" 2>&1 || { tail -n 20 "$LOGDIR/pip-mitogen.log"; die "pip download of Mitogen failed"; }
    fi
    # No pip inside: the venv holds Mitogen alone, since its whole site-packages lands on the
    # controller's sys.path. .venv's pip installs into it (--python).
    "$VENV/bin/python" -m venv --without-pip "$dir/venv"
    "$VENV/bin/pip" --python "$dir/venv/bin/python" install -q --no-index --find-links "$dir/wheels" \
      --require-hashes --no-deps -r "$req" >>"$LOGDIR/pip-mitogen.log" 2>&1 \
      || { tail -n 20 "$LOGDIR/pip-mitogen.log"; die "pip install of Mitogen failed"; }
    echo "$key" >"$dir/.stamp"
  fi
  purelib=$("$dir/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  MITOGEN_STRATEGY_DIR="$purelib/ansible_mitogen/plugins/strategy"
  MITOGEN_VERSION=$(sed -n 's/^Version: //p' "$purelib"/mitogen-*.dist-info/METADATA)
  [ -f "$MITOGEN_STRATEGY_DIR/mitogen_linear.py" ] || die "no mitogen_linear strategy in $MITOGEN_STRATEGY_DIR"
}

ssh_opts() {  # ssh_opts <port>: a plain, fresh SSH session to a lab host (no connection sharing)
  echo "-q -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ControlMaster=no
    -o ControlPath=none -i $DEMO_DIR/ssh/id_ed25519 -p $1"
}

# One timed playbook run: run <label> <playbook> [ansible-playbook args...]
# Labels mitogen-* run under Mitogen's mitogen_linear strategy; their failure is recorded in
# n<N>-<label>.failed (the exit status) and the benchmark goes on.
run() {
  local label=$1 playbook=$2; shift 2
  local cp="$OUT/cp/$N-$label" strategy=()
  # A fresh ControlPath directory per cold run: no SSH master of an earlier run is reused.
  # The warm run reuses the cold run's directory, whose masters (ControlPersist) are still up.
  # Mitogen keeps one ssh per host for its whole run but sets no ControlPath, so ssh ignores the
  # ControlMaster/ControlPersist of ssh_args: its "warm" run is the same run once more, which shows how
  # much a second run varies (it gets the same directory all the same, in case a later Mitogen uses it).
  case "$label" in
    idem-warm) cp="$OUT/cp/$N-idem-cold" ;;
    mitogen-warm) cp="$OUT/cp/$N-mitogen-cold" ;;
    *) mkdir -p "$cp" ;;
  esac
  # Mitogen decides host key checking from Ansible's host_key_checking alone and puts its own
  # "-o StrictHostKeyChecking yes" before the inventory's ssh args (ssh keeps the first value), so the demo
  # inventory's "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null" ends in "Host key checking is
  # enabled, and SSH reported an unrecognized or mismatching host key". ANSIBLE_HOST_KEY_CHECKING=False
  # says the same as that inventory line in the form Mitogen reads (lab hosts get new keys every set-up).
  case "$label" in
    mitogen-*) strategy=(ANSIBLE_STRATEGY_PLUGINS="$MITOGEN_STRATEGY_DIR" ANSIBLE_STRATEGY=mitogen_linear
                         ANSIBLE_HOST_KEY_CHECKING=False) ;;
  esac
  say "$N host(s): $label ($playbook)"
  # The hosts keep working for a while after a converge (model setup, dockerd, apt triggers): wait for a
  # mostly idle machine so that a run does not pay for the previous one.
  python3 bench/measure.py --settle
  local rc=0
  env "${strategy[@]}" ANSIBLE_SSH_CONTROL_PATH_DIR="$cp" BENCH_PROFILE_OUT="$OUT/n$N-$label.profile.json" \
    ANSIBLE_CALLBACK_PLUGINS="$ROOT/bench/callback_plugins" ANSIBLE_CALLBACKS_ENABLED=bench_profile \
    python3 bench/measure.py "$OUT/n$N-$label.measure.json" -- \
    ansible-playbook "$playbook" -i "$DEMO_DIR/inventory.yml" "$@" >"$OUT/n$N-$label.log" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    tail -n 40 "$OUT/n$N-$label.log"
    echo "bench: $label on $N host(s) failed (exit $rc), see $OUT/n$N-$label.log" >&2
    case "$label" in mitogen-*) echo "$rc" >"$OUT/n$N-$label.failed"; return 0 ;; esac
    exit 1
  fi
  grep -A"$((N + 1))" "^PLAY RECAP" "$OUT/n$N-$label.log" | grep -v "^localhost" | head -n 3
}

# The raw baseline: every host at once, one plain SSH session each, the probes by hand; 3 rounds.
baseline() {
  local mode=$1 probes i start end
  probes='nvidia-smi -q -x >/dev/null && sudo cat /etc/docker/daemon.json >/dev/null'
  if [ "$mode" = site ]; then
    # The demo inventory's model: hello_cog on port 5000 of each host.
    probes="$probes && sudo docker inspect hello_cog >/dev/null && curl -fsS http://127.0.0.1:5000/health-check >/dev/null"
  else
    probes="$probes && sudo docker info --format '{{.ServerVersion}}' >/dev/null"
  fi
  say "$N host(s): raw baseline ($probes)"
  for _ in 1 2 3; do
    start=$(date +%s%N)
    for i in $(seq 1 "$N"); do
      # SC2046: ssh_opts is a list of words on purpose. SC2029: the probes are meant to expand on the
      # host (they are one fixed string, quoted here so that ssh passes it as one command line).
      # shellcheck disable=SC2046,SC2029
      ssh $(ssh_opts $((2200 + i))) lab@127.0.0.1 "$probes" &
    done
    wait
    end=$(date +%s%N)
    echo "$(( (end - start) / 1000000 ))" >>"$OUT/n$N-baseline.ms"
  done
  tr '\n' ' ' <"$OUT/n$N-baseline.ms"; echo "ms"
}

# Readiness detection: replace hello_cog on demo-gpu-1 with a known SETUP_SECONDS, three times.
readiness() {
  local digest s
  digest=$(cat "$DEMO_DIR/demo-gpu-1.digest")
  for s in 2 3 4; do
    cat >"$OUT/ready-$s.json" <<JSON
{"cog_models": [{"name": "hello_cog", "image": "127.0.0.1:5001/cog-demo@$digest", "port": 5000, "gpus": [0],
  "vram_mib": 1024, "env": {"SETUP_SECONDS": "$s"}, "state": "started", "smoke_input": {"text": "smoke test"}}]}
JSON
    run "ready-setup$s" homelab.gpu.deploy -l demo-gpu-1 -e "@$OUT/ready-$s.json"
  done
}

export HOMELAB_GPU_DEMO_DIR="$DEMO_DIR" ANSIBLE_CONFIG="$ROOT/ansible.cfg"
MITOGEN_STRATEGY_DIR=
MITOGEN_VERSION=
# Before the first lab comes up: a failed install should cost seconds, not a lab.
if [ "$MITOGEN" = 1 ]; then setup_mitogen; fi
first=1
for N in $SIZES; do
  mode=site
  [ "$N" -gt "$SITE_MAX" ] && mode=provision
  say "bench: $N lab host(s), $mode"
  lab/demo.sh down >/dev/null
  model_image=1
  [ "$mode" = provision ] && model_image=0
  start=$(date +%s)
  DEMO_HOSTS=$N DEMO_MODEL_IMAGE=$model_image lab/demo.sh lab >"$OUT/n$N-lab.log" 2>&1 \
    || { tail -n 40 "$OUT/n$N-lab.log"; exit 1; }
  echo "$(( $(date +%s) - start ))" >"$OUT/n$N-lab.s"
  setup_tree
  export ANSIBLE_CONFIG="$ROOT/ansible.cfg"
  echo "$mode" >"$OUT/n$N.mode"
  run first "homelab.gpu.$mode"
  run idem-cold "homelab.gpu.$mode"
  run idem-warm "homelab.gpu.$mode"
  # The same re-run under Mitogen, on the same converged hosts; warm only when cold got through (a
  # second identical failure tells nothing new).
  if [ "$MITOGEN" = 1 ]; then
    run mitogen-cold "homelab.gpu.$mode"
    [ -e "$OUT/n$N-mitogen-cold.failed" ] || run mitogen-warm "homelab.gpu.$mode"
  fi
  [ "$mode" = site ] && run prov-idem-cold homelab.gpu.provision
  run floor bench/playbooks/floor.yml
  baseline "$mode"
  if [ "$first" = 1 ] && [ "$mode" = site ]; then
    say "$N host(s): on-host module timings (bench/module-timing.sh)"
    bench/module-timing.sh "$DEMO_DIR" "$OUT/modules.tsv" >"$OUT/modules.log" 2>&1 \
      || { tail -n 30 "$OUT/modules.log"; exit 1; }
    readiness
  fi
  first=0
done

lab/demo.sh down >/dev/null
trap - EXIT
{
  echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "ansible: $(ansible --version | head -n 1)"
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "command: bench/run.sh --sizes \"$SIZES\" --site-max $SITE_MAX$([ "$MITOGEN" = 1 ] && echo " --mitogen")"
  if [ "$MITOGEN" = 1 ]; then echo "mitogen: $MITOGEN_VERSION (strategy mitogen_linear, $MITOGEN_STRATEGY_DIR)"; fi
} >"$OUT/machine.txt"
python3 bench/summarize.py "$OUT" | tee "$OUT/results.md"
echo "bench: results in $OUT (results.md, logs, profiles)"
