# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Table-driven tests of every decision of the nvidia_driver role (plugins/module_utils/_driver_plan.py)."""

from __future__ import annotations

import pytest

from ansible_collections.homelab.gpu.plugins.module_utils import _driver_plan as dp

OK_580 = {'state': 'ok', 'driver_version': '580.159.04', 'message': '1 GPU, driver 580.159.04, CUDA 13.0'}
OK_550 = {'state': 'ok', 'driver_version': '550.120', 'message': '1 GPU, driver 550.120, CUDA 12.4'}
OK_470 = {'state': 'ok', 'driver_version': '470.256.02', 'message': '1 GPU'}
NOT_INSTALLED = {'state': 'not_installed', 'driver_version': None, 'message': 'nvidia-smi was not found on PATH.'}
NOT_LOADED = {'state': 'driver_not_loaded', 'driver_version': None, 'message': 'not loaded'}
MISMATCH = {'state': 'driver_library_mismatch', 'driver_version': None, 'reboot_required': True,
            'message': 'Failed to initialize NVML: Driver/library version mismatch'}
NO_DEVICES = {'state': 'no_devices', 'driver_version': None, 'message': 'The NVIDIA driver is loaded but sees no GPU.'}
ERROR = {'state': 'error', 'driver_version': None, 'message': 'nvidia-smi timed out after 15 s.'}

NOBLE = dict(distribution='Ubuntu', distribution_version='24.04', kernel='6.8.0-45-generic')
JAMMY = dict(distribution='Ubuntu', distribution_version='22.04', kernel='5.15.0-125-generic')
BOOKWORM = dict(distribution='Debian', distribution_version='12.12', kernel='6.1.0-40-amd64')
# Releases the role does not install on; preflight lets them through with preflight_fail_unsupported=false.
FOCAL = dict(distribution='Ubuntu', distribution_version='20.04', kernel='5.4.0-1-generic')
ROCKY = dict(distribution='Rocky', distribution_version='9.4', kernel='5.14.0')

# apt-cache policy output as on noble: the exact package and the GA metapackage exist, the HWE one does not.
POLICY_580_OPEN = """linux-modules-nvidia-580-open-6.8.0-45-generic:
  Installed: (none)
  Candidate: 6.8.0-45.45+1
  Version table:
     6.8.0-45.45+1 500
        500 http://archive.ubuntu.com/ubuntu noble-updates/restricted amd64 Packages
linux-modules-nvidia-580-open-generic-hwe-24.04:
  Installed: (none)
  Candidate: (none)
  Version table:
linux-modules-nvidia-580-open-generic:
  Installed: (none)
  Candidate: 6.8.0-45.45+1
  Version table:
     6.8.0-45.45+1 500
        500 http://archive.ubuntu.com/ubuntu noble-updates/restricted amd64 Packages
"""
POLICY_NONE = """linux-modules-nvidia-580-open-6.8.0-45-generic:
  Installed: (none)
  Candidate: (none)
  Version table:
"""

SB_MESSAGE_DEBIAN = (
    'Secure Boot is on, and the NVIDIA kernel module for Debian 12 would be built by DKMS (nvidia-driver, '
    'firmware-misc-nonfree): the firmware does not trust it, so it would not load and nvidia-smi would fail after '
    'the reboot. Nothing was installed. Do one of these, then re-run: (1) Enroll the DKMS signing key, as root on '
    'the host: if /var/lib/dkms/mok.pub does not exist yet, create it with "openssl req -new -x509 -nodes -days '
    '36500 -subj \'/CN=DKMS module signing key\' -newkey rsa:2048 -keyout /var/lib/dkms/mok.key -outform DER -out '
    '/var/lib/dkms/mok.pub"; run "mokutil --import /var/lib/dkms/mok.pub" and choose a one-time password; reboot '
    'and, at the console (not over SSH), in the blue MOK manager choose "Enroll MOK", "Continue", "Yes", type the '
    'password and reboot. The role checks the enrolment with "mokutil --test-key /var/lib/dkms/mok.pub" and then '
    'installs. (2) Or disable Secure Boot in the firmware (UEFI) setup.')


def run(probe, host, **kwargs):
    args = dict(host)
    args.update(kwargs)
    return dp.plan(probe, **args)


# ---------------------------------------------------------------------------------------------------------------
# A working driver
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('probe, host, options, acceptable', [
    (OK_580, NOBLE, {}, True),
    (OK_550, JAMMY, {}, True),
    (OK_550, BOOKWORM, {'min_branch': 550}, True),
    (OK_580, NOBLE, {'acceptable_branches': ['580', '575']}, True),
    (OK_580, NOBLE, {'acceptable_branches': [580]}, True),
    # A working driver is not touched even if nouveau were listed or reboots are off.
    (OK_580, NOBLE, {'nouveau_loaded': True, 'reboot': False, 'connection_local': True}, True),
    (OK_580, BOOKWORM, {'secure_boot': True}, True),
])
def test_working_acceptable_driver_is_left_alone(probe, host, options, acceptable):
    plan = run(probe, host, **options)
    assert plan['action'] == 'none'
    assert plan['acceptable'] is acceptable
    assert plan['install'] is False
    assert plan['packages'] == []
    assert plan['reboot_required'] is False
    assert plan['reboot_now'] is False
    assert plan['blacklist_nouveau'] is False
    assert plan['warnings'] == []
    assert plan['lookup_needed'] is False
    assert plan['message'] == ('NVIDIA driver %s (branch %s) works and is acceptable: nothing to do.'
                               % (probe['driver_version'], plan['current_branch']))


@pytest.mark.parametrize('probe, options, reason', [
    (OK_470, {}, 'driver 470.256.02 works but is not branch 535 or newer (nvidia_driver_min_branch)'),
    (OK_550, {'min_branch': 570}, 'driver 550.120 works but is not branch 570 or newer (nvidia_driver_min_branch)'),
    (OK_550, {'acceptable_branches': ['580']},
     'driver 550.120 works but is not one of the branches 580 (nvidia_driver_acceptable_branches)'),
    ({'state': 'ok', 'driver_version': None, 'message': ''}, {},
     'driver None works but is not branch 535 or newer (nvidia_driver_min_branch)'),
])
def test_working_driver_of_unacceptable_branch_is_replaced(probe, options, reason):
    plan = run(probe, NOBLE, precompiled=dp.parse_apt_policy(POLICY_580_OPEN), **options)
    assert plan['action'] == 'install'
    assert plan['acceptable'] is False
    assert plan['packages'][0] == 'linux-modules-nvidia-580-open-6.8.0-45-generic'
    assert plan['reboot_reasons'][0] == 'a new NVIDIA driver is installed (%s)' % reason
    assert plan['reboot_now'] is True


# ---------------------------------------------------------------------------------------------------------------
# Package choice
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('host, options, policy, kernel_module, packages', [
    # Ubuntu 24.04, signed precompiled modules exist: Canonical's, with the no-dkms userspace.
    (NOBLE, {}, POLICY_580_OPEN, 'precompiled',
     ['linux-modules-nvidia-580-open-6.8.0-45-generic', 'linux-modules-nvidia-580-open-generic',
      'nvidia-headless-no-dkms-580-open', 'nvidia-utils-580']),
    # Ubuntu 24.04 on the HWE kernel series: the HWE metapackage (when APT has it).
    (dict(NOBLE, kernel='6.11.0-29-generic'), {'installed': ['linux-image-generic-hwe-24.04']},
     'linux-modules-nvidia-580-open-6.11.0-29-generic:\n  Candidate: 6.11.0-29.29~24.04.1\n'
     'linux-modules-nvidia-580-open-generic-hwe-24.04:\n  Candidate: 6.11.0-29.29~24.04.1\n'
     'linux-modules-nvidia-580-open-generic:\n  Candidate: 6.8.0-45.45+1\n', 'precompiled',
     ['linux-modules-nvidia-580-open-6.11.0-29-generic', 'linux-modules-nvidia-580-open-generic-hwe-24.04',
      'nvidia-headless-no-dkms-580-open', 'nvidia-utils-580']),
    # Ubuntu 22.04, server variant, proprietary module.
    (JAMMY, {'branch': '570', 'server': True, 'open_module': False},
     'linux-modules-nvidia-570-server-5.15.0-125-generic:\n  Candidate: 5.15.0-125.135\n'
     'linux-modules-nvidia-570-server-generic:\n  Candidate: 5.15.0-125.135\n', 'precompiled',
     ['linux-modules-nvidia-570-server-5.15.0-125-generic', 'linux-modules-nvidia-570-server-generic',
      'nvidia-headless-no-dkms-570-server', 'nvidia-utils-570-server']),
    # Ubuntu 22.04, server + open.
    (JAMMY, {'branch': '580', 'server': True, 'open_module': True},
     'linux-modules-nvidia-580-server-open-5.15.0-125-generic:\n  Candidate: 5.15.0-125.135\n', 'precompiled',
     ['linux-modules-nvidia-580-server-open-5.15.0-125-generic', 'nvidia-headless-no-dkms-580-server-open',
      'nvidia-utils-580-server']),
    # No precompiled module for the running kernel: DKMS with the headers of the running kernel.
    (NOBLE, {}, POLICY_NONE, 'dkms', ['nvidia-driver-580-open', 'linux-headers-6.8.0-45-generic']),
    (JAMMY, {'server': True, 'open_module': False}, '', 'dkms',
     ['nvidia-driver-580-server', 'linux-headers-5.15.0-125-generic']),
    # Precompiled not wanted.
    (NOBLE, {'prefer_precompiled': False}, None, 'dkms', ['nvidia-driver-580-open', 'linux-headers-6.8.0-45-generic']),
    # A kernel that is not Ubuntu's (self-built or vendor): DKMS.
    (dict(NOBLE, kernel='6.18.44-fc-v657-gpu'), {}, None, 'dkms',
     ['nvidia-driver-580-open', 'linux-headers-6.18.44-fc-v657-gpu']),
    # Debian 12: non-free nvidia-driver with firmware and headers, whatever the pin and open option say.
    (BOOKWORM, {}, None, 'dkms', ['nvidia-driver', 'firmware-misc-nonfree', 'linux-headers-amd64']),
    (BOOKWORM, {'branch': '580', 'open_module': False, 'server': True}, None, 'dkms',
     ['nvidia-driver', 'firmware-misc-nonfree', 'linux-headers-amd64']),
    # Extra packages come after the driver's, without duplicates.
    (BOOKWORM, {'extra_packages': ['nvidia-settings', 'nvidia-driver']}, None, 'dkms',
     ['nvidia-driver', 'firmware-misc-nonfree', 'linux-headers-amd64', 'nvidia-settings']),
])
def test_package_choice(host, options, policy, kernel_module, packages):
    options = dict(options)
    plan = run(NOT_INSTALLED, host, secure_boot=False,
               precompiled=None if policy is None else dp.parse_apt_policy(policy), **options)
    assert plan['action'] == 'install'
    assert plan['lookup_needed'] is False
    assert plan['kernel_module'] == kernel_module
    assert plan['packages'] == packages
    assert plan['module_signed'] is (kernel_module == 'precompiled')
    assert plan['blacklist_nouveau'] is True
    assert plan['reboot_required'] is True
    assert plan['reboot_now'] is True
    assert plan['reboot_reasons'] == ['a new NVIDIA driver is installed (no NVIDIA driver is installed (no nvidia-smi))']


def test_ubuntu_plan_is_provisional_until_apt_is_asked():
    plan = run(NOT_INSTALLED, NOBLE, secure_boot=True)
    assert plan['action'] == 'install'
    assert plan['lookup_needed'] is True
    assert plan['module_signed'] is None
    assert plan['precompiled_lookup'] == ['linux-modules-nvidia-580-open-6.8.0-45-generic',
                                          'linux-modules-nvidia-580-open-generic-hwe-24.04',
                                          'linux-modules-nvidia-580-open-generic']
    assert plan['warnings'] == []


@pytest.mark.parametrize('host, options, warning', [
    (NOBLE, {'precompiled': dp.parse_apt_policy(POLICY_NONE)},
     'linux-modules-nvidia-580-open-6.8.0-45-generic is not available from the APT sources: the module is built by '
     'DKMS instead.'),
    (dict(NOBLE, kernel='6.18.44-fc-v657-gpu'), {},
     'Kernel 6.18.44-fc-v657-gpu is not an Ubuntu kernel, so Canonical has no precompiled NVIDIA module for it: the '
     'module is built by DKMS.'),
    (NOBLE, {'precompiled': {'linux-modules-nvidia-580-open-6.8.0-45-generic': '1'}},
     'linux-modules-nvidia-580-open-generic is not available: the precompiled module is installed for the running '
     'kernel 6.8.0-45-generic only; after a kernel upgrade, re-run the role.'),
    (BOOKWORM, {}, 'Debian 12 ships the proprietary kernel module of branch 535 (nvidia-kernel-dkms); '
     'nvidia_driver_open_kernel_module applies to Ubuntu only.'),
])
def test_package_choice_warnings(host, options, warning):
    plan = run(NOT_INSTALLED, host, secure_boot=False, **options)
    assert plan['warnings'] == [warning]


def test_unknown_secure_boot_warns():
    plan = run(NOT_INSTALLED, BOOKWORM, secure_boot=None, open_module=False)
    assert plan['action'] == 'install'
    assert plan['warnings'] == [
        'The Secure Boot state is unknown (no mokutil on the host). If it is on, the dkms kernel module will only load '
        'if it is signed by a key the firmware trusts.']


# ---------------------------------------------------------------------------------------------------------------
# Secure Boot
# ---------------------------------------------------------------------------------------------------------------

def test_secure_boot_with_unsigned_dkms_module_is_refused_on_debian():
    plan = run(NOT_INSTALLED, BOOKWORM, secure_boot=True)
    assert plan['action'] == 'refuse'
    assert plan['install'] is False
    assert plan['reboot_now'] is False
    assert plan['module_signed'] is False
    # What would have been installed stays in the plan, for the report.
    assert plan['packages'] == ['nvidia-driver', 'firmware-misc-nonfree', 'linux-headers-amd64']
    assert plan['message'] == SB_MESSAGE_DEBIAN


@pytest.mark.parametrize('host, options, certificate, packages', [
    (NOBLE, {'precompiled': dp.parse_apt_policy(POLICY_NONE)}, '/var/lib/dkms/mok.pub', 'nvidia-driver-580-open'),
    (JAMMY, {'precompiled': {}}, '/var/lib/shim-signed/mok/MOK.der', 'nvidia-driver-580-open'),
    (NOBLE, {'prefer_precompiled': False, 'server': True}, '/var/lib/dkms/mok.pub', 'nvidia-driver-580-server-open'),
])
def test_secure_boot_with_dkms_on_ubuntu_is_refused(host, options, certificate, packages):
    plan = run(NOT_INSTALLED, host, secure_boot=True, **options)
    assert plan['action'] == 'refuse'
    assert plan['message'].startswith(
        'Secure Boot is on, and the NVIDIA kernel module for Ubuntu %s would be built by DKMS (%s): '
        % (host['distribution_version'], packages))
    assert '"mokutil --import %s"' % certificate in plan['message']
    assert 'disable Secure Boot in the firmware (UEFI) setup' in plan['message']


def test_secure_boot_with_canonical_signed_module_installs():
    plan = run(NOT_INSTALLED, NOBLE, secure_boot=True, precompiled=dp.parse_apt_policy(POLICY_580_OPEN))
    assert plan['action'] == 'install'
    assert plan['kernel_module'] == 'precompiled'
    assert plan['module_signed'] is True
    assert plan['warnings'] == []


@pytest.mark.parametrize('host', [BOOKWORM, dict(NOBLE, kernel='6.18.44-fc-v657-gpu')])
def test_secure_boot_with_enrolled_dkms_key_installs(host):
    plan = run(NOT_INSTALLED, host, secure_boot=True, mok_enrolled=True, open_module=False)
    assert plan['action'] == 'install'
    assert plan['kernel_module'] == 'dkms'
    assert plan['module_signed'] is True


def test_driver_not_loaded_with_secure_boot_explains_why():
    plan = run(NOT_LOADED, BOOKWORM, secure_boot=True)
    assert plan['action'] == 'refuse'
    assert plan['message'] == SB_MESSAGE_DEBIAN


# ---------------------------------------------------------------------------------------------------------------
# Reboots
# ---------------------------------------------------------------------------------------------------------------

MISMATCH_REASON = ('the loaded NVIDIA kernel module and the driver libraries differ (driver/library version '
                   'mismatch, as after a driver upgrade)')
NOUVEAU_REASON = 'the nouveau module is loaded and holds the GPU; it is blacklisted and goes away at the next boot'


@pytest.mark.parametrize('probe, host, options, reasons, blacklist', [
    (MISMATCH, NOBLE, {}, [MISMATCH_REASON], False),
    (MISMATCH, BOOKWORM, {'secure_boot': True}, [MISMATCH_REASON], False),
    (MISMATCH, BOOKWORM, {'nouveau_loaded': True}, [MISMATCH_REASON, NOUVEAU_REASON], True),
])
def test_reboot_only(probe, host, options, reasons, blacklist):
    plan = run(probe, host, **options)
    assert plan['action'] == 'reboot'
    assert plan['install'] is False
    assert plan['packages'] == []
    assert plan['reboot_required'] is True
    assert plan['reboot_now'] is True
    assert plan['reboot_reasons'] == reasons
    assert plan['blacklist_nouveau'] is blacklist
    assert plan['message'] == 'Reboot needed: %s.' % '; '.join(reasons)
    assert plan['warnings'] == []


def test_nouveau_loaded_without_driver_installs_and_reboots():
    plan = run(NOT_INSTALLED, BOOKWORM, secure_boot=False, nouveau_loaded=True, open_module=False)
    assert plan['action'] == 'install'
    assert plan['blacklist_nouveau'] is True
    assert plan['reboot_reasons'] == [
        'a new NVIDIA driver is installed (no NVIDIA driver is installed (no nvidia-smi))', NOUVEAU_REASON]
    assert plan['reboot_now'] is True


def test_debian_replaces_an_old_working_driver_with_its_535():
    plan = run(OK_470, BOOKWORM, secure_boot=False, open_module=False)
    assert plan['action'] == 'install'
    assert plan['packages'] == ['nvidia-driver', 'firmware-misc-nonfree', 'linux-headers-amd64']


def test_driver_not_loaded_reinstalls_and_reboots():
    plan = run(NOT_LOADED, BOOKWORM, secure_boot=False, open_module=False)
    assert plan['action'] == 'install'
    assert plan['reboot_reasons'] == ['a new NVIDIA driver is installed (the NVIDIA kernel module is not loaded)']


@pytest.mark.parametrize('probe, options, action', [
    (MISMATCH, {}, 'reboot'),
    (NOT_INSTALLED, {'secure_boot': False, 'open_module': False}, 'install'),
])
def test_reboot_opt_out_warns(probe, options, action):
    plan = run(probe, BOOKWORM, reboot=False, **options)
    assert plan['action'] == action
    assert plan['reboot_required'] is True
    assert plan['reboot_now'] is False
    assert plan['warnings'][-1] == (
        'REBOOT REQUIRED: %s. nvidia_driver_reboot is false, so the role did not reboot; reboot the host '
        '(sudo reboot) before using the GPU.' % '; '.join(plan['reboot_reasons']))


def test_reboot_opt_out_on_local_connection_warns_instead_of_refusing():
    plan = run(MISMATCH, NOBLE, reboot=False, connection_local=True)
    assert plan['action'] == 'reboot'
    assert plan['reboot_now'] is False
    assert plan['warnings'][0].startswith('REBOOT REQUIRED: ')


@pytest.mark.parametrize('probe, options, what', [
    (MISMATCH, {}, ''),
    (NOT_INSTALLED, {'secure_boot': False, 'open_module': False}, 'installs the driver and '),
])
def test_local_connection_refuses_to_reboot(probe, options, what):
    plan = run(probe, BOOKWORM, connection_local=True, **options)
    assert plan['action'] == 'refuse'
    assert plan['install'] is False
    assert plan['reboot_now'] is False
    assert plan['message'] == (
        'The host needs a reboot (%s), and Ansible runs on this host itself (connection local), so the role will '
        'not reboot it under the running play. Nothing was changed. Either reboot it yourself and re-run, or set '
        'nvidia_driver_reboot: false, so that the role %sonly warns "reboot required" and sets '
        'nvidia_driver_reboot_required.' % ('; '.join(plan['reboot_reasons']), what))


# ---------------------------------------------------------------------------------------------------------------
# Refusals that are not about Secure Boot
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('probe, host, options, message', [
    (NO_DEVICES, NOBLE, {}, 'The NVIDIA driver is loaded but sees no GPU, which installing it again would not change. '
                            'The NVIDIA driver is loaded but sees no GPU.'),
    (ERROR, NOBLE, {}, 'nvidia-smi failed in a way that installing the driver would not fix: '
                       'nvidia-smi timed out after 15 s.'),
    (NOT_INSTALLED, FOCAL, {},
     'Ubuntu 20.04 is not a release homelab.gpu.nvidia_driver installs the driver on (Ubuntu 22.04 and 24.04, '
     'Debian 12), and no NVIDIA driver is installed (no nvidia-smi). preflight_fail_unsupported=false lets the '
     'roles run on it, but the role only keeps a working driver there. Install an NVIDIA driver of branch 535 or '
     'newer yourself (your distribution\'s packages), reboot and re-run: the role then finds it working and leaves '
     'it alone. Or skip the role on this host (provision_driver: false in homelab.gpu.provision). Nothing was '
     'changed.'),
    (OK_470, ROCKY, {'acceptable_branches': [580, 575]},
     'Rocky 9.4 is not a release homelab.gpu.nvidia_driver installs the driver on (Ubuntu 22.04 and 24.04, '
     'Debian 12), and driver 470.256.02 works but is not one of the branches 580, 575 '
     '(nvidia_driver_acceptable_branches). preflight_fail_unsupported=false lets the roles run on it, but the role '
     'only keeps a working driver there. Install an NVIDIA driver of one of the branches 580, 575 yourself (your '
     'distribution\'s packages), reboot and re-run: the role then finds it working and leaves it alone. Or skip '
     'the role on this host (provision_driver: false in homelab.gpu.provision). Nothing was changed.'),
    (NOT_LOADED, FOCAL, {'nouveau_loaded': True},
     'Ubuntu 20.04 is not a release homelab.gpu.nvidia_driver installs the driver on (Ubuntu 22.04 and 24.04, '
     'Debian 12), and the NVIDIA kernel module is not loaded. preflight_fail_unsupported=false lets the roles run '
     'on it, but the role only keeps a working driver there. Install an NVIDIA driver of branch 535 or newer '
     'yourself (your distribution\'s packages), reboot and re-run: the role then finds it working and leaves it '
     'alone. Or skip the role on this host (provision_driver: false in homelab.gpu.provision). Nothing was '
     'changed.'),
    (OK_470, BOOKWORM, {'secure_boot': False, 'min_branch': 550},
     'Driver 470.256.02 works but is not branch 550 or newer (nvidia_driver_min_branch), and Debian 12 ships only '
     'branch 535 (nvidia-driver from non-free), which the role options do not accept either: lower '
     'nvidia_driver_min_branch to 535, or use Ubuntu for a newer branch.'),
    (NOT_INSTALLED, BOOKWORM, {'acceptable_branches': ['580']},
     'No NVIDIA driver is installed (no nvidia-smi), and Debian 12 ships only branch 535 (nvidia-driver from '
     'non-free), which the role options do not accept either: add 535 to nvidia_driver_acceptable_branches, or use '
     'Ubuntu for a newer branch.'),
])
def test_refusals(probe, host, options, message):
    plan = run(probe, host, **options)
    assert plan['action'] == 'refuse'
    assert plan['install'] is False
    assert plan['reboot_now'] is False
    assert plan['message'] == message


def test_unknown_probe_state_is_a_programming_error():
    with pytest.raises(dp.PlanError, match="probe.state must be one of the states of homelab.gpu.nvidia_smi_info, "
                                           "got 'weird'"):
        run({'state': 'weird'}, NOBLE)


# ---------------------------------------------------------------------------------------------------------------
# Hold candidates and helpers
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('host, options, hold', [
    # Not the metapackage linux-modules-nvidia-580-open-generic: it must follow kernel upgrades.
    (NOBLE, {}, ['nvidia-driver-580-open', 'nvidia-headless-no-dkms-580-open', 'nvidia-utils-580',
                 'linux-modules-nvidia-580-open-6.8.0-45-generic']),
    (dict(NOBLE, kernel='6.18.44-fc-v657-gpu'), {'server': True, 'open_module': False},
     ['nvidia-driver-580-server', 'nvidia-headless-no-dkms-580-server', 'nvidia-utils-580-server']),
    (BOOKWORM, {}, ['nvidia-driver', 'nvidia-kernel-dkms']),
])
def test_hold_candidates(host, options, hold):
    assert run(OK_580, host, **options)['hold_candidates'] == hold


# ---------------------------------------------------------------------------------------------------------------
# A release the role does not install on (let through by preflight_fail_unsupported=false)
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('host', [FOCAL, ROCKY])
def test_unsupported_release_keeps_a_working_driver(host):
    plan = run(OK_580, host)
    assert plan['action'] == 'none'
    assert plan['install'] is False
    assert plan['hold_branch'] == 580
    assert plan['message'] == 'NVIDIA driver 580.159.04 (branch 580) works and is acceptable: nothing to do.'
    assert plan['warnings'] == [
        '%s %s is not a release homelab.gpu.nvidia_driver installs the driver on (Ubuntu 22.04 and 24.04, Debian 12); '
        'the role keeps the working driver, and would refuse to install another.'
        % (host['distribution'], host['distribution_version'])]


def test_platform_preflight_does_not_support_is_treated_alike():
    # preflight_host.supported is false (an architecture or a list outside preflight's), on a release the role
    # would otherwise install on: the two roles agree.
    kept = run(OK_580, NOBLE, supported=False)
    assert kept['action'] == 'none'
    assert kept['warnings'] == [
        'Ubuntu 24.04 is not a platform homelab.gpu.preflight supports (preflight_supported_platforms, '
        'preflight_supported_architectures); the role keeps the working driver, and would refuse to install '
        'another.']
    refused = run(NOT_INSTALLED, NOBLE, supported=False)
    assert refused['action'] == 'refuse'
    assert refused['message'].startswith(
        'Ubuntu 24.04 is not a platform homelab.gpu.preflight supports (preflight_supported_platforms, '
        'preflight_supported_architectures), and no NVIDIA driver is installed (no nvidia-smi). ')
    assert run(NOT_INSTALLED, NOBLE, supported=True)['action'] == 'install'


def test_unsupported_release_reboots_a_driver_library_mismatch_away():
    plan = run(MISMATCH, FOCAL)
    assert plan['action'] == 'reboot'
    assert plan['reboot_now'] is True
    assert plan['install'] is False


# ---------------------------------------------------------------------------------------------------------------
# The hold: what is installed, whatever branch
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('probe, host, options, hold_branch', [
    (OK_550, NOBLE, {}, 550),                         # kept: the working branch, not nvidia_driver_branch (580)
    (OK_470, NOBLE, {}, 580),                         # replaced: the branch installed
    (NOT_INSTALLED, BOOKWORM, {}, 535),               # Debian installs its 535
    (MISMATCH, NOBLE, {}, None),                      # unknown: every installed driver branch
    (NO_DEVICES, NOBLE, {}, None),
])
def test_hold_branch(probe, host, options, hold_branch):
    assert run(probe, host, **options)['hold_branch'] == hold_branch


# Hand-made dpkg-query -W -f '${db:Status-Abbrev}\t${Package}\t${Version}\t${source:Package}\n' lines, in the
# shape of an Ubuntu 24.04 host with Canonical's 550 driver (precompiled open module for kernel 6.8.0-45), a
# module of an older kernel, the toolkit, the config files of a removed 535 and a 470 library left over.
DPKG_NOBLE_550 = """ii \tlibnvidia-cfg1-550\t550.120-0ubuntu0.24.04.1\tnvidia-graphics-drivers-550
ii \tlibnvidia-compute-550\t550.120-0ubuntu0.24.04.1\tnvidia-graphics-drivers-550
ii \tnvidia-firmware-550-550.120\t550.120-0ubuntu0.24.04.1\tnvidia-graphics-drivers-550
hi \tnvidia-headless-no-dkms-550-open\t550.120-0ubuntu0.24.04.1\tnvidia-graphics-drivers-550
ii \tnvidia-utils-550\t550.120-0ubuntu0.24.04.1\tnvidia-graphics-drivers-550
ii \tlinux-modules-nvidia-550-open-6.8.0-45-generic\t6.8.0-45.45+1\tlinux-restricted-modules
ii \tlinux-objects-nvidia-550-open-6.8.0-45-generic\t6.8.0-45.45+1\tlinux-restricted-modules
ii \tlinux-modules-nvidia-550-open-6.8.0-40-generic\t6.8.0-40.40+1\tlinux-restricted-modules
ii \tlinux-modules-nvidia-550-open-generic\t6.8.0-45.45+1\tlinux-restricted-modules
ii \tlinux-signatures-nvidia-6.8.0-45-generic\t6.8.0-45.45+1\tlinux-restricted-modules
ii \tnvidia-container-toolkit\t1.17.8-1\tnvidia-container-toolkit
ii \tlibnvidia-container1\t1.17.8-1\tlibnvidia-container
rc \tlibnvidia-compute-535\t535.183.01-0ubuntu0.24.04.1\tnvidia-graphics-drivers-535
ii \tlibnvidia-compute-470\t470.256.02-0ubuntu0.24.04.1\tnvidia-graphics-drivers-470
ii \tbash\t5.2.21-2ubuntu4\t
"""
NOBLE_550_HELD = ['libnvidia-cfg1-550', 'libnvidia-compute-550', 'linux-modules-nvidia-550-open-6.8.0-45-generic',
                  'linux-objects-nvidia-550-open-6.8.0-45-generic', 'nvidia-firmware-550-550.120',
                  'nvidia-headless-no-dkms-550-open', 'nvidia-utils-550']
# Debian 12 with its 535 driver; the packages of other sources are not the driver's.
DPKG_BOOKWORM_535 = """ii \tnvidia-driver\t535.216.01-1~deb12u1\tnvidia-graphics-drivers
ii \tnvidia-kernel-dkms\t535.216.01-1~deb12u1\tnvidia-graphics-drivers
ii \tlibcuda1\t535.216.01-1~deb12u1\tnvidia-graphics-drivers
ii \tnvidia-open-kernel-dkms\t1:535.216.01-1~deb12u1\tnvidia-open-gpu-kernel-modules
ii \tnvidia-persistenced\t535.171.04-1~deb12u1\tnvidia-persistenced
ii \tfirmware-misc-nonfree\t20230210-5\tfirmware-nonfree
ii \tglx-alternative-nvidia\t1.2.2\tglx-alternatives
"""


@pytest.mark.parametrize('dpkg, probe, host, options, packages, to_hold, message', [
    # The working 550 is held although nvidia_driver_branch is 580; the old kernel's module, the metapackage, the
    # 470 leftover, the removed 535 and the toolkit are not.
    (DPKG_NOBLE_550, OK_550, NOBLE, {}, NOBLE_550_HELD,
     [p for p in NOBLE_550_HELD if p != 'nvidia-headless-no-dkms-550-open'],
     'Held 7 packages of NVIDIA driver branch 550 (1 of them already): ' + ', '.join(NOBLE_550_HELD) + '.'),
    # Branch unknown (mismatch): every installed driver branch, the 470 leftover too.
    (DPKG_NOBLE_550, MISMATCH, NOBLE, {}, sorted(NOBLE_550_HELD + ['libnvidia-compute-470']),
     sorted(p for p in NOBLE_550_HELD + ['libnvidia-compute-470'] if p != 'nvidia-headless-no-dkms-550-open'),
     'Held 8 packages of the NVIDIA driver (branch 470, 550) (1 of them already): '
     + ', '.join(sorted(NOBLE_550_HELD + ['libnvidia-compute-470'])) + '.'),
    (DPKG_BOOKWORM_535, dict(OK_550, driver_version='535.216.01'), BOOKWORM, {},
     ['libcuda1', 'nvidia-driver', 'nvidia-kernel-dkms', 'nvidia-open-kernel-dkms'],
     ['libcuda1', 'nvidia-driver', 'nvidia-kernel-dkms', 'nvidia-open-kernel-dkms'],
     'Held 4 packages of NVIDIA driver branch 535: libcuda1, nvidia-driver, nvidia-kernel-dkms, '
     'nvidia-open-kernel-dkms.'),
    # Everything held already: nothing to do, and the message says so.
    (DPKG_BOOKWORM_535.replace('ii ', 'hi '), dict(OK_550, driver_version='535.216.01'), BOOKWORM, {},
     ['libcuda1', 'nvidia-driver', 'nvidia-kernel-dkms', 'nvidia-open-kernel-dkms'], [],
     'The 4 packages of NVIDIA driver branch 535 are held already: libcuda1, nvidia-driver, nvidia-kernel-dkms, '
     'nvidia-open-kernel-dkms.'),
    # A driver from NVIDIA's .run installer: no package to hold, and the role says so.
    ('ii \tbash\t5.2.21-2ubuntu4\t\n', OK_580, NOBLE, {}, [], [],
     'nvidia_driver_hold_packages is true, but no installed package belongs to NVIDIA driver branch 580, so '
     'nothing was held. A driver installed with NVIDIA\'s .run installer is no package and cannot be held.'),
    # A check run of an install: nothing installed yet, the plan's driver packages are predicted.
    ('', NOT_INSTALLED, NOBLE, {'precompiled': dp.parse_apt_policy(POLICY_580_OPEN)},
     ['linux-modules-nvidia-580-open-6.8.0-45-generic', 'nvidia-headless-no-dkms-580-open', 'nvidia-utils-580'],
     ['linux-modules-nvidia-580-open-6.8.0-45-generic', 'nvidia-headless-no-dkms-580-open', 'nvidia-utils-580'],
     'Held 3 packages of NVIDIA driver branch 580: linux-modules-nvidia-580-open-6.8.0-45-generic, '
     'nvidia-headless-no-dkms-580-open, nvidia-utils-580.'),
])
def test_hold_plan(dpkg, probe, host, options, packages, to_hold, message):
    hold = dp.hold_plan(dpkg, run(probe, host, **options), host['kernel'])
    assert hold['packages'] == packages
    assert hold['to_hold'] == to_hold
    assert hold['message'] == message


def test_parse_dpkg_query():
    rows = dp.parse_dpkg_query(DPKG_NOBLE_550 + 'garbage line\n')
    assert len(rows) == 15
    assert rows[3] == dict(name='nvidia-headless-no-dkms-550-open', version='550.120-0ubuntu0.24.04.1',
                           source='nvidia-graphics-drivers-550', installed=True, held=True)
    assert rows[12]['installed'] is False
    assert rows[14]['source'] == 'bash'


@pytest.mark.parametrize('version, branch', [
    ('580.159.04', 580), ('535.247.01', 535), (' 470.82', 470), ('', None), (None, None), ('N/A', None), (580, 580),
])
def test_branch_of(version, branch):
    assert dp.branch_of(version) == branch


@pytest.mark.parametrize('kernel, flavour', [
    ('6.8.0-45-generic', 'generic'), ('5.15.0-1050-aws', 'aws'), ('6.8.0-1012-lowlatency', 'lowlatency'),
    ('6.8.0-45-generic-64k', 'generic-64k'), ('6.1.0-40-amd64', 'amd64'), ('6.18.44-fc-v657-gpu', None),
    ('6.10.3', None), ('', None), (None, None),
])
def test_kernel_flavour(kernel, flavour):
    assert dp.kernel_flavour(kernel) == flavour


def test_parse_apt_policy():
    assert dp.parse_apt_policy(POLICY_580_OPEN) == {
        'linux-modules-nvidia-580-open-6.8.0-45-generic': '6.8.0-45.45+1',
        'linux-modules-nvidia-580-open-generic-hwe-24.04': None,
        'linux-modules-nvidia-580-open-generic': '6.8.0-45.45+1',
    }
    assert dp.parse_apt_policy('') == {}
    assert dp.parse_apt_policy('N: Unable to locate package foo\n') == {}


BOOKWORM_MAIN_ONLY = """bookworm main
bookworm main
bookworm-updates main
bookworm-security main
"""
BOOKWORM_FIRMWARE = """bookworm main
bookworm non-free-firmware
bookworm-updates main
bookworm-updates non-free-firmware
bookworm-security main
bookworm-security non-free-firmware
"""
BOOKWORM_ALL = BOOKWORM_FIRMWARE + """bookworm non-free
bookworm-updates non-free
bookworm-security non-free
"""


@pytest.mark.parametrize('text, missing', [
    (BOOKWORM_MAIN_ONLY, {'main': ['non-free', 'non-free-firmware'], 'security': ['non-free', 'non-free-firmware']}),
    (BOOKWORM_FIRMWARE, {'main': ['non-free'], 'security': ['non-free']}),
    (BOOKWORM_ALL, {'main': [], 'security': []}),
    ('bookworm non-free\nbookworm non-free-firmware\n', {'main': ['non-free', 'non-free-firmware'],
                                                         'security': ['non-free', 'non-free-firmware']}),
    ('', {'main': ['non-free', 'non-free-firmware'], 'security': ['non-free', 'non-free-firmware']}),
])
def test_missing_debian_components(text, missing):
    assert dp.missing_debian_components(text, 'bookworm') == missing
