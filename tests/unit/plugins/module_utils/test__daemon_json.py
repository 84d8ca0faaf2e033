# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import types

import pytest

from ansible_collections.homelab.gpu.plugins.module_utils import _daemon_json as dj

PATH = '/etc/docker/daemon.json'

# The file Debian 12's docker.io lab image ships, and a file as `nvidia-ctk runtime configure` writes it.
LAB_FILE = '{\n  "storage-driver": "vfs"\n}\n'
NVIDIA_CTK_FILE = '{\n    "runtimes": {\n        "nvidia": {\n            "args": [],\n            "path": "nvidia-container-runtime"\n        }\n    }\n}'


# ---------------------------------------------------------------- parse

PARSE_OK = [
    ('empty file', '', {}),
    ('whitespace only', ' \n\t\n', {}),
    ('empty object', '{}', {}),
    ('lab file', LAB_FILE, {'storage-driver': 'vfs'}),
    ('nvidia-ctk file', NVIDIA_CTK_FILE, {'runtimes': {'nvidia': {'args': [], 'path': 'nvidia-container-runtime'}}}),
    ('unicode', '{"labels": ["ort=Zürich", "名前=gpu"]}', {'labels': ['ort=Zürich', '名前=gpu']}),
    ('an escaped surrogate pair', '{"labels": ["\\ud83d\\ude00"]}', {'labels': ['\U0001f600']}),
]


@pytest.mark.parametrize('text, expected', [c[1:] for c in PARSE_OK], ids=[c[0] for c in PARSE_OK])
def test_parse_ok(text, expected):
    assert dj.parse(text, PATH) == expected


def test_parse_takes_100_levels_and_big_numbers():
    text = '{"a": ' + '[' * 99 + ']' * 99 + ', "big": 1e308, "int": ' + '9' * 400 + ', "small": 1e-400}'
    data = dj.parse(text, PATH)
    assert data['big'] == 1e308 and data['small'] == 0.0 and data['int'] == int('9' * 400)
    assert dj.parse(dj.serialize(data), PATH) == data


def test_parse_keeps_key_order():
    text = '{"z": 1, "a": {"y": 2, "b": 3}, "m": 4}'
    data = dj.parse(text, PATH)
    assert list(data) == ['z', 'a', 'm']
    assert list(data['a']) == ['y', 'b']


PARSE_BAD = [
    ('missing comma', '{\n  "a": 1\n  "b": 2\n}',
     "/etc/docker/daemon.json is not valid JSON (Expecting ',' delimiter: line 3 column 3); "
     "fix or remove it, it was left untouched"),
    ('trailing comma', '{\n  "a": 1,\n}',
     "/etc/docker/daemon.json is not valid JSON (Expecting property name enclosed in double quotes: line 3 column 1); "
     "fix or remove it, it was left untouched"),
    ('line comment', '{\n  // the runtime\n  "a": 1\n}',
     "/etc/docker/daemon.json is not valid JSON (Expecting property name enclosed in double quotes: line 2 column 3); "
     "fix or remove it, it was left untouched"),
    ('hash comment', '# daemon config\n{}',
     "/etc/docker/daemon.json is not valid JSON (Expecting value: line 1 column 1); "
     "fix or remove it, it was left untouched"),
    ('truncated', '{"a": {"b": 1}',
     "/etc/docker/daemon.json is not valid JSON (Expecting ',' delimiter: line 1 column 15); "
     "fix or remove it, it was left untouched"),
    ('two objects', '{}\n{}',
     "/etc/docker/daemon.json is not valid JSON (Extra data: line 2 column 1); "
     "fix or remove it, it was left untouched"),
    ('array', '["storage-driver", "vfs"]',
     "/etc/docker/daemon.json holds a JSON array, but dockerd needs an object ({...}) at the top level; "
     "fix or remove it, it was left untouched"),
    ('string', '"vfs"',
     "/etc/docker/daemon.json holds a JSON string, but dockerd needs an object ({...}) at the top level; "
     "fix or remove it, it was left untouched"),
    ('null', 'null',
     "/etc/docker/daemon.json holds a JSON null, but dockerd needs an object ({...}) at the top level; "
     "fix or remove it, it was left untouched"),
    ('number', '42',
     "/etc/docker/daemon.json holds a JSON number, but dockerd needs an object ({...}) at the top level; "
     "fix or remove it, it was left untouched"),
    # What Python's parser takes but JSON (and so dockerd) does not: named with the key.
    ('NaN', '{"max-concurrent-downloads": NaN}',
     "/etc/docker/daemon.json has NaN at max-concurrent-downloads, which is not a finite number: JSON has no NaN or "
     "Infinity, and dockerd refuses it; fix or remove it, it was left untouched"),
    ('Infinity', '{"a": {"b": Infinity}}',
     "/etc/docker/daemon.json has Infinity at a.b, which is not a finite number: JSON has no NaN or "
     "Infinity, and dockerd refuses it; fix or remove it, it was left untouched"),
    ('-Infinity in a list', '{"a": [1, {"b": [2, -Infinity]}]}',
     "/etc/docker/daemon.json has -Infinity at a[1].b[1], which is not a finite number: JSON has no NaN or "
     "Infinity, and dockerd refuses it; fix or remove it, it was left untouched"),
    ('1e400', '{"log-opts": {"max\\u002esize": 1e400}}',
     "/etc/docker/daemon.json has 1e400 at log-opts.max\\.size, which is not a finite number: JSON has no NaN or "
     "Infinity, and dockerd refuses it; fix or remove it, it was left untouched"),
    ('-1e400 at the top', '{"x": -1E+400}',
     "/etc/docker/daemon.json has -1E+400 at x, which is not a finite number: JSON has no NaN or "
     "Infinity, and dockerd refuses it; fix or remove it, it was left untouched"),
    # Half of a surrogate pair: json.loads takes it, no UTF-8 file can hold it (the write once raised
    # UnicodeEncodeError, and check mode said it would succeed).
    ('lone surrogate in a value', '{"a": "\\ud800"}',
     "/etc/docker/daemon.json has the escape \\ud800 in the value at a: half of a UTF-16 surrogate pair, which "
     "stands for no character (dockerd reads it as U+FFFD), so the file could not be written back as UTF-8; write "
     "the character meant (or both halves of its pair) instead, or remove it; it was left untouched"),
    ('lone low surrogate in a key', '{"log-opts": {"tag\\udfff": "x"}}',
     "/etc/docker/daemon.json has the escape \\udfff in the key at log-opts.tag\\udfff: half of a UTF-16 "
     "surrogate pair, which stands for no character (dockerd reads it as U+FFFD), so the file could not be written "
     "back as UTF-8; write the character meant (or both halves of its pair) instead, or remove it; it was left "
     "untouched"),
    ('reversed pair in a list', '{"labels": ["ok", "\\ude00\\ud83d"]}',
     "/etc/docker/daemon.json has the escape \\ude00 in the value at labels[1]: half of a UTF-16 surrogate pair, "
     "which stands for no character (dockerd reads it as U+FFFD), so the file could not be written back as UTF-8; "
     "write the character meant (or both halves of its pair) instead, or remove it; it was left untouched"),
    ('101 levels', '{"a": ' + '[' * 100 + ']' * 100 + '}',
     "/etc/docker/daemon.json is nested more than 100 levels deep, which no daemon configuration is; "
     "fix or remove it, it was left untouched"),
    ('100000 levels', '{"a": ' + '[' * 100000 + ']' * 100000 + '}',
     "/etc/docker/daemon.json is nested too deeply to be read (more than 100 levels); "
     "fix or remove it, it was left untouched"),
    ('100000 objects', '{"a": ' + '{"a": ' * 100000 + '1' + '}' * 100001,
     "/etc/docker/daemon.json is nested too deeply to be read (more than 100 levels); "
     "fix or remove it, it was left untouched"),
]


@pytest.mark.parametrize('text, message', [c[1:] for c in PARSE_BAD], ids=[c[0] for c in PARSE_BAD])
def test_parse_bad(text, message):
    with pytest.raises(dj.DaemonJsonError) as exc:
        dj.parse(text, PATH)
    assert str(exc.value) == message


# ---------------------------------------------------------------- read_file

def test_read_file_missing(tmp_path):
    assert dj.read_file(str(tmp_path / 'nope.json')) == (False, '')


@pytest.mark.parametrize('raw, text', [
    (b'', ''),
    (LAB_FILE.encode(), LAB_FILE),
    (b'\xef\xbb\xbf{"a": 1}', '{"a": 1}'),
    ('{"ort": "Zürich"}'.encode('utf-8'), '{"ort": "Zürich"}'),
], ids=['empty', 'lab', 'bom', 'unicode'])
def test_read_file_text(tmp_path, raw, text):
    path = tmp_path / 'daemon.json'
    path.write_bytes(raw)
    assert dj.read_file(str(path)) == (True, text)


NOT_REGULAR = ("%s is %s, not a regular file, and dockerd reads its configuration only from a regular file; "
               "fix or remove it, it was left untouched")


@pytest.fixture
def no_hang():
    """Fail a test that blocks (a read of a FIFO would wait forever for a writer) instead of hanging the suite."""
    def expired(signum, frame):
        raise AssertionError('blocked for 10 seconds')

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _fifo(tmp_path):
    path = tmp_path / 'daemon.json'
    os.mkfifo(str(path))
    return path


def _fifo_behind_a_symlink(tmp_path):
    fifo = tmp_path / 'pipe'
    os.mkfifo(str(fifo))
    path = tmp_path / 'daemon.json'
    path.symlink_to(fifo)
    return path


def _socket(tmp_path):
    path = tmp_path / 'daemon.json'
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()  # the socket file stays
    return path


NOT_REGULAR_FILES = [
    ('directory', lambda tmp_path: tmp_path, 'a directory'),
    ('FIFO', _fifo, 'a FIFO (named pipe)'),
    ('FIFO behind a symlink', _fifo_behind_a_symlink, 'a FIFO (named pipe)'),
    ('socket', _socket, 'a socket'),
    ('character device', lambda tmp_path: '/dev/zero', 'a character device'),
]


@pytest.mark.parametrize('make, kind', [c[1:] for c in NOT_REGULAR_FILES], ids=[c[0] for c in NOT_REGULAR_FILES])
def test_read_file_refuses_what_is_not_a_regular_file_at_once(tmp_path, no_hang, make, kind):
    path = make(tmp_path)
    with pytest.raises(dj.DaemonJsonError) as exc:
        dj.read_file(str(path))
    assert str(exc.value) == NOT_REGULAR % (path, kind)


def test_read_file_no_permission(tmp_path, monkeypatch):
    # Stand-in for a user who may not read the file: tests run as root, which reads a chmod 000 file anyway, so
    # os.open() refuses this one path the way the kernel does for other users. (The module's tests run the real
    # case as the user nobody.)
    path = tmp_path / 'daemon.json'
    path.write_text('{}')
    real_open = os.open

    def refuse(name, *args, **kwargs):
        if os.fspath(name) == str(path):
            raise PermissionError(13, 'Permission denied', name)
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(os, 'open', refuse)
    with pytest.raises(dj.DaemonJsonError) as exc:
        dj.read_file(str(path))
    assert str(exc.value) == '%s could not be read (Permission denied)' % path


def test_read_file_not_utf8(tmp_path):
    path = tmp_path / 'daemon.json'
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(dj.DaemonJsonError) as exc:
        dj.read_file(str(path))
    assert str(exc.value).startswith('%s is not UTF-8 text (' % path)
    assert str(exc.value).endswith('fix or remove it, it was left untouched')


# ---------------------------------------------------------------- deep_merge

MERGE = [
    ('add to empty', {}, {'experimental': True}, 'replace',
     {'experimental': True}, ['set experimental to true']),
    ('same value is no change', {'experimental': True}, {'experimental': True}, 'replace',
     {'experimental': True}, []),
    ('true is not 1', {'experimental': 1}, {'experimental': True}, 'replace',
     {'experimental': True}, ['set experimental to true']),
    ('nested new', {'storage-driver': 'vfs'}, {'runtimes': {'nvidia': {'path': '/usr/bin/nvidia-container-runtime'}}},
     'replace',
     {'storage-driver': 'vfs', 'runtimes': {'nvidia': {'path': '/usr/bin/nvidia-container-runtime'}}},
     ['set runtimes.nvidia.path to /usr/bin/nvidia-container-runtime']),
    ('nested keeps siblings',
     {'runtimes': {'nvidia': {'args': [], 'path': 'nvidia-container-runtime'}, 'crun': {'path': '/usr/bin/crun'}}},
     {'runtimes': {'nvidia': {'path': '/usr/bin/nvidia-container-runtime'}}}, 'replace',
     {'runtimes': {'nvidia': {'args': [], 'path': '/usr/bin/nvidia-container-runtime'},
                   'crun': {'path': '/usr/bin/crun'}}},
     ['set runtimes.nvidia.path to /usr/bin/nvidia-container-runtime']),
    ('object replaces scalar', {'log-opts': 'bad'}, {'log-opts': {'max-size': '10m'}}, 'replace',
     {'log-opts': {'max-size': '10m'}},
     ['replaced log-opts (a string) with an object', 'set log-opts.max-size to 10m']),
    ('scalar replaces object', {'log-opts': {'max-size': '10m'}}, {'log-opts': None}, 'replace',
     {'log-opts': None}, ['set log-opts to null']),
    ('empty object added', {}, {'features': {}}, 'replace', {'features': {}}, ['set features to {}']),
    ('empty object on object is no change', {'features': {'buildkit': True}}, {'features': {}}, 'replace',
     {'features': {'buildkit': True}}, []),
    ('list replace', {'insecure-registries': ['a:5000', 'b:5000']}, {'insecure-registries': ['c:5000']}, 'replace',
     {'insecure-registries': ['c:5000']}, ['set insecure-registries to ["c:5000"]']),
    ('list replace same', {'dns': ['1.1.1.1']}, {'dns': ['1.1.1.1']}, 'replace', {'dns': ['1.1.1.1']}, []),
    ('list replace order counts', {'dns': ['1.1.1.1', '9.9.9.9']}, {'dns': ['9.9.9.9', '1.1.1.1']}, 'replace',
     {'dns': ['9.9.9.9', '1.1.1.1']}, ['set dns to ["9.9.9.9", "1.1.1.1"]']),
    ('list append_unique', {'insecure-registries': ['a:5000', 'b:5000']},
     {'insecure-registries': ['b:5000', 'c:5000', 'c:5000']}, 'append_unique',
     {'insecure-registries': ['a:5000', 'b:5000', 'c:5000']}, ['appended c:5000 to insecure-registries']),
    ('list append_unique nothing new', {'dns': ['1.1.1.1', '9.9.9.9']}, {'dns': ['9.9.9.9']}, 'append_unique',
     {'dns': ['1.1.1.1', '9.9.9.9']}, []),
    ('list append_unique new key', {}, {'dns': ['1.1.1.1']}, 'append_unique',
     {'dns': ['1.1.1.1']}, ['set dns to ["1.1.1.1"]']),
    ('list append_unique over scalar', {'dns': '1.1.1.1'}, {'dns': ['9.9.9.9']}, 'append_unique',
     {'dns': ['9.9.9.9']}, ['set dns to ["9.9.9.9"]']),
    ('list append_unique objects', {'default-address-pools': [{'base': '10.10.0.0/16', 'size': 24}]},
     {'default-address-pools': [{'base': '10.10.0.0/16', 'size': 24}, {'base': '10.20.0.0/16', 'size': 24}]},
     'append_unique',
     {'default-address-pools': [{'base': '10.10.0.0/16', 'size': 24}, {'base': '10.20.0.0/16', 'size': 24}]},
     ['appended {"base": "10.20.0.0/16", "size": 24} to default-address-pools']),
    ('nested list append_unique', {'runtimes': {'nvidia': {'runtimeArgs': ['--debug']}}},
     {'runtimes': {'nvidia': {'runtimeArgs': ['--log=/tmp/x']}}}, 'append_unique',
     {'runtimes': {'nvidia': {'runtimeArgs': ['--debug', '--log=/tmp/x']}}},
     ['appended --log=/tmp/x to runtimes.nvidia.runtimeArgs']),
    ('unicode', {'labels': ['ort=Zürich']}, {'labels': ['名前=gpu']}, 'append_unique',
     {'labels': ['ort=Zürich', '名前=gpu']}, ['appended 名前=gpu to labels']),
    ('key with a dot', {}, {'log-opts': {'labels.a': 'x'}}, 'replace',
     {'log-opts': {'labels.a': 'x'}}, ['set log-opts.labels\\.a to x']),
]


@pytest.mark.parametrize('base, overlay, list_merge, expected, actions',
                         [c[1:] for c in MERGE], ids=[c[0] for c in MERGE])
def test_deep_merge(base, overlay, list_merge, expected, actions):
    before = json.dumps(base)
    merged, got_actions = dj.deep_merge(base, overlay, list_merge)
    assert dj.same(merged, expected)
    assert got_actions == actions
    assert json.dumps(base) == before, 'base was changed in place'


def test_deep_merge_keeps_order_and_appends_new_keys():
    base = dj.parse('{"z": 1, "runtimes": {"b": {"path": "b"}, "a": {"path": "a"}}, "m": 2}', PATH)
    merged, dummy = dj.deep_merge(base, {'new': 1, 'runtimes': {'nvidia': {'path': 'n'}, 'a': {'path': 'A'}}, 'z': 3})
    assert list(merged) == ['z', 'runtimes', 'm', 'new']
    assert list(merged['runtimes']) == ['b', 'a', 'nvidia']
    assert dj.serialize(merged) == (
        '{\n  "z": 3,\n  "runtimes": {\n    "b": {\n      "path": "b"\n    },\n    "a": {\n      "path": "A"\n    },\n'
        '    "nvidia": {\n      "path": "n"\n    }\n  },\n  "m": 2,\n  "new": 1\n}\n')


def test_deep_merge_bad_mode():
    with pytest.raises(dj.DaemonJsonError) as exc:
        dj.deep_merge({}, {}, 'merge')
    assert str(exc.value) == "list_merge 'merge' is not one of replace, append_unique"


# ---------------------------------------------------------------- remove_paths

REMOVE = [
    ('top level', {'experimental': True, 'storage-driver': 'vfs'}, ['experimental'],
     {'storage-driver': 'vfs'}, ['removed experimental']),
    ('missing key is a no-op', {'storage-driver': 'vfs'}, ['experimental'], {'storage-driver': 'vfs'}, []),
    ('missing parent is a no-op', {'storage-driver': 'vfs'}, ['runtimes.nvidia'], {'storage-driver': 'vfs'}, []),
    ('through a scalar is a no-op', {'runtimes': 'x'}, ['runtimes.nvidia'], {'runtimes': 'x'}, []),
    ('nested keeps siblings', {'runtimes': {'nvidia': {'path': 'n'}, 'crun': {'path': 'c'}}}, ['runtimes.nvidia'],
     {'runtimes': {'crun': {'path': 'c'}}}, ['removed runtimes.nvidia']),
    ('nested keeps empty parent', {'runtimes': {'nvidia': {'path': 'n'}}, 'a': 1}, ['runtimes.nvidia'],
     {'runtimes': {}, 'a': 1}, ['removed runtimes.nvidia']),
    ('deep', {'log-opts': {'max-size': '10m', 'max-file': '3'}}, ['log-opts.max-file'],
     {'log-opts': {'max-size': '10m'}}, ['removed log-opts.max-file']),
    ('several, twice', {'a': 1, 'b': 2, 'c': 3}, ['a', 'c', 'a'], {'b': 2}, ['removed a', 'removed c']),
    ('escaped dot', {'log-opts': {'labels.a': 'x', 'labels': 'y'}}, ['log-opts.labels\\.a'],
     {'log-opts': {'labels': 'y'}}, ['removed log-opts.labels\\.a']),
    ('whole object', {'runtimes': {'nvidia': {'path': 'n'}}, 'a': 1}, ['runtimes'], {'a': 1}, ['removed runtimes']),
    ('unicode key', {'名前': 1, 'a': 2}, ['名前'], {'a': 2}, ['removed 名前']),
]


@pytest.mark.parametrize('config, paths, expected, actions', [c[1:] for c in REMOVE], ids=[c[0] for c in REMOVE])
def test_remove_paths(config, paths, expected, actions):
    before = json.dumps(config)
    new, got_actions = dj.remove_paths(config, paths)
    assert dj.same(new, expected)
    assert got_actions == actions
    assert json.dumps(config) == before, 'config was changed in place'


@pytest.mark.parametrize('dotted', ['', 'a..b', '.a', 'a.'])
def test_split_path_bad(dotted):
    with pytest.raises(dj.DaemonJsonError):
        dj.split_path(dotted)


@pytest.mark.parametrize('dotted, parts', [
    ('a', ['a']),
    ('runtimes.nvidia.path', ['runtimes', 'nvidia', 'path']),
    ('log-opts.labels\\.a', ['log-opts', 'labels.a']),
    ('a\\b', ['a\\b']),
])
def test_split_join_path(dotted, parts):
    assert dj.split_path(dotted) == parts
    assert dj.join_path(parts) == dotted


# ---------------------------------------------------------------- convenience options

CONVENIENCE = [
    ('nothing', {}, {}),
    ('nvidia path only', {'nvidia_runtime': {'path': '/usr/bin/nvidia-container-runtime', 'args': None}},
     {'runtimes': {'nvidia': {'path': '/usr/bin/nvidia-container-runtime'}}}),
    ('nvidia with args', {'nvidia_runtime': {'path': 'nvidia-container-runtime', 'args': []}},
     {'runtimes': {'nvidia': {'path': 'nvidia-container-runtime', 'runtimeArgs': []}}}),
    ('all', dict(default_runtime='nvidia', experimental=False, log_driver='json-file',
                 log_opts={'max-size': '10m', 'max-file': 3, 'compress': True}, data_root='/srv/docker',
                 insecure_registries=['registry.lab:5000']),
     {'default-runtime': 'nvidia', 'experimental': False, 'log-driver': 'json-file',
      'log-opts': {'max-size': '10m', 'max-file': '3', 'compress': 'true'}, 'data-root': '/srv/docker',
      'insecure-registries': ['registry.lab:5000']}),
]


@pytest.mark.parametrize('options, expected', [c[1:] for c in CONVENIENCE], ids=[c[0] for c in CONVENIENCE])
def test_convenience_settings(options, expected):
    assert dj.same(dj.convenience_settings(**options), expected)


LOG_OPTS_OK = [
    ('string', 'x', '10m', '10m'),
    ('empty string', 'x', '', ''),
    ('int', 'max-file', 3, '3'),
    ('negative int', 'x', -1, '-1'),
    ('float', 'x', 1.5, '1.5'),
    ('true', 'compress', True, 'true'),
    ('false', 'compress', False, 'false'),
]


@pytest.mark.parametrize('key, value, expected', [c[1:] for c in LOG_OPTS_OK], ids=[c[0] for c in LOG_OPTS_OK])
def test_log_opt_value(key, value, expected):
    assert dj.log_opt_value(key, value) == expected


LOG_OPTS_BAD = [
    ('null', 'max-size', None, 'log_opts.max-size is null (a JSON null)'),
    ('object', 'tag', {'a': 1}, 'log_opts.tag is {"a": 1} (a JSON object)'),
    ('list', 'labels', ['a', 'b'], 'log_opts.labels is ["a", "b"] (a JSON array)'),
    ('NaN', 'x', float('nan'), 'log_opts.x is NaN (not a finite number)'),
    ('inf', 'x', float('inf'), 'log_opts.x is Infinity (not a finite number)'),
    ('-inf', 'x', float('-inf'), 'log_opts.x is -Infinity (not a finite number)'),
]


@pytest.mark.parametrize('key, value, message', [c[1:] for c in LOG_OPTS_BAD], ids=[c[0] for c in LOG_OPTS_BAD])
def test_log_opt_value_refused(key, value, message):
    with pytest.raises(dj.DaemonJsonError) as exc:
        dj.convenience_settings(log_opts={'max-file': '3', key: value})
    assert str(exc.value) == message + '; dockerd takes only strings there: give a string, a number or a boolean'


CHECK_SETTINGS_BAD = [
    ('NaN', {'a': float('nan')}, 'settings.a is NaN, which is not a finite number'),
    ('inf nested', {'a': {'b': float('inf')}}, 'settings.a.b is Infinity, which is not a finite number'),
    ('-inf in a list', {'dns': ['1.1.1.1', float('-inf')]}, 'settings.dns[1] is -Infinity, which is not a finite number'),
]


@pytest.mark.parametrize('settings, message', [c[1:] for c in CHECK_SETTINGS_BAD],
                         ids=[c[0] for c in CHECK_SETTINGS_BAD])
def test_check_settings_refuses_non_finite(settings, message):
    with pytest.raises(dj.DaemonJsonError) as exc:
        dj.check_settings(settings)
    assert str(exc.value) == message + ': JSON has no NaN or Infinity, and dockerd refuses it; give a finite number'


@pytest.mark.parametrize('settings, message', [
    ({'labels': ['a=\ud800']}, 'settings.labels[0] has the escape \\ud800 in its value'),
    ({'log-opts': {'x\udc80': '1'}}, 'settings.log-opts.x\\udc80 has the escape \\udc80 in its key'),
], ids=['value', 'key'])
def test_check_settings_refuses_lone_surrogates(settings, message):
    with pytest.raises(dj.DaemonJsonError) as exc:
        dj.check_settings(settings)
    assert str(exc.value) == message + (': half of a UTF-16 surrogate pair, which stands for no character and cannot '
                                        'be written as UTF-8; give the character itself')


def test_check_settings_depth():
    deep = {}
    node = deep
    for _level in range(100):
        node['a'] = {}
        node = node['a']
    with pytest.raises(dj.DaemonJsonError) as exc:
        dj.check_settings(deep)
    assert str(exc.value) == 'settings nests more than 100 levels deep, which no daemon configuration does'
    dj.check_settings(deep['a'])
    dj.check_settings({'a': 1.5, 'b': [0.0, -2.5e300], 'c': None})


def test_serialize_never_writes_nan():
    with pytest.raises(ValueError):
        dj.serialize({'a': float('nan')})


NAMES = {'runtimes': 'nvidia_runtime', 'experimental': 'experimental'}

CONFLICTS = [
    ('none', {'log-driver': 'local'}, {'experimental': True}, ['runtimes.crun'], None),
    ('same key', {'experimental': False}, {'experimental': True}, [],
     'settings.experimental and option experimental both set experimental; give it once'),
    ('nested', {'runtimes': {'nvidia': {'path': 'x'}}}, {'runtimes': {'nvidia': {'path': 'y'}}}, [],
     'settings.runtimes.nvidia.path and option nvidia_runtime both set runtimes.nvidia.path; give it once'),
    ('sibling runtimes are fine', {'runtimes': {'crun': {'path': 'c'}}}, {'runtimes': {'nvidia': {'path': 'n'}}}, [],
     None),
    ('remove a set key', {'experimental': True}, {}, ['log-opts', 'experimental'],
     'remove[1] experimental overlaps settings.experimental, which sets experimental; a key is either set or removed'),
    ('remove a parent of an option', {}, {'runtimes': {'nvidia': {'path': 'n'}}}, ['runtimes'],
     'remove[0] runtimes overlaps option nvidia_runtime, which sets runtimes.nvidia.path; '
     'a key is either set or removed'),
]


@pytest.mark.parametrize('settings, extra, remove, message', [c[1:] for c in CONFLICTS], ids=[c[0] for c in CONFLICTS])
def test_check_conflicts(settings, extra, remove, message):
    if message is None:
        dj.check_conflicts(settings, extra, remove, NAMES)
        return
    with pytest.raises(dj.DaemonJsonError) as exc:
        dj.check_conflicts(settings, extra, remove, NAMES)
    assert str(exc.value) == message


def test_plan_removes_then_merges():
    old = {'storage-driver': 'vfs', 'experimental': True, 'runtimes': {'nvidia': {'path': 'n'}}}
    new, actions = dj.plan(old, settings={'log-driver': 'local'}, remove=['experimental', 'runtimes.nvidia'])
    assert dj.same(new, {'storage-driver': 'vfs', 'runtimes': {}, 'log-driver': 'local'})
    assert actions == ['removed experimental', 'removed runtimes.nvidia', 'set log-driver to local']


# ---------------------------------------------------------------- serialize / same

@pytest.mark.parametrize('config, text', [
    ({}, '{}\n'),
    ({'storage-driver': 'vfs'}, LAB_FILE),
    ({'labels': ['ort=Zürich']}, '{\n  "labels": [\n    "ort=Zürich"\n  ]\n}\n'),
    ({'b': 1, 'a': 2}, '{\n  "b": 1,\n  "a": 2\n}\n'),
], ids=['empty', 'lab', 'unicode', 'unsorted'])
def test_serialize(config, text):
    assert dj.serialize(config) == text
    assert dj.parse(text, PATH) == config


@pytest.mark.parametrize('a, b, expected', [
    (True, 1, False),
    (0, False, False),
    (1, 1.0, False),
    ('1', 1, False),
    ({'a': 1}, {'a': 1}, True),
    ([1, 2], [2, 1], False),
])
def test_same(a, b, expected):
    assert dj.same(a, b) is expected


# ---------------------------------------------------------------- validation output

# `dockerd --help` of Docker 24 (excerpt) and of Debian 12's docker.io 20.10 (excerpt).
HELP_24 = """      --userns-remap string                   User/Group setting for user namespaces
      --validate                              Validate daemon configuration and exit
  -v, --version                               Print version information and quit
"""
HELP_20 = """      --userland-proxy-path string            Path to the userland proxy binary
      --userns-remap string                   User/Group setting for user namespaces
  -v, --version                               Print version information and quit
"""


@pytest.mark.parametrize('help_text, expected', [(HELP_24, True), (HELP_20, False), ('', False)],
                         ids=['docker-24', 'docker-20.10', 'no-output'])
def test_supports_validate(help_text, expected):
    assert dj.supports_validate(help_text) is expected


@pytest.mark.parametrize('output, expected', [
    ('unknown flag: --validate\nSee \'dockerd --help\'.', True),
    ('unable to configure the Docker daemon with file /tmp/x: the following directives don\'t match any '
     'configuration option: bogus', False),
])
def test_rejects_validate_flag(output, expected):
    assert dj.rejects_validate_flag(output) is expected


# ---------------------------------------------------------------- stage / commit

def test_stage_and_commit_new_file(tmp_path):
    path = str(tmp_path / 'etc' / 'docker' / 'daemon.json')
    tmp = dj.stage_file(path, '{}\n')
    assert os.path.dirname(tmp) == os.path.dirname(path)
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o755 & ~_umask()
    dj.commit_file(tmp, path)
    assert not os.path.exists(tmp)
    assert open(path).read() == '{}\n'
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_stage_keeps_given_mode_and_owner(tmp_path):
    path = str(tmp_path / 'daemon.json')
    tmp = dj.stage_file(path, '{"ort": "Zürich"}\n', mode=0o600, uid=os.getuid(), gid=os.getgid())
    dj.commit_file(tmp, path)
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert open(path, 'rb').read() == '{"ort": "Zürich"}\n'.encode('utf-8')


def test_stage_names_the_step_that_failed(tmp_path):
    blocker = tmp_path / 'etc'
    blocker.write_text('a file where the directory should be')
    with pytest.raises(dj.WriteError) as exc:
        dj.stage_file(str(blocker / 'docker' / 'daemon.json'), '{}\n')
    assert str(exc.value) == 'cannot create the directory %s: Not a directory' % (blocker / 'docker')
    assert not exc.value.not_permitted


def test_stage_sets_owner_only_when_it_differs(tmp_path, monkeypatch):
    calls = []
    real_fchown = os.fchown
    monkeypatch.setattr(os, 'fchown', lambda fd, uid, gid: calls.append((uid, gid)) or real_fchown(fd, uid, gid))
    tmp = dj.stage_file(str(tmp_path / 'daemon.json'), '{}\n', uid=os.geteuid(), gid=os.getegid())
    dj.discard(tmp)
    assert calls == []


def test_discard_missing_is_fine(tmp_path):
    dj.discard(str(tmp_path / 'nothing'))


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------- write_problem

def _st(uid, gid):
    return types.SimpleNamespace(st_uid=uid, st_gid=gid)


WRITE_PROBLEMS = [
    ('root is not checked', 0, [0], False, True, _st(1, 1), None),
    ('own file, writable directory', 1000, [1000], True, True, _st(1000, 1000), None),
    ('own file in another group the user is in', 1000, [1000, 44], True, True, _st(1000, 44), None),
    ('new file, writable directory', 1000, [1000], True, False, None, None),
    ('file of root', 1000, [1000], True, True, _st(0, 0),
     'cannot keep the owner of {path} (uid 0): the new file would belong to uid 1000, and only root may give a file '
     'to another user'),
    ('group the user is not in', 1000, [1000], True, True, _st(1000, 0),
     'cannot keep the group of {path} (gid 0): uid 1000 is not in that group'),
    ('directory not writable', 1000, [1000], False, True, _st(1000, 1000),
     'cannot write to {path}: uid 1000 may not create files in {dir}'),
    ('new file, directory not writable', 1000, [1000], False, False, None,
     'cannot write to {path}: uid 1000 may not create files in {dir}'),
]


@pytest.mark.parametrize('euid, groups, writable, exists, st, message', [c[1:] for c in WRITE_PROBLEMS],
                         ids=[c[0] for c in WRITE_PROBLEMS])
def test_write_problem(tmp_path, euid, groups, writable, exists, st, message):
    path = str(tmp_path / 'daemon.json')
    asked = []

    def access(directory):
        asked.append(directory)
        return writable

    got = dj.write_problem(path, exists, st, euid=euid, groups=groups, access=access)
    assert got == (message.format(path=path, dir=tmp_path) if message else None)


def test_write_problem_asks_the_nearest_existing_directory(tmp_path):
    asked = []
    dj.write_problem(str(tmp_path / 'etc' / 'docker' / 'daemon.json'), False, euid=1000, groups=[1000],
                     access=lambda d: asked.append(d) or True)
    assert asked == [str(tmp_path)]


# ---------------------------------------------------------------- backups

def _b(pid, stamp, ctime=0):
    return ('daemon.json.%d.%s~' % (pid, stamp), ctime)


PRUNE = [
    ('none', [], 3, []),
    ('under the bound', [_b(1, '2026-01-01@10:00:00'), _b(2, '2026-01-02@10:00:00')], 3, []),
    ('oldest go first, by the time in the name',
     [_b(9, '2026-03-01@10:00:00'), _b(1, '2026-01-01@10:00:00'), _b(5, '2026-02-01@10:00:00'),
      _b(3, '2025-12-31@23:59:59')], 2,
     ['daemon.json.3.2025-12-31@23:59:59~', 'daemon.json.1.2026-01-01@10:00:00~']),
    ('same second: ctime decides, not the pid',
     [_b(900, '2026-01-01@10:00:00', 2), _b(100, '2026-01-01@10:00:00', 5)], 1,
     ['daemon.json.900.2026-01-01@10:00:00~']),
    ('keep 0 removes all', [_b(1, '2026-01-01@10:00:00')], 0, ['daemon.json.1.2026-01-01@10:00:00~']),
    ('other files are never touched',
     [('daemon.json', 0), ('daemon.json~', 0), ('daemon.json.bak', 0), ('daemon.json.1.2026-01-01@10:00:00', 0),
      ('daemon.json.x.2026-01-01@10:00:00~', 0), ('other.json.1.2026-01-01@10:00:00~', 0),
      ('.daemon.json.abc.tmp', 0), ('xdaemon.json.1.2026-01-01@10:00:00~', 0),
      ('daemon.json.1.2026-01-01@10:00:00~\n', 0)], 0, []),
    ('a dot in the name is literal', [('daemonXjson.1.2026-01-01@10:00:00~', 0)], 0, []),
]


@pytest.mark.parametrize('entries, keep, expected', [c[1:] for c in PRUNE], ids=[c[0] for c in PRUNE])
def test_backups_to_prune(entries, keep, expected):
    assert dj.backups_to_prune('daemon.json', entries, keep) == expected


def test_backups_to_prune_negative():
    with pytest.raises(dj.DaemonJsonError):
        dj.backups_to_prune('daemon.json', [], -1)


def test_list_backups(tmp_path):
    (tmp_path / 'daemon.json').write_text('{}')
    (tmp_path / 'daemon.json.1.2026-01-01@10:00:00~').write_text('{}')
    (tmp_path / 'daemon.json.2.2026-01-01@10:00:00~').mkdir()
    names = sorted(name for name, _ctime in dj.list_backups(str(tmp_path / 'daemon.json')))
    # Directories are never backups.
    assert names == ['daemon.json', 'daemon.json.1.2026-01-01@10:00:00~']
    assert dj.list_backups(str(tmp_path / 'missing' / 'daemon.json')) == []
