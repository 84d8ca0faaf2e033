# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole-module tests of gpu_host_facts. The tools are stand-ins: small executables written into a temporary bin
directory (mokutil, dpkg-query, systemctl, docker, nvidia-smi), which get_bin_path finds there and nowhere else;
they print recorded output and log their arguments, so the tests see each real subprocess, how often it ran and
with what. /run/systemd/system, /proc/modules and /proc/self/mountinfo point into the temporary tree too."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.gpu.plugins.module_utils import _host_facts
from ansible_collections.homelab.gpu.plugins.modules import gpu_host_facts

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures')


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding='utf-8') as handle:
        return handle.read()


LSMOD_NOUVEAU = 'nouveau 3096576 2 - Live 0x0000000000000000\nvideo 73728 2 nouveau,i915, Live 0x0000000000000000\n'
# Hand-made in systemd 252's format (see test__host_facts.py): docker.service running, ssh.service not found.
SYSTEMCTL_SHOW = ('MainPID=812\nExecMainStartTimestampMonotonic=8123456\nId=docker.service\nNames=docker.service\n'
                  'LoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\n\n'
                  'MainPID=0\nExecMainStartTimestampMonotonic=0\nId=ssh.service\nNames=ssh.service\n'
                  'LoadState=not-found\nActiveState=inactive\nSubState=dead\nUnitFileState=\n')
DOCKER_DOWN = 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n'
PROPERTIES = '--property=Id,Names,LoadState,ActiveState,SubState,UnitFileState,MainPID,ExecMainStartTimestampMonotonic'
DPKG_FORMAT = '--showformat=${Package}\\t${db:Status-Abbrev}\\t${db:Status-Want}\\t${Version}\\n'


class Host:
    """A temporary host: ``standin(name, ...)`` writes a tool, ``calls()`` reads what the tools were run with."""

    def __init__(self, root):
        self.root = root
        self.bin = root / 'bin'
        self.bin.mkdir()
        self.log = root / 'calls.log'
        self.systemd = root / 'run-systemd-system'
        self.modules = root / 'proc-modules'
        self.mountinfo = root / 'mountinfo'
        self.mountinfo.write_text('28 1 259:2 / / rw - ext4 /dev/root rw\n99 28 0:50 / %s rw - tmpfs tmpfs rw\n'
                                  % root)

    def standin(self, name, stdout='', stderr='', rc=0, sleep=0.0):
        """A stand-in for the tool ``name``: logs its argv, waits ``sleep`` s, prints, exits ``rc``."""
        path = self.bin / name
        path.write_text('#!%s\nimport json, sys, time\nwith open(%r, "a") as f:\n'
                        '    f.write(json.dumps([%r] + sys.argv[1:]) + "\\n")\n'
                        'time.sleep(%r)\nsys.stdout.write(%r)\nsys.stderr.write(%r)\nsys.exit(%d)\n'
                        % (sys.executable, str(self.log), name, sleep, stdout, stderr, rc))
        path.chmod(0o755)
        return str(path)

    def calls(self):
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def everything(self, sleep=0.0, spec_dir=None):
        """Every tool, answering as on a working GPU host with Docker 26 and CDI."""
        self.systemd.mkdir(exist_ok=True)
        self.modules.write_text(LSMOD_NOUVEAU)
        info = json.loads(fixture('cdi/docker-info-26.1.5-cdi.json'))
        info['CDISpecDirs'] = [str(spec_dir)] if spec_dir else []
        self.standin('mokutil', 'SecureBoot enabled\n', sleep=sleep)
        self.standin('dpkg-query', fixture('host/dpkg-query-debian12-docker.io.stdout.txt'),
                     'dpkg-query: no packages found matching nosuch-pkg\n', rc=1, sleep=sleep)
        self.standin('systemctl', SYSTEMCTL_SHOW, sleep=sleep)
        self.standin('docker', json.dumps(info) + '\n', sleep=sleep)
        self.standin('nvidia-smi', fixture('nvidia-smi/h200x2-580.159.04-busy.xml'), sleep=sleep)


@pytest.fixture
def host(tmp_path, monkeypatch):
    the_host = Host(tmp_path)

    def get_bin_path(self, name, *args, **kwargs):
        path = the_host.bin / name
        return str(path) if path.exists() else None

    monkeypatch.setattr(AnsibleModule, 'get_bin_path', get_bin_path)
    monkeypatch.setattr(_host_facts, 'SYSTEMD_DIR', str(the_host.systemd))
    monkeypatch.setattr(_host_facts, 'PROC_MODULES', str(the_host.modules))
    monkeypatch.setattr(_host_facts, 'MOUNTINFO', str(the_host.mountinfo))
    return the_host


def run_module(capsys, args, check_mode=False):
    with patch_module_args(dict(args, _ansible_check_mode=check_mode)):
        with pytest.raises(SystemExit) as exc:
            gpu_host_facts.main()
    result = json.loads(capsys.readouterr().out)
    assert (exc.value.code != 0) == bool(result.get('failed')), result
    return result


ARGS = {'packages': ['docker.io', 'docker-ce', 'dpkg', 'nosuch-pkg'], 'units': ['docker', 'ssh.service'],
        'users': ['root', 'no-such-user-hf'], 'groups': ['root', 'no-such-group-hf']}


@pytest.mark.parametrize('check_mode', [False, True], ids=['apply', 'check'])
def test_a_working_gpu_host(capsys, host, tmp_path, check_mode):
    spec_dir = tmp_path / 'cdi'
    spec_dir.mkdir()
    (spec_dir / 'nvidia.yaml').write_text(fixture('cdi/lent-h100-standin-spec.yaml'))
    host.everything(spec_dir=spec_dir)
    (tmp_path / 'daemon.json').write_text('{"features": {"cdi": true}}')
    (tmp_path / 'blacklist-nouveau.conf').write_text('blacklist nouveau\n')
    args = dict(ARGS, daemon_json_path=str(tmp_path / 'daemon.json'),
                files=[str(tmp_path / 'blacklist-nouveau.conf'), str(tmp_path / 'absent')])
    result = run_module(capsys, args, check_mode=check_mode)

    # Each tool ran once, in check mode too (nothing here changes anything).
    assert sorted(host.calls()) == sorted([
        ['mokutil', '--sb-state'],
        ['dpkg-query', '--show', DPKG_FORMAT, '--', 'docker.io', 'docker-ce', 'dpkg', 'nosuch-pkg'],
        ['systemctl', 'show', PROPERTIES, '--', 'docker', 'ssh.service'],
        ['docker', 'info', '--format', '{{json .}}'],
        ['nvidia-smi', '-q', '-x'],
    ])
    assert result['changed'] is False and 'failed' not in result
    facts = result['ansible_facts']
    assert facts['homelab_gpu_host'] == result['host']
    assert set(facts) == {'ansible_distribution', 'ansible_distribution_version', 'ansible_distribution_major_version',
                          'ansible_distribution_release', 'ansible_architecture', 'ansible_kernel', 'homelab_gpu_host'}
    got = result['host']
    assert list(got) == ['secure_boot', 'secure_boot_detail', 'systemd', 'nouveau_loaded', 'packages', 'dpkg_error',
                         'files', 'daemon_json', 'docker', 'docker_data_root', 'docker_data_root_source',
                         'docker_data_root_free_mib', 'docker_data_root_mount', 'gpu', 'units', 'systemctl_error',
                         'users', 'groups', 'requested']
    # What was asked, so that a role can tell whether this read covers what it needs.
    assert got['requested']['units'] == ['docker', 'ssh.service']
    assert set(got['requested']) == {'packages', 'files', 'units', 'users', 'groups'}
    assert (got['secure_boot'], got['secure_boot_detail']) == (True, 'SecureBoot enabled')
    assert got['systemd'] is True and got['nouveau_loaded'] is True
    # docker-ce is known to dpkg by name only (un), nosuch-pkg not at all: both left out; rsync was not asked for.
    assert got['packages'] == {
        'docker.io': {'status': 'ii', 'selection': 'install', 'version': '20.10.24+dfsg1-1+deb12u1+b6'},
        'dpkg': {'status': 'ii', 'selection': 'install', 'version': '1.21.22'}}
    assert got['dpkg_error'] is None
    assert got['files'][str(tmp_path / 'absent')] == {'exists': False}
    assert got['files'][str(tmp_path / 'blacklist-nouveau.conf')]['content'] == 'blacklist nouveau\n'
    assert got['daemon_json'] == {'path': str(tmp_path / 'daemon.json'), 'exists': True,
                                  'config': {'features': {'cdi': True}}, 'error': None}
    assert got['docker'] == {
        'answers': True, 'message': '', 'docker_path': str(host.bin / 'docker'), 'server_version': '26.1.5+dfsg1',
        'root_dir': '/var/lib/docker', 'default_runtime': 'runc', 'runtimes': ['io.containerd.runc.v2', 'runc'],
        'cdi_support': 'feature_flag', 'cdi_enabled': True, 'cdi_spec_dirs': [str(spec_dir)],
        'nvidia_cdi_specs': [str(spec_dir / 'nvidia.yaml')], 'nvidia_cdi_devices': ['0', 'all'],
        'cdi_spec_errors': [], 'gpu_access': True}
    assert (got['docker_data_root'], got['docker_data_root_source']) == ('/var/lib/docker', 'engine')
    assert got['docker_data_root_mount'] == '/' and isinstance(got['docker_data_root_free_mib'], int)
    assert got['gpu']['state'] == 'ok' and got['gpu']['gpu_count'] == 2
    assert got['gpu']['nvidia_smi_path'] == str(host.bin / 'nvidia-smi') and got['gpu']['nvidia_smi_rc'] == 0
    assert got['units'] == {
        'docker': {'load_state': 'loaded', 'active_state': 'active', 'sub_state': 'running',
                   'unit_file_state': 'enabled', 'main_pid': 812, 'exec_main_start_monotonic': '8123456'},
        'ssh.service': {'load_state': 'not-found', 'active_state': 'inactive', 'sub_state': 'dead',
                        'unit_file_state': '', 'main_pid': 0, 'exec_main_start_monotonic': '0'}}
    assert got['systemctl_error'] is None
    assert got['users']['root']['exists'] is True and got['users']['root']['groups'][0] == 'root'
    assert got['users']['no-such-user-hf'] == {'exists': False, 'groups': []}
    assert got['groups'] == {'root': True, 'no-such-group-hf': False}


def test_gpu_is_what_nvidia_smi_info_returns(capsys, host, monkeypatch):
    host.standin('nvidia-smi', fixture('nvidia-smi/h200x2-580.159.04-busy.xml'))
    ours = run_module(capsys, {'docker': False, 'secure_boot': False})['host']['gpu']
    from ansible_collections.homelab.gpu.plugins.modules import nvidia_smi_info
    with patch_module_args({'timeout': 30}):
        with pytest.raises(SystemExit):
            nvidia_smi_info.main()
    theirs = json.loads(capsys.readouterr().out)
    for key in ('changed', 'invocation'):
        theirs.pop(key, None)
    assert ours == theirs


def test_a_bare_host_is_a_result_not_a_failure(capsys, host):
    # No tool at all, no systemd, no /proc/modules.
    result = run_module(capsys, dict(ARGS, daemon_json_path=str(host.root / 'daemon.json'),
                                     docker_default_root=str(host.root / 'docker')))
    assert 'failed' not in result and host.calls() == []
    got = result['host']
    assert (got['secure_boot'], got['secure_boot_detail']) == (None, 'mokutil is not installed')
    assert got['systemd'] is False and got['nouveau_loaded'] is None
    assert (got['packages'], got['dpkg_error']) == ({}, 'dpkg-query is not installed (not a Debian or Ubuntu host?)')
    assert (got['units'], got['systemctl_error']) == ({}, None)
    assert got['docker']['answers'] is False
    assert got['docker']['message'] == 'the docker CLI is not installed: run the homelab.gpu.docker role'
    assert got['gpu']['state'] == 'not_installed' and got['gpu']['gpus'] == []
    assert got['gpu']['message'].startswith('nvidia-smi was not found on PATH. Install the NVIDIA driver')
    assert got['daemon_json'] == {'path': str(host.root / 'daemon.json'), 'exists': False, 'config': None,
                                  'error': None}
    assert (got['docker_data_root'], got['docker_data_root_source']) == (str(host.root / 'docker'), 'default')
    assert got['docker_data_root_mount'] == str(host.root)


def test_docker_down_data_root_from_daemon_json(capsys, host):
    host.standin('docker', stderr=DOCKER_DOWN, rc=1)
    (host.root / 'daemon.json').write_text('{"data-root": "%s"}' % (host.root / 'srv' / 'docker'))
    result = run_module(capsys, {'daemon_json_path': str(host.root / 'daemon.json'), 'gpu': False,
                                 'secure_boot': False})
    got = result['host']
    assert got['docker']['answers'] is False
    assert got['docker']['message'] == 'docker info failed (rc=1): %s' % DOCKER_DOWN.strip()
    assert got['docker_data_root'] == str(host.root / 'srv' / 'docker')
    assert got['docker_data_root_source'] == 'daemon_json'
    assert got['docker_data_root_mount'] == str(host.root)
    assert got['gpu'] is None and got['secure_boot'] is None and got['secure_boot_detail'] is None
    assert host.calls() == [['docker', 'info', '--format', '{{json .}}']]


def test_switched_off_probes_do_not_run(capsys, host):
    host.everything()
    result = run_module(capsys, {'docker': False, 'gpu': False, 'secure_boot': False})
    assert host.calls() == []  # no packages or units asked for: no dpkg-query, no systemctl either
    got = result['host']
    assert (got['docker'], got['gpu'], got['secure_boot']) == (None, None, None)
    assert (got['packages'], got['units']) == ({}, {})


def test_the_commands_run_at_the_same_time(capsys, host):
    host.everything(sleep=0.6)
    start = time.monotonic()
    run_module(capsys, ARGS)
    took = time.monotonic() - start
    assert len(host.calls()) == 5
    assert took < 1.8, 'five tools of 0.6 s each took %.2f s: they did not run at the same time' % took


def test_a_hung_nvidia_smi_is_stopped(capsys, host):
    host.standin('nvidia-smi', sleep=30)
    start = time.monotonic()
    result = run_module(capsys, {'nvidia_smi_timeout': 1, 'docker': False, 'secure_boot': False})
    assert time.monotonic() - start < 6
    gpu = result['host']['gpu']
    assert gpu['state'] == 'error' and gpu['nvidia_smi_rc'] == 124
    assert gpu['message'].startswith('nvidia-smi timed out after 1 s')


def test_nvidia_smi_notices_are_warnings(capsys, host, monkeypatch):
    # ansible-core keeps warnings process-wide and shows each text once (test_nvidia_smi_info warns the same one),
    # so the test reads them as the module gives them.
    warned = []
    real_warn = AnsibleModule.warn
    monkeypatch.setattr(AnsibleModule, 'warn', lambda self, text: (warned.append(text), real_warn(self, text)))
    host.standin('nvidia-smi', fixture('nvidia-smi/handmade-inforom-warning.stdout.txt'))
    result = run_module(capsys, {'docker': False, 'secure_boot': False})
    assert result['host']['gpu']['state'] == 'ok'
    assert warned == ['nvidia-smi: WARNING: infoROM is corrupted at gpu 0000:01:00.0']


def test_nvidia_smi_path_that_is_not_there(capsys, host):
    result = run_module(capsys, {'nvidia_smi_path': str(host.root / 'nvidia-smi'), 'docker': False})
    assert result['host']['gpu']['state'] == 'not_installed'
    assert result['host']['gpu']['message'].startswith('nvidia_smi_path %s does not exist or is not executable'
                                                       % (host.root / 'nvidia-smi'))


def test_tool_failures_are_reported(capsys, host):
    host.systemd.mkdir()
    host.standin('dpkg-query', stderr="dpkg-query: error: cannot access archive '/var/lib/dpkg/status'\n", rc=2)
    host.standin('systemctl', stderr='Failed to connect to bus: No such file or directory\n', rc=1)
    host.standin('mokutil', stderr="This system doesn't support Secure Boot\n", rc=255)
    got = run_module(capsys, dict(ARGS, docker=False, gpu=False))['host']
    assert got['dpkg_error'] == ("dpkg-query failed (rc=2): dpkg-query: error: cannot access archive "
                                 "'/var/lib/dpkg/status'")
    assert got['systemctl_error'] == 'systemctl show failed (rc=1): Failed to connect to bus: No such file or directory'
    assert (got['packages'], got['units']) == ({}, {})
    assert (got['secure_boot'], got['secure_boot_detail']) == (False, "This system doesn't support Secure Boot")


def test_daemon_json_fifo_does_not_hang(capsys, host):
    os.mkfifo(str(host.root / 'daemon.json'))
    start = time.monotonic()
    got = run_module(capsys, {'daemon_json_path': str(host.root / 'daemon.json'), 'docker': False,
                              'gpu': False})['host']
    assert time.monotonic() - start < 5
    assert got['daemon_json']['config'] is None
    assert got['daemon_json']['error'].startswith('%s is a FIFO (named pipe)' % (host.root / 'daemon.json'))
    assert (got['docker_data_root'], got['docker_data_root_source']) == ('/var/lib/docker', 'default')


@pytest.mark.parametrize('args, message', [
    ({'packages': ['docker.io', 'Docker']},
     "packages[1] 'Docker' is not a Debian package name (lower case letters, digits, + - and ., at least 2 "
     "characters, starting with a letter or digit; no architecture qualifier)"),
    ({'units': ['--all']},
     "units[0] '--all' is not a systemd unit name (letters, digits, : _ . \\ - and one @, not starting with -)"),
    ({'users': ['root', 'bad user']}, "users[1] 'bad user' is not a user name"),
    ({'groups': ['docker;id']}, "groups[0] 'docker;id' is not a group name"),
    ({'files': ['relative/path']}, "files[0] 'relative/path' is not an absolute path"),
    ({'nvidia_smi_timeout': 0},
     'nvidia_smi_timeout must be a positive number of seconds, got 0: how long nvidia-smi may take before it is '
     'stopped, at most an hour (1 to 3600)'),
    ({'nvidia_smi_timeout': 3601}, 'nvidia_smi_timeout must be a positive number of seconds, got 3601'),
    ({'packages': ['X'], 'nvidia_smi_timeout': -1}, "packages[0] 'X' is not a Debian package name"),
])
def test_bad_options_fail_before_anything_runs(capsys, host, args, message):
    host.everything()
    result = run_module(capsys, args)
    assert result['failed'] is True
    assert result['msg'].startswith(message), result['msg']
    assert host.calls() == []
    assert 'ansible_facts' not in result


def test_two_bad_options_are_named_together(capsys, host):
    result = run_module(capsys, {'packages': ['X'], 'nvidia_smi_timeout': -1})
    assert result['msg'] == ("packages[0] 'X' is not a Debian package name (lower case letters, digits, + - and ., at "
                             "least 2 characters, starting with a letter or digit; no architecture qualifier); "
                             "nvidia_smi_timeout must be a positive number of seconds, got -1: how long nvidia-smi may "
                             "take before it is stopped, at most an hour (1 to 3600)")


def test_distribution_facts_are_those_of_setup_min(capsys):
    """On this machine, whatever it runs: the six facts equal what ansible.builtin.setup gather_subset=min returns."""
    from ansible.modules import setup
    with patch_module_args({'gather_subset': ['min']}):
        with pytest.raises(SystemExit):
            setup.main()
    expected = json.loads(capsys.readouterr().out)['ansible_facts']
    result = run_module(capsys, {'docker': False, 'gpu': False, 'secure_boot': False})
    names = ['ansible_distribution', 'ansible_distribution_version', 'ansible_distribution_major_version',
             'ansible_distribution_release', 'ansible_architecture', 'ansible_kernel']
    assert dict((n, result['ansible_facts'][n]) for n in names) == dict((n, expected[n]) for n in names)
    assert all(result['ansible_facts'][n] for n in names)
