# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the homelab.gpu.nvidia_driver role: its decisions, made by plugins/module_utils/_driver_plan.py.

The documentation of each filter is in the YAML file of the same name beside this one.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.homelab.gpu.plugins.module_utils import _driver_plan

_OPTIONS = ('branch', 'server', 'open_module', 'min_branch', 'acceptable_branches', 'reboot', 'prefer_precompiled',
            'extra_packages')


def nvidia_driver_plan(probe, host, options=None, nouveau_loaded=False, connection_local=False, apt_policy=None,
                       installed=None, mok_enrolled=False):
    """The plan dict of _driver_plan.plan() for a probe result, preflight_host and the role's options."""
    if not isinstance(probe, dict):
        raise AnsibleFilterError('nvidia_driver_plan: the input must be the result of homelab.gpu.nvidia_smi_info '
                                 '(a dict), got %s' % type(probe).__name__)
    if not isinstance(host, dict):
        raise AnsibleFilterError('nvidia_driver_plan: host must be preflight_host (a dict), got %s'
                                 % type(host).__name__)
    options = dict(options or {})
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise AnsibleFilterError('nvidia_driver_plan: unknown options %s (known: %s)'
                                 % (', '.join(unknown), ', '.join(_OPTIONS)))
    if 'branch' in options:
        options['branch'] = str(options['branch'])
    try:
        return _driver_plan.plan(
            dict(probe),
            distribution=host.get('distribution'),
            distribution_version=host.get('distribution_version'),
            kernel=host.get('kernel'),
            secure_boot=host.get('secure_boot'),
            nouveau_loaded=bool(nouveau_loaded),
            connection_local=bool(connection_local),
            precompiled=None if apt_policy is None else _driver_plan.parse_apt_policy(apt_policy),
            installed=list(installed or []),
            mok_enrolled=bool(mok_enrolled),
            supported=None if host.get('supported') is None else boolean(host['supported'], strict=False),
            **options)
    except (_driver_plan.PlanError, ValueError, TypeError) as exc:
        raise AnsibleFilterError('nvidia_driver_plan: %s' % exc) from exc


def nvidia_driver_debian_components(index_targets, codename):
    """{'main': [...], 'security': [...]}: the non-free components the APT sources lack."""
    return _driver_plan.missing_debian_components(index_targets or '', str(codename))


def nvidia_driver_hold(dpkg_query, plan, kernel):
    """{packages, to_hold, branches, message}: the installed driver packages that nvidia_driver_hold_packages holds."""
    if not isinstance(plan, dict):
        raise AnsibleFilterError('nvidia_driver_hold: plan must be the result of homelab.gpu.nvidia_driver_plan '
                                 '(a dict), got %s' % type(plan).__name__)
    return _driver_plan.hold_plan(dpkg_query or '', plan, str(kernel or ''))


class FilterModule:
    """The filters of the nvidia_driver role."""

    def filters(self):
        return {
            'nvidia_driver_plan': nvidia_driver_plan,
            'nvidia_driver_debian_components': nvidia_driver_debian_components,
            'nvidia_driver_hold': nvidia_driver_hold,
        }
