# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole-module tests of nvidia_smi_info, with run_command and get_bin_path patched (and one real time-out)."""

from __future__ import annotations

import json
import pathlib
import shutil

import pytest

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.gpu.plugins.module_utils import _common
from ansible_collections.homelab.gpu.plugins.module_utils._common import CommandResult
from ansible_collections.homelab.gpu.plugins.modules import nvidia_smi_info

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / 'fixtures' / 'nvidia-smi'
NVIDIA_SMI = '/usr/bin/nvidia-smi'

MISMATCH_ADVICE = ('The loaded NVIDIA kernel module and the installed driver libraries differ, as after a driver '
                   'upgrade without a reboot: reboot the host.')
INSTALL_ADVICE = ('Install the NVIDIA driver (for example with the homelab.gpu.nvidia_driver role), '
                  'or point nvidia_smi_path at the binary.')


def fixture(name):
    return (FIXTURES / name).read_text(encoding='utf-8')


@pytest.fixture
def host(monkeypatch):
    """A fake host: ``host.binary`` is what get_bin_path finds for nvidia-smi, ``host.answer`` what it prints."""

    class Host:
        binary = NVIDIA_SMI
        answer = CommandResult(0, fixture('h200x2-580.159.04-busy.xml'), '', False)
        calls = []

    real_get_bin_path = AnsibleModule.get_bin_path

    def get_bin_path(self, arg, *args, **kwargs):
        if arg == 'nvidia-smi':
            return Host.binary
        return real_get_bin_path(self, arg, *args, **kwargs)

    def run_command(module, argv, timeout=None, data=None):
        Host.calls.append((list(argv), timeout))
        return Host.answer

    Host.calls = []
    monkeypatch.setattr(AnsibleModule, 'get_bin_path', get_bin_path)
    monkeypatch.setattr(nvidia_smi_info, 'run_command', run_command)
    return Host


def run_module(capsys, args, check_mode=False):
    with patch_module_args(dict(args, _ansible_check_mode=check_mode)):
        with pytest.raises(SystemExit) as exc:
            nvidia_smi_info.main()
    result = json.loads(capsys.readouterr().out)
    assert (exc.value.code != 0) == bool(result.get('failed')), result
    return result


@pytest.mark.parametrize('check_mode', [False, True], ids=['apply', 'check'])
def test_ok_two_gpus(capsys, host, check_mode):
    result = run_module(capsys, {}, check_mode=check_mode)
    # one nvidia-smi run per call, in check mode too (it only reads)
    assert host.calls == [([NVIDIA_SMI, '-q', '-x'], 15)]
    assert result['changed'] is False
    assert 'failed' not in result
    assert result['state'] == 'ok'
    assert result['reboot_required'] is False
    assert result['message'] == '2 GPUs, driver 580.159.04, CUDA 13.0'
    assert result['nvidia_smi_path'] == NVIDIA_SMI
    assert result['nvidia_smi_rc'] == 0
    assert result['stderr'] == ''
    assert result['driver_version'] == '580.159.04'
    assert result['cuda_version'] == '13.0'
    assert result['gpu_count'] == 2
    assert [(g['index'], g['uuid'], g['memory_total_mib'], g['memory_used_mib']) for g in result['gpus']] == [
        (0, 'GPU-69ecf20c-aeca-2493-0989-bae1893ddae2', 143771, 3599),
        (1, 'GPU-f76d8284-bf9f-109a-a4e8-f2c848174ddf', 143771, 1551),
    ]
    assert result['gpus'][1]['processes'] == [{'pid': 593, 'type': 'C', 'name': 'python3', 'used_memory_mib': 1542}]


def test_require_ok_passes(capsys, host):
    host.answer = CommandResult(0, fixture('h100x1-580.159.04-idle.xml'), '', False)
    result = run_module(capsys, {'require': True, 'timeout': 5})
    assert host.calls == [([NVIDIA_SMI, '-q', '-x'], 5)]
    assert result['state'] == 'ok'
    assert result['gpu_count'] == 1
    assert result['gpus'][0]['processes'] == []


@pytest.mark.parametrize('check_mode', [False, True], ids=['apply', 'check'])
def test_not_installed(capsys, host, check_mode):
    host.binary = None
    result = run_module(capsys, {}, check_mode=check_mode)
    assert host.calls == []
    assert result.pop('invocation') == {'module_args': {'nvidia_smi_path': None, 'timeout': 15, 'require': False}}
    assert result == {
        'changed': False, 'state': 'not_installed', 'reboot_required': False, 'nvidia_smi_path': None, 'nvidia_smi_rc': None,
        'stderr': '', 'driver_version': None, 'cuda_version': None, 'gpu_count': 0, 'gpus': [],
        'message': 'nvidia-smi was not found on PATH. ' + INSTALL_ADVICE,
    }


def test_not_installed_require(capsys, host):
    host.binary = None
    result = run_module(capsys, {'require': True})
    assert result['failed'] is True
    assert result['state'] == 'not_installed'
    assert result['msg'] == ('A working NVIDIA GPU is required (require=true) but state is not_installed: '
                             'nvidia-smi was not found on PATH. ' + INSTALL_ADVICE)


def test_explicit_path_missing(capsys, host, tmp_path):
    missing = str(tmp_path / 'nvidia-smi')
    result = run_module(capsys, {'nvidia_smi_path': missing})
    assert host.calls == []
    assert result['state'] == 'not_installed'
    assert result['message'] == 'nvidia_smi_path %s does not exist or is not executable. %s' % (missing, INSTALL_ADVICE)


def test_explicit_path_used(capsys, host, tmp_path):
    binary = tmp_path / 'nvidia-smi'
    binary.write_text('#!/bin/sh\n')
    binary.chmod(0o755)
    host.binary = None  # PATH has none: the option alone must find it
    result = run_module(capsys, {'nvidia_smi_path': str(binary)})
    assert host.calls == [([str(binary), '-q', '-x'], 15)]
    assert result['state'] == 'ok'
    assert result['nvidia_smi_path'] == str(binary)


def test_driver_library_mismatch(capsys, host):
    host.answer = CommandResult(18, fixture('handmade-driver-library-mismatch.stdout.txt'), '', False)
    result = run_module(capsys, {})
    assert 'failed' not in result
    assert result['state'] == 'driver_library_mismatch'
    assert result['reboot_required'] is True
    assert result['nvidia_smi_rc'] == 18
    assert result['gpus'] == []
    assert result['message'] == ('nvidia-smi: Failed to initialize NVML: Driver/library version mismatch. '
                                 + MISMATCH_ADVICE)


def test_driver_library_mismatch_require(capsys, host):
    host.answer = CommandResult(18, fixture('handmade-driver-library-mismatch.stdout.txt'), '', False)
    result = run_module(capsys, {'require': True})
    assert result['failed'] is True
    assert result['reboot_required'] is True
    assert result['msg'] == ('A working NVIDIA GPU is required (require=true) but state is driver_library_mismatch: '
                             'nvidia-smi: Failed to initialize NVML: Driver/library version mismatch. '
                             + MISMATCH_ADVICE)


@pytest.mark.parametrize('fixture_name, rc, state', [
    ('handmade-driver-not-loaded.stdout.txt', 9, 'driver_not_loaded'),
    ('real-no-devices.stdout.txt', 6, 'no_devices'),
    ('real-bogus-arg.stdout.txt', 255, 'error'),
])
def test_other_states_require(capsys, host, fixture_name, rc, state):
    host.answer = CommandResult(rc, fixture(fixture_name), '', False)
    result = run_module(capsys, {})
    assert 'failed' not in result
    assert result['state'] == state
    assert result['nvidia_smi_rc'] == rc
    result = run_module(capsys, {'require': True})
    assert result['failed'] is True
    assert result['state'] == state
    assert result['msg'].startswith('A working NVIDIA GPU is required (require=true) but state is %s: ' % state)
    assert result['msg'].endswith(result['message'])


def test_timeout(capsys, host):
    host.answer = CommandResult(124, '', '', True)
    result = run_module(capsys, {'timeout': 3})
    assert host.calls == [([NVIDIA_SMI, '-q', '-x'], 3)]
    assert result['state'] == 'error'
    assert result['nvidia_smi_rc'] == 124
    assert result['message'] == ('nvidia-smi timed out after 3 s (a hung GPU or driver?). '
                                 'Run "nvidia-smi -q" on the host to see the error.')
    result = run_module(capsys, {'timeout': 3, 'require': True})
    assert result['failed'] is True
    assert 'timed out after 3 s' in result['msg']


def test_notice_becomes_warning(capsys, host, monkeypatch):
    warned = []
    real_warn = AnsibleModule.warn

    def warn(self, warning):
        warned.append(warning)
        real_warn(self, warning)

    monkeypatch.setattr(AnsibleModule, 'warn', warn)
    host.answer = CommandResult(0, fixture('handmade-inforom-warning.stdout.txt'), '', False)
    result = run_module(capsys, {})
    assert result['state'] == 'ok'
    assert warned == ['nvidia-smi: WARNING: infoROM is corrupted at gpu 0000:01:00.0']
    assert 'notices' not in result


@pytest.mark.parametrize('timeout', [0, -1, 3601])
def test_bad_timeout(capsys, host, timeout):
    result = run_module(capsys, {'timeout': timeout})
    assert result['failed'] is True
    assert result['msg'] == ('timeout must be a positive number of seconds, got %s: how long nvidia-smi may take '
                             'before it is stopped, at most an hour (1 to 3600)' % timeout)
    assert host.calls == []


@pytest.mark.skipif(shutil.which('timeout') is None, reason='needs coreutils timeout')
def test_real_hang_is_cut_off(capsys, tmp_path):
    """No patching of run_command: a stand-in nvidia-smi that hangs is stopped by the _common wrapper."""
    binary = tmp_path / 'nvidia-smi'
    binary.write_text('#!/bin/sh\nexec sleep 30\n')
    binary.chmod(0o755)
    result = run_module(capsys, {'nvidia_smi_path': str(binary), 'timeout': 1})
    assert result['state'] == 'error'
    assert result['nvidia_smi_rc'] == 124
    assert result['message'].startswith('nvidia-smi timed out after 1 s')


def stand_in(tmp_path, stdout_bytes, script_body=None):
    """A stand-in nvidia-smi (no NVIDIA binary here): a script that prints the given bytes as they are."""
    data = tmp_path / 'nvidia-smi.out'
    data.write_bytes(stdout_bytes)
    binary = tmp_path / 'nvidia-smi'
    binary.write_text(script_body or '#!/bin/sh\nexec cat %s\n' % data)
    binary.chmod(0o755)
    return str(binary)


BUSY = 'h200x2-580.159.04-busy.xml'
# Bytes that are not UTF-8 (Latin-1 e-acute, a lone continuation byte, a cut-off sequence) and XML 1.0 controls.
BAD_NAMES = [
    ('latin-1 byte', b'python3-caf\xe9', 'python3-caf\ufffd'),
    ('lone continuation byte', b'\x80python3', '\ufffdpython3'),
    ('cut-off sequence', b'python3\xe2\x82', 'python3\ufffd'),
    ('0xff', b'\xffpy', '\ufffdpy'),
    ('control character', b'py\x01thon', 'py\ufffdthon'),
]


@pytest.mark.parametrize('name, seen', [c[1:] for c in BAD_NAMES], ids=[c[0] for c in BAD_NAMES])
def test_a_bad_byte_in_a_process_name_keeps_the_state_ok(capsys, tmp_path, name, seen):
    """No patching of run_command: a real capture, one process name changed, printed by a stand-in binary."""
    capture = (FIXTURES / BUSY).read_bytes()
    assert capture.count(b'<process_name>python3</process_name>') == 2
    mutated = capture.replace(b'<process_name>python3</process_name>', b'<process_name>%s</process_name>' % name, 1)
    result = run_module(capsys, {'nvidia_smi_path': stand_in(tmp_path, mutated), 'require': True})
    assert 'failed' not in result
    assert result['state'] == 'ok'
    assert result['gpu_count'] == 2
    assert [p['name'] for g in result['gpus'] for p in g['processes']] == [seen, 'python3']


def test_a_bad_byte_in_a_failure_message_is_still_classified(capsys, tmp_path):
    text = fixture('handmade-driver-library-mismatch.stdout.txt').encode() + b'\xfe\n'
    binary = stand_in(tmp_path, text, '#!/bin/sh\ncat %s\nexit 18\n' % (tmp_path / 'nvidia-smi.out'))
    result = run_module(capsys, {'nvidia_smi_path': binary})
    assert result['state'] == 'driver_library_mismatch'
    assert result['nvidia_smi_rc'] == 18


@pytest.mark.skipif(shutil.which('timeout') is None, reason='needs coreutils timeout')
def test_a_hang_that_ignores_sigterm_is_a_time_out(capsys, tmp_path, monkeypatch):
    """A stand-in nvidia-smi that ignores SIGTERM is killed, and that is reported as a time-out, not as rc -9."""
    monkeypatch.setattr(_common, 'KILL_AFTER', 1)
    binary = tmp_path / 'nvidia-smi'
    binary.write_text("#!/bin/sh\ntrap '' TERM\nsleep 30\n")
    binary.chmod(0o755)
    result = run_module(capsys, {'nvidia_smi_path': str(binary), 'timeout': 1})
    assert result['state'] == 'error'
    assert result['nvidia_smi_rc'] in (-9, 137)
    assert result['message'].startswith('nvidia-smi timed out after 1 s')
