# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading, merging and writing Docker's daemon.json. Private to this collection: no API promise.

Everything here except :func:`stage_file` / :func:`commit_file` / :func:`read_file` is a pure
function on text and data, so that it can be tested without a module or a file system.
Dicts keep their key order (``json.loads`` keeps the file's order, new keys go to the end).
"""

from __future__ import annotations

import json
import os
import tempfile

DEFAULT_PATH = '/etc/docker/daemon.json'
NEW_FILE_MODE = 0o644
NEW_DIR_MODE = 0o755
LIST_MERGE_MODES = ('replace', 'append_unique')

_UNTOUCHED = 'fix or remove it, it was left untouched'


class DaemonJsonError(Exception):
    """A problem with daemon.json or with the requested change; the message names the thing."""


# ---------------------------------------------------------------- reading and parsing

def read_file(path):
    """Return ``(exists, text)`` for ``path``; a missing file is ``(False, '')``.

    Raises :class:`DaemonJsonError` when the path exists but cannot be read (no permission,
    a directory, not UTF-8).
    """
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except FileNotFoundError:
        return False, ''
    except OSError as exc:
        raise DaemonJsonError('%s could not be read (%s)' % (path, exc.strerror or exc)) from exc
    try:
        # utf-8-sig: a leading byte order mark (as some editors write) is not part of the JSON.
        return True, data.decode('utf-8-sig')
    except UnicodeDecodeError as exc:
        raise DaemonJsonError('%s is not UTF-8 text (%s); %s' % (path, exc, _UNTOUCHED)) from exc


def parse(text, path=DEFAULT_PATH):
    """Parse daemon.json text into a dict.

    An empty file, or one with only whitespace, is ``{}`` (dockerd accepts it the same way).
    Invalid JSON and JSON whose top level is not an object raise :class:`DaemonJsonError`
    with the file name, the parser's message and the line and column.
    """
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        detail = getattr(exc, 'msg', None)
        if detail is not None:
            detail = '%s: line %d column %d' % (detail, exc.lineno, exc.colno)
        else:
            detail = str(exc)
        raise DaemonJsonError('%s is not valid JSON (%s); %s' % (path, detail, _UNTOUCHED)) from exc
    if not isinstance(data, dict):
        raise DaemonJsonError(
            '%s holds a JSON %s, but dockerd needs an object ({...}) at the top level; %s'
            % (path, json_type(data), _UNTOUCHED))
    return data


def json_type(value):
    """The JSON name of the type of ``value``, for messages."""
    if isinstance(value, bool):
        return 'boolean'
    if value is None:
        return 'null'
    if isinstance(value, dict):
        return 'object'
    if isinstance(value, list):
        return 'array'
    if isinstance(value, str):
        return 'string'
    return 'number'


def serialize(config):
    """The text written to disk: 2-space indent, key order as is, UTF-8 as is, trailing newline."""
    return json.dumps(config, indent=2, ensure_ascii=False) + '\n'


def same(a, b):
    """Strict equality as JSON: ``true`` is not ``1``, and key order inside objects counts."""
    return json.dumps(a, ensure_ascii=False) == json.dumps(b, ensure_ascii=False)


def format_value(value):
    """A value as it reads in an action string: JSON, but strings bare."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------- dotted paths

def split_path(dotted):
    """Split ``a.b.c`` into ``['a', 'b', 'c']``; ``\\.`` is a literal dot inside a key."""
    if not isinstance(dotted, str) or not dotted:
        raise DaemonJsonError('%r is not a dotted key path' % (dotted, ))
    parts = ['']
    i = 0
    while i < len(dotted):
        c = dotted[i]
        if c == '\\' and i + 1 < len(dotted) and dotted[i + 1] == '.':
            parts[-1] += '.'
            i += 2
            continue
        if c == '.':
            parts.append('')
        else:
            parts[-1] += c
        i += 1
    if any(p == '' for p in parts):
        raise DaemonJsonError('%r is not a dotted key path: it has an empty key' % (dotted, ))
    return parts


def join_path(parts):
    """Inverse of :func:`split_path`."""
    return '.'.join(p.replace('.', '\\.') for p in parts)


def leaf_paths(data, prefix=()):
    """Key paths (tuples) of every non-object value and every empty object in ``data``."""
    paths = []
    for key, value in data.items():
        here = prefix + (key, )
        if isinstance(value, dict) and value:
            paths.extend(leaf_paths(value, here))
        else:
            paths.append(here)
    return paths


# ---------------------------------------------------------------- changing

def deep_merge(base, overlay, list_merge='replace', prefix=()):
    """Merge ``overlay`` into a copy of ``base``; return ``(merged, actions)``.

    - objects are merged key by key, recursively; keys of ``base`` keep their place, new keys
      are appended in the order of ``overlay``;
    - any other value in ``overlay`` replaces the one in ``base``;
    - lists: with ``list_merge='replace'`` the overlay's list replaces the old one; with
      ``'append_unique'`` the overlay's items that are not yet in the old list are appended
      (an old value that is not a list is replaced);
    - an object in ``overlay`` replaces a non-object value in ``base``.

    ``base`` and ``overlay`` are not modified.
    """
    if list_merge not in LIST_MERGE_MODES:
        raise DaemonJsonError('list_merge %r is not one of %s' % (list_merge, ', '.join(LIST_MERGE_MODES)))
    merged = dict(base)
    actions = []
    for key, new in overlay.items():
        path = prefix + (key, )
        name = join_path(path)
        present = key in merged
        old = merged.get(key)
        if isinstance(new, dict):
            if present and not isinstance(old, dict):
                actions.append('replaced %s (a %s) with an object' % (name, json_type(old)))
                old, present = {}, False
            if not present and not new:
                merged[key] = {}
                actions.append('set %s to {}' % name)
                continue
            merged[key], sub = deep_merge(old or {}, new, list_merge, path)
            actions.extend(sub)
        elif isinstance(new, list) and list_merge == 'append_unique' and present and isinstance(old, list):
            added = []
            for item in new:
                if not any(same(item, x) for x in old + added):
                    added.append(item)
            if added:
                merged[key] = old + added
                actions.extend('appended %s to %s' % (format_value(item), name) for item in added)
        elif not present or not same(old, new):
            merged[key] = new
            actions.append('set %s to %s' % (name, format_value(new)))
    return merged, actions


def remove_paths(config, paths):
    """Remove the keys named by dotted ``paths`` from a copy of ``config``; return ``(new, actions)``.

    A path that does not exist (or runs through a value that is not an object) is a no-op.
    The parent object of a removed key stays, even when it becomes empty: ``{}`` is what the
    user is left with, and a later ``settings`` can fill it again.
    """
    new = _copy_objects(config)
    actions = []
    for dotted in paths:
        parts = split_path(dotted)
        node = new
        for key in parts[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and parts[-1] in node:
            del node[parts[-1]]
            actions.append('removed %s' % join_path(parts))
    return new, actions


def _copy_objects(data):
    """Copy the nested objects of ``data`` (lists and scalars are shared: never changed in place)."""
    return dict((k, _copy_objects(v) if isinstance(v, dict) else v) for k, v in data.items())


def convenience_settings(nvidia_runtime=None, default_runtime=None, experimental=None, log_driver=None,
                         log_opts=None, data_root=None, insecure_registries=None):
    """Translate the module's convenience options into daemon.json keys (``None`` = not given).

    ``nvidia_runtime`` is ``{'path': ..., 'args': [...] or None}`` and becomes
    ``runtimes.nvidia.path`` and, when ``args`` is given, ``runtimes.nvidia.runtimeArgs``
    (the key dockerd reads). ``log_opts`` values become strings: dockerd refuses anything else.
    """
    settings = {}
    if nvidia_runtime is not None:
        runtime = {'path': nvidia_runtime['path']}
        if nvidia_runtime.get('args') is not None:
            runtime['runtimeArgs'] = list(nvidia_runtime['args'])
        settings['runtimes'] = {'nvidia': runtime}
    if default_runtime is not None:
        settings['default-runtime'] = default_runtime
    if experimental is not None:
        settings['experimental'] = experimental
    if log_driver is not None:
        settings['log-driver'] = log_driver
    if log_opts is not None:
        settings['log-opts'] = dict((str(k), _log_opt_value(v)) for k, v in log_opts.items())
    if data_root is not None:
        settings['data-root'] = data_root
    if insecure_registries is not None:
        settings['insecure-registries'] = list(insecure_registries)
    return settings


def _log_opt_value(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


def check_conflicts(settings, extra, remove, extra_names=None):
    """Raise :class:`DaemonJsonError` when the requested changes overlap.

    ``extra`` holds the translated convenience options (``extra_names`` maps their top-level
    key to the option name, for the message); ``remove`` the dotted paths to remove.
    """
    extra_names = extra_names or {}
    settings_leaves = set(leaf_paths(settings))
    for path in leaf_paths(extra):
        option = extra_names.get(path[0], path[0])
        for other in settings_leaves:
            if _overlaps(path, other):
                raise DaemonJsonError('settings.%s and option %s both set %s; give it once'
                                      % (join_path(other), option, join_path(path)))
    set_leaves = [(p, 'settings.%s' % join_path(p)) for p in settings_leaves]
    set_leaves += [(p, 'option %s' % extra_names.get(p[0], p[0])) for p in leaf_paths(extra)]
    for index, dotted in enumerate(remove):
        parts = tuple(split_path(dotted))
        for path, source in sorted(set_leaves):
            if _overlaps(parts, path):
                raise DaemonJsonError('remove[%d] %s overlaps %s, which sets %s; a key is either set or removed'
                                      % (index, dotted, source, join_path(path)))


def _overlaps(a, b):
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def plan(old, settings=None, remove=None, list_merge='replace'):
    """The new config and the actions for ``old``: first ``remove``, then merge ``settings``."""
    new, actions = remove_paths(old, remove or [])
    new, merged = deep_merge(new, settings or {}, list_merge)
    return new, actions + merged


# ---------------------------------------------------------------- writing

def stage_file(path, text, mode=None, uid=None, gid=None):
    """Write ``text`` to a new temporary file next to ``path`` and fsync it; return its name.

    Creates the directory (0755) when missing. The temp file gets ``mode`` (default 0644) and,
    when given, ``uid``/``gid``, so that the rename in :func:`commit_file` keeps them.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, NEW_DIR_MODE)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.%s.' % os.path.basename(path), suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(text.encode('utf-8'))
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), NEW_FILE_MODE if mode is None else mode)
            if uid is not None or gid is not None:
                os.fchown(f.fileno(), -1 if uid is None else uid, -1 if gid is None else gid)
    except BaseException:
        discard(tmp)
        raise
    return tmp


def commit_file(tmp, path):
    """Rename the staged ``tmp`` over ``path`` (atomic on one file system) and fsync the directory."""
    os.rename(tmp, path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def discard(tmp):
    """Remove a staged file; a missing one is fine."""
    try:
        os.unlink(tmp)
    except OSError:
        pass


# ---------------------------------------------------------------- validation

def supports_validate(help_text):
    """Whether ``dockerd --help`` output offers ``--validate`` (docker 23 and later)."""
    return any(word.strip(',') == '--validate' for word in help_text.split())


def rejects_validate_flag(output):
    """Whether dockerd's output says it does not know ``--validate`` (docker 20.10 and older)."""
    return 'unknown flag: --validate' in output
