# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A model of cog_model: what may be asked for and what its container is. Private to this collection.

Plain functions over data, tested without Docker, a GPU or a cog server: validation of the model list and the
module options, GPU requests and VRAM admission, the ``docker run`` argv of a model and its config hash. The
neighbours: ``_cog_image`` (image references, registry credentials), ``_cog_inspect`` (what Docker reports),
``_cog_api`` (cog's HTTP answers), ``_cog_chat`` (the Llama-2 prompt), ``_cog_plan`` (the plan of a run).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re

from ansible_collections.homelab.gpu.plugins.module_utils._common import cut, range_error
from ansible_collections.homelab.gpu.plugins.module_utils._cog_image import DOMAIN_RE, parse_image

MANAGED_LABEL = 'homelab.gpu.managed'
HASH_LABEL = 'homelab.gpu.config-hash'
GPUS_LABEL = 'homelab.gpu.gpus'
MODEL_LABEL = 'homelab.gpu.model'
# Name under which the previous container waits while its replacement gets ready.
PREVIOUS_SUFFIX = '.previous'
# Port that cog's HTTP server listens on inside the container.
CONTAINER_PORT = 5000
# Bump when the docker run recipe changes in a way that must recreate every managed container.
RECIPE_VERSION = 1

# Every pattern below is matched against the whole value (re.fullmatch), so a trailing newline never slips
# through, and spells its classes out in ASCII, as Go's regexp (which Docker uses) reads \w and \d.
# Docker's own rule for container names (daemon/names: RestrictedNameChars).
_NAME_RE = re.compile(r'[a-zA-Z0-9][a-zA-Z0-9_.-]+')
_UUID_RE = re.compile(r'(GPU|MIG)-[0-9a-fA-F-]+')
# A GPU index: ASCII digits (str.isdigit() also takes '²', which int() refuses), at most 4 of them past any
# leading zeros (no host has 10000 GPUs; int() refuses more than 4300 digits).
_INDEX_RE = re.compile(r'0*([0-9]{1,4})')
# docker run --shm-size: a whole number of bytes, or of k, m or g.
_SHM_RE = re.compile(r'([0-9]+)([bkmgBKMG]?)')
_SHM_FACTOR = {'': 1, 'b': 1, 'k': 1024, 'm': 1024 ** 2, 'g': 1024 ** 3}
# The most that docker run --shm-size takes, in bytes (a signed 64-bit count), and its digits.
_SHM_MAX = 2 ** 63 - 1
_SHM_MAX_DIGITS = len(str(_SHM_MAX))
# An environment variable name as docker run --env passes it on: no '=', no white space, no NUL.
_ENV_KEY_RE = re.compile(r'[^=\s\x00]+')
# A registry user name for docker login: no ':' (it separates user and password), no white space or control.
_USERNAME_RE = re.compile(r'[^:\s\x00-\x1f\x7f]+')
# Longest readiness wait that pre-flight takes, in seconds: a day.
READINESS_TIMEOUT_MAX = 86400


def shown(value, limit=60):
    """``repr(value)`` for a message, cut to ``limit`` characters: a value of 5000 digits is named, not quoted."""
    return cut(repr(value), limit)


# ---------------------------------------------------------------- GPU requests

def normalize_gpus(value):
    """Turn the ``gpus`` option into ``'all'``, ``'none'`` or a list of strings (indexes or UUIDs).

    Raises ValueError with the reason when the value is not one of those forms.
    """
    if value is None:
        return 'none'
    if isinstance(value, bool):
        raise ValueError('must be all, none, or a list of GPU indexes or UUIDs, not a boolean')
    if isinstance(value, int):
        value = [value]
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ('all', 'none', ''):
            return text.lower() or 'none'
        value = [v.strip() for v in text.split(',')]
    if not isinstance(value, (list, tuple)):
        raise ValueError('must be all, none, or a list of GPU indexes or UUIDs')
    if not value:
        return 'none'
    out = []
    for item in value:
        if isinstance(item, bool):
            raise ValueError('has a boolean %r where a GPU index or UUID belongs' % item)
        if isinstance(item, int) and not 0 <= item <= 9999:
            raise ValueError('has %s, which is not a GPU index (0, 1, ... up to 9999)' % shown(item))
        text = str(item).strip()
        index = _INDEX_RE.fullmatch(text)
        if index:
            text = str(int(index.group(1)))
        elif re.fullmatch('[0-9]+', text):
            raise ValueError('has %s, which is too large for a GPU index (0, 1, ... up to 9999)' % shown(item))
        elif not _UUID_RE.fullmatch(text):
            why = ('has %s, which is neither a GPU index (0, 1, ...) nor a GPU UUID (GPU-...)' % shown(item))
            if any(c.isdigit() for c in text):
                why += '; write a GPU index in the digits 0-9'
            raise ValueError(why)
        if text in out:
            raise ValueError('names GPU %s twice' % text)
        out.append(text)
    return out


def resolve_gpus(request, gpus):
    """Match a normalized request against nvidia_smi_info's ``gpus``; return ``(matched, missing)``.

    ``matched`` is the list of GPU dicts in request order (all GPUs for ``'all'``), ``missing`` the requested
    indexes or UUIDs that no GPU has.
    """
    if request == 'none':
        return [], []
    if request == 'all':
        return list(gpus), []
    matched, missing = [], []
    for item in request:
        found = None
        for gpu in gpus:
            if ((_INDEX_RE.fullmatch(item) and gpu.get('index') == int(item))
                    or (gpu.get('uuid') or '').lower() == item.lower()):
                found = gpu
                break
        if found is None:
            missing.append(item)
        elif found not in matched:
            matched.append(found)
    return matched, missing


def docker_gpus_arg(request):
    """The value of ``docker run --gpus`` for a normalized request, None for no GPU."""
    if request == 'none':
        return None
    if request == 'all':
        return 'all'
    # The value is read as CSV, so a list needs the inner quotes: --gpus '"device=0,1"'.
    return '"device=%s"' % ','.join(request)


def describe_gpu(gpu):
    return 'GPU %s (%s, %s)' % (gpu.get('index'), gpu.get('name') or 'unknown model', gpu.get('uuid') or 'no UUID')


# ---------------------------------------------------------------- validation

def bind_address_error(value):
    """Why ``value`` cannot be the address of ``docker run --publish``, or None when it can.

    Docker takes an IP literal only (IPv4 or IPv6, no zone), never a host name.
    """
    try:
        address = ipaddress.ip_address(value)
    except (TypeError, ValueError):
        return ('is not an IP address: Docker publishes a port on an IP address only (0.0.0.0 for every '
                'interface, 127.0.0.1 for this host alone, or one of its addresses), not on a host name')
    if getattr(address, 'scope_id', None):
        return 'has a zone (%%%s), which Docker does not take' % address.scope_id
    return None


def shm_size_error(value):
    """Why ``value`` cannot be ``docker run --shm-size``, or None when it can."""
    match = _SHM_RE.fullmatch(str(value))
    if not match:
        return 'is not a size such as 6g or 512m (a whole number, then b, k, m or g)'
    digits = match.group(1).lstrip('0') or '0'
    # Judged by its length first: int() refuses more than 4300 digits.
    if len(digits) > _SHM_MAX_DIGITS or int(digits) * _SHM_FACTOR[match.group(2).lower()] > _SHM_MAX:
        return 'is larger than Docker can take (8 EiB); give a size such as 6g'
    if digits == '0':
        return 'is 0, which Docker reads as its default of 64m, too small for PyTorch; give a size such as 6g'
    return None


def registry_auth_errors(auths):
    """Messages for ``registry_auths`` entries that docker login would refuse; never quotes a password."""
    errors = []
    for i, auth in enumerate(auths or []):
        where = 'registry_auths[%d]' % i
        registry, username = auth.get('registry'), auth.get('username')
        if not isinstance(registry, str) or not DOMAIN_RE.fullmatch(registry):
            errors.append('%s.registry %r is not a registry host such as r8.im or 127.0.0.1:5000 (no scheme, no '
                          'path)' % (where, registry))
        if not isinstance(username, str) or not _USERNAME_RE.fullmatch(username):
            errors.append('%s.username %r is not a user name that docker login takes (not empty; no :, white '
                          'space or control characters)' % (where, username))
        if not auth.get('password'):
            errors.append('%s.password is empty' % where)
    return errors


# cog_model's number options: (name, lowest, highest, what it must be, what it means).
NUMBER_OPTIONS = (
    ('readiness_timeout', 1, READINESS_TIMEOUT_MAX, 'a positive number of seconds',
     'how long to wait for READY after a start, at most a day'),
    ('pull_timeout', 1, 7 * 86400, 'a positive number of seconds', 'how long a docker pull may take, at most a week'),
    ('smoke_timeout', 1, 86400, 'a positive number of seconds', 'how long a smoke prediction may take, at most a day'),
    ('stop_timeout', 0, 86400, '0 or more seconds', 'how long docker stop waits before it kills a container; 0 kills '
     'at once, and Docker would read a negative time as wait forever'),
    ('log_lines', 0, 10000, '0 or more lines', 'how many lines of the container log a failure message quotes; docker '
     'logs would read a negative number as all of them'),
)


def option_errors(params, bind_error=None):
    """Messages for cog_model's options outside the models list: number ranges, the default bind address and shm
    size, registry logins. With ``bind_error`` (a function that says why this host cannot listen on an address,
    or None), also the address that each started model would be published on."""
    errors = [error for error in (range_error(key, params[key], low, high, what, meaning)
                                  for key, low, high, what, meaning in NUMBER_OPTIONS) if error]
    if not 0 < params['poll_interval'] <= 5:
        errors.append('poll_interval must be more than 0 and at most 5 seconds, got %s: how often to ask '
                      '/health-check while waiting for READY' % params['poll_interval'])
    for key, check in (('bind_address', bind_address_error), ('shm_size', shm_size_error)):
        error = check(params[key])
        if error:
            errors.append('%s %s %s' % (key, shown(params[key]), error))
    errors += registry_auth_errors(params['registry_auths'])
    if errors or bind_error is None:
        return errors
    # docker run fails to publish a port on an address that is not this host's. Addresses that are not IP
    # addresses at all are left to validate_models, which names the model.
    checked = set()
    for i, model in enumerate(params['models']):
        address = model.get('bind_address') or params['bind_address']
        if (model.get('state') or 'started') != 'started' or address in checked or bind_address_error(address):
            continue
        checked.add(address)
        why = bind_error(address)
        if why:
            where = ('models[%d] (%s).bind_address' % (i, model.get('name')) if model.get('bind_address')
                     else 'bind_address')
            errors.append('%s %s is not an address of this host (%s), so docker run could not publish the port '
                          'there' % (where, address, why))
    return errors


def validate_models(models):
    """Cross-entry checks of the ``models`` list; returns a list of messages (empty when all is well).

    Refuses every value that ``docker run`` would refuse, so that no running model is stopped for a typo.
    """
    errors = []
    seen_names, seen_ports = {}, {}
    for i, model in enumerate(models):
        name = model.get('name')
        where = 'models[%d]' % i
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            errors.append('%s.name %r is not a valid Docker container name (a letter or digit, then letters, '
                          'digits, _ . -; at least 2 characters)' % (where, name))
        elif name.endswith(PREVIOUS_SUFFIX):
            errors.append('%s.name %r ends with %s, which this module uses for the container kept during a '
                          'replacement' % (where, name, PREVIOUS_SUFFIX))
        elif name in seen_names:
            errors.append('%s.name %s is already used by models[%d]' % (where, name, seen_names[name]))
        else:
            seen_names[name] = i
        label = '%s (%s)' % (where, name) if name else where
        port = model.get('port')
        state = model.get('state') or 'started'
        if port is not None and not 1 <= port <= 65535:
            errors.append('%s.port %s is outside 1-65535' % (label, port))
        elif port is None and state == 'started':
            errors.append('%s.port is required when state is started' % label)
        elif port is not None and state != 'absent':
            if port in seen_ports:
                errors.append('%s.port %s is already used by models[%d] (%s)'
                              % (label, port, seen_ports[port], models[seen_ports[port]].get('name')))
            else:
                seen_ports[port] = i
        image = model.get('image')
        if image is None and state == 'started':
            errors.append('%s.image is required when state is %s' % (label, state))
        elif image is not None:
            try:
                parse_image(image)
            except ValueError as exc:
                errors.append('%s.image %r %s' % (label, image, exc))
        try:
            normalize_gpus(model.get('gpus'))
        except ValueError as exc:
            errors.append('%s.gpus %s %s' % (label, shown(model.get('gpus')), exc))
        vram = model.get('vram_mib')
        if vram is not None and vram < 0:
            errors.append('%s.vram_mib %s is negative' % (label, vram))
        shm = model.get('shm_size')
        if shm is not None and shm_size_error(shm):
            errors.append('%s.shm_size %s %s' % (label, shown(shm), shm_size_error(shm)))
        bind = model.get('bind_address')
        if bind is not None and bind_address_error(bind):
            errors.append('%s.bind_address %r %s' % (label, bind, bind_address_error(bind)))
        for key, value in (model.get('env') or {}).items():
            if not _ENV_KEY_RE.fullmatch(str(key)):
                errors.append('%s.env has an invalid variable name %r (not empty; no =, white space or NUL)'
                              % (label, key))
            elif value is not None and '\x00' in str(value):
                errors.append('%s.env %s has a NUL character in its value, which no environment variable can '
                              'hold' % (label, key))
        timeout = model.get('readiness_timeout')
        if timeout is not None and not 0 < timeout <= READINESS_TIMEOUT_MAX:
            errors.append('%s.readiness_timeout %s must be a positive number of seconds, at most %d (a day): how '
                          'long to wait for READY after a start' % (label, timeout, READINESS_TIMEOUT_MAX))
    return errors


def exclusive_conflicts(models, gpu_sets):
    """Messages for started exclusive models that share a GPU with another started model of the list.

    ``gpu_sets`` maps a model name to the set of GPU UUIDs it gets.
    """
    errors = []
    started = [m for m in models if (m.get('state') or 'started') == 'started']
    for model in started:
        if not model.get('exclusive'):
            continue
        mine = gpu_sets.get(model['name']) or set()
        for other in started:
            if other is model:
                continue
            shared = mine & (gpu_sets.get(other['name']) or set())
            if shared:
                errors.append('%s is exclusive but %s is also started on the same GPU (%s); stop one of them or '
                              'drop exclusive' % (model['name'], other['name'], ', '.join(sorted(shared))))
    return errors


# ---------------------------------------------------------------- docker run

def run_spec(model, gpu_requests=True, cdi_devices=None):
    """What defines a model's container: everything that goes into ``docker run`` (and nothing else).

    ``cdi_devices`` (CDI device names, see ``_cdi.cdi_device_names``) requests the GPUs through CDI instead of
    ``--gpus``. The key is only present with CDI, so that the hash of a ``--gpus`` container stays what it was.
    """
    request = normalize_gpus(model.get('gpus'))
    env = model.get('env') or {}
    spec = {
        'recipe': RECIPE_VERSION,
        'image': model['image'],
        'port': model['port'],
        'bind_address': model.get('bind_address') or '0.0.0.0',
        'shm_size': str(model.get('shm_size') or '6g'),
        'gpus': docker_gpus_arg(request) if gpu_requests and not cdi_devices else None,
        'env': dict((str(k), '' if v is None else str(v)) for k, v in sorted(env.items())),
        'restart': 'unless-stopped',
    }
    if gpu_requests and cdi_devices:
        spec['cdi_devices'] = list(cdi_devices)
    return spec


def config_hash(spec):
    """sha256 of the canonical JSON of a run spec: the container's identity for recreate decisions."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(',', ':')).encode('utf-8')).hexdigest()


def publish_arg(bind_address, port):
    if ':' in bind_address:  # IPv6
        return '[%s]:%d:%d' % (bind_address, port, CONTAINER_PORT)
    return '%s:%d:%d' % (bind_address, port, CONTAINER_PORT)


def run_argv(docker, name, spec, chash, gpu_uuids):
    """argv of ``docker run -d`` for a model. Never privileged; GPUs only through ``--gpus`` or CDI devices."""
    argv = [docker, 'run', '--detach', '--name', name,
            '--label', '%s=true' % MANAGED_LABEL,
            '--label', '%s=%s' % (HASH_LABEL, chash),
            '--label', '%s=%s' % (MODEL_LABEL, name),
            '--label', '%s=%s' % (GPUS_LABEL, ','.join(gpu_uuids)),
            '--restart', spec['restart'],
            '--shm-size', spec['shm_size'],
            '--publish', publish_arg(spec['bind_address'], spec['port'])]
    if spec['gpus']:
        argv += ['--gpus', spec['gpus']]
    for device in spec.get('cdi_devices') or []:
        argv += ['--device', 'nvidia.com/gpu=%s' % device]
    for key, value in spec['env'].items():
        argv += ['--env', '%s=%s' % (key, value)]
    argv.append(spec['image'])
    return argv


# ---------------------------------------------------------------- VRAM admission

def admission(gpus, demands, releases):
    """Check that what will run on each GPU fits; return ``(report, errors)``.

    ``gpus`` is nvidia_smi_info's list. ``demands`` maps a GPU UUID to a list of ``(model name, MiB)`` that will
    run there. ``releases`` maps a GPU UUID to a list of ``(container name, MiB)``: memory held now by
    containers that this run replaces or stops (the model's own running container included), which comes back
    before the new one starts.
    """
    report, errors = [], []
    for gpu in gpus:
        uuid = gpu.get('uuid')
        wanted = demands.get(uuid) or []
        if not wanted:
            continue
        free = gpu.get('memory_free_mib') or 0
        back = sum(entry[1] for entry in releases.get(uuid) or [])
        need = sum(entry[1] for entry in wanted)
        entry = {'index': gpu.get('index'), 'uuid': uuid, 'name': gpu.get('name'),
                 'memory_total_mib': gpu.get('memory_total_mib'), 'memory_free_mib': free,
                 'released_mib': back, 'available_mib': free + back, 'needed_mib': need,
                 'models': [entry[0] for entry in wanted], 'fits': need <= free + back}
        report.append(entry)
        total = gpu.get('memory_total_mib')
        too_big = [(n, mib) for n, mib in wanted if total is not None and mib > total]
        if too_big:
            entry['fits'] = False
            errors.append('%s has %s MiB in all, less than %s: it cannot fit on this GPU at all, not even with '
                          'exclusive: true. Use a GPU with more memory or a smaller variant of the model (a '
                          'quantized one, say). Refusing before anything changes'
                          % (describe_gpu(gpu), total,
                             ', '.join('%s alone needs (%d MiB)' % (n, mib) for n, mib in too_big)))
            continue
        if not entry['fits']:
            own = ''
            if back:
                own = ' plus %d MiB that %s use%s now' % (back, ', '.join(entry[0] for entry in releases[uuid]),
                                                          '' if len(releases[uuid]) > 1 else 's')
            errors.append('%s has %d MiB free of %s MiB%s, but the models that would run on it need %d MiB: %s. '
                          'Refusing before anything changes: lower vram_mib, move a model to another GPU, or '
                          'use exclusive: true so that models take turns'
                          % (describe_gpu(gpu), free, gpu.get('memory_total_mib'), own, need,
                             ', '.join('%s (%d MiB)' % (n, mib) for n, mib in wanted)))
    return report, errors
