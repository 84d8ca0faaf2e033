# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading, merging and writing Docker's daemon.json. Private to this collection: no API promise.

Everything here except :func:`stage_file` / :func:`commit_file` / :func:`read_file` is a pure
function on text and data, so that it can be tested without a module or a file system.
Dicts keep their key order (``json.loads`` keeps the file's order, new keys go to the end).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import tempfile

DEFAULT_PATH = '/etc/docker/daemon.json'
NEW_FILE_MODE = 0o644
NEW_DIR_MODE = 0o755
LIST_MERGE_MODES = ('replace', 'append_unique')
# dockerd's keys nest a few levels at most; anything deeper is not a daemon configuration, and deeper
# still would exhaust Python's recursion limit in the parser.
MAX_DEPTH = 100
# Ansible's backup_local() names a backup <file>.<pid>.<YYYY-MM-DD@HH:MM:SS>~.
_BACKUP_SUFFIX = r'\.[0-9]+\.([0-9]{4}-[0-9]{2}-[0-9]{2}@[0-9]{2}:[0-9]{2}:[0-9]{2})~'
_FILE_TYPES = (
    (stat.S_ISDIR, 'a directory'),
    (stat.S_ISFIFO, 'a FIFO (named pipe)'),
    (stat.S_ISSOCK, 'a socket'),
    (stat.S_ISCHR, 'a character device'),
    (stat.S_ISBLK, 'a block device'),
)

_UNTOUCHED = 'fix or remove it, it was left untouched'


class DaemonJsonError(Exception):
    """A problem with daemon.json or with the requested change; the message names the thing."""


# ---------------------------------------------------------------- reading and parsing

def read_file(path):
    """Return ``(exists, text)`` for ``path``; a missing file is ``(False, '')``.

    Raises :class:`DaemonJsonError` when the path exists but cannot be read (no permission, not
    UTF-8) or is not a regular file. The file is opened without blocking and checked before a
    single byte is read, so a FIFO or a device at the path is refused instead of waited on.
    """
    try:
        # Looked at before it is opened, so that nothing waiting on a FIFO there is woken; opened without
        # blocking and looked at again, in case it was swapped in between.
        _refuse_special(path, os.stat(path).st_mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0))
    except FileNotFoundError:
        return False, ''
    except OSError as exc:
        raise DaemonJsonError('%s could not be read (%s)' % (path, exc.strerror or exc)) from exc
    try:
        _refuse_special(path, os.fstat(fd).st_mode)
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as exc:
        raise DaemonJsonError('%s could not be read (%s)' % (path, exc.strerror or exc)) from exc
    finally:
        os.close(fd)
    try:
        # utf-8-sig: a leading byte order mark (as some editors write) is not part of the JSON.
        return True, b''.join(chunks).decode('utf-8-sig')
    except UnicodeDecodeError as exc:
        raise DaemonJsonError('%s is not UTF-8 text (%s); %s' % (path, exc, _UNTOUCHED)) from exc


def _refuse_special(path, mode):
    kind = file_kind(mode)
    if kind is not None:
        raise DaemonJsonError('%s is %s, not a regular file, and dockerd reads its configuration only from a regular '
                              'file; %s' % (path, kind, _UNTOUCHED))


def file_kind(mode):
    """``None`` for a regular file, else what the file is, in words ("a FIFO (named pipe)")."""
    if stat.S_ISREG(mode):
        return None
    for test, name in _FILE_TYPES:
        if test(mode):
            return name
    return 'not a regular file'


class _NotFinite:
    """Stands in, while parsing, for a number JSON cannot hold (``NaN``, ``Infinity``, ``1e400``)."""

    def __init__(self, text):
        self.text = text


class _LoneSurrogate:
    """Stands in, in a problem report, for text with half of a UTF-16 surrogate pair (``"\\ud800"`` alone in
    JSON): it stands for no character, so it cannot be written as UTF-8. ``text`` is the escape, ``in_key``
    whether it is in a key (else in a value)."""

    def __init__(self, text, in_key):
        self.text = text
        self.in_key = in_key


def _lone_surrogate(text):
    """The escape (``\\ud800``) of the first lone surrogate in ``text``, else None."""
    try:
        text.encode('utf-8')
    except UnicodeEncodeError as exc:
        return '\\u%04x' % ord(text[exc.start])
    return None


def _shown(key):
    """A key as a message can hold it: a lone surrogate as its escape."""
    return key.encode('utf-8', 'backslashreplace').decode('utf-8') if isinstance(key, str) else key


def _parse_float(text):
    value = float(text)
    return value if math.isfinite(value) else _NotFinite(text)


def parse(text, path=DEFAULT_PATH):
    """Parse daemon.json text into a dict.

    An empty file, or one with only whitespace, is ``{}`` (dockerd accepts it the same way).
    Invalid JSON and JSON whose top level is not an object raise :class:`DaemonJsonError`
    with the file name, the parser's message and the line and column. So do what Python's
    parser would let through but dockerd refuses: ``NaN``, ``Infinity`` and numbers too big for
    a float (``1e400``), named with their key; and nesting deeper than :data:`MAX_DEPTH`.
    """
    if not text.strip():
        return {}
    try:
        data = json.loads(text, parse_constant=_NotFinite, parse_float=_parse_float)
    except RecursionError as exc:
        raise DaemonJsonError('%s is nested too deeply to be read (more than %d levels); %s'
                              % (path, MAX_DEPTH, _UNTOUCHED)) from exc
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
    problem = find_problem(data)
    if problem is not None:
        where, value = problem
        if where is None:
            raise DaemonJsonError('%s is nested more than %d levels deep, which no daemon configuration is; %s'
                                  % (path, MAX_DEPTH, _UNTOUCHED))
        if isinstance(value, _LoneSurrogate):
            raise DaemonJsonError('%s has the escape %s in the %s at %s: half of a UTF-16 surrogate pair, which '
                                  'stands for no character (dockerd reads it as U+FFFD), so the file could not be '
                                  'written back as UTF-8; write the character meant (or both halves of its pair) '
                                  'instead, or remove it; it was left untouched'
                                  % (path, value.text, 'key' if value.in_key else 'value', where))
        raise DaemonJsonError('%s has %s at %s, which is not a finite number: JSON has no NaN or Infinity, and '
                              'dockerd refuses it; %s' % (path, value.text, where, _UNTOUCHED))
    return data


def find_problem(data):
    """The first value in ``data`` that cannot go into daemon.json, as ``(where, value)``; else ``None``.

    ``where`` is the dotted key path, with ``[i]`` for list items (``registry-mirrors[2]``) and a lone surrogate
    shown as its escape; a problem value is a non-finite float or a :class:`_NotFinite` stand-in, or a
    :class:`_LoneSurrogate` for a key or string with half of a surrogate pair (which JSON's ``\\ud800`` escape
    lets in, and which no UTF-8 file can hold). Nesting deeper than :data:`MAX_DEPTH` is ``(None, None)``. Walks
    without recursion, so any depth is safe.
    """
    stack = [(data, '', 0)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                return None, None
            items = value.items() if isinstance(value, dict) else enumerate(value)
            children = []
            for key, child in items:
                if isinstance(value, dict):
                    name = join_path([_shown(key)]) if not where else '%s.%s' % (where, join_path([_shown(key)]))
                    escape = _lone_surrogate(key) if isinstance(key, str) else None
                    if escape:
                        return name, _LoneSurrogate(escape, True)
                else:
                    name = '%s[%d]' % (where, key)
                children.append((child, name, depth + 1))
            stack.extend(reversed(children))
        elif isinstance(value, str):
            escape = _lone_surrogate(value)
            if escape:
                return where, _LoneSurrogate(escape, False)
        elif isinstance(value, _NotFinite):
            return where, value
        elif isinstance(value, float) and not math.isfinite(value):
            return where, _NotFinite(repr(value).replace('inf', 'Infinity').replace('nan', 'NaN'))
    return None


def check_settings(settings, name='settings'):
    """Refuse requested values that cannot be written as JSON (``NaN``, ``inf``, a lone surrogate) or nest
    absurdly deep."""
    problem = find_problem(settings)
    if problem is None:
        return
    where, value = problem
    if where is None:
        raise DaemonJsonError('%s nests more than %d levels deep, which no daemon configuration does'
                              % (name, MAX_DEPTH))
    if isinstance(value, _LoneSurrogate):
        raise DaemonJsonError('%s.%s has the escape %s in its %s: half of a UTF-16 surrogate pair, which stands for '
                              'no character and cannot be written as UTF-8; give the character itself'
                              % (name, where, value.text, 'key' if value.in_key else 'value'))
    raise DaemonJsonError('%s.%s is %s, which is not a finite number: JSON has no NaN or Infinity, and dockerd '
                          'refuses it; give a finite number' % (name, where, value.text))


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
    """The text written to disk: 2-space indent, key order as is, UTF-8 as is, trailing newline.

    ``allow_nan=False``: a non-finite number raises ``ValueError`` rather than becoming ``NaN``
    text (parse() and check_settings() refuse them first, with the key).
    """
    return json.dumps(config, indent=2, ensure_ascii=False, allow_nan=False) + '\n'


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
        settings['log-opts'] = dict((str(k), log_opt_value(k, v)) for k, v in log_opts.items())
    if data_root is not None:
        settings['data-root'] = data_root
    if insecure_registries is not None:
        settings['insecure-registries'] = list(insecure_registries)
    return settings


def log_opt_value(key, value):
    """A ``log_opts`` value as the string dockerd wants; only strings, numbers and booleans make sense.

    ``True`` is ``"true"``, ``3`` is ``"3"``; ``None``, lists, objects and non-finite numbers are
    refused rather than written as Python's text of them (``"None"``, ``"{'a': 1}"``).
    """
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, float):
        shown = 'NaN' if math.isnan(value) else ('-' if value < 0 else '') + 'Infinity'
        what = 'not a finite number'
    else:
        shown, what = format_value(value) if _jsonable(value) else repr(value), 'a JSON %s' % json_type(value)
    raise DaemonJsonError('log_opts.%s is %s (%s); dockerd takes only strings there: give a string, a number or a '
                          'boolean' % (key, shown, what))


def _jsonable(value):
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


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


def apply_request(old, settings=None, extra=None, remove=None, list_merge='replace', extra_names=None):
    """What homelab.gpu.docker_daemon_config makes of ``old``: the new config and its actions.

    ``settings`` as given, ``extra`` the translated convenience options (:func:`convenience_settings`),
    ``remove`` dotted paths. Checked first (:func:`check_settings`, :func:`check_conflicts`, which raise
    :class:`DaemonJsonError`), then ``remove``, ``settings`` and ``extra`` in that order.
    """
    settings, extra, remove = settings or {}, extra or {}, remove or []
    check_settings(settings)
    check_conflicts(settings, extra, remove, extra_names)
    new, actions = plan(old, remove=remove, list_merge=list_merge, settings=settings)
    new, more = deep_merge(new, extra, list_merge)
    return new, actions + more


# ---------------------------------------------------------------- writing

def stage_file(path, text, mode=None, uid=None, gid=None):
    """Write ``text`` to a new temporary file next to ``path`` and fsync it; return its name.

    Creates the directory (0755) when missing. The temp file gets ``mode`` (default 0644) and,
    when given, ``uid``/``gid``, so that the rename in :func:`commit_file` keeps them. The owner
    is set only where it differs from the one the file got, so that a user who owns the file
    can change it without root.

    Raises :class:`WriteError` naming the step that failed (no temp file is left behind).
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        try:
            os.makedirs(directory, NEW_DIR_MODE)
        except OSError as exc:
            raise WriteError('cannot create the directory %s' % directory, exc) from exc
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix='.%s.' % os.path.basename(path), suffix='.tmp')
    except OSError as exc:
        raise WriteError('cannot create a temporary file in %s' % directory, exc) from exc
    step = 'cannot write the new content to the temporary file %s' % tmp
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(text.encode('utf-8'))
            f.flush()
            os.fsync(f.fileno())
            want = NEW_FILE_MODE if mode is None else mode
            step = 'cannot set mode %04o on the temporary file %s' % (want, tmp)
            os.fchmod(f.fileno(), want)
            st = os.fstat(f.fileno())
            owner = (st.st_uid if uid is None else uid, st.st_gid if gid is None else gid)
            if owner != (st.st_uid, st.st_gid):
                step = ('cannot set the owner of the temporary file %s to uid %d, gid %d (the owner of %s)'
                        % (tmp, owner[0], owner[1], path))
                os.fchown(f.fileno(), *owner)
    except OSError as exc:
        discard(tmp)
        raise WriteError(step, exc) from exc
    except BaseException:
        discard(tmp)
        raise
    return tmp


class WriteError(DaemonJsonError):
    """A step of writing the file failed: ``step`` says which, ``error`` is the ``OSError``."""

    def __init__(self, step, error):
        self.step = step
        self.error = error
        super().__init__('%s: %s' % (step, error.strerror or error))

    @property
    def not_permitted(self):
        return self.error.errno in (errno.EPERM, errno.EACCES)


def write_problem(path, exists, st=None, euid=None, groups=None, access=None):
    """Why a user who is not root cannot replace ``path`` (as :func:`stage_file` and a rename do); else ``None``.

    Asked before anything is written, in check mode too, so that a run without ``become`` fails
    with the real reason. ``st`` is the existing file's ``os.stat``; ``euid``, ``groups`` and
    ``access`` default to the running process's (tests pass their own). Root is not checked
    here: what stops root (a read-only file system, a full disk) shows when writing.
    """
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        return None
    groups = set(os.getgroups() + [os.getegid()]) if groups is None else set(groups)
    access = access or _access
    if exists and st is not None:
        if st.st_uid != euid:
            return ('cannot keep the owner of %s (uid %d): the new file would belong to uid %d, and only root may '
                    'give a file to another user' % (path, st.st_uid, euid))
        if st.st_gid not in groups:
            return ('cannot keep the group of %s (gid %d): uid %d is not in that group'
                    % (path, st.st_gid, euid))
    directory = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(directory) and os.path.dirname(directory) != directory:
        directory = os.path.dirname(directory)
    if not access(directory):
        return 'cannot write to %s: uid %d may not create files in %s' % (path, euid, directory)
    return None


def _access(directory):
    kwargs = {'effective_ids': True} if os.access in os.supports_effective_ids else {}
    return os.access(directory, os.W_OK | os.X_OK, **kwargs)


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


# ---------------------------------------------------------------- backups

def backups_to_prune(basename, entries, keep):
    """Which of this file's backups to remove so that ``keep`` stay; oldest first.

    ``entries`` are ``(name, ctime_ns)`` of the files in the directory; a backup is a name that
    Ansible's ``backup_local()`` gives ``basename`` (``daemon.json.<pid>.<YYYY-MM-DD@HH:MM:SS>~``),
    other files are never touched. Age is the time in the name, then the file's ctime (two
    backups in one second), then the name.
    """
    if keep < 0:
        raise DaemonJsonError('keep must not be negative, not %r' % (keep, ))
    pattern = re.compile(re.escape(basename) + _BACKUP_SUFFIX)
    found = []
    for name, ctime_ns in entries:
        match = pattern.fullmatch(name)
        if match:
            found.append((match.group(1), ctime_ns, name))
    found.sort()
    return [name for _stamp, _ctime, name in found[:max(len(found) - keep, 0)]]


def list_backups(path):
    """``(name, ctime_ns)`` of the files next to ``path``, for :func:`backups_to_prune`."""
    directory = os.path.dirname(os.path.abspath(path))
    entries = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return entries
    for name in names:
        try:
            st = os.lstat(os.path.join(directory, name))
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):
            entries.append((name, st.st_ctime_ns))
    return entries


# ---------------------------------------------------------------- validation

def supports_validate(help_text):
    """Whether ``dockerd --help`` output offers ``--validate`` (docker 23 and later)."""
    return any(word.strip(',') == '--validate' for word in help_text.split())


def rejects_validate_flag(output):
    """Whether dockerd's output says it does not know ``--validate`` (docker 20.10 and older)."""
    return 'unknown flag: --validate' in output
