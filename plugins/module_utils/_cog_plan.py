# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure planner of cog_model. Private to this collection: no API promise.

Everything here takes plain data (the model list, the containers as ``docker inspect`` summarizes them, the GPUs as
nvidia_smi_info reports them, the listening ports, the GPU memory per container, Docker's CDI facts) and returns
plain data: pre-flight errors, the GPUs of each model, the containers this run stops, the ports it takes over, VRAM
admission and the action per model. No I/O, so it is tested with tables of data.
"""

from __future__ import annotations

from ansible_collections.homelab.gpu.plugins.module_utils import _cdi
from ansible_collections.homelab.gpu.plugins.module_utils import _cog
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_image
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_inspect
from ansible_collections.homelab.gpu.plugins.module_utils import _nvidia_smi


def normalize(models, params):
    """The model list with the module-wide defaults filled in (state, shm size, bind address, readiness time-out)."""
    out = []
    for model in models:
        model = dict(model)
        model['state'] = model.get('state') or 'started'
        model['shm_size'] = model.get('shm_size') or params['shm_size']
        model['bind_address'] = model.get('bind_address') or params['bind_address']
        # Only a value that is not given takes the default: 0 is refused by pre-flight, not turned into 900.
        if model.get('readiness_timeout') is None:
            model['readiness_timeout'] = params['readiness_timeout']
        out.append(model)
    return out


def url_of(model):
    return 'http://%s:%d' % (_cog_inspect.poll_host(model['bind_address']), model['port'])


def untagged(models):
    """Warnings for images without a digest."""
    return ['models[%d] (%s) image %s has no digest: a tag can move, and it is pulled only when absent. Pin it as '
            'name@sha256:...' % (i, m['name'], m['image'])
            for i, m in enumerate(models)
            if m.get('image') and m['state'] != 'absent' and not _cog_image.parse_image(m['image'])['digest']]


def name_errors(models, containers):
    """A model whose name (or ``<name>.previous``) belongs to a container this collection does not manage.

    With ``takeover`` and state ``started``, the model's own name may be such a container (it is replaced), and so
    may ``<name>.previous`` next to a managed ``<name>`` or none: that is the container an interrupted takeover kept,
    and :func:`leftovers` recovers it.
    """
    errors = []
    for i, model in enumerate(models):
        where = 'models[%d] (%s)' % (i, model['name'])
        own = containers.get(model['name'])
        for name in (model['name'], model['name'] + _cog.PREVIOUS_SUFFIX):
            existing = containers.get(name)
            if not existing or existing['managed']:
                continue
            unmanaged = ('%s: a container named %s exists and is not managed by homelab.gpu (no label %s=true)'
                         % (where, name, _cog.MANAGED_LABEL))
            if not model.get('takeover'):
                errors.append('%s; rename or remove it, pick another name, or set takeover: true to let homelab.gpu '
                              'replace it (kept until the new container is READY)' % unmanaged)
            elif model['state'] != 'started':
                errors.append('%s; takeover applies only with state: started: set state: started to let '
                              'homelab.gpu replace it (kept until the new container is READY), or rename or remove it'
                              % unmanaged)
            elif name != model['name'] and own is not None and not own['managed']:
                errors.append('%s, and neither is %s: a takeover replaces one container, so rename or remove one of '
                              'them' % (unmanaged, model['name']))
    return errors


def taken_over_leftover(model, containers):
    """Whether ``<name>.previous`` is the container that an interrupted takeover kept: not managed, next to a managed
    container of the model's name or none, and the model still asks for ``takeover`` with state ``started``."""
    previous = containers.get(model['name'] + _cog.PREVIOUS_SUFFIX)
    own = containers.get(model['name'])
    return bool(previous and not previous['managed'] and model.get('takeover') and model['state'] == 'started'
                and (own is None or own['managed']))


def leftover_probes(models, containers):
    """The names of the running new containers to ask whether they are READY: those next to the container that an
    interrupted takeover kept (see :func:`leftovers`)."""
    return [m['name'] for m in models
            if taken_over_leftover(m, containers) and m['name'] in containers and containers[m['name']]['running']]


def leftovers(models, containers, ready):
    """``[(model name, what)]`` for each ``<name>.previous`` that an interrupted run left behind.

    ``ready`` holds the names of :func:`leftover_probes` that answered READY. ``what`` is:

    - ``restore``: no container of the model's name, so ``.previous`` gets its name back (managed or not; a
      container that was taken over is then taken over again, kept until the new one is READY);
    - ``drop``: a managed ``.previous`` next to the model's container is stale and goes;
    - ``finish``: the container that an interrupted takeover kept goes, because the new one is READY;
    - ``undo``: the new container of an interrupted takeover is not READY, so it goes and the kept container gets
      its name back (and is taken over again).

    The container that a takeover kept is never removed before a new one is READY. Any other unmanaged ``.previous``
    is left alone (pre-flight refused it).
    """
    plan = []
    for model in models:
        name = model['name']
        previous = containers.get(name + _cog.PREVIOUS_SUFFIX)
        if previous is None:
            continue
        if previous['managed']:
            plan.append((name, 'drop' if name in containers else 'restore'))
        elif taken_over_leftover(model, containers):
            if name not in containers:
                plan.append((name, 'restore'))
            else:
                plan.append((name, 'finish' if name in ready else 'undo'))
    return plan


def gpu_requests(models):
    """``{name: normalized GPU request}``."""
    return dict((m['name'], _cog.normalize_gpus(m.get('gpus'))) for m in models)


def wants_gpu(models, requests):
    return any(m['state'] != 'absent' and requests[m['name']] != 'none' for m in models)


def gpu_sets(models, requests, info):
    """``(gpu_sets, errors)``: the UUIDs each model gets, and the requests that no GPU of the host can meet."""
    gpus = info.get('gpus') or []
    sets, errors = {}, []
    for i, model in enumerate(models):
        if model['state'] == 'absent' or requests[model['name']] == 'none':
            sets[model['name']] = set()
            continue
        where = 'models[%d] (%s)' % (i, model['name'])
        if info.get('state') != _nvidia_smi.STATE_OK:
            errors.append('%s asks for GPUs %s, but nvidia-smi reports state %s: %s'
                          % (where, model.get('gpus'), info.get('state'), info.get('message')))
            sets[model['name']] = set()
            continue
        matched, missing = _cog.resolve_gpus(requests[model['name']], gpus)
        if missing:
            errors.append('%s.gpus asks for GPU %s, which this host does not have (it has %s)'
                          % (where, ', '.join(missing),
                             ', '.join('%s %s' % (g.get('index'), g.get('uuid')) for g in gpus) or 'none'))
        sets[model['name']] = set(g.get('uuid') for g in matched)
    return sets, errors + _cog.exclusive_conflicts(models, sets)


def needs_docker_gpu_facts(models, sets, params):
    """Whether the GPU request method depends on Docker's CDI facts (one docker info and the spec files)."""
    return (params['gpu_requests'] and params['gpu_request_mode'] != 'gpus'
            and any(m['state'] == 'started' and sets.get(m['name']) for m in models))


def gpu_request(models, sets, gpus, requests, params, found):
    """``(gpu_request or None, {name: CDI device names}, errors)`` for the models that get a GPU.

    ``found`` is ``_cdi.probe``'s result (None when :func:`needs_docker_gpu_facts` said it was not needed).
    """
    wanting = [m for m in models if m['state'] == 'started' and sets.get(m['name'])]
    if not params['gpu_requests'] or not wanting:
        return None, {}, []
    mode = params['gpu_request_mode']
    found = found or {'info': None, 'devices': {'files': [], 'devices': [], 'errors': []}, 'error': None}
    method, reason = _cdi.choose_method(mode, found['info'], found['devices'])
    info = found['info'] or {}
    request = {'mode': mode, 'method': method, 'reason': reason, 'docker_version': info.get('server_version'),
               'cdi_devices': found['devices']['devices']}
    if method is None:
        return request, {}, ['%s%s' % (reason, ' (%s)' % found['error'] if found['error'] else '')]
    names, errors = {}, []
    if method == 'cdi':
        for i, model in enumerate(models):
            if model not in wanting:
                continue
            matched, dummy = _cog.resolve_gpus(requests[model['name']], gpus)
            try:
                names[model['name']] = _cdi.cdi_device_names(requests[model['name']], matched,
                                                             found['devices']['devices'])
            except ValueError as exc:
                errors.append('models[%d] (%s): %s' % (i, model['name'], exc))
    return request, names, errors


def stops(models, containers, sets):
    """``{container name: why}``: listed stopped or absent models, and managed containers on an exclusive model's
    GPUs."""
    listed_started = set(m['name'] for m in models if m['state'] == 'started')
    to_stop = {}
    for model in models:
        if model['state'] != 'started' and model['name'] in containers:
            to_stop[model['name']] = 'state %s' % model['state']
    for model in models:
        if model['state'] != 'started' or not model.get('exclusive'):
            continue
        mine = sets[model['name']]
        for name, cont in sorted(containers.items()):
            if (cont['managed'] and cont['running'] and name not in listed_started
                    and not name.endswith(_cog.PREVIOUS_SUFFIX) and mine & set(cont['gpu_uuids'])):
                to_stop.setdefault(name, 'exclusive %s' % model['name'])
    return to_stop


def ports(models, containers, to_stop, listening):
    """``(errors, takeovers, to_stop)``: each started model's port must be free, its own, or held by a container
    this run stops; with ``takeover`` an unmanaged container of another name holding it is stopped too
    (``takeovers`` maps the model to those containers; ``to_stop`` comes back with them added)."""
    to_stop = dict(to_stop)
    holders = {}
    for name, cont in containers.items():
        if cont['running']:
            for port in cont['host_ports']:
                holders.setdefault(port, []).append(name)
    errors, takeovers = [], {}
    for i, model in enumerate(models):
        if model['state'] != 'started':
            continue
        where = 'models[%d] (%s)' % (i, model['name'])
        own = (model['name'], model['name'] + _cog.PREVIOUS_SUFFIX)
        others = [n for n in holders.get(model['port'], []) if n not in own and n not in to_stop]
        adoptable = [n for n in others if model.get('takeover') and not containers[n]['managed']
                     and not n.endswith(_cog.PREVIOUS_SUFFIX)]
        if adoptable:
            takeovers[model['name']] = sorted(adoptable)
            for name in adoptable:
                to_stop[name] = 'port %s taken over by %s' % (model['port'], model['name'])
            others = [n for n in others if n not in adoptable]
        if others:
            errors.append('%s.port %s is already published by container %s'
                          % (where, model['port'], ', '.join(sorted(others))))
        elif model['port'] in listening and not holders.get(model['port']):
            errors.append('%s.port %s is already in use on this host by a process that is not a container '
                          '(see: ss -ltnp sport = :%s)' % (where, model['port'], model['port']))
    return errors, takeovers, to_stop


def vram(models, sets, gpus, usage, to_stop):
    """VRAM admission: ``(report, errors)``.

    ``usage`` maps ``(GPU UUID, container name)`` to the MiB that container's processes hold now. What a listed
    model's own container (or its ``.previous``) and every container this run stops hold comes back before the
    starts, measured, not declared.
    """
    listed_started = set(m['name'] for m in models if m['state'] == 'started')
    demands, releases = {}, {}
    for model in models:
        if model['state'] != 'started' or model.get('vram_mib') is None:
            continue
        for uuid in sets[model['name']]:
            demands.setdefault(uuid, []).append((model['name'], model['vram_mib']))
    for (uuid, name), mib in sorted(usage.items()):
        base = name[:-len(_cog.PREVIOUS_SUFFIX)] if name.endswith(_cog.PREVIOUS_SUFFIX) else name
        if base in listed_started or name in to_stop:
            releases.setdefault(uuid, []).append((name, mib))
    return _cog.admission(gpus, demands, releases)


def action(current, chash, image_id):
    """What a started model needs: ``created``, ``replaced``, ``started`` or ``unchanged``."""
    if current is None:
        return 'created'
    if current['config_hash'] != chash or (image_id and current['image_id'] != image_id):
        return 'replaced'
    if not current['running']:
        return 'started'
    return 'unchanged'


def state_of(containers, name):
    cont = containers.get(name)
    if cont is None:
        return {'state': 'absent'}
    return {'state': 'running' if cont['running'] else 'stopped', 'config_hash': cont['config_hash'],
            'image': cont['image']}


def predicted_state(model, result, before):
    """The state a model's container will be in after this run, for the diff of a dry run."""
    if model['state'] == 'started':
        return {'state': 'running', 'config_hash': result['config_hash'], 'image': model['image']}
    if model['state'] == 'absent' or before['state'] == 'absent':
        return {'state': 'absent'}
    return dict(before, state='stopped')
