# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filters of the nvidia_driver role: how they hand their arguments to _driver_plan."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.homelab.gpu.plugins.filter import nvidia_driver_plan as flt

HOST = {'distribution': 'Ubuntu', 'distribution_version': '24.04', 'distribution_major_version': '24',
        'kernel': '6.8.0-45-generic', 'secure_boot': True, 'architecture': 'x86_64'}
POLICY = 'linux-modules-nvidia-580-open-6.8.0-45-generic:\n  Installed: (none)\n  Candidate: 6.8.0-45.45+1\n'


def test_filters_are_registered():
    assert set(flt.FilterModule().filters()) == {'nvidia_driver_plan', 'nvidia_driver_debian_components',
                                                 'nvidia_driver_hold'}


def test_hold_reads_dpkg_output_with_the_plan():
    plan = flt.nvidia_driver_plan({'state': 'ok', 'driver_version': '550.120'}, HOST)
    hold = flt.nvidia_driver_hold('ii \tnvidia-utils-550\t550.120-0ubuntu1\tnvidia-graphics-drivers-550\n', plan,
                                  HOST['kernel'])
    assert hold['packages'] == hold['to_hold'] == ['nvidia-utils-550']
    assert flt.nvidia_driver_hold(None, plan, None)['packages'] == []


def test_hold_needs_a_plan():
    with pytest.raises(AnsibleFilterError) as exc:
        flt.nvidia_driver_hold('', 'plan', '6.8.0-45-generic')
    assert str(exc.value) == ('nvidia_driver_hold: plan must be the result of homelab.gpu.nvidia_driver_plan (a '
                              'dict), got str')


def test_plan_passes_host_options_and_apt_policy():
    plan = flt.nvidia_driver_plan({'state': 'not_installed'}, HOST, options={'branch': 580, 'reboot': False},
                                  apt_policy=POLICY)
    assert plan['action'] == 'install'
    assert plan['kernel_module'] == 'precompiled'
    assert plan['module_signed'] is True
    assert plan['packages'][0] == 'linux-modules-nvidia-580-open-6.8.0-45-generic'
    assert plan['reboot_now'] is False


def test_plan_without_apt_policy_is_provisional():
    plan = flt.nvidia_driver_plan({'state': 'not_installed'}, HOST)
    assert plan['lookup_needed'] is True


def test_plan_local_connection_and_nouveau():
    plan = flt.nvidia_driver_plan({'state': 'driver_library_mismatch'}, HOST, nouveau_loaded=True,
                                  connection_local=True)
    assert plan['action'] == 'refuse'
    assert 'nouveau' in plan['message']


@pytest.mark.parametrize('args, kwargs, message', [
    (('x', HOST), {}, 'nvidia_driver_plan: the input must be the result of homelab.gpu.nvidia_smi_info (a dict), '
                      'got str'),
    (({'state': 'ok'}, None), {}, 'nvidia_driver_plan: host must be preflight_host (a dict), got NoneType'),
    (({'state': 'ok'}, HOST), {'options': {'brnach': '580'}},
     'nvidia_driver_plan: unknown options brnach (known: branch, server, open_module, min_branch, '
     'acceptable_branches, reboot, prefer_precompiled, extra_packages)'),
    (({'state': 'bogus'}, HOST), {}, "nvidia_driver_plan: probe.state must be one of the states of "
                                     "homelab.gpu.nvidia_smi_info, got 'bogus'"),
    (({'state': 'ok', 'driver_version': '580.1'}, HOST), {'options': {'min_branch': 'many'}},
     "nvidia_driver_plan: invalid literal for int() with base 10: 'many'"),
])
def test_plan_errors(args, kwargs, message):
    with pytest.raises(AnsibleFilterError) as exc:
        flt.nvidia_driver_plan(*args, **kwargs)
    assert str(exc.value) == message


def test_debian_components():
    assert flt.nvidia_driver_debian_components('bookworm main\nbookworm-security non-free\n', 'bookworm') == {
        'main': ['non-free', 'non-free-firmware'], 'security': ['non-free-firmware']}
    assert flt.nvidia_driver_debian_components(None, 'bookworm')['main'] == ['non-free', 'non-free-firmware']
