# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole-module tests of docker_daemon_config against files in tmp_path."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import sys
import tempfile
import traceback
from pathlib import Path

import pytest

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.gpu.plugins.module_utils import _common
from ansible_collections.homelab.gpu.plugins.module_utils import _daemon_json as dj
from ansible_collections.homelab.gpu.plugins.modules import docker_daemon_config

LAB_FILE = '{\n  "storage-driver": "vfs"\n}\n'

# Stand-in for dockerd (not the real binary): it answers `--help` and `--validate --config-file F` the way
# Docker 23+ does. It accepts any config without a "bogus" key and rejects one with it with the real message.
# A copy of each file it was asked to validate goes to $0.seen so that tests can see what was validated.
DOCKERD_MODERN = r"""#!/bin/sh
case "$1" in
  --help)
    echo "      --userns-remap string    User/Group setting for user namespaces"
    echo "      --validate               Validate daemon configuration and exit"
    exit 0 ;;
  --validate)
    cp "$3" "$0.seen"
    echo "$3" > "$0.seen-path"
    if grep -q '"bogus"' "$3"; then
      echo "unable to configure the Docker daemon with file $3: the following directives don't match any configuration option: bogus" >&2
      exit 1
    fi
    echo "configuration OK"
    exit 0 ;;
esac
exit 2
"""

# Stand-in for Debian 12's dockerd 20.10: no --validate in its help, and the flag is refused.
DOCKERD_20 = r"""#!/bin/sh
case "$1" in
  --help)
    echo "      --userns-remap string    User/Group setting for user namespaces"
    exit 0 ;;
esac
touch "$0.seen"
echo "unknown flag: --validate" >&2
echo "See 'dockerd --help'." >&2
exit 125
"""

# Stand-in for a dockerd whose help mentions --validate but that still refuses the flag (detected by the failure).
DOCKERD_LYING = DOCKERD_20.replace('User/Group setting for user namespaces"',
                                   'User/Group setting for user namespaces"\n    echo "      --validate  Validate"')


@pytest.fixture
def dockerd(tmp_path, monkeypatch):
    """Install a stand-in dockerd (or none) where the module looks for it; return the script's path."""
    state = {'path': None}
    real_get_bin_path = AnsibleModule.get_bin_path

    def get_bin_path(self, arg, *args, **kwargs):
        if arg == 'dockerd':
            return state['path']
        return real_get_bin_path(self, arg, *args, **kwargs)

    monkeypatch.setattr(AnsibleModule, 'get_bin_path', get_bin_path)

    def install(script, where=None):
        if script is None:
            state['path'] = None
            return None
        bindir = (where or tmp_path) / 'bin'
        bindir.mkdir(exist_ok=True)
        path = bindir / 'dockerd'
        path.write_text(script)
        path.chmod(0o755)
        state['path'] = str(path)
        return path

    return install


def run_module(capsys, tmp_path, args, check_mode=False, diff=False):
    moduletmp = tmp_path / 'moduletmp'
    moduletmp.mkdir(exist_ok=True)
    args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff, _ansible_tmpdir=str(moduletmp))
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            docker_daemon_config.main()
    result = json.loads(capsys.readouterr().out)
    assert (exc.value.code != 0) == bool(result.get('failed')), result
    return result


NOBODY = (65534, 65534)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason='runs the module as another user, which needs root')


@pytest.fixture
def shared_dir():
    """A directory the user nobody can reach (pytest's tmp_path is private to root)."""
    path = tempfile.mkdtemp(prefix='daemon-json-test.')
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


def run_module_as(user, args, moduletmp, check_mode=False, diff=False):
    """Run the module in a child process as ``user`` (uid, gid): the kernel, not a stand-in, refuses what
    that user may not do. Returns the module's result."""
    args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff, _ansible_tmpdir=moduletmp)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read_end)
            sys.stdout = os.fdopen(write_end, 'w')
            os.setgroups([])
            os.setgid(user[1])
            os.setuid(user[0])
            with patch_module_args(args):
                docker_daemon_config.main()
        except SystemExit:
            pass
        except BaseException:
            traceback.print_exc()
            code = 99
        finally:
            sys.stdout.flush()
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        out = f.read()
    _pid, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    return json.loads(out)


@pytest.fixture
def daemon_json(tmp_path):
    directory = tmp_path / 'etc' / 'docker'
    directory.mkdir(parents=True)
    return directory / 'daemon.json'


def leftovers(path):
    """Files next to ``path`` other than itself (temp files must not stay)."""
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


# ---------------------------------------------------------------- probe

def test_probe_missing_file(capsys, tmp_path, dockerd):
    path = tmp_path / 'etc' / 'docker' / 'daemon.json'
    result = run_module(capsys, tmp_path, dict(path=str(path)))
    assert result['changed'] is False
    assert result['exists'] is False
    assert result['config'] == {}
    assert result['actions'] == []
    assert result['restart_required'] is False
    assert not path.parent.exists()


def test_probe_writes_nothing(capsys, tmp_path, daemon_json, dockerd, monkeypatch):
    daemon_json.write_text(LAB_FILE)

    def no_write(*args, **kwargs):
        raise AssertionError('a probe must not write')

    monkeypatch.setattr(dj, 'stage_file', no_write)
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), settings={}, remove=[]), diff=True)
    assert result['changed'] is False
    assert result['exists'] is True
    assert result['config'] == {'storage-driver': 'vfs'}
    assert result['diff']['before'] == result['diff']['after'] == LAB_FILE


@pytest.mark.parametrize('content', ['', '  \n\n'], ids=['zero-bytes', 'whitespace'])
def test_empty_file_is_empty_object(capsys, tmp_path, daemon_json, dockerd, content):
    daemon_json.write_text(content)
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json)))
    assert result['changed'] is False
    assert result['config'] == {}
    assert daemon_json.read_text() == content
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), experimental=True))
    assert result['changed'] is True
    assert daemon_json.read_text() == '{\n  "experimental": true\n}\n'


# ---------------------------------------------------------------- create / merge / idempotence

def test_create_missing_file_and_directory(capsys, tmp_path, dockerd):
    dockerd(None)
    path = tmp_path / 'etc' / 'docker' / 'daemon.json'
    result = run_module(capsys, tmp_path, dict(path=str(path), nvidia_runtime={'path': '/usr/bin/nvidia-container-runtime'}))
    assert result['changed'] is True
    assert result['exists'] is True
    assert result['restart_required'] is True
    assert result['actions'] == ['set runtimes.nvidia.path to /usr/bin/nvidia-container-runtime']
    assert path.read_text() == ('{\n  "runtimes": {\n    "nvidia": {\n      "path": "/usr/bin/nvidia-container-runtime"\n'
                                '    }\n  }\n}\n')
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert (path.stat().st_uid, path.stat().st_gid) == (os.geteuid(), os.getegid())
    assert leftovers(path) == []
    assert result['validated'] is False
    assert result['validation_message'] == 'dockerd was not found on this host; the content was not validated'


def test_missing_file_not_created_for_nothing(capsys, tmp_path, dockerd):
    path = tmp_path / 'daemon.json'
    result = run_module(capsys, tmp_path, dict(path=str(path), remove=['experimental']))
    assert result['changed'] is False
    assert result['exists'] is False
    assert not path.exists()


def test_merge_keeps_other_keys_in_order_and_is_idempotent(capsys, tmp_path, daemon_json, dockerd):
    dockerd(DOCKERD_20)
    daemon_json.write_text('{\n    "storage-driver": "vfs",\n    "log-opts": {"max-size": "5m", "tag": "{{.Name}}"},\n'
                           '    "labels": ["ort=Zürich"]\n}\n')
    args = dict(path=str(daemon_json), nvidia_runtime={'path': '/usr/bin/runc', 'args': []}, experimental=True,
                log_opts={'max-size': '10m', 'max-file': 3}, settings={'labels': ['名前=gpu']},
                list_merge='append_unique', insecure_registries=['registry.lab:5000'])
    result = run_module(capsys, tmp_path, args)
    assert result['changed'] is True
    assert result['actions'] == [
        'appended 名前=gpu to labels',
        'set runtimes.nvidia.path to /usr/bin/runc',
        'set runtimes.nvidia.runtimeArgs to []',
        'set experimental to true',
        'set log-opts.max-size to 10m',
        'set log-opts.max-file to 3',
        'set insecure-registries to ["registry.lab:5000"]',
    ]
    expected = {
        'storage-driver': 'vfs',
        'log-opts': {'max-size': '10m', 'tag': '{{.Name}}', 'max-file': '3'},
        'labels': ['ort=Zürich', '名前=gpu'],
        'runtimes': {'nvidia': {'path': '/usr/bin/runc', 'runtimeArgs': []}},
        'experimental': True,
        'insecure-registries': ['registry.lab:5000'],
    }
    assert daemon_json.read_text(encoding='utf-8') == json.dumps(expected, indent=2, ensure_ascii=False) + '\n'
    assert list(json.loads(daemon_json.read_text())) == list(expected)
    assert result['config'] == expected

    inode = daemon_json.stat().st_ino
    again = run_module(capsys, tmp_path, args)
    assert again['changed'] is False
    assert again['actions'] == []
    assert again['restart_required'] is False
    assert daemon_json.stat().st_ino == inode, 'an unchanged file must not be rewritten'


def test_unchanged_data_is_not_reformatted(capsys, tmp_path, daemon_json, dockerd):
    text = '{"experimental":true,\n\t"storage-driver":"vfs"}'
    daemon_json.write_text(text)
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), experimental=True), diff=True)
    assert result['changed'] is False
    assert daemon_json.read_text() == text


def test_true_is_not_one(capsys, tmp_path, daemon_json, dockerd):
    daemon_json.write_text('{"experimental": 1}')
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), experimental=True))
    assert result['changed'] is True
    assert json.loads(daemon_json.read_text()) == {'experimental': True}
    assert daemon_json.read_text() == '{\n  "experimental": true\n}\n'


def test_remove_keeps_empty_parent(capsys, tmp_path, daemon_json, dockerd):
    daemon_json.write_text('{"runtimes": {"nvidia": {"path": "x"}}, "experimental": true, "storage-driver": "vfs"}')
    args = dict(path=str(daemon_json), remove=['runtimes.nvidia', 'experimental', 'not.there'])
    result = run_module(capsys, tmp_path, args)
    assert result['changed'] is True
    assert result['actions'] == ['removed runtimes.nvidia', 'removed experimental']
    assert daemon_json.read_text() == '{\n  "runtimes": {},\n  "storage-driver": "vfs"\n}\n'
    assert run_module(capsys, tmp_path, args)['changed'] is False


def test_list_replace_is_default(capsys, tmp_path, daemon_json, dockerd):
    daemon_json.write_text('{"insecure-registries": ["a:5000", "b:5000"]}')
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), insecure_registries=['b:5000']))
    assert result['changed'] is True
    assert json.loads(daemon_json.read_text()) == {'insecure-registries': ['b:5000']}


def test_symlink_is_kept(capsys, tmp_path, daemon_json, dockerd):
    target = tmp_path / 'real.json'
    target.write_text(LAB_FILE)
    daemon_json.symlink_to(target)
    run_module(capsys, tmp_path, dict(path=str(daemon_json), experimental=True))
    assert daemon_json.is_symlink()
    assert json.loads(target.read_text()) == {'storage-driver': 'vfs', 'experimental': True}


# ---------------------------------------------------------------- check mode and diff

def test_check_mode_changes_nothing(capsys, tmp_path, daemon_json, dockerd):
    dockerd(DOCKERD_MODERN)
    daemon_json.write_bytes(LAB_FILE.encode())
    before = daemon_json.stat()
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), experimental=True, backup=True),
                        check_mode=True, diff=True)
    assert result['changed'] is True
    assert result['restart_required'] is True
    assert result['actions'] == ['set experimental to true']
    assert result['config'] == {'storage-driver': 'vfs', 'experimental': True}
    assert 'backup_file' not in result
    assert daemon_json.read_bytes() == LAB_FILE.encode()
    assert daemon_json.stat().st_mtime_ns == before.st_mtime_ns
    assert leftovers(daemon_json) == []
    # the prediction was validated, from a file outside the config directory
    assert result['validated'] is True
    seen_path = (tmp_path / 'bin' / 'dockerd.seen-path').read_text().strip()
    assert not seen_path.startswith(str(daemon_json.parent))


def test_check_mode_missing_file(capsys, tmp_path, dockerd):
    path = tmp_path / 'etc' / 'docker' / 'daemon.json'
    result = run_module(capsys, tmp_path, dict(path=str(path), experimental=True), check_mode=True)
    assert result['changed'] is True
    assert result['exists'] is True
    assert not path.parent.exists()


def test_diff(capsys, tmp_path, daemon_json, dockerd):
    daemon_json.write_text(LAB_FILE)
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), experimental=True), diff=True)
    assert result['diff'] == {
        'before': LAB_FILE,
        'after': '{\n  "storage-driver": "vfs",\n  "experimental": true\n}\n',
        'before_header': str(daemon_json),
        'after_header': str(daemon_json),
    }


# ---------------------------------------------------------------- backup, mode and owner

def test_backup(capsys, tmp_path, daemon_json, dockerd):
    daemon_json.write_text(LAB_FILE)
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), experimental=True, backup=True))
    assert result['changed'] is True
    backup = result['backup_file']
    assert backup.startswith(str(daemon_json) + '.')
    assert open(backup).read() == LAB_FILE
    assert leftovers(daemon_json) == [os.path.basename(backup)]
    again = run_module(capsys, tmp_path, dict(path=str(daemon_json), experimental=True, backup=True))
    assert again['changed'] is False
    assert 'backup_file' not in again


def _backups(path):
    return sorted(p for p in leftovers(path) if p.endswith('~'))


@pytest.fixture
def own_pid(monkeypatch):
    """Stand-in for what Ansible does, a new process for each task: the backup's name holds the pid and the time
    to the second, so calls from this one test process within a second would share a name."""
    pids = iter(range(2000, 3000))
    monkeypatch.setattr(os, 'getpid', lambda: next(pids))


def test_backups_are_bounded(capsys, tmp_path, daemon_json, dockerd, own_pid):
    daemon_json.write_text(LAB_FILE)
    (daemon_json.parent / 'daemon.json.bak').write_text('mine')
    made = []
    for n in range(5):
        args = dict(path=str(daemon_json), settings={'max-concurrent-downloads': n + 1}, backup=True, backup_keep=2)
        predicted = run_module(capsys, tmp_path, args, check_mode=True)
        result = run_module(capsys, tmp_path, args)
        made.append(result['backup_file'])
        # Within one second the names' time stamps are the same, and ctime orders.
        assert result['backups_removed'] == made[:-2][-1:]
        assert predicted['backups_removed'] == result['backups_removed']
        assert len(_backups(daemon_json)) == min(n + 1, 2)
    assert _backups(daemon_json) == sorted(os.path.basename(b) for b in made[-2:])
    # the newest backup holds the content before the last change
    assert json.loads(open(made[-1]).read())['max-concurrent-downloads'] == 4
    assert (daemon_json.parent / 'daemon.json.bak').read_text() == 'mine'
    # no change, no pruning
    again = run_module(capsys, tmp_path, dict(path=str(daemon_json), settings={'max-concurrent-downloads': 5},
                                              backup=True, backup_keep=1))
    assert again['changed'] is False and again['backups_removed'] == []
    assert len(_backups(daemon_json)) == 2


def test_backup_keep_default_is_three(capsys, tmp_path, daemon_json, dockerd, own_pid):
    daemon_json.write_text(LAB_FILE)
    for n in range(4):
        run_module(capsys, tmp_path, dict(path=str(daemon_json), settings={'debug': n % 2 == 0}, backup=True))
    assert len(_backups(daemon_json)) == 3


def test_no_pruning_without_backup(capsys, tmp_path, daemon_json, dockerd, own_pid):
    daemon_json.write_text(LAB_FILE)
    for n in range(3):
        run_module(capsys, tmp_path, dict(path=str(daemon_json), settings={'debug': n % 2 == 0}, backup=True,
                                          backup_keep=3))
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), experimental=True, backup_keep=1))
    assert result['backups_removed'] == []
    assert len(_backups(daemon_json)) == 3


def test_backup_keep_must_be_positive(capsys, tmp_path, daemon_json, dockerd):
    daemon_json.write_text(LAB_FILE)
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), experimental=True, backup=True, backup_keep=0))
    assert result['failed'] is True
    assert result['msg'] == ('backup_keep is 0, but it counts the backup this call makes, so it must be 1 or more; '
                             'set backup=false to make no backup')
    assert daemon_json.read_text() == LAB_FILE


def test_no_backup_of_missing_file(capsys, tmp_path, daemon_json, dockerd):
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), experimental=True, backup=True))
    assert result['changed'] is True
    assert 'backup_file' not in result


@pytest.mark.skipif(os.geteuid() != 0, reason='chown to another user needs root')
def test_mode_and_owner_preserved(capsys, tmp_path, daemon_json, dockerd):
    daemon_json.write_text(LAB_FILE)
    os.chown(str(daemon_json), 1234, 2345)
    daemon_json.chmod(0o600)
    run_module(capsys, tmp_path, dict(path=str(daemon_json), experimental=True))
    st = daemon_json.stat()
    assert json.loads(daemon_json.read_text())['experimental'] is True
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_gid) == (1234, 2345)


def test_mode_preserved(capsys, tmp_path, daemon_json, dockerd):
    daemon_json.write_text(LAB_FILE)
    daemon_json.chmod(0o640)
    run_module(capsys, tmp_path, dict(path=str(daemon_json), experimental=True))
    assert stat.S_IMODE(daemon_json.stat().st_mode) == 0o640


# ---------------------------------------------------------------- files that are refused

BAD_FILES = [
    ('comment', '{\n  // nvidia\n  "storage-driver": "vfs"\n}\n',
     '%s is not valid JSON (Expecting property name enclosed in double quotes: line 2 column 3); '
     'fix or remove it, it was left untouched'),
    ('trailing comma', '{\n  "storage-driver": "vfs",\n}\n',
     '%s is not valid JSON (Expecting property name enclosed in double quotes: line 3 column 1); '
     'fix or remove it, it was left untouched'),
    ('missing comma', '{\n  "a": 1\n  "b": 2\n}\n',
     "%s is not valid JSON (Expecting ',' delimiter: line 3 column 3); fix or remove it, it was left untouched"),
    ('array', '[{"storage-driver": "vfs"}]\n',
     '%s holds a JSON array, but dockerd needs an object ({...}) at the top level; '
     'fix or remove it, it was left untouched'),
]


@pytest.mark.parametrize('check_mode', [False, True], ids=['apply', 'check'])
@pytest.mark.parametrize('content, message', [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_file_left_untouched(capsys, tmp_path, daemon_json, dockerd, content, message, check_mode):
    raw = content.encode()
    daemon_json.write_bytes(raw)
    daemon_json.chmod(0o640)
    before = daemon_json.stat()
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), experimental=True, backup=True),
                        check_mode=check_mode)
    assert result['failed'] is True
    assert result['msg'] == message % daemon_json
    assert daemon_json.read_bytes() == raw
    after = daemon_json.stat()
    assert (after.st_ino, after.st_mtime_ns, stat.S_IMODE(after.st_mode)) == (
        before.st_ino, before.st_mtime_ns, 0o640)
    assert leftovers(daemon_json) == []


def test_probe_of_bad_file_fails(capsys, tmp_path, daemon_json, dockerd):
    daemon_json.write_text('{"a": 1,}')
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json)))
    assert result['failed'] is True
    assert result['msg'].startswith('%s is not valid JSON (' % daemon_json)


NOT_REGULAR = ('%s is %s, not a regular file, and dockerd reads its configuration only from a regular file; '
               'fix or remove it, it was left untouched')


def test_directory_at_path(capsys, tmp_path, dockerd):
    path = tmp_path / 'daemon.json'
    path.mkdir()
    result = run_module(capsys, tmp_path, dict(path=str(path), experimental=True))
    assert result['failed'] is True
    assert result['msg'] == NOT_REGULAR % (path, 'a directory')
    assert path.is_dir() and list(path.iterdir()) == []


@pytest.mark.parametrize('check_mode', [False, True], ids=['apply', 'check'])
@pytest.mark.parametrize('options', [{}, {'experimental': True, 'backup': True}], ids=['probe', 'change'])
def test_fifo_at_path_is_refused_at_once(capsys, tmp_path, daemon_json, dockerd, options, check_mode):
    path = daemon_json
    os.mkfifo(str(path))

    def expired(signum, frame):
        raise AssertionError('the module waited on the FIFO')

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(10)
    try:
        result = run_module(capsys, tmp_path, dict(path=str(path), **options), check_mode=check_mode)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert result['failed'] is True
    assert result['msg'] == NOT_REGULAR % (path, 'a FIFO (named pipe)')
    assert stat.S_ISFIFO(path.lstat().st_mode)
    assert leftovers(path) == []


@needs_root
def test_unreadable_file(shared_dir, dockerd):
    path = os.path.join(shared_dir, 'daemon.json')
    with open(path, 'w') as f:
        f.write(LAB_FILE)
    os.chmod(path, 0o600)
    result = run_module_as(NOBODY, dict(path=path, experimental=True), shared_dir)
    assert result['failed'] is True
    assert result['msg'] == '%s could not be read (Permission denied)' % path
    assert open(path).read() == LAB_FILE


# ---------------------------------------------------------------- a user other than root

def _owned_dir(base, name, owner):
    path = os.path.join(base, name)
    os.mkdir(path)
    os.chown(path, *owner)
    return path


def _snapshot(*dirs):
    return dict((d, sorted(os.listdir(d))) for d in dirs)


@needs_root
@pytest.mark.parametrize('check_mode', [False, True], ids=['apply', 'check'])
def test_not_root_file_of_root(shared_dir, dockerd, check_mode):
    # The usual mistake: no become. nobody may create files in the directory, but not give one to root.
    # A stand-in dockerd that nobody could run and that records being asked.
    script = dockerd(DOCKERD_MODERN, where=Path(_owned_dir(shared_dir, 'tools', NOBODY)))
    directory = _owned_dir(shared_dir, 'docker', NOBODY)
    moduletmp = _owned_dir(shared_dir, 'moduletmp', NOBODY)
    path = os.path.join(directory, 'daemon.json')
    with open(path, 'w') as f:
        f.write(LAB_FILE)
    before = _snapshot(directory, moduletmp)
    result = run_module_as(NOBODY, dict(path=path, experimental=True, backup=True), moduletmp, check_mode=check_mode)
    assert result['failed'] is True
    assert result['msg'] == ('cannot keep the owner of %s (uid 0): the new file would belong to uid 65534, and only '
                             'root may give a file to another user; run as root (become: true). %s was left untouched'
                             % (path, path))
    assert open(path).read() == LAB_FILE
    # Nothing was written anywhere, not even the prediction, and dockerd was not asked.
    assert _snapshot(directory, moduletmp) == before
    assert sorted(os.listdir(script.parent)) == ['dockerd']


@needs_root
@pytest.mark.parametrize('check_mode', [False, True], ids=['apply', 'check'])
def test_not_root_directory_of_root(shared_dir, dockerd, check_mode):
    path = os.path.join(shared_dir, 'daemon.json')
    moduletmp = _owned_dir(shared_dir, 'moduletmp', NOBODY)
    result = run_module_as(NOBODY, dict(path=path, log_driver='local'), moduletmp, check_mode=check_mode)
    assert result['failed'] is True
    assert result['msg'] == ('cannot write to %s: uid 65534 may not create files in %s; run as root (become: true). '
                             '%s was left untouched' % (path, shared_dir, path))
    assert not os.path.exists(path)
    assert os.listdir(moduletmp) == []


@needs_root
def test_not_root_own_file(shared_dir, dockerd):
    # A file the user owns, in a directory the user owns: no root needed, and owner and mode stay.
    directory = _owned_dir(shared_dir, 'docker', NOBODY)
    path = os.path.join(directory, 'daemon.json')
    with open(path, 'w') as f:
        f.write(LAB_FILE)
    os.chown(path, *NOBODY)
    os.chmod(path, 0o640)
    result = run_module_as(NOBODY, dict(path=path, experimental=True, backup=True), directory)
    assert result['changed'] is True, result
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY[0], NOBODY[1], 0o640)
    assert json.loads(open(path).read()) == {'storage-driver': 'vfs', 'experimental': True}


def test_staging_failure_names_the_step(capsys, tmp_path, daemon_json, dockerd, monkeypatch):
    # Stand-in for a full disk (a real one cannot be made here): the write to the temporary file fails.
    daemon_json.write_text(LAB_FILE)

    def full(fd):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(os, 'fsync', full)
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), experimental=True))
    monkeypatch.undo()
    assert result['failed'] is True
    assert result['msg'].startswith('cannot write the new content to the temporary file %s/.daemon.json.'
                                    % daemon_json.parent)
    assert result['msg'].endswith('.tmp: No space left on device. %s was left untouched' % daemon_json)
    assert daemon_json.read_text() == LAB_FILE
    assert leftovers(daemon_json) == []


# ---------------------------------------------------------------- values JSON cannot hold

@pytest.mark.parametrize('check_mode', [False, True], ids=['apply', 'check'])
@pytest.mark.parametrize('content, where, value', [
    ('{"storage-driver": "vfs", "max-concurrent-downloads": NaN}', 'max-concurrent-downloads', 'NaN'),
    ('{"storage-driver": "vfs", "log-opts": {"max-file": 1e400}}', 'log-opts.max-file', '1e400'),
], ids=['NaN', '1e400'])
def test_non_finite_number_in_file(capsys, tmp_path, daemon_json, dockerd, content, where, value, check_mode):
    daemon_json.write_text(content)
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), experimental=True, backup=True),
                        check_mode=check_mode)
    assert result['failed'] is True
    assert result['msg'] == ('%s has %s at %s, which is not a finite number: JSON has no NaN or Infinity, and dockerd '
                             'refuses it; fix or remove it, it was left untouched' % (daemon_json, value, where))
    assert daemon_json.read_text() == content
    assert leftovers(daemon_json) == []


def test_deeply_nested_file(capsys, tmp_path, daemon_json, dockerd):
    content = '{"a": ' + '[' * 50000 + ']' * 50000 + '}'
    daemon_json.write_text(content)
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), experimental=True))
    assert result['failed'] is True
    assert result['msg'] == ('%s is nested too deeply to be read (more than 100 levels); fix or remove it, it was '
                             'left untouched' % daemon_json)
    assert daemon_json.read_text() == content


@pytest.mark.parametrize('options, message', [
    ({'settings': {'max-concurrent-downloads': float('nan')}},
     'settings.max-concurrent-downloads is NaN, which is not a finite number: JSON has no NaN or Infinity, and dockerd '
     'refuses it; give a finite number'),
    ({'settings': {'default-address-pools': [{'size': float('inf')}]}},
     'settings.default-address-pools[0].size is Infinity, which is not a finite number: JSON has no NaN or Infinity, '
     'and dockerd refuses it; give a finite number'),
    ({'log_opts': {'max-size': None}},
     'log_opts.max-size is null (a JSON null); dockerd takes only strings there: give a string, a number or a boolean'),
    ({'log_opts': {'tag': {'a': 1}}},
     'log_opts.tag is {"a": 1} (a JSON object); dockerd takes only strings there: give a string, a number or a '
     'boolean'),
    ({'log_opts': {'max-file': float('nan')}},
     'log_opts.max-file is NaN (not a finite number); dockerd takes only strings there: give a string, a number or '
     'a boolean'),
], ids=['settings NaN', 'settings inf in a list', 'log_opts null', 'log_opts object', 'log_opts NaN'])
def test_values_json_cannot_hold(capsys, tmp_path, daemon_json, dockerd, options, message):
    daemon_json.write_text(LAB_FILE)
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), **options))
    assert result['failed'] is True
    assert result['msg'] == message
    assert daemon_json.read_text() == LAB_FILE
    assert leftovers(daemon_json) == []


def test_conflicting_options(capsys, tmp_path, daemon_json, dockerd):
    daemon_json.write_text(LAB_FILE)
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), experimental=True,
                                               settings={'experimental': False}))
    assert result['failed'] is True
    assert result['msg'] == 'settings.experimental and option experimental both set experimental; give it once'
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), nvidia_runtime={}, remove=['runtimes']))
    assert result['msg'] == ('remove[0] runtimes overlaps option nvidia_runtime, which sets runtimes.nvidia.path; '
                             'a key is either set or removed')
    assert daemon_json.read_text() == LAB_FILE


# ---------------------------------------------------------------- validation

def test_validation_accepts(capsys, tmp_path, daemon_json, dockerd):
    script = dockerd(DOCKERD_MODERN)
    daemon_json.write_text(LAB_FILE)
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), default_runtime='runc'))
    assert result['changed'] is True
    assert result['validated'] is True
    assert result['validation_message'] == 'dockerd --validate: configuration OK'
    # it validated exactly what was then put in place, from a temp file in the same directory
    assert (tmp_path / 'bin' / 'dockerd.seen').read_text() == daemon_json.read_text()
    seen_path = (tmp_path / 'bin' / 'dockerd.seen-path').read_text().strip()
    assert os.path.dirname(seen_path) == str(daemon_json.parent)
    assert leftovers(daemon_json) == []
    assert script.exists()


@pytest.mark.parametrize('check_mode', [False, True], ids=['apply', 'check'])
def test_validation_rejects(capsys, tmp_path, daemon_json, dockerd, check_mode):
    dockerd(DOCKERD_MODERN)
    daemon_json.write_text(LAB_FILE)
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), settings={'bogus': 1}, backup=True),
                        check_mode=check_mode)
    assert result['failed'] is True
    assert result['msg'].startswith('dockerd rejected the new content for %s (rc 1): unable to configure the Docker '
                                    'daemon with file ' % daemon_json)
    assert result['msg'].endswith("the following directives don't match any configuration option: bogus; "
                                  'the file was left untouched')
    assert daemon_json.read_text() == LAB_FILE
    assert leftovers(daemon_json) == []


@pytest.mark.parametrize('script', [DOCKERD_20, DOCKERD_LYING], ids=['help-says-no', 'flag-refused'])
def test_validation_unsupported(capsys, tmp_path, daemon_json, dockerd, script):
    dockerd(script)
    daemon_json.write_text(LAB_FILE)
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), settings={'bogus': 1}))
    assert result['changed'] is True
    assert result['validated'] is False
    assert result['validation_message'] == ('dockerd on this host does not support --validate '
                                            '(Docker 23 or later needed); the content was not validated')
    assert json.loads(daemon_json.read_text()) == {'storage-driver': 'vfs', 'bogus': 1}
    # the 20.10 stand-in is never asked to validate, the lying one is asked once and refuses
    assert (tmp_path / 'bin' / 'dockerd.seen').exists() is (script is DOCKERD_LYING)


def test_validate_false(capsys, tmp_path, daemon_json, dockerd):
    dockerd(DOCKERD_MODERN)
    daemon_json.write_text(LAB_FILE)
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), settings={'bogus': 1}, validate=False))
    assert result['changed'] is True
    assert result['validated'] is False
    assert result['validation_message'] == 'validation skipped (validate=false)'
    assert not (tmp_path / 'bin' / 'dockerd.seen').exists()


def test_no_change_no_validation(capsys, tmp_path, daemon_json, dockerd):
    dockerd(DOCKERD_MODERN)
    daemon_json.write_text(LAB_FILE)
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), settings={'storage-driver': 'vfs'}))
    assert result['changed'] is False
    assert result['validated'] is False
    assert result['validation_message'] == 'no change; nothing to validate'
    assert not (tmp_path / 'bin' / 'dockerd.seen').exists()


# Stand-in for a dockerd that hangs at --help, ignoring SIGTERM (the module's time-out has to kill it).
DOCKERD_HELP_HANGS = "#!/bin/sh\ntrap '' TERM\nsleep 60\n"
# Stand-in for a dockerd 23+ that hangs at --validate, ignoring SIGTERM.
DOCKERD_VALIDATE_HANGS = DOCKERD_MODERN.replace('  --validate)\n', "  --validate)\n    trap '' TERM\n    sleep 60\n")


@pytest.mark.parametrize('script, failed, message', [
    (DOCKERD_HELP_HANGS, False, 'dockerd --help timed out after 1 s; the content was not validated'),
    (DOCKERD_VALIDATE_HANGS, True, 'dockerd --validate timed out after 1 s; {path} was left untouched'),
], ids=['help', 'validate'])
def test_a_hung_dockerd_is_named_a_time_out(capsys, tmp_path, daemon_json, dockerd, monkeypatch, script, failed,
                                            message):
    monkeypatch.setattr(docker_daemon_config, 'HELP_TIMEOUT', 1)
    monkeypatch.setattr(docker_daemon_config, 'VALIDATE_TIMEOUT', 1)
    monkeypatch.setattr(_common, 'KILL_AFTER', 0.2)
    dockerd(script)
    daemon_json.write_text(LAB_FILE)
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), default_runtime='runc'))
    message = message.format(path=daemon_json)
    if failed:
        assert result['msg'] == message
        assert daemon_json.read_text() == LAB_FILE
    else:
        assert (result['validated'], result['validation_message']) == (False, message)
    assert leftovers(daemon_json) == []


@pytest.mark.parametrize('check_mode', [True, False], ids=['check', 'apply'])
def test_a_lone_surrogate_in_the_file_is_refused_in_check_and_apply_alike(capsys, tmp_path, daemon_json, dockerd,
                                                                          check_mode):
    # Once: parsed, then the write raised UnicodeEncodeError, while check mode reported a change.
    dockerd(DOCKERD_MODERN)
    daemon_json.write_text('{"labels": ["a=\\ud800"]}\n')
    before = daemon_json.read_bytes()
    result = run_module(capsys, tmp_path, dict(path=str(daemon_json), default_runtime='runc'), check_mode=check_mode)
    assert result['msg'].startswith('%s has the escape \\ud800 in the value at labels[0]: half of a UTF-16 '
                                    'surrogate pair' % daemon_json)
    assert daemon_json.read_bytes() == before
    assert leftovers(daemon_json) == []
