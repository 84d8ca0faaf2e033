# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which container holds which GPU memory. Private to this collection: no API promise.

nvidia-smi lists each compute process with its host PID and the memory it holds. A model's GPU process is a child
of its container's init (the coglet worker, for current cog images); its ``/proc/<pid>/cgroup`` names the container
id (``0::/docker/<id>`` with the cgroupfs driver, ``.../docker-<id>.scope`` with systemd). :func:`attribute` is
pure; :func:`read_cgroups` is the one read of the host.
"""

from __future__ import annotations

import re

_CONTAINER_ID_RE = re.compile(r'(?<![0-9a-f])([0-9a-f]{64})(?![0-9a-f])')


def container_id_from_cgroup(text):
    """The 64-hex container id in a ``/proc/<pid>/cgroup`` file (cgroup v1 or v2, cgroupfs or systemd)."""
    for line in (text or '').splitlines():
        match = _CONTAINER_ID_RE.search(line.rsplit(':', 1)[-1])
        if match:
            return match.group(1)
    return None


def gpu_pids(gpus):
    """Every PID that nvidia-smi lists on ``gpus`` (nvidia_smi_info's list)."""
    pids = set()
    for gpu in gpus or []:
        for proc in gpu.get('processes') or []:
            if isinstance(proc.get('pid'), int):
                pids.add(proc['pid'])
    return sorted(pids)


def attribute(gpus, cgroups, containers):
    """Split the GPU processes between containers.

    ``gpus`` is nvidia_smi_info's list, ``cgroups`` maps a PID to the text of its cgroup file (a PID that is
    gone is absent), ``containers`` maps a full container id to a container name. Returns ``(by_container,
    others)``: ``by_container`` maps a name to ``[{gpu_index, gpu_uuid, used_mib, pids}]`` (one entry per GPU),
    ``others`` lists the processes of no known container as ``{gpu_index, gpu_uuid, pid, name, used_mib,
    container_id}`` (``container_id`` set when the process is in some other container).
    """
    by_container, others = {}, []
    for gpu in gpus or []:
        for proc in gpu.get('processes') or []:
            pid = proc.get('pid')
            used = proc.get('used_memory_mib') or 0
            cid = container_id_from_cgroup(cgroups.get(pid)) if pid in cgroups else None
            name = containers.get(cid) if cid else None
            if name is None:
                others.append({'gpu_index': gpu.get('index'), 'gpu_uuid': gpu.get('uuid'), 'pid': pid,
                               'name': proc.get('name'), 'used_mib': used, 'container_id': cid})
                continue
            entries = by_container.setdefault(name, [])
            entry = next((e for e in entries if e['gpu_uuid'] == gpu.get('uuid')), None)
            if entry is None:
                entry = {'gpu_index': gpu.get('index'), 'gpu_uuid': gpu.get('uuid'), 'used_mib': 0, 'pids': []}
                entries.append(entry)
            entry['used_mib'] += used
            entry['pids'].append(pid)
    return by_container, others


def read_cgroups(pids, proc_root='/proc'):
    """``{pid: cgroup file text}`` for the PIDs that still exist and can be read."""
    out = {}
    for pid in pids:
        try:
            with open('%s/%d/cgroup' % (proc_root, int(pid))) as handle:
                out[pid] = handle.read()
        except (IOError, OSError, TypeError, ValueError):
            continue
    return out
