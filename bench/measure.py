"""Run a command and measure it: wall time, peak memory of its whole process tree, peak RSS of its largest process.

    python3 bench/measure.py OUT.json -- ansible-playbook ...
    python3 bench/measure.py --settle     # wait (at most 45 s) until the machine's CPUs are less than 30 % busy

The tree is sampled from /proc every 50 ms: the command and all its descendants, which for ansible-playbook
means the controller process plus its forked workers and their ssh clients. Two sums are kept: RSS, which counts
the copy-on-write pages that forked workers share with the controller once per process (an overcount), and PSS
(/proc/<pid>/smaps_rollup), which splits shared pages between their sharers, so its sum is the memory the run
really holds. The largest single process is the kernel's own account (getrusage RUSAGE_CHILDREN ru_maxrss,
what GNU time -v prints as "Maximum resident set size"). Also kept: the CPU time of the command's tree (the controller's
share: ansible-playbook, its workers and ssh clients, not the modules on the hosts), the load average at the start
and how busy the machine's CPUs were during the run (all processes: the controller, the lab hosts and anything else running).
Exits with the command's status. No psutil.
"""

import json
import os
import resource
import subprocess
import sys
import threading
import time

PAGE = os.sysconf('SC_PAGE_SIZE')


def pss(pid):
    """PSS of a process in bytes (0 when it is gone or the kernel has no smaps_rollup)."""
    try:
        with open('/proc/%d/smaps_rollup' % pid) as handle:
            for line in handle:
                if line.startswith('Pss:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def tree_rss(root):
    """(RSS sum, PSS sum) in bytes of root and its descendants, from /proc."""
    children = {}
    rss = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as handle:
                data = handle.read()
        except OSError:
            continue
        # comm may hold spaces and parentheses: split after the last ')'.
        fields = data[data.rfind(')') + 2:].split()
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * PAGE
    total, total_pss, todo = 0, 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        total_pss += pss(pid)
        todo.extend(children.get(pid, []))
    return total, total_pss


def cpu_times():
    """(busy, total) jiffies of the whole machine, from the first line of /proc/stat."""
    with open('/proc/stat') as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def settle(limit=45.0, busy_below=30.0, window=3.0):
    """Wait until the machine is mostly idle (CPU busy below busy_below % over window s), at most limit s."""
    start = time.monotonic()
    while True:
        b0, t0 = cpu_times()
        time.sleep(window)
        b1, t1 = cpu_times()
        busy = 100.0 * (b1 - b0) / max(1, t1 - t0)
        waited = time.monotonic() - start
        if busy < busy_below or waited >= limit:
            return round(waited, 1), round(busy, 1)


def main():
    if sys.argv[1:2] == ['--settle']:
        waited, busy = settle()
        print('settled after %s s (CPU busy %s %%)' % (waited, busy))
        return
    if len(sys.argv) < 4 or sys.argv[2] != '--':
        sys.exit('usage: measure.py OUT.json -- command ...')
    out, cmd = sys.argv[1], sys.argv[3:]
    with open('/proc/loadavg') as handle:
        load = float(handle.read().split()[0])
    busy0 = cpu_times()
    start = time.monotonic()
    proc = subprocess.Popen(cmd)
    peak = [0, 0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                rss, pss_sum = tree_rss(proc.pid)
                peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss_sum)
            except Exception:  # a process vanishing mid-read is normal
                pass
            done.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    rc = proc.wait()
    wall = time.monotonic() - start
    done.set()
    thread.join()
    busy1 = cpu_times()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    largest = usage.ru_maxrss * 1024
    with open(out, 'w') as handle:
        json.dump({'rc': rc, 'wall': round(wall, 3), 'peak_tree_rss_mib': round(peak[0] / 2 ** 20, 1),
                   'peak_tree_pss_mib': round(peak[1] / 2 ** 20, 1),
                   'peak_process_rss_mib': round(largest / 2 ** 20, 1), 'load_at_start': load,
                   'controller_cpu_s': round(usage.ru_utime + usage.ru_stime, 2),
                   'machine_busy_pct': round(100.0 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 1),
                   'cmd': cmd}, handle, indent=1)
    sys.exit(rc)


if __name__ == '__main__':
    main()
