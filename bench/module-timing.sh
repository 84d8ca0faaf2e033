#!/usr/bin/env bash
# On-host execution time of every module that an idempotent site run calls on demo-gpu-1:
#
#   bench/module-timing.sh <demo dir> <out.tsv>
#
# Method: run the site playbook once more on demo-gpu-1 with ANSIBLE_KEEP_REMOTE_FILES=1 and pipelining
# off, so that each module's AnsiballZ payload (the module, its module_utils and its arguments in one
# self-contained python file, exactly what pipelining feeds to python3 over SSH) stays on the host. Then,
# in ONE SSH session as root, run each payload with the host's python3: one warm-up run, then five timed
# runs. The time is wall time on the host, from the start of python3 to its exit: interpreter start,
# unzip of the payload, the module's own work (e.g. nvidia-smi, reading daemon.json, docker inspect) and
# its JSON output; no SSH, no controller, no become. The run is idempotent, so running a payload again
# changes nothing. Output lines: task name, module, then the five times in ms.
set -euo pipefail

DEMO_DIR=$1
OUT=$2
SSH=(ssh -q -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ControlMaster=no
  -o ControlPath=none -i "$DEMO_DIR/ssh/id_ed25519" -p 2201 lab@127.0.0.1)
LOG="${OUT%.tsv}.keep.log"

"${SSH[@]}" 'sudo rm -rf /home/lab/.ansible/tmp /root/.ansible/tmp'
ANSIBLE_KEEP_REMOTE_FILES=1 ANSIBLE_PIPELINING=0 \
  ansible-playbook homelab.gpu.site -i "$DEMO_DIR/inventory.yml" -l demo-gpu-1 -vvv >"$LOG" 2>&1 \
  || { tail -n 40 "$LOG"; exit 1; }
grep -A2 '^PLAY RECAP' "$LOG"

# Which task put which payload: the TASK header before each "PUT ... TO .../AnsiballZ_<module>.py".
awk '/^TASK \[/ { task = $0; sub(/^TASK \[/, "", task); sub(/\] \**$/, "", task) }
     /PUT .* TO .*AnsiballZ_.*\.py/ { for (i = 1; i <= NF; i++) if ($i ~ /AnsiballZ_.*\.py$/) print $i "\t" task }' \
  "$LOG" | tr -d "'" >"${OUT%.tsv}.tasks.tsv"

# shellcheck disable=SC2016
"${SSH[@]}" 'sudo sh -s' >"${OUT%.tsv}.raw.tsv" <<'REMOTE'
for f in $(ls -d /home/lab/.ansible/tmp/ansible-tmp-*/AnsiballZ_*.py /root/.ansible/tmp/ansible-tmp-*/AnsiballZ_*.py 2>/dev/null); do
  python3 "$f" >/dev/null 2>&1 || true
  line="$f"
  for i in 1 2 3 4 5; do
    s=$(date +%s%N); python3 "$f" >/dev/null 2>&1 || true; e=$(date +%s%N)
    line="$line	$(( (e - s) / 1000000 ))"
  done
  echo "$line"
done
REMOTE
rm_tmp=$("${SSH[@]}" 'sudo rm -rf /home/lab/.ansible/tmp /root/.ansible/tmp; echo ok')
[ "$rm_tmp" = ok ]

# task <TAB> module <TAB> t1..t5 (ms), in the order the run called them.
python3 - "${OUT%.tsv}.tasks.tsv" "${OUT%.tsv}.raw.tsv" "$OUT" <<'PY'
import re
import sys
tasks_path, raw_path, out_path = sys.argv[1:]
tasks = {}
for line in open(tasks_path):
    path, _, task = line.rstrip('\n').partition('\t')
    tasks[path] = task
rows = []
for line in open(raw_path):
    parts = line.rstrip('\n').split('\t')
    path, times = parts[0], parts[1:]
    stamp = float(re.search(r'ansible-tmp-([0-9.]+)-', path).group(1))
    module = re.search(r'AnsiballZ_(.*)\.py$', path).group(1)
    rows.append((stamp, tasks.get(path, '?'), module, times))
with open(out_path, 'w') as out:
    for _, task, module, times in sorted(rows):
        out.write('\t'.join([task, module] + times) + '\n')
PY
cat "$OUT"
