# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a container gets an NVIDIA GPU: CDI device requests or ``--gpus``. Private to this collection.

Plain functions over text and data, tested without Docker: ``docker info`` JSON, CDI spec files (YAML as
``nvidia-ctk cdi generate`` writes it, or JSON), the choice between the two methods, and the docker run
arguments of each. The one I/O helper, :func:`probe`, takes a ``run`` callable so that modules share it.

Docker Engine reads CDI specs since 25.0, behind the daemon feature flag ``features.cdi`` up to 28.1 and on by
default from 28.2; ``docker info`` lists the spec directories (``CDISpecDirs``) only while CDI is enabled.
"""

from __future__ import annotations

import json
import os
import re

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML is on most hosts; the line reader below covers the rest
    HAS_YAML = False

from ansible_collections.homelab.gpu.plugins.module_utils._common import command_error

NVIDIA_GPU_KIND = 'nvidia.com/gpu'
METHODS = ('gpus', 'cdi')
MODES = ('auto',) + METHODS
# The first Docker Engine release with CDI, and the first with CDI on by default.
CDI_MIN_VERSION = (25, 0)
CDI_DEFAULT_ON_VERSION = (28, 2)
# Where CDI looks when docker info does not say (the CDI spec's defaults).
DEFAULT_SPEC_DIRS = ('/etc/cdi', '/var/run/cdi')
# Seconds that docker info may take (a daemon that hangs on a lock answers nothing).
INFO_TIMEOUT = 30
_SPEC_SUFFIXES = ('.yaml', '.yml', '.json')
_VERSION_RE = re.compile(r'(\d+)\.(\d+)(?:\.(\d+))?')
_UUID_RE = re.compile(r'(GPU|MIG)-[0-9a-fA-F-]+')


# ---------------------------------------------------------------- docker info

def version_tuple(text):
    """``'26.1.5+dfsg1'`` -> ``(26, 1, 5)``; None when there is no version in the text."""
    match = _VERSION_RE.search(text or '')
    if not match:
        return None
    return tuple(int(g or 0) for g in match.groups())


def engine_cdi_support(server_version):
    """``'builtin'`` (28.2+), ``'feature_flag'`` (25.0-28.1), ``'none'`` (older) or ``'unknown'``."""
    version = version_tuple(server_version)
    if version is None:
        return 'unknown'
    if version[:2] >= CDI_DEFAULT_ON_VERSION:
        return 'builtin'
    if version[:2] >= CDI_MIN_VERSION:
        return 'feature_flag'
    return 'none'


def parse_docker_info(text):
    """The parts of ``docker info --format '{{json .}}'`` that GPU access depends on.

    Raises ValueError when the text is not a JSON object.
    """
    data = json.loads(text or '')
    if not isinstance(data, dict):
        raise ValueError('docker info did not print a JSON object')
    dirs = data.get('CDISpecDirs') or []
    runtimes = data.get('Runtimes') or {}
    return {
        'server_version': data.get('ServerVersion') or None,
        'cdi_spec_dirs': [str(d) for d in dirs if d],
        'cdi_enabled': bool(dirs),
        'runtimes': sorted(str(r) for r in runtimes) if isinstance(runtimes, dict) else [],
        'default_runtime': data.get('DefaultRuntime') or None,
        'docker_root_dir': data.get('DockerRootDir') or None,
    }


# ---------------------------------------------------------------- CDI specs

def _unquote(value):
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in '"\'':
        return value[1:-1]
    return value


def _parse_spec_lines(text):
    """Kind and device names of a YAML CDI spec without PyYAML: top-level ``kind:`` and the ``name:`` key of each
    item of the top-level ``devices:`` list (at the item's own indent, so nested keys are not taken)."""
    kind, names = None, []
    in_devices = False
    item_indent = None
    for raw in (text or '').splitlines():
        line = raw.split(' #', 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith('#') or line.strip() == '---':
            continue
        indent = len(line) - len(line.lstrip(' '))
        body = line.strip()
        if indent == 0 and not body.startswith('- '):
            in_devices = body == 'devices:'
            item_indent = None
            if body.startswith('kind:'):
                kind = _unquote(body[len('kind:'):])
            continue
        if not in_devices:
            continue
        if body.startswith('- '):
            if item_indent is None:
                item_indent = indent
            if indent == item_indent:
                first = body[2:].strip()
                if first.startswith('name:'):
                    names.append(_unquote(first[len('name:'):]))
                continue
        if item_indent is not None and indent == item_indent + 2 and body.startswith('name:'):
            names.append(_unquote(body[len('name:'):]))
    return kind, names


def parse_spec(text, path=''):
    """``{'kind', 'devices'}`` of one CDI spec file (JSON or YAML); raises ValueError when it is neither."""
    text = text or ''
    data = None
    if path.endswith('.json') or text.lstrip().startswith('{'):
        try:
            data = json.loads(text)
        except ValueError:
            raise ValueError('is not valid JSON')
    elif HAS_YAML:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError('is not valid YAML (%s)' % str(exc).splitlines()[0])
    else:
        kind, names = _parse_spec_lines(text)
        return {'kind': kind, 'devices': names}
    if not isinstance(data, dict):
        raise ValueError('is not a CDI spec (no mapping at the top)')
    devices = data.get('devices') or []
    names = [str(d.get('name')) for d in devices if isinstance(d, dict) and d.get('name') is not None]
    return {'kind': data.get('kind'), 'devices': names}


def nvidia_devices(specs):
    """Merge parsed specs ``[(path, spec or error text)]`` into what the ``nvidia.com/gpu`` kind offers.

    Returns ``{'files': [paths of nvidia.com/gpu specs], 'devices': [names, sorted], 'errors': [messages]}``.
    """
    files, names, errors = [], set(), []
    for path, spec in specs:
        if isinstance(spec, str):
            errors.append('%s %s' % (path, spec))
            continue
        if spec.get('kind') != NVIDIA_GPU_KIND:
            continue
        files.append(path)
        names.update(spec.get('devices') or [])
    return {'files': files, 'devices': sorted(names, key=_device_sort_key), 'errors': errors}


def _device_sort_key(name):
    # Indexes (ASCII digits only: str.isdigit() also takes '²', which int() refuses) in numeric order without
    # int(), which refuses more than 4300 digits; then the other names.
    if re.fullmatch('[0-9]+', name):
        digits = name.lstrip('0') or '0'
        return (0, len(digits), digits, name)
    return (1, 0, name, name)


# ---------------------------------------------------------------- choosing a method

def choose_method(mode, info, devices):
    """Pick ``'cdi'`` or ``'gpus'`` for a mode; return ``(method, reason)``, or ``(None, error)`` when the mode
    cannot be honoured.

    ``info`` is :func:`parse_docker_info`'s result (None when docker info failed), ``devices`` the result of
    :func:`nvidia_devices`.
    """
    info = info or {}
    have_cdi = bool(info.get('cdi_enabled'))
    have_spec = bool(devices.get('devices'))
    version = info.get('server_version') or 'unknown'
    if mode == 'gpus':
        return 'gpus', 'gpu_request_mode is gpus'
    if have_cdi and have_spec:
        return 'cdi', ('Docker %s has CDI enabled and %s offers %s devices %s'
                       % (version, ', '.join(devices['files']), NVIDIA_GPU_KIND, ', '.join(devices['devices'])))
    if mode == 'auto':
        if not have_cdi:
            return 'gpus', 'Docker %s has CDI %s' % (version, 'off' if engine_cdi_support(version) != 'none'
                                                     else 'support only from 25.0 on')
        return 'gpus', ('Docker %s has CDI enabled, but no spec in %s offers %s devices'
                        % (version, ', '.join(info.get('cdi_spec_dirs') or DEFAULT_SPEC_DIRS), NVIDIA_GPU_KIND))
    # mode == 'cdi' and something is missing: say what to do.
    support = engine_cdi_support(version)
    if support == 'none':
        return None, ('gpu_request_mode is cdi, but Docker %s has no CDI support (it came in Docker 25.0): upgrade '
                      'Docker Engine to 25 or later (homelab.gpu.docker with docker_install_from: docker), or use '
                      'gpu_request_mode gpus' % version)
    if not have_cdi:
        return None, ('gpu_request_mode is cdi, but Docker %s has CDI turned off: set "features": {"cdi": true} in '
                      '/etc/docker/daemon.json and restart Docker (homelab.gpu.nvidia_container_toolkit does both '
                      'with nvidia_container_toolkit_cdi: true)' % version)
    return None, ('gpu_request_mode is cdi, but no CDI spec in %s offers %s devices%s: generate one with '
                  '"nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml" (homelab.gpu.nvidia_container_toolkit '
                  'does with nvidia_container_toolkit_cdi: true)'
                  % (', '.join(info.get('cdi_spec_dirs') or DEFAULT_SPEC_DIRS), NVIDIA_GPU_KIND,
                     ' (%s)' % '; '.join(devices['errors']) if devices.get('errors') else ''))


def cdi_device_names(request, matched, devices):
    """The CDI device names (``nvidia.com/gpu=<name>``) for a normalized GPU request.

    ``request`` is ``'all'`` or a list of indexes/UUIDs; ``matched`` the nvidia_smi_info GPU dicts it resolved to
    (in request order); ``devices`` the names the spec offers. Each GPU is named by its index when the spec has
    that name, else by its UUID. Raises ValueError naming a GPU that the spec does not offer.
    """
    offered = set(devices)
    if request == 'none':
        return []
    if request == 'all' and 'all' in offered:
        return ['all']
    names = []
    for gpu in matched:
        index = None if gpu.get('index') is None else str(gpu.get('index'))
        uuid = gpu.get('uuid')
        if index is not None and index in offered:
            names.append(index)
        elif uuid and uuid in offered:
            names.append(uuid)
        else:
            raise ValueError('no CDI device for GPU %s (%s): the %s spec offers %s; regenerate it with nvidia-ctk '
                             'cdi generate after a driver or GPU change'
                             % (index, uuid or 'no UUID', NVIDIA_GPU_KIND, ', '.join(sorted(offered)) or 'none'))
    return names


def device_args(names):
    """docker run arguments for CDI device names."""
    out = []
    for name in names:
        out += ['--device', '%s=%s' % (NVIDIA_GPU_KIND, name)]
    return out


def gpu_access_ok(info, devices, daemon_runtimes=None):
    """Whether a container can be given a GPU: the nvidia runtime is known to Docker, or CDI is on with a spec.

    ``daemon_runtimes`` are the runtimes of daemon.json, for hosts where docker info could not be read.
    """
    runtimes = set((info or {}).get('runtimes') or []) | set(daemon_runtimes or [])
    return 'nvidia' in runtimes or bool((info or {}).get('cdi_enabled') and devices.get('devices'))


def engine_facts(info, devices):
    """What both info modules report of Docker's GPU access, from ``parse_docker_info`` and ``nvidia_devices``."""
    return {'server_version': info['server_version'], 'cdi_enabled': info['cdi_enabled'],
            'cdi_spec_dirs': info['cdi_spec_dirs'], 'nvidia_cdi_specs': devices['files'],
            'nvidia_cdi_devices': devices['devices'], 'runtimes': info['runtimes'],
            'gpu_access': gpu_access_ok(info, devices)}


# ---------------------------------------------------------------- reading the host

def read_specs(dirs, max_bytes=4 * 1024 * 1024):
    """``[(path, parsed spec or error text)]`` for the spec files of ``dirs`` (missing directories are skipped)."""
    out = []
    for directory in dirs:
        try:
            entries = sorted(os.listdir(directory))
        except OSError:
            continue
        for entry in entries:
            path = os.path.join(directory, entry)
            if not entry.endswith(_SPEC_SUFFIXES) or not os.path.isfile(path):
                continue
            try:
                with open(path, 'rb') as handle:
                    raw = handle.read(max_bytes + 1)
            except OSError as exc:
                out.append((path, 'cannot be read (%s)' % exc.strerror))
                continue
            if len(raw) > max_bytes:
                out.append((path, 'is larger than %d bytes' % max_bytes))
                continue
            try:
                out.append((path, parse_spec(raw.decode('utf-8', 'replace'), path)))
            except ValueError as exc:
                out.append((path, str(exc)))
    return out


def spec_todo(want, spec_exists, note_text):
    """Why the CDI spec must be written again, or ``''`` when it describes the host as it is.

    ``want`` is what the spec should describe (the driver version, the GPU UUIDs, the spec's path), ``note_text``
    the note written beside the spec after it was generated (JSON of an earlier ``want``), ``''`` or None when
    there is none. A spec without a readable note (written by hand or by another tool) is written again once.
    """
    if not spec_exists:
        return 'missing'
    if not note_text:
        return 'no note of what it was written for'
    try:
        note = json.loads(note_text)
    except ValueError:
        return 'its note is not JSON'
    if not isinstance(note, dict):
        return 'its note is not JSON'
    wanted = dict(want)
    wanted['gpus'] = sorted(wanted.get('gpus') or [])
    if note.get('driver_version') != wanted.get('driver_version'):
        return 'written for driver %s, the host runs %s' % (note.get('driver_version'), wanted.get('driver_version'))
    if sorted(note.get('gpus') or []) != wanted['gpus']:
        return 'written for another GPU set'
    if note != wanted:
        return 'written for another spec path'
    return ''


def probe(run, docker):
    """Ask Docker and the spec directories; return ``{'info', 'devices', 'error'}``.

    ``run(argv, timeout)`` returns a CommandResult (homelab.gpu's run_command); a time-out is named as one.
    """
    cmd = run([docker, 'info', '--format', '{{json .}}'], INFO_TIMEOUT)
    info, error = None, None
    if cmd.rc != 0:
        error = command_error('docker info', cmd)
    else:
        try:
            info = parse_docker_info(cmd.stdout)
        except ValueError as exc:
            error = 'docker info: %s' % exc
    dirs = (info or {}).get('cdi_spec_dirs') or list(DEFAULT_SPEC_DIRS)
    return {'info': info, 'devices': nvidia_devices(read_specs(dirs)), 'error': error}
