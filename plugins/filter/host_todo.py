# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filter host_todo: what a role would change on a host, decided on the controller from one read of it
(plugins/module_utils/_host_plan.py). Its documentation is in host_todo.yml beside this file."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.homelab.gpu.plugins.module_utils import _cdi, _daemon_json, _host_plan


def host_todo(host, wants):
    """The differences between ``host`` (homelab.gpu.gpu_host_facts' homelab_gpu_host) and ``wants``."""
    try:
        return _host_plan.todo(host, wants)
    except (_host_plan.PlanError, _daemon_json.DaemonJsonError) as exc:
        raise AnsibleFilterError('host_todo: %s' % exc)


def deb822(fields, comment=''):
    """A deb822 apt source: an optional comment line, then ``Types: deb`` unless given, then ``fields`` in order."""
    if not isinstance(fields, dict) or not fields:
        raise AnsibleFilterError('deb822: the input must be a non-empty dict of fields, got %r' % (fields, ))
    lines = ['# %s' % comment] if comment else []
    if 'Types' not in fields:
        lines.append('Types: deb')
    for key, value in fields.items():
        text = str(value)
        if not key or any(c in str(key) for c in ': \n') or '\n' in text or not text.strip():
            raise AnsibleFilterError('deb822: field %r: %r is not a one-line value' % (key, value))
        lines.append('%s: %s' % (key, text))
    return '\n'.join(lines) + '\n'


def cdi_spec_todo(want, spec_exists, note_text=''):
    """Why the CDI spec must be written again (``_cdi.spec_todo``), ``''`` when it is current."""
    if not isinstance(want, dict):
        raise AnsibleFilterError('cdi_spec_todo: the input must be a dict (driver_version, gpus, spec), got %r'
                                 % (want, ))
    return _cdi.spec_todo(want, bool(spec_exists), note_text or '')


class FilterModule:
    """The filters of the roles' converged check, their apt sources and the CDI spec's freshness."""

    def filters(self):
        return {'host_todo': host_todo, 'deb822': deb822, 'cdi_spec_todo': cdi_spec_todo}
