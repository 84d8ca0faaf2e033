# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What cog_model reads of the host: ``docker inspect`` and ``/proc/net/tcp``. Private to this collection.

Plain functions over the text Docker and the kernel print; tested with recorded output.
"""

from __future__ import annotations

import json

from ansible_collections.homelab.gpu.plugins.module_utils._cog import GPUS_LABEL, HASH_LABEL, MANAGED_LABEL


def summarize_container(data):
    """The parts of one ``docker container inspect`` entry that the module uses."""
    config = data.get('Config') or {}
    state = data.get('State') or {}
    labels = config.get('Labels') or {}
    host = data.get('HostConfig') or {}
    bindings = []
    for key in sorted(host.get('PortBindings') or {}):
        for binding in (host['PortBindings'][key] or []):
            if str(binding.get('HostPort') or '').isdigit():
                bindings.append((binding.get('HostIp') or '', int(binding['HostPort'])))
    return {
        'id': data.get('Id'),
        'name': (data.get('Name') or '').lstrip('/'),
        'image': config.get('Image'),
        'image_id': data.get('Image'),
        'status': state.get('Status'),
        'running': bool(state.get('Running')),
        'exit_code': state.get('ExitCode'),
        'restart_count': data.get('RestartCount') or 0,
        'pid': state.get('Pid') or 0,
        'started_at': state.get('StartedAt') if state.get('Running') else None,
        'managed': labels.get(MANAGED_LABEL) == 'true',
        'config_hash': labels.get(HASH_LABEL),
        'gpu_uuids': [u for u in (labels.get(GPUS_LABEL) or '').split(',') if u],
        'host_ports': sorted(set(binding[1] for binding in bindings)),
        'bindings': bindings,
        'privileged': bool(host.get('Privileged')),
    }


def poll_host(bind_address):
    """Where to reach a port published on ``bind_address`` from the host itself."""
    if bind_address in ('0.0.0.0', '', None):
        return '127.0.0.1'
    if bind_address == '::':
        return '[::1]'
    return '[%s]' % bind_address if ':' in bind_address else bind_address


def parse_inspect(text):
    """Parse the JSON array that ``docker container inspect`` prints into ``{name: summary}``."""
    text = (text or '').strip()
    if not text:
        return {}
    out = {}
    for entry in json.loads(text):
        summary = summarize_container(entry)
        out[summary['name']] = summary
    return out


def parse_listening_ports(text):
    """Ports in LISTEN state in a ``/proc/net/tcp`` or ``/proc/net/tcp6`` table."""
    ports = set()
    for line in (text or '').splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != '0A':
            continue
        try:
            ports.add(int(fields[1].rsplit(':', 1)[1], 16))
        except (IndexError, ValueError):
            continue
    return ports
