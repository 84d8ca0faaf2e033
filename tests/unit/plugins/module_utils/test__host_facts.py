# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""gpu_host_facts' parsers over recorded output, its readers on a temporary tree, and its command runner with real
commands (time-outs, threads)."""

from __future__ import annotations

import grp
import hashlib
import json
import os
import subprocess
import sys
import time

import pytest

from ansible_collections.homelab.gpu.plugins.module_utils import _host_facts
from ansible_collections.homelab.gpu.plugins.module_utils._common import CommandResult

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'host')


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding='utf-8') as handle:
        return handle.read()


def params(**kwargs):
    base = {'packages': [], 'units': [], 'users': [], 'groups': [], 'files': [],
            'daemon_json_path': '/etc/docker/daemon.json', 'docker_default_root': '/var/lib/docker'}
    base.update(kwargs)
    return base


# ---------------------------------------------------------------- option checks

@pytest.mark.parametrize('option, values', [
    ('packages', ['docker.io', 'nvidia-driver-580', 'libstdc++6', 'g++', 'linux-image-6.1.0-37-amd64', 'xz-utils']),
    ('units', ['docker', 'docker.service', 'docker.socket', 'getty@tty1.service', 'user@1000.service',
               'dbus-org.freedesktop.resolve1.service', 'systemd-fsck@dev-disk-by\\x2duuid-1234.service']),
    ('users', ['root', 'cog', '_apt', 'systemd-network', 'Debian-exim', 'host$']),
    ('groups', ['docker', 'render', 'video', '_ssh']),
    ('files', ['/etc/docker/daemon.json', '/etc/modprobe.d/blacklist nouveau.conf']),
])
def test_good_names_pass(option, values):
    assert _host_facts.name_errors(params(**{option: values})) == []


@pytest.mark.parametrize('option, value, message', [
    ('packages', 'Docker.io', "packages[0] 'Docker.io' is not a Debian package name"),
    ('packages', 'x', "packages[0] 'x' is not a Debian package name"),
    ('packages', 'libc6:i386', "packages[0] 'libc6:i386' is not a Debian package name"),
    ('packages', '-Dfoo', "packages[0] '-Dfoo' is not a Debian package name"),
    ('packages', 'docker*', "packages[0] 'docker*' is not a Debian package name"),
    ('units', '--all', "units[0] '--all' is not a systemd unit name"),
    ('units', 'docker service', "units[0] 'docker service' is not a systemd unit name"),
    ('units', 'a@b@c.service', "units[0] 'a@b@c.service' is not a systemd unit name"),
    ('units', 'docker/../x', "units[0] 'docker/../x' is not a systemd unit name"),
    ('users', 'cog user', "users[0] 'cog user' is not a user name"),
    ('users', '0day', "users[0] '0day' is not a user name"),
    ('users', 'a' * 33, "users[0] '%s' is not a user name" % ('a' * 33)),
    ('groups', 'docker:x', "groups[0] 'docker:x' is not a group name"),
    ('files', 'etc/docker/daemon.json', "files[0] 'etc/docker/daemon.json' is not an absolute path"),
    ('daemon_json_path', 'daemon.json', "daemon_json_path 'daemon.json' is not an absolute path"),
    ('docker_default_root', 'docker', "docker_default_root 'docker' is not an absolute path"),
])
def test_bad_names_are_refused_by_option_and_index(option, value, message):
    if option in ('daemon_json_path', 'docker_default_root'):
        errors = _host_facts.name_errors(params(**{option: value}))
    else:
        # The bad value second, after a good one, so that the index in the message is checked.
        errors = _host_facts.name_errors(params(**{option: ['/ok' if option == 'files' else 'ok-name', value]}))
        message = message.replace('[0]', '[1]')
    assert len(errors) == 1
    assert errors[0].startswith(message), errors


def test_every_bad_name_is_reported():
    errors = _host_facts.name_errors(params(packages=['A'], units=['-x'], users=['a b'], groups=['g:']))
    assert [e.split(' ')[0] for e in errors] == ['packages[0]', 'units[0]', 'users[0]', 'groups[0]']


# ---------------------------------------------------------------- mokutil

# Hand-made in the form mokutil 0.6 prints: the state on stdout; "doesn't support" and the EFI message on stderr.
@pytest.mark.parametrize('stdout, stderr, secure_boot, detail', [
    ('SecureBoot enabled\n', '', True, 'SecureBoot enabled'),
    ('SecureBoot disabled\n', '', False, 'SecureBoot disabled'),
    ('SecureBoot disabled\nPlatform is in Setup Mode\n', '', False, 'SecureBoot disabled'),
    ('SecureBoot enabled\nSecureBoot validation is disabled in shim\n', '', True, 'SecureBoot enabled'),
    ('', "This system doesn't support Secure Boot\n", False, "This system doesn't support Secure Boot"),
    ('', 'EFI variables are not supported on this system\n', False,
     'EFI variables are not supported on this system'),
    ('', 'Failed to read "SecureBoot" variable: Permission denied\n', None,
     'Failed to read "SecureBoot" variable: Permission denied'),
    ('', '', None, None),
])
def test_sb_state(stdout, stderr, secure_boot, detail):
    assert _host_facts.parse_sb_state(stdout, stderr) == (secure_boot, detail)


# ---------------------------------------------------------------- /proc/modules

LSMOD_NOUVEAU = (  # hand-made in the kernel's format, from a desktop with an RTX card and nouveau still loaded
    'nouveau 3096576 2 - Live 0x0000000000000000\n'
    'mxm_wmi 12288 1 nouveau, Live 0x0000000000000000\n'
    'drm_ttm_helper 12288 1 nouveau, Live 0x0000000000000000\n'
    'video 73728 2 nouveau,i915, Live 0x0000000000000000\n')
LSMOD_DEPENDENT_ONLY = (  # nouveau named only as a user of another module: it is not itself loaded
    'video 73728 1 nouveau_compat, Live 0x0000000000000000\n'
    'nouveau_compat 12288 0 - Live 0x0000000000000000\n')


@pytest.mark.parametrize('text, loaded', [
    (fixture('proc-modules-h200-nvidia.txt'), False),
    (LSMOD_NOUVEAU, True),
    (LSMOD_NOUVEAU.splitlines(True)[3] + LSMOD_NOUVEAU.splitlines(True)[0], True),
    (LSMOD_DEPENDENT_ONLY, False),
    ('', False),
], ids=['h200-nvidia', 'nouveau', 'nouveau-last', 'only-a-user', 'empty'])
def test_nouveau(text, loaded):
    assert _host_facts.parse_proc_modules(text) is loaded


# ---------------------------------------------------------------- dpkg-query

@pytest.mark.parametrize('text, expected', [
    (fixture('dpkg-query-debian12-docker.io.stdout.txt'), {
        'docker.io': {'status': 'ii', 'selection': 'install', 'version': '20.10.24+dfsg1-1+deb12u1+b6'},
        'dpkg': {'status': 'ii', 'selection': 'install', 'version': '1.21.22'},
        'libc6': {'status': 'ii', 'selection': 'install', 'version': '2.36-9+deb12u14'},
        'rsync': {'status': 'ii', 'selection': 'install', 'version': '3.5.0+ds1-0+deb12u1'},
    }),
    (fixture('dpkg-query-ubuntu2404-h200-held.stdout.txt'), {
        'libc6': {'status': 'ii', 'selection': 'install', 'version': '2.39-0ubuntu8.9'},
        'libcublas-13-0': {'status': 'hi', 'selection': 'hold', 'version': '13.1.0.3-1'},
        'libnccl2': {'status': 'hi', 'selection': 'hold', 'version': '2.28.3-1+cuda13.0'},
    }),
    # Hand-made: removed with its configuration left, purged but remembered, reinst-required, half-configured.
    ('nvidia-driver\trc \tdeinstall\t535.183.01-1~deb12u1\nnouveau-firmware\tpn \tpurge\t\n'
     'docker-ce\tiHR\tinstall\t5:27.5.1-1~debian.12~bookworm\nnvidia-dkms\tiF \tinstall\t535.183.01-1~deb12u1\n', {
         'nvidia-driver': {'status': 'rc', 'selection': 'deinstall', 'version': '535.183.01-1~deb12u1'},
         'nouveau-firmware': {'status': 'pn', 'selection': 'purge', 'version': ''},
         'docker-ce': {'status': 'iHR', 'selection': 'install', 'version': '5:27.5.1-1~debian.12~bookworm'},
         'nvidia-dkms': {'status': 'iF', 'selection': 'install', 'version': '535.183.01-1~deb12u1'},
     }),
    # Hand-made: Multi-Arch: same installed for amd64 only, remembered for i386; the installed record wins.
    ('libc6\tpn \tpurge\t\nlibc6\tii \tinstall\t2.36-9+deb12u14\nlibc6\tun \tunknown\t\n',
     {'libc6': {'status': 'ii', 'selection': 'install', 'version': '2.36-9+deb12u14'}}),
    ('', {}),
    ('garbage without tabs\n', {}),
], ids=['debian12-real', 'ubuntu2404-held-real', 'states', 'multiarch', 'empty', 'garbage'])
def test_dpkg_query(text, expected):
    assert _host_facts.parse_dpkg_query(text) == expected


@pytest.mark.parametrize('rc, stderr, timed_out, error', [
    (0, '', False, None),
    (1, 'dpkg-query: no packages found matching nosuch-pkg\n', False, None),
    (2, 'dpkg-query: error: parsing file \'/var/lib/dpkg/status\' near line 4:\n no package name\n', False,
     "dpkg-query failed (rc=2): dpkg-query: error: parsing file '/var/lib/dpkg/status' near line 4:"),
    (2, '', False, 'dpkg-query failed (rc=2): (no output)'),
    # Killed at the time-out (SIGKILL after an ignored SIGTERM): a time-out, not a failure with rc 137.
    (137, '', True, 'dpkg-query timed out after 30 s'),
    (124, '', True, 'dpkg-query timed out after 30 s'),
])
def test_dpkg_error(rc, stderr, timed_out, error):
    assert _host_facts.dpkg_error(CommandResult(rc, 'ii\tlibc6\n', stderr, timed_out, 30)) == error


# ---------------------------------------------------------------- systemctl show

# Hand-made in the form systemd 252 (Debian 12) prints `systemctl show --property=Id,Names,LoadState,ActiveState,
# SubState,UnitFileState,MainPID,ExecMainStartTimestampMonotonic -- docker nosuch.service docker.socket
# dbus-org.freedesktop.resolve1.service nvidia-persistenced`: properties of the Service interface first, a
# socket has no MainPID, a unit that does not exist is not-found with an empty UnitFileState, an alias shows under
# its main name (Id) with the alias in Names.
SYSTEMCTL_SHOW = """\
MainPID=812
ExecMainStartTimestampMonotonic=8123456
Id=docker.service
Names=docker.service
LoadState=loaded
ActiveState=active
SubState=running
UnitFileState=enabled

MainPID=0
ExecMainStartTimestampMonotonic=0
Id=nosuch.service
Names=nosuch.service
LoadState=not-found
ActiveState=inactive
SubState=dead
UnitFileState=

Id=docker.socket
Names=docker.socket
LoadState=loaded
ActiveState=active
SubState=running
UnitFileState=enabled

MainPID=655
ExecMainStartTimestampMonotonic=5034120
Id=systemd-resolved.service
Names=systemd-resolved.service dbus-org.freedesktop.resolve1.service
LoadState=loaded
ActiveState=active
SubState=running
UnitFileState=enabled

MainPID=0
ExecMainStartTimestampMonotonic=0
Id=nvidia-persistenced.service
Names=nvidia-persistenced.service
LoadState=masked
ActiveState=inactive
SubState=dead
UnitFileState=masked
"""
UNITS = ['docker', 'nosuch.service', 'docker.socket', 'dbus-org.freedesktop.resolve1.service', 'nvidia-persistenced']
EXPECTED_UNITS = {
    'docker': {'load_state': 'loaded', 'active_state': 'active', 'sub_state': 'running', 'unit_file_state': 'enabled',
               'main_pid': 812, 'exec_main_start_monotonic': '8123456'},
    'nosuch.service': {'load_state': 'not-found', 'active_state': 'inactive', 'sub_state': 'dead',
                       'unit_file_state': '', 'main_pid': 0, 'exec_main_start_monotonic': '0'},
    'docker.socket': {'load_state': 'loaded', 'active_state': 'active', 'sub_state': 'running',
                      'unit_file_state': 'enabled', 'main_pid': None, 'exec_main_start_monotonic': ''},
    'dbus-org.freedesktop.resolve1.service': {'load_state': 'loaded', 'active_state': 'active', 'sub_state': 'running',
                                              'unit_file_state': 'enabled', 'main_pid': 655,
                                              'exec_main_start_monotonic': '5034120'},
    'nvidia-persistenced': {'load_state': 'masked', 'active_state': 'inactive', 'sub_state': 'dead',
                            'unit_file_state': 'masked', 'main_pid': 0, 'exec_main_start_monotonic': '0'},
}


def test_systemctl_show_in_argument_order():
    assert _host_facts.parse_systemctl_show(SYSTEMCTL_SHOW, UNITS) == EXPECTED_UNITS


def test_systemctl_show_out_of_order_is_matched_by_name():
    blocks = SYSTEMCTL_SHOW.split('\n\n')
    shuffled = '\n\n'.join(reversed(blocks))
    assert _host_facts.parse_systemctl_show(shuffled, UNITS) == EXPECTED_UNITS


def test_systemctl_show_a_unit_named_twice_and_a_missing_block():
    # Two names of one unit give systemctl one block; a name that no block answers is left out.
    first = SYSTEMCTL_SHOW.split('\n\n', maxsplit=1)[0]
    result = _host_facts.parse_systemctl_show(first, ['docker', 'docker.service', 'ssh'])
    assert result == {'docker': EXPECTED_UNITS['docker'], 'docker.service': EXPECTED_UNITS['docker']}


@pytest.mark.parametrize('name, unit_id', [
    ('docker', 'docker.service'), ('docker.service', 'docker.service'), ('docker.socket', 'docker.socket'),
    ('getty@tty1', 'getty@tty1.service'), ('foo.bar', 'foo.bar.service'),
    ('var-lib-docker.mount', 'var-lib-docker.mount'),
])
def test_unit_id(name, unit_id):
    assert _host_facts.unit_id(name) == unit_id


# ---------------------------------------------------------------- mounts

# Hand-made in the kernel's format (a Debian host with /var/lib/docker on its own disk, and a path with a blank).
MOUNTINFO = """\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
45 28 259:3 / /var/lib/docker rw,relatime shared:25 - xfs /dev/nvme1n1 rw,attr2,inode64
46 28 259:4 / /srv/model\\040store rw,relatime shared:26 - ext4 /dev/sda1 rw
"""


@pytest.mark.parametrize('path, mount', [
    ('/var/lib/docker', '/var/lib/docker'),
    ('/var/lib/docker/overlay2', '/var/lib/docker'),
    ('/var/lib/dockerd', '/'),
    ('/srv/model store/docker', '/srv/model store'),
    ('/', '/'),
])
def test_mount_of(path, mount):
    assert _host_facts.mount_of(path, _host_facts.parse_mountinfo(MOUNTINFO)) == mount


def test_data_root_that_does_not_exist_yet_is_measured_at_its_parent(tmp_path, monkeypatch):
    mountinfo = tmp_path / 'mountinfo'
    mountinfo.write_text('28 1 259:2 / / rw - ext4 /dev/root rw\n99 28 0:50 / %s rw - tmpfs tmpfs rw\n' % tmp_path)
    monkeypatch.setattr(_host_facts, 'MOUNTINFO', str(mountinfo))
    free, mount = _host_facts.data_root_facts(str(tmp_path / 'not' / 'yet' / 'docker'))
    assert mount == str(tmp_path)
    assert free == os.statvfs(str(tmp_path)).f_bavail * os.statvfs(str(tmp_path)).f_frsize // (1024 * 1024)


def test_data_root_without_mountinfo_walks_up_to_a_mount_point(tmp_path, monkeypatch):
    monkeypatch.setattr(_host_facts, 'MOUNTINFO', str(tmp_path / 'absent'))
    free, mount = _host_facts.data_root_facts(str(tmp_path / 'docker'))
    assert os.path.ismount(mount) and str(tmp_path).startswith(mount)
    assert isinstance(free, int)


# ---------------------------------------------------------------- running commands

def test_run_bounded_reads_both_streams_and_the_status():
    cmd = _host_facts.run_bounded(['sh', '-c', 'printf out; printf err >&2; exit 3'], 10)
    assert cmd == (3, 'out', 'err', False, 10)


def test_run_bounded_a_missing_binary_is_127_not_an_exception(tmp_path):
    cmd = _host_facts.run_bounded([str(tmp_path / 'nosuch')], 10)
    assert cmd.rc == 127 and cmd.timed_out is False
    assert cmd.stderr == '%s: No such file or directory' % (tmp_path / 'nosuch')


def test_run_bounded_decodes_bytes_that_are_not_utf8():
    assert _host_facts.run_bounded(['printf', 'caf\\351\\n'], 10).stdout == 'caf\ufffd\n'


def test_run_bounded_runs_under_lc_all_c():
    assert _host_facts.run_bounded(['sh', '-c', 'printf "$LC_ALL"'], 10).stdout == 'C'


def test_run_bounded_stops_a_command_at_its_time_out():
    start = time.monotonic()
    cmd = _host_facts.run_bounded(['sleep', '30'], 0.5)
    assert (cmd.rc, cmd.timed_out) == (124, True)
    assert time.monotonic() - start < 5


def test_run_bounded_stops_the_children_of_a_command_too():
    # sh ends at SIGTERM, but its sleep would keep the output pipe open: the SIGTERM goes to the process group.
    start = time.monotonic()
    cmd = _host_facts.run_bounded(['sh', '-c', 'sleep 30 & wait'], 0.5, kill_after=5)
    assert (cmd.rc, cmd.timed_out) == (124, True)
    assert time.monotonic() - start < 3


def test_run_bounded_kills_a_command_that_ignores_sigterm_and_its_children():
    start = time.monotonic()
    # The child sleep holds the pipes open too: only a signal to the whole group lets the read end.
    cmd = _host_facts.run_bounded(['sh', '-c', "trap '' TERM; sleep 30 & wait; sleep 30"], 0.5, kill_after=0.5)
    took = time.monotonic() - start
    assert (cmd.rc, cmd.timed_out) == (137, True)
    assert 0.9 <= took < 5


def test_commands_in_threads_run_at_the_same_time():
    tasks = dict(('t%d' % i, lambda i=i: _host_facts.run_bounded(['sh', '-c', 'sleep 0.5; echo %d' % i], 10))
                 for i in range(6))
    start = time.monotonic()
    results = _host_facts.start_all(tasks)()
    took = time.monotonic() - start
    assert dict((k, v.stdout) for k, v in results.items()) == dict(('t%d' % i, '%d\n' % i) for i in range(6))
    assert took < 1.5, 'six 0.5 s commands took %.2f s: not run at the same time' % took


def test_an_exception_in_a_thread_is_raised_by_the_wait():
    def broken():
        raise ValueError('a bug')
    wait = _host_facts.start_all({'ok': lambda: 1, 'broken': broken})
    with pytest.raises(ValueError, match='a bug'):
        wait()


@pytest.mark.parametrize('args, unsafe, expected', [
    ("printf '%s|' a 'b c'", False, 'a|b c|'),
    ('printf x | tr x y', True, 'y'),
    (['printf', 'z'], False, 'z'),
])
def test_thread_safe_module_reads_commands_like_run_command(args, unsafe, expected):
    rc, out, err = _host_facts.ThreadSafeModule(None).run_command(args, use_unsafe_shell=unsafe)
    assert (rc, out) == (0, expected)


# ---------------------------------------------------------------- files

@pytest.fixture
def tree(tmp_path):
    (tmp_path / 'text.conf').write_text('blacklist nouveau\noptions nouveau modeset=0\n')
    os.chmod(str(tmp_path / 'text.conf'), 0o640)
    (tmp_path / 'binary').write_bytes(b'\x7fELF\xff\xfe\x00')
    (tmp_path / 'big').write_bytes(b'a' * (64 * 1024 + 1))
    (tmp_path / 'exactly64k').write_bytes(b'b' * (64 * 1024))
    (tmp_path / 'dir').mkdir()
    os.symlink('text.conf', str(tmp_path / 'link'))
    os.symlink('nowhere', str(tmp_path / 'dangling'))
    os.symlink('dir', str(tmp_path / 'dirlink'))
    os.mkfifo(str(tmp_path / 'fifo'))
    return tmp_path


def test_file_regular_text(tree):
    facts = _host_facts.read_file_facts(str(tree / 'text.conf'))
    text = 'blacklist nouveau\noptions nouveau modeset=0\n'
    assert facts == {'exists': True, 'type': 'file', 'mode': '0640', 'uid': os.getuid(), 'gid': os.getgid(),
                     'owner': facts['owner'], 'group': facts['group'], 'size': len(text), 'link_target': None,
                     'sha256': hashlib.sha256(text.encode()).hexdigest(), 'content': text, 'error': None}
    assert facts['owner'] is not None


@pytest.mark.parametrize('name, kind, has_sha, content', [
    ('binary', 'file', True, None),
    ('big', 'file', True, None),
    ('exactly64k', 'file', True, 'b' * 64 * 1024),
    ('dir', 'directory', False, None),
    ('link', 'link', True, 'blacklist nouveau\noptions nouveau modeset=0\n'),
    ('dangling', 'link', False, None),
    ('dirlink', 'link', False, None),
    ('fifo', 'other', False, None),
])
def test_file_kinds(tree, name, kind, has_sha, content):
    start = time.monotonic()
    facts = _host_facts.read_file_facts(str(tree / name))
    assert time.monotonic() - start < 2  # a FIFO is never waited on
    assert facts['exists'] is True and facts['type'] == kind
    assert (facts['sha256'] is not None) is has_sha
    assert facts['content'] == content
    assert facts['error'] is None


def test_link_reports_its_target_and_the_target_content(tree):
    facts = _host_facts.read_file_facts(str(tree / 'link'))
    assert facts['link_target'] == 'text.conf'
    assert facts['sha256'] == _host_facts.read_file_facts(str(tree / 'text.conf'))['sha256']


def test_missing_file(tree):
    assert _host_facts.read_file_facts(str(tree / 'absent')) == {'exists': False}


@pytest.mark.skipif(os.geteuid() == 0, reason='root reads every file')
def test_unreadable_file_says_why(tree):
    os.chmod(str(tree / 'text.conf'), 0)
    facts = _host_facts.read_file_facts(str(tree / 'text.conf'))
    assert facts['exists'] is True and facts['sha256'] is None
    assert facts['error'] == '%s cannot be read (Permission denied)' % (tree / 'text.conf')


# ---------------------------------------------------------------- daemon.json

@pytest.mark.parametrize('content, expected', [
    (None, {'exists': False, 'config': None, 'error': None}),
    ('{"data-root": "/srv/docker", "features": {"cdi": true}}',
     {'exists': True, 'config': {'data-root': '/srv/docker', 'features': {'cdi': True}}, 'error': None}),
    ('', {'exists': True, 'config': {}, 'error': None}),
    ('{"data-root": "/srv/docker",}', {'exists': True, 'config': None, 'error': 'is not valid JSON'}),
    ('[1, 2]', {'exists': True, 'config': None, 'error': 'holds a JSON array'}),
], ids=['missing', 'valid', 'empty', 'trailing-comma', 'array'])
def test_daemon_json(tmp_path, content, expected):
    path = tmp_path / 'daemon.json'
    if content is not None:
        path.write_text(content)
    result = _host_facts.read_daemon_json(str(path))
    assert result['path'] == str(path)
    assert (result['exists'], result['config']) == (expected['exists'], expected['config'])
    if expected['error'] is None:
        assert result['error'] is None
    else:
        assert result['error'].startswith('%s %s' % (path, expected['error'])), result['error']


def test_daemon_json_fifo_is_refused_without_waiting(tmp_path):
    path = tmp_path / 'daemon.json'
    os.mkfifo(str(path))
    start = time.monotonic()
    result = _host_facts.read_daemon_json(str(path))
    assert time.monotonic() - start < 2
    assert result['exists'] is True and result['config'] is None
    assert result['error'].startswith('%s is a FIFO (named pipe), not a regular file' % path)


# ---------------------------------------------------------------- users and groups

def test_root_user_and_group():
    assert _host_facts.read_user('root') == {'exists': True, 'groups': _root_groups()}
    assert _host_facts.group_exists('root') is True


def _root_groups():
    out = subprocess.run(['id', '-Gn', 'root'], capture_output=True, text=True, check=True).stdout.split()
    return [out[0]] + sorted(out[1:], key=lambda name: grp.getgrnam(name).gr_gid)


def test_absent_user_and_group():
    assert _host_facts.read_user('no-such-user-hf') == {'exists': False, 'groups': []}
    assert _host_facts.group_exists('no-such-group-hf') is False


# ---------------------------------------------------------------- distribution

def test_distribution_collector_without_the_facts_package_matches_the_plain_import():
    """In a fresh interpreter: the quick import leaves no stand-in package behind, the real package still imports
    afterwards, and both give the collector the same values."""
    code = r'''
import json, sys
from ansible_collections.homelab.gpu.plugins.module_utils import _host_facts
quick = _host_facts.distribution_collector()
loaded_after_quick = 'ansible.module_utils.facts' in sys.modules
collectors_after_quick = 'ansible.module_utils.facts.default_collectors' in sys.modules
import ansible.module_utils.facts as real
from ansible.module_utils.facts.system.distribution import DistributionFactCollector
class M:
    def get_bin_path(self, *a, **k): return None
    def run_command(self, *a, **k): raise AssertionError(a)
print(json.dumps({'loaded_after_quick': loaded_after_quick, 'collectors_after_quick': collectors_after_quick,
                  'real_has_ansible_facts': hasattr(real, 'ansible_facts'),
                  'same_class': quick is DistributionFactCollector,
                  'values': quick().collect(module=M()) == DistributionFactCollector().collect(module=M())}))
'''
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=dict(os.environ,
                         PYTHONPATH=os.pathsep.join(p for p in sys.path if p)), check=True).stdout
    assert json.loads(out) == {'loaded_after_quick': False, 'collectors_after_quick': False,
                               'real_has_ansible_facts': True, 'same_class': True, 'values': True}
