# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plain functions behind the cog_model and cog_predict modules. Private to this collection: no API promise.

Everything here takes text or data and returns data, so that it can be tested without Docker, a GPU or a
cog server: model validation, image references, GPU requests and VRAM admission, the docker run argv and
its config hash, parsing of ``docker inspect`` and ``/proc/net/tcp``, cog health-check and
prediction bodies, and the Llama-2 chat prompt.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re

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

# Docker's own rule for container names (daemon/names: RestrictedNameChars).
_NAME_RE = re.compile(r'^[a-zA-Z0-9][a-zA-Z0-9_.-]+$')
_DIGEST_RE = re.compile(r'^sha256:[0-9a-f]{64}$')
_REPO_COMPONENT_RE = re.compile(r'^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$')
_TAG_RE = re.compile(r'^[\w][\w.-]{0,127}$')
_UUID_RE = re.compile(r'^(GPU|MIG)-[0-9a-fA-F-]+$')
_SHM_RE = re.compile(r'^[0-9]+[bkmgBKMG]?$')

# cog health-check states (coglet): only READY serves; BUSY also means "set up and serving".
HEALTH_READY = 'READY'
HEALTH_BUSY = 'BUSY'
HEALTH_STARTING = 'STARTING'
HEALTH_FATAL = ('SETUP_FAILED', 'DEFUNCT')

STATES = ('started', 'stopped', 'absent')


# ---------------------------------------------------------------- image references

def parse_image(ref):
    """Split an image reference into ``{'name', 'tag', 'digest'}``; raise ValueError when it is not one.

    ``name`` keeps the registry (``r8.im/meta/llama-2-7b-chat``). ``tag`` is None when only a digest is given;
    neither given means Docker's implicit ``latest`` and comes back as tag ``latest``.
    """
    if not isinstance(ref, str) or not ref or ref != ref.strip() or any(c.isspace() for c in ref):
        raise ValueError('is not an image reference')
    rest, digest = ref, None
    if '@' in ref:
        rest, digest = ref.split('@', 1)
        if not _DIGEST_RE.match(digest):
            raise ValueError('has a malformed digest %r (want sha256: and 64 hex digits)' % digest)
    tag = None
    last = rest.rsplit('/', 1)[-1]
    if ':' in last:
        rest, tag = rest.rsplit(':', 1)
        if not _TAG_RE.match(tag):
            raise ValueError('has a malformed tag %r' % tag)
    parts = rest.split('/')
    if not rest or any(not p for p in parts):
        raise ValueError('has an empty name')
    first = parts[0]
    has_registry = len(parts) > 1 and ('.' in first or ':' in first or first == 'localhost')
    for part in parts[1:] if has_registry else parts:
        if not _REPO_COMPONENT_RE.match(part):
            raise ValueError('has an invalid repository path component %r (lowercase letters, digits, . _ -)' % part)
    if digest is None and tag is None:
        tag = 'latest'
    return {'name': rest, 'tag': tag, 'digest': digest}


def registry_of(image_name):
    """Registry host of an image name as docker login names it (Docker Hub: ``docker.io``)."""
    first = image_name.split('/', 1)[0]
    if '/' in image_name and ('.' in first or ':' in first or first == 'localhost'):
        return first
    return 'docker.io'


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
        text = str(item).strip()
        if text.isdigit():
            text = str(int(text))
        elif not _UUID_RE.match(text):
            raise ValueError('has %r, which is neither a GPU index (0, 1, ...) nor a GPU UUID (GPU-...)' % item)
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
            if (item.isdigit() and gpu.get('index') == int(item)) or (gpu.get('uuid') or '').lower() == item.lower():
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

def validate_models(models):
    """Cross-entry checks of the ``models`` list; returns a list of messages (empty when all is well)."""
    errors = []
    seen_names, seen_ports = {}, {}
    for i, model in enumerate(models):
        name = model.get('name')
        where = 'models[%d]' % i
        if not name or not _NAME_RE.match(name):
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
            errors.append('%s.gpus %r %s' % (label, model.get('gpus'), exc))
        vram = model.get('vram_mib')
        if vram is not None and vram < 0:
            errors.append('%s.vram_mib %s is negative' % (label, vram))
        shm = model.get('shm_size')
        if shm is not None and not _SHM_RE.match(str(shm)):
            errors.append('%s.shm_size %r is not a size such as 6g or 512m' % (label, shm))
        for key in (model.get('env') or {}):
            if not key or '=' in key or any(c.isspace() for c in key):
                errors.append('%s.env has an invalid variable name %r' % (label, key))
        timeout = model.get('readiness_timeout')
        if timeout is not None and timeout <= 0:
            errors.append('%s.readiness_timeout %s must be a positive number of seconds' % (label, timeout))
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


# ---------------------------------------------------------------- docker inspect

def summarize_container(data):
    """The parts of one ``docker container inspect`` entry that the module uses."""
    config = data.get('Config') or {}
    state = data.get('State') or {}
    labels = config.get('Labels') or {}
    host = data.get('HostConfig') or {}
    bindings = []
    for key in sorted(host.get('PortBindings') or {}):
        for binding in (host['PortBindings'][key] or []):
            if str(binding.get('HostPort') or '').isdigit():
                bindings.append((binding.get('HostIp') or '', int(binding['HostPort'])))
    return {
        'id': data.get('Id'),
        'name': (data.get('Name') or '').lstrip('/'),
        'image': config.get('Image'),
        'image_id': data.get('Image'),
        'status': state.get('Status'),
        'running': bool(state.get('Running')),
        'exit_code': state.get('ExitCode'),
        'restart_count': data.get('RestartCount') or 0,
        'pid': state.get('Pid') or 0,
        'started_at': state.get('StartedAt') if state.get('Running') else None,
        'managed': labels.get(MANAGED_LABEL) == 'true',
        'config_hash': labels.get(HASH_LABEL),
        'gpu_uuids': [u for u in (labels.get(GPUS_LABEL) or '').split(',') if u],
        'host_ports': sorted(set(binding[1] for binding in bindings)),
        'bindings': bindings,
        'privileged': bool(host.get('Privileged')),
    }


def poll_host(bind_address):
    """Where to reach a port published on ``bind_address`` from the host itself."""
    if bind_address in ('0.0.0.0', '', None):
        return '127.0.0.1'
    if bind_address == '::':
        return '[::1]'
    return '[%s]' % bind_address if ':' in bind_address else bind_address


def parse_inspect(text):
    """Parse the JSON array that ``docker container inspect`` prints into ``{name: summary}``."""
    text = (text or '').strip()
    if not text:
        return {}
    out = {}
    for entry in json.loads(text):
        summary = summarize_container(entry)
        out[summary['name']] = summary
    return out


def parse_listening_ports(text):
    """Ports in LISTEN state in a ``/proc/net/tcp`` or ``/proc/net/tcp6`` table."""
    ports = set()
    for line in (text or '').splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != '0A':
            continue
        try:
            ports.add(int(fields[1].rsplit(':', 1)[1], 16))
        except (IndexError, ValueError):
            continue
    return ports


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


# ---------------------------------------------------------------- cog HTTP

def parse_health(body):
    """Read a cog ``/health-check`` body into ``{'status', 'setup_status', 'setup_logs'}``.

    Old cog (Python server) and coglet both answer 200 with a JSON body; anything else comes back as status
    ``UNKNOWN`` with the body in ``setup_logs``.
    """
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        data = None
    if not isinstance(data, dict):
        return {'status': 'UNKNOWN', 'setup_status': None, 'setup_logs': str(body or '')[-2000:],
                'setup_completed_at': None}
    setup = data.get('setup') or {}
    return {'status': str(data.get('status') or 'UNKNOWN').upper(),
            'setup_status': setup.get('status'),
            'setup_logs': setup.get('logs') or '',
            'setup_completed_at': setup.get('completed_at')}


def is_ready(health):
    return health['status'] in (HEALTH_READY, HEALTH_BUSY)


def parse_timestamp(text):
    """Seconds since the epoch of an RFC 3339 time as coglet writes it (nanoseconds, offset); None if not one."""
    match = re.match(r'^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$', text or '')
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = float('0.' + match.group(7)) if match.group(7) else 0.0
    offset = 0
    if match.group(8) != 'Z':
        sign = -1 if match.group(8)[0] == '-' else 1
        offset = sign * (int(match.group(8)[1:3]) * 3600 + int(match.group(8)[4:6]) * 60)
    # Days from 1970-01-01 to the date (proleptic Gregorian), without time zone tables.
    y, m = (year - 1, month + 12) if month <= 2 else (year, month)
    days = 365 * y + y // 4 - y // 100 + y // 400 + (153 * (m - 3) + 2) // 5 + day - 719469
    return days * 86400 + hour * 3600 + minute * 60 + second + fraction - offset


def tail(text, lines):
    parts = (text or '').rstrip('\n').splitlines()
    return '\n'.join(parts[-lines:]) if lines > 0 else ''


def prediction_outcome(code, body):
    """Judge one POST /predictions answer; return ``(result dict, error message or None)``."""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = None
    if not isinstance(data, dict):
        error = 'HTTP %s with a body that is not a JSON object: %s' % (code, str(body)[:500])
        return {'status': None, 'http_status': code}, error
    result = {'id': data.get('id'), 'status': data.get('status'), 'output': data.get('output'),
              'error': data.get('error'), 'logs': data.get('logs'), 'metrics': data.get('metrics') or {},
              'http_status': code}
    if code == 409:
        return result, 'the model is busy (HTTP 409: %s); it runs one prediction at a time, retry later' % (
            data.get('error') or 'at capacity')
    if code == 503:
        return result, 'the model is not ready (HTTP 503: %s)' % (data.get('error') or data.get('detail') or body)
    if code == 422:
        return result, 'the model rejected the input (HTTP 422: %s)' % (data.get('detail') or data.get('error')
                                                                        or body)
    if code != 200:
        return result, 'HTTP %s: %s' % (code, data.get('error') or data.get('detail') or str(body)[:500])
    if data.get('status') != 'succeeded':
        return result, 'prediction %s ended with status %s: %s' % (data.get('id'), data.get('status'),
                                                                   data.get('error') or 'no error given')
    return result, None


def output_text(output):
    """The output as one string, the way a Python client of a chat model joins a token list."""
    if output is None:
        return None
    if isinstance(output, list) and all(isinstance(o, str) for o in output):
        return ''.join(output).strip()
    if isinstance(output, str):
        return output.strip()
    return json.dumps(output, sort_keys=True)


# ---------------------------------------------------------------- Llama-2 chat prompt

def chat_prompt(messages, style='seed'):
    """Turn ``[{role, content}]`` into one prompt string for a Llama-2 chat model.

    ``seed``: the seed's client, each user turn as ``[INST]content[/INST]``, other turns as they are, joined by
    newlines. ``llama2``: Meta's reference format, a system message folded into the first user turn between
    ``<<SYS>>`` markers and each exchange as ``<s>[INST] user [/INST] answer </s>``.
    """
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get('role') not in ('system', 'user', 'assistant') \
                or not isinstance(msg.get('content'), str):
            raise ValueError('messages[%d] must be {role: system|user|assistant, content: text}, got %r' % (i, msg))
    if style == 'seed':
        return '\n'.join('[INST]%s[/INST]' % m['content'] if m['role'] == 'user' else m['content']
                         for m in messages)
    system = None
    turns = list(messages)
    if turns and turns[0]['role'] == 'system':
        system = turns.pop(0)['content']
    out = []
    pending_user = None
    for i, msg in enumerate(turns):
        if msg['role'] == 'system':
            raise ValueError('messages: a system message is only allowed first (llama2 format)')
        if msg['role'] == 'user':
            if pending_user is not None:
                raise ValueError('messages: two user messages in a row (llama2 format alternates user/assistant)')
            pending_user = msg['content'].strip()
            if system is not None and not out:
                pending_user = '<<SYS>>\n%s\n<</SYS>>\n\n%s' % (system.strip(), pending_user)
        else:
            if pending_user is None:
                raise ValueError('messages: an assistant message must follow a user message (llama2 format)')
            out.append('<s>[INST] %s [/INST] %s </s>' % (pending_user, msg['content'].strip()))
            pending_user = None
    if pending_user is None:
        raise ValueError('messages: the last message must come from the user')
    out.append('<s>[INST] %s [/INST]' % pending_user)
    return ''.join(out)


# ---------------------------------------------------------------- registry credentials

def auth_matches(config_text, registry, username, password):
    """Whether a docker ``config.json`` already holds exactly these credentials for ``registry``."""
    try:
        data = json.loads(config_text or '{}')
    except ValueError:
        return False
    want = base64.b64encode(('%s:%s' % (username, password)).encode('utf-8')).decode('ascii')
    auths = (data or {}).get('auths') or {}
    keys = [registry]
    if registry in ('docker.io', 'index.docker.io', 'registry-1.docker.io'):
        keys.append('https://index.docker.io/v1/')
    for key in keys:
        entry = auths.get(key) or auths.get('https://' + key) or {}
        if entry.get('auth') == want:
            return True
    return False
