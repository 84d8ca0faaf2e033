# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One read of a GPU host's state, for gpu_host_facts. Private to this collection: no API promise.

Three layers, each testable alone:

* parsers (``parse_*``): plain functions from the text a tool printed (dpkg-query, systemctl show, mokutil,
  /proc/modules, /proc/self/mountinfo) to data;
* readers (``read_*``): one look at the file system each (files, daemon.json, users, groups, mounts), never a write;
* :func:`gather`: finds the tools, runs every command at once in threads through :func:`run_bounded`, reads the
  distribution and the files in the meantime, and puts the answer together.

Why not ``_common.run_command`` in the threads: ``AnsibleModule.run_command`` forks with a ``preexec_fn``, which
Python documents as unsafe while other threads run (the child may deadlock before exec), and it calls
``fail_json`` (``sys.exit``) when a command cannot start, which in a worker thread would print a second result.
:func:`run_bounded` uses :class:`subprocess.Popen` without either, and bounds every wait.
"""

from __future__ import annotations

import grp
import hashlib
import importlib.util
import os
import platform
import pwd
import re
import shlex
import signal
import stat
import subprocess
import sys
import threading

from ansible_collections.homelab.gpu.plugins.module_utils import _cdi
from ansible_collections.homelab.gpu.plugins.module_utils import _daemon_json
from ansible_collections.homelab.gpu.plugins.module_utils import _nvidia_smi
from ansible_collections.homelab.gpu.plugins.module_utils._common import (KILL_AFTER, CommandResult, command_error,
                                                                          first_nonblank_line, free_bytes)

# Where the host's state is read; module-level so that tests can point them at a temporary tree.
SYSTEMD_DIR = '/run/systemd/system'
PROC_MODULES = '/proc/modules'
MOUNTINFO = '/proc/self/mountinfo'

# Seconds any command but nvidia-smi may take (docker info gets the same 30 s in _cdi.probe).
COMMAND_TIMEOUT = 30
MAX_CONTENT = 64 * 1024
MIB = 1024 * 1024

DPKG_FORMAT = '${Package}\\t${db:Status-Abbrev}\\t${db:Status-Want}\\t${Version}\\n'
UNIT_PROPERTIES = ('Id', 'Names', 'LoadState', 'ActiveState', 'SubState', 'UnitFileState', 'MainPID',
                   'ExecMainStartTimestampMonotonic')
UNIT_SUFFIXES = ('service', 'socket', 'target', 'device', 'mount', 'automount', 'swap', 'timer', 'path', 'slice',
                 'scope')

# Debian policy 5.6.1: at least two characters, lower case letters, digits, + - and ., starting alphanumeric.
PACKAGE_RE = re.compile(r'[a-z0-9][a-z0-9+.-]+')
# systemd unit names: a-z A-Z 0-9 : - _ . \ and one @ for template instances, at most 255 characters. A first
# character of - would be read as an option, so it is refused.
UNIT_RE = re.compile(r'[A-Za-z0-9:_.\\][A-Za-z0-9:_.\\-]*(@[A-Za-z0-9:_.\\-]*)?')
# shadow-utils' default (letters, digits, _ - ., a trailing $ for Samba machine accounts), also upper case.
ACCOUNT_RE = re.compile(r'[A-Za-z_][A-Za-z0-9_.-]*\$?')
ACCOUNT_MAX = 32


# ---------------------------------------------------------------- checking options

def name_errors(params):
    """Messages for every package, unit, user, group or file option that is not a plain name (or path)."""
    errors = []
    checks = (
        ('packages', PACKAGE_RE, 255, 'a Debian package name (lower case letters, digits, + - and ., at least 2 '
                                      'characters, starting with a letter or digit; no architecture qualifier)'),
        ('units', UNIT_RE, 255, 'a systemd unit name (letters, digits, : _ . \\ - and one @, not starting with -)'),
        ('users', ACCOUNT_RE, ACCOUNT_MAX, 'a user name (letters, digits, _ . -, starting with a letter or _, at '
                                           'most %d characters)' % ACCOUNT_MAX),
        ('groups', ACCOUNT_RE, ACCOUNT_MAX, 'a group name (letters, digits, _ . -, starting with a letter or _, at '
                                            'most %d characters)' % ACCOUNT_MAX),
    )
    for option, pattern, longest, what in checks:
        for index, value in enumerate(params.get(option) or []):
            if not isinstance(value, str) or len(value) > longest or not pattern.fullmatch(value):
                errors.append('%s[%d] %r is not %s' % (option, index, value, what))
    for index, value in enumerate(params.get('files') or []):
        if not isinstance(value, str) or not os.path.isabs(value) or '\0' in value:
            errors.append('files[%d] %r is not an absolute path' % (index, value))
    for option in ('daemon_json_path', 'docker_default_root'):
        value = params.get(option)
        if not isinstance(value, str) or not os.path.isabs(value) or '\0' in value:
            errors.append('%s %r is not an absolute path' % (option, value))
    return errors


# ---------------------------------------------------------------- running commands

def decode(data):
    return (data or b'').decode('utf-8', 'replace')


def _signal_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except OSError:
        pass


def run_bounded(argv, timeout, kill_after=KILL_AFTER):
    """Run ``argv`` (a list) and return a :class:`CommandResult`; safe to call from several threads at once.

    Output is read with ``LC_ALL=C`` and decoded with U+FFFD for bytes that are not UTF-8. A command that cannot
    start is rc 127 with the reason on stderr. At ``timeout`` seconds its process group gets SIGTERM (rc 124),
    ``kill_after`` seconds later SIGKILL (rc 137); a process that even SIGKILL does not end within a second (one
    stuck in the kernel, as nvidia-smi on a wedged GPU) is left behind, so this never waits longer than
    ``timeout + kill_after + 1`` seconds.
    """
    env = dict(os.environ, LC_ALL='C')
    try:
        proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, close_fds=True, start_new_session=True)
    except OSError as exc:
        return CommandResult(127, '', '%s: %s' % (argv[0], exc.strerror or exc), False, timeout)
    try:
        out, err = proc.communicate(timeout=timeout)
        return CommandResult(proc.returncode, decode(out), decode(err), False, timeout)
    except subprocess.TimeoutExpired:
        pass
    rc = 124
    _signal_group(proc, signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        rc = 128 + signal.SIGKILL
        _signal_group(proc, signal.SIGKILL)
        try:
            out, err = proc.communicate(timeout=1)
        except subprocess.TimeoutExpired:
            out, err = b'', b''
            for pipe in (proc.stdout, proc.stderr):
                try:
                    pipe.close()
                except OSError:
                    pass
    return CommandResult(rc, decode(out), decode(err), True, timeout)


def start_all(tasks):
    """Start each ``{name: callable}`` in its own thread; return a function that waits for all and returns
    ``{name: result}``.

    An exception in a task is raised again by that function, in the calling thread, once all tasks have ended.
    """
    results, errors = {}, {}

    def call(name, task):
        try:
            results[name] = task()
        except Exception as exc:
            errors[name] = exc

    threads = [threading.Thread(target=call, args=(name, task), name='gpu_host_facts-%s' % name, daemon=True)
               for name, task in tasks.items()]
    for thread in threads:
        thread.start()

    def wait():
        for thread in threads:
            thread.join()
        for name in tasks:
            if name in errors:
                raise errors[name]
        return results

    return wait


# ---------------------------------------------------------------- parsers

def parse_sb_state(stdout, stderr=''):
    """``(secure_boot, detail)`` from ``mokutil --sb-state``: True, False or None (not understood), and the
    first line it printed. A system without Secure Boot, or booted without EFI, is False."""
    detail = first_nonblank_line(stdout, stderr)
    lowered = detail.lower()
    if lowered.startswith('secureboot enabled'):
        return True, detail
    if lowered.startswith('secureboot disabled'):
        return False, detail
    if "doesn't support secure boot" in lowered or 'efi variables are not supported' in lowered:
        return False, detail
    return None, detail or None


def parse_proc_modules(text):
    """Whether ``/proc/modules`` lists nouveau (a line that starts ``nouveau ``)."""
    return any(line.startswith('nouveau ') for line in (text or '').splitlines())


def _dpkg_rank(entry):
    # A record of an installed (or half-installed) package wins over a not-installed one of another architecture.
    return 0 if entry['status'][1:2] not in ('n', '') else 1


def parse_dpkg_query(text):
    """``{package: {status, selection, version}}`` from ``dpkg-query --show --showformat=DPKG_FORMAT``.

    ``status`` is ``db:Status-Abbrev`` without its trailing blank: two letters (``ii``, ``hi``, ``rc``), a third
    (``R``) when dpkg marks the package reinst-required. A record of ``un`` (not installed, nothing wanted) says no
    more than an unknown name and is left out. A package of several architectures prints one line each; the
    installed one wins.
    """
    packages = {}
    for line in (text or '').splitlines():
        fields = line.split('\t')
        if len(fields) != 4 or not fields[0]:
            continue
        name, abbrev, want, version = fields
        entry = {'status': abbrev.strip(), 'selection': want.strip(), 'version': version.strip()}
        if entry['status'] == 'un':
            # Known by name only (apt once looked at it): not installed and not wanted, which is unknown.
            continue
        if name not in packages or _dpkg_rank(entry) < _dpkg_rank(packages[name]):
            packages[name] = entry
    return packages


def dpkg_error(cmd):
    """None when dpkg-query answered (exit status 1: some package is unknown), else the message."""
    if cmd.rc in (0, 1):
        return None
    # Its stdout is the package list, not what went wrong.
    return command_error('dpkg-query', cmd._replace(stdout=''), first_line=True)


def unit_id(name):
    """The name systemctl gives a unit argument: ``docker`` is ``docker.service``."""
    suffix = name.rsplit('.', 1)[-1] if '.' in name else ''
    return name if suffix in UNIT_SUFFIXES else name + '.service'


def parse_systemctl_blocks(text):
    """The property blocks of ``systemctl show`` (one per unit, separated by blank lines) as dicts."""
    blocks, current = [], {}
    for line in (text or '').splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
            current = {}
            continue
        key, sep, value = line.partition('=')
        if sep:
            current[key] = value
    if current:
        blocks.append(current)
    return blocks


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def unit_state(block):
    return {
        'load_state': block.get('LoadState', ''),
        'active_state': block.get('ActiveState', ''),
        'sub_state': block.get('SubState', ''),
        'unit_file_state': block.get('UnitFileState', ''),
        'main_pid': _int_or_none(block.get('MainPID')),
        'exec_main_start_monotonic': block.get('ExecMainStartTimestampMonotonic', ''),
    }


def _block_names(block):
    return set([block.get('Id', '')] + block.get('Names', '').split())


def parse_systemctl_show(text, units):
    """``{unit: state}`` for the requested ``units`` from one ``systemctl show --property=... units...``.

    Blocks come in argument order; each is checked against its unit by ``Id`` and ``Names`` (aliases), and when
    the order does not hold (a unit named twice, say) each unit is looked up by name instead. A unit that no
    block names is left out.
    """
    blocks = parse_systemctl_blocks(text)
    if len(blocks) == len(units) and all(unit_id(u) in _block_names(b) for u, b in zip(units, blocks)):
        return dict((unit, unit_state(block)) for unit, block in zip(units, blocks))
    found = {}
    for unit in units:
        for block in blocks:
            if unit_id(unit) in _block_names(block):
                found[unit] = unit_state(block)
                break
    return found


def _unescape_mount(path):
    # mountinfo writes space, tab, newline and backslash as octal escapes (\040 and so on).
    return re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)), path)


def parse_mountinfo(text):
    """The mount points of ``/proc/self/mountinfo`` (its fifth field), unescaped."""
    points = []
    for line in (text or '').splitlines():
        fields = line.split(' ')
        if len(fields) > 4:
            points.append(_unescape_mount(fields[4]))
    return points


def mount_of(path, mount_points):
    """The mount point (of ``mount_points``) whose file system holds the absolute, resolved ``path``."""
    best = None
    for point in mount_points:
        if path == point or path.startswith(point.rstrip('/') + '/'):
            if best is None or len(point) > len(best):
                best = point
    return best


# ---------------------------------------------------------------- readers

def read_text(path):
    """The text of a (small, virtual) file, None when it cannot be read."""
    try:
        with open(path, 'rb') as handle:
            return decode(handle.read())
    except OSError:
        return None


def _name(lookup, number):
    try:
        return lookup(number)[0]
    except (KeyError, OverflowError):
        return None


def _file_type(mode):
    if stat.S_ISLNK(mode):
        return 'link'
    if stat.S_ISREG(mode):
        return 'file'
    if stat.S_ISDIR(mode):
        return 'directory'
    return 'other'


def _read_regular(path):
    """``(sha256, content)`` of the regular file at ``path`` (a link is followed), ``(None, None)`` for anything
    else; opened without blocking and checked after the open, so a FIFO swapped in is never waited on."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, None
        digest, head, size = hashlib.sha256(), [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            digest.update(chunk)
            if size <= MAX_CONTENT:
                head.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    content = None
    if size <= MAX_CONTENT:
        try:
            content = b''.join(head).decode('utf-8')
        except UnicodeDecodeError:
            content = None
    return digest.hexdigest(), content


def read_file_facts(path):
    """What ``files`` reports of one path: ``{exists: False}`` when it is not there."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {'exists': False}
    except OSError as exc:
        return {'exists': None, 'error': '%s cannot be looked at (%s)' % (path, exc.strerror or exc)}
    facts = {
        'exists': True,
        'type': _file_type(st.st_mode),
        'mode': '%04o' % stat.S_IMODE(st.st_mode),
        'uid': st.st_uid,
        'gid': st.st_gid,
        'owner': _name(pwd.getpwuid, st.st_uid),
        'group': _name(grp.getgrgid, st.st_gid),
        'size': st.st_size,
        'link_target': None,
        'sha256': None,
        'content': None,
        'error': None,
    }
    if facts['type'] == 'link':
        try:
            facts['link_target'] = os.readlink(path)
        except OSError:
            pass
    if facts['type'] in ('file', 'link'):
        try:
            facts['sha256'], facts['content'] = _read_regular(path)
        except FileNotFoundError:
            pass  # a dangling link
        except OSError as exc:
            facts['error'] = '%s cannot be read (%s)' % (path, exc.strerror or exc)
    return facts


def read_daemon_json(path):
    """``{path, exists, config, error}`` of daemon.json, with _daemon_json's reader (a FIFO is refused unread)."""
    result = {'path': path, 'exists': False, 'config': None, 'error': None}
    try:
        exists, text = _daemon_json.read_file(path)
        result['exists'] = exists
        if exists:
            result['config'] = _daemon_json.parse(text, path)
    except _daemon_json.DaemonJsonError as exc:
        result['exists'] = os.path.lexists(path)
        result['error'] = str(exc)
    return result


def read_user(name):
    """``{exists, groups}``: the user's group names, primary group first, as ``id -Gn`` lists them."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return {'exists': False, 'groups': []}
    try:
        gids = os.getgrouplist(name, entry.pw_gid)
    except OSError:
        gids = [entry.pw_gid]
    names = []
    for gid in [entry.pw_gid] + sorted(set(gids) - {entry.pw_gid}):
        group = _name(grp.getgrgid, gid)
        names.append(group if group is not None else str(gid))
    return {'exists': True, 'groups': names}


def group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def existing_ancestor(path):
    """``path`` or its nearest existing parent directory."""
    path = os.path.abspath(path)
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def data_root_facts(path):
    """``(free MiB, mount point)`` of the file system that holds ``path`` (or would, once created)."""
    where = os.path.realpath(existing_ancestor(path))
    free = free_bytes(where)
    point = mount_of(where, parse_mountinfo(read_text(MOUNTINFO)))
    if point is None:
        point = where
        while not os.path.ismount(point) and os.path.dirname(point) != point:
            point = os.path.dirname(point)
    return (None if free is None else free // MIB), point


def distribution_collector():
    """ansible-core's DistributionFactCollector class, imported without running ``facts/__init__.py``.

    That ``__init__`` imports every one of ansible-core's fact collectors, and in an AnsiballZ run (sources in a
    zip, compiled anew each time) that is about 90 ms on a small host, a third of this module's run; the
    distribution collector itself needs three small modules of the package. So, when the package is not loaded
    yet, a bare package object (its ``__path__`` only) stands in for it while those are imported, and is taken out
    again right after, so that a later ``import ansible.module_utils.facts`` runs the real ``__init__``. When that
    cannot be done, the plain import runs: same class, same values, only slower.
    """
    name = 'ansible.module_utils.facts'
    stand_in = None
    if name not in sys.modules:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations is not None:
            stand_in = importlib.util.module_from_spec(spec)
            sys.modules[name] = stand_in
    try:
        from ansible.module_utils.facts.system.distribution import DistributionFactCollector
    except ImportError:
        if stand_in is None:
            raise
        del sys.modules[name]
        stand_in = None
        from ansible.module_utils.facts.system.distribution import DistributionFactCollector
    finally:
        if stand_in is not None and sys.modules.get(name) is stand_in:
            del sys.modules[name]
    return DistributionFactCollector


class ThreadSafeModule:
    """What the distribution collector uses of a module (get_bin_path, run_command), with run_command through
    :func:`run_bounded`, so that the collector can run while the probes' threads do. It calls run_command only on
    a few systems (an old Debian without a release name, AIX, HP-UX, macOS, the BSDs)."""

    def __init__(self, module):
        self.module = module

    def get_bin_path(self, *args, **kwargs):
        return self.module.get_bin_path(*args, **kwargs)

    def run_command(self, args, use_unsafe_shell=False, **kwargs):
        # As AnsibleModule.run_command reads its argument: a string is split like a shell would, unless it is for
        # the shell.
        if isinstance(args, (str, bytes)):
            args = decode(args) if isinstance(args, bytes) else args
            args = ['/bin/sh', '-c', args] if use_unsafe_shell else shlex.split(args)
        cmd = run_bounded(args, COMMAND_TIMEOUT)
        return cmd.rc, cmd.stdout, cmd.stderr


def distribution_facts(module):
    """distribution, distribution_version, distribution_major_version, distribution_release, architecture and
    kernel, as ``setup`` (gather_subset=min) returns them, with ``ansible_`` in front.

    The distribution comes from ansible-core's own DistributionFactCollector. architecture and kernel are what
    PlatformFactCollector computes (platform.machine() and platform.release() on Linux); that collector is not
    called, because it also resolves the host's FQDN, which can wait seconds on a broken resolver.
    """
    found = distribution_collector()().collect(module=module)
    facts = dict((key, found.get(key)) for key in
                 ('distribution', 'distribution_version', 'distribution_major_version', 'distribution_release'))
    system, machine = platform.system(), platform.machine()
    if system == 'OpenBSD':
        architecture = platform.uname()[5]
    elif system == 'SunOS' and re.search(r'i([3456]86|86pc)', machine):
        architecture = 'i386'
    else:
        architecture = machine
    facts.update(architecture=architecture, kernel=platform.release())
    return dict(('ansible_%s' % key, value) for key, value in facts.items())


# ---------------------------------------------------------------- the probes run in threads

def probe_secure_boot(mokutil):
    if mokutil is None:
        return {'secure_boot': None, 'secure_boot_detail': 'mokutil is not installed'}
    cmd = run_bounded([mokutil, '--sb-state'], COMMAND_TIMEOUT)
    if cmd.timed_out:
        return {'secure_boot': None, 'secure_boot_detail': command_error('mokutil --sb-state', cmd)}
    secure_boot, detail = parse_sb_state(cmd.stdout, cmd.stderr)
    return {'secure_boot': secure_boot, 'secure_boot_detail': detail}


def probe_packages(dpkg_query, names):
    if not names:
        return {}, None
    if dpkg_query is None:
        return {}, 'dpkg-query is not installed (not a Debian or Ubuntu host?)'
    cmd = run_bounded([dpkg_query, '--show', '--showformat=%s' % DPKG_FORMAT, '--'] + list(names), COMMAND_TIMEOUT)
    error = dpkg_error(cmd)
    if error:
        return {}, error
    wanted = set(names)
    return dict((k, v) for k, v in parse_dpkg_query(cmd.stdout).items() if k in wanted), None


def probe_units(systemctl, units):
    if not units:
        return {}, None
    if systemctl is None:
        return {}, 'systemctl is not installed'
    cmd = run_bounded([systemctl, 'show', '--property=%s' % ','.join(UNIT_PROPERTIES), '--'] + list(units),
                      COMMAND_TIMEOUT)
    if cmd.rc != 0:
        return {}, command_error('systemctl show', cmd, first_line=True)
    return parse_systemctl_show(cmd.stdout, list(units)), None


def empty_docker(docker):
    return {'answers': False, 'message': '', 'docker_path': docker, 'server_version': None, 'root_dir': None,
            'default_runtime': None, 'runtimes': [], 'cdi_support': 'unknown', 'cdi_enabled': False,
            'cdi_spec_dirs': [], 'nvidia_cdi_specs': [], 'nvidia_cdi_devices': [], 'cdi_spec_errors': [],
            'gpu_access': False}


def probe_docker(docker):
    """What docker_gpu_info reports of the engine, from the same helpers (_cdi.probe, _cdi.engine_facts)."""
    result = empty_docker(docker)
    if docker is None:
        return dict(result, message='the docker CLI is not installed: run the homelab.gpu.docker role')
    found = _cdi.probe(run_bounded, docker)
    devices, info = found['devices'], found['info']
    result.update(nvidia_cdi_specs=devices['files'], nvidia_cdi_devices=devices['devices'],
                  cdi_spec_errors=devices['errors'])
    if info is None:
        return dict(result, message=found['error'])
    result.update(_cdi.engine_facts(info, devices))
    return dict(result, answers=True, root_dir=info['docker_root_dir'], default_runtime=info['default_runtime'],
                cdi_support=_cdi.engine_cdi_support(info['server_version']))


def nvidia_smi_binary(module, path):
    if path:
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    return module.get_bin_path('nvidia-smi')


def probe_gpu(binary, given_path, timeout):
    """What nvidia_smi_info returns (its keys and states), from one ``nvidia-smi -q -x``; notices apart."""
    if binary is None:
        result = _nvidia_smi.empty_result()
        where = ('nvidia_smi_path %s does not exist or is not executable' % given_path if given_path
                 else 'nvidia-smi was not found on PATH')
        result.update(state=_nvidia_smi.STATE_NOT_INSTALLED, reboot_required=False, nvidia_smi_path=None,
                      nvidia_smi_rc=None, stderr='',
                      message='%s. %s' % (where, _nvidia_smi.ADVICE[_nvidia_smi.STATE_NOT_INSTALLED]))
        return result, []
    cmd = run_bounded([binary, '-q', '-x'], timeout)
    result = _nvidia_smi.classify(cmd.rc, cmd.stdout, cmd.stderr, timed_out=cmd.timed_out, timeout=timeout)
    notices = result.pop('notices')
    result.update(nvidia_smi_path=binary, nvidia_smi_rc=cmd.rc, stderr=cmd.stderr)
    return result, notices


# ---------------------------------------------------------------- all of it

def gather(module):
    """The ``homelab_gpu_host`` dict and the distribution facts: ``(host, distribution, warnings)``.

    The binaries are looked up first; then every command runs in a thread of its own while this thread reads the
    distribution and the files.
    """
    params = module.params
    bins = dict((name, module.get_bin_path(name)) for name in ('mokutil', 'dpkg-query', 'systemctl', 'docker'))
    systemd = os.path.isdir(SYSTEMD_DIR)
    tasks = {}
    if params['secure_boot']:
        tasks['secure_boot'] = lambda: probe_secure_boot(bins['mokutil'])
    if params['packages']:
        tasks['packages'] = lambda: probe_packages(bins['dpkg-query'], params['packages'])
    if params['units'] and systemd:
        tasks['units'] = lambda: probe_units(bins['systemctl'], params['units'])
    if params['docker']:
        tasks['docker'] = lambda: probe_docker(bins['docker'])
    if params['gpu']:
        smi = nvidia_smi_binary(module, params['nvidia_smi_path'])
        tasks['gpu'] = lambda: probe_gpu(smi, params['nvidia_smi_path'], params['nvidia_smi_timeout'])
    wait = start_all(tasks)

    distribution = distribution_facts(ThreadSafeModule(module))
    modules_text = read_text(PROC_MODULES)
    host = {'secure_boot': None, 'secure_boot_detail': None, 'systemd': systemd,
            'nouveau_loaded': None if modules_text is None else parse_proc_modules(modules_text),
            'packages': {}, 'dpkg_error': None,
            'files': dict((path, read_file_facts(path)) for path in params['files']),
            'daemon_json': read_daemon_json(params['daemon_json_path'])}
    users = dict((name, read_user(name)) for name in params['users'])
    groups = dict((name, group_exists(name)) for name in params['groups'])

    done = wait()
    host.update(done.get('secure_boot') or {})
    host['packages'], host['dpkg_error'] = done.get('packages', ({}, None))
    host['docker'] = done.get('docker')
    config = host['daemon_json']['config'] or {}
    if host['docker'] and host['docker']['answers'] and host['docker']['root_dir']:
        root, source = host['docker']['root_dir'], 'engine'
    elif isinstance(config.get('data-root'), str) and os.path.isabs(config['data-root']):
        root, source = config['data-root'], 'daemon_json'
    else:
        root, source = params['docker_default_root'], 'default'
    host['docker_data_root'] = root
    host['docker_data_root_source'] = source
    host['docker_data_root_free_mib'], host['docker_data_root_mount'] = data_root_facts(root)
    warnings = []
    if 'gpu' in done:
        host['gpu'], notices = done['gpu']
        warnings += ['nvidia-smi: %s' % notice for notice in notices]
    else:
        host['gpu'] = None
    host['units'], host['systemctl_error'] = done.get('units', ({}, None))
    host['users'] = users
    host['groups'] = groups
    # What this read was asked for: a caller that needs more reads again (the homelab.gpu roles check it).
    host['requested'] = dict((key, list(params[key])) for key in ('packages', 'files', 'units', 'users', 'groups'))
    return host, distribution, warnings
