# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The planner of cog_model over plain data: no Docker, no module, no host."""

from __future__ import annotations

import pytest

from ansible_collections.homelab.gpu.plugins.module_utils import _cog_plan
from ansible_collections.homelab.gpu.plugins.module_utils._common import CommandResult
from ansible_collections.homelab.gpu.plugins.module_utils._cog_docker import DeployFailed, DockerCLI

UUID0, UUID1 = 'GPU-aaaa', 'GPU-bbbb'
GPUS = [{'index': 0, 'uuid': UUID0, 'name': 'NVIDIA GeForce RTX 3050', 'memory_total_mib': 8192,
         'memory_free_mib': 6619},
        {'index': 1, 'uuid': UUID1, 'name': 'NVIDIA GeForce RTX 3060', 'memory_total_mib': 12288,
         'memory_free_mib': 12000}]
PARAMS = {'shm_size': '6g', 'bind_address': '0.0.0.0', 'readiness_timeout': 900, 'gpu_requests': True,
          'gpu_request_mode': 'auto'}


def container(name, managed=True, running=True, ports=(), gpus=(), chash='h1', image_id='sha256:1'):
    return {'id': name * 4, 'name': name, 'managed': managed, 'running': running, 'host_ports': list(ports),
            'gpu_uuids': list(gpus), 'config_hash': chash, 'image_id': image_id, 'image': 'img', 'bindings': []}


def model(name, port=5000, state='started', gpus=None, **kw):
    return dict(name=name, port=port, state=state, gpus=[0] if gpus is None else gpus, image='r8.im/x/y:1', **kw)


def test_normalize_fills_defaults_and_keeps_a_zero():
    models = _cog_plan.normalize([{'name': 'a', 'readiness_timeout': 0}, {'name': 'b', 'shm_size': '1g'}], PARAMS)
    assert [(m['state'], m['shm_size'], m['bind_address'], m['readiness_timeout']) for m in models] == [
        ('started', '6g', '0.0.0.0', 0), ('started', '1g', '0.0.0.0', 900)]


UNMANAGED = ('models[0] (a): a container named %s exists and is not managed by homelab.gpu (no label '
             'homelab.gpu.managed=true)')
NO_TAKEOVER = ('; rename or remove it, pick another name, or set takeover: true to let homelab.gpu replace it (kept '
               'until the new container is READY)')
NOT_STARTED = ('; takeover applies only with state: started: set state: started to let homelab.gpu replace it (kept '
               'until the new container is READY), or rename or remove it')


@pytest.mark.parametrize('models, containers, errors', [
    ([model('a')], {'a': container('a'), 'a.previous': container('a.previous')}, []),
    ([model('a')], {'a': container('a', managed=False)}, [UNMANAGED % 'a' + NO_TAKEOVER]),
    ([model('a')], {'a.previous': container('a.previous', managed=False)}, [UNMANAGED % 'a.previous' + NO_TAKEOVER]),
    ([model('a', takeover=True)], {'a': container('a', managed=False)}, []),
    # The container that an interrupted takeover kept, with or without the new one: recovered, not refused.
    ([model('a', takeover=True)], {'a.previous': container('a.previous', managed=False)}, []),
    ([model('a', takeover=True)], {'a': container('a'), 'a.previous': container('a.previous', managed=False)}, []),
    # Two unmanaged containers: not what a takeover leaves, so neither is touched.
    ([model('a', takeover=True)],
     {'a': container('a', managed=False), 'a.previous': container('a.previous', managed=False)},
     [UNMANAGED % 'a.previous' + ', and neither is a: a takeover replaces one container, so rename or remove one '
      'of them']),
    # takeover with another state names what to do instead of asking for takeover again.
    ([model('a', state='stopped', takeover=True)], {'a.previous': container('a.previous', managed=False)},
     [UNMANAGED % 'a.previous' + NOT_STARTED]),
    ([model('a', state='absent', takeover=True)], {'a': container('a', managed=False)},
     [UNMANAGED % 'a' + NOT_STARTED]),
])
def test_name_errors(models, containers, errors):
    assert _cog_plan.name_errors(models, containers) == errors


@pytest.mark.parametrize('models, containers, ready, probes, plan', [
    ([model('a')], {'a': container('a')}, set(), [], []),
    # A managed leftover: its name back, or dropped next to the model's container (as before).
    ([model('a')], {'a.previous': container('a.previous')}, set(), [], [('a', 'restore')]),
    ([model('a', state='stopped')], {'a': container('a'), 'a.previous': container('a.previous')}, set(), [],
     [('a', 'drop')]),
    # The container an interrupted takeover kept, alone: its name back (deploy takes it over again).
    ([model('a', takeover=True)], {'a.previous': container('a.previous', managed=False, running=False)}, set(), [],
     [('a', 'restore')]),
    # ... next to a new container that answers READY: the takeover is finished.
    ([model('a', takeover=True)],
     {'a': container('a'), 'a.previous': container('a.previous', managed=False, running=False)}, {'a'}, ['a'],
     [('a', 'finish')]),
    # ... next to a new container that does not: the new one goes, the kept one gets its name back.
    ([model('a', takeover=True)],
     {'a': container('a'), 'a.previous': container('a.previous', managed=False, running=False)}, set(), ['a'],
     [('a', 'undo')]),
    ([model('a', takeover=True)],
     {'a': container('a', running=False), 'a.previous': container('a.previous', managed=False, running=False)},
     set(), [], [('a', 'undo')]),
    # Never touched without takeover and state started, or next to an unmanaged container (pre-flight refuses).
    ([model('a')], {'a': container('a'), 'a.previous': container('a.previous', managed=False)}, {'a'}, [], []),
    ([model('a', state='stopped', takeover=True)], {'a.previous': container('a.previous', managed=False)}, set(),
     [], []),
    ([model('a', takeover=True)],
     {'a': container('a', managed=False), 'a.previous': container('a.previous', managed=False)}, {'a'}, [], []),
])
def test_leftovers(models, containers, ready, probes, plan):
    assert _cog_plan.leftover_probes(models, containers) == probes
    assert _cog_plan.leftovers(models, containers, ready) == plan


@pytest.mark.parametrize('models, containers, expected', [
    ([model('a')], {}, {}),
    ([model('a', state='stopped')], {'a': container('a')}, {'a': 'state stopped'}),
    ([model('a', state='absent')], {'a': container('a')}, {'a': 'state absent'}),
    ([model('a', state='stopped')], {}, {}),
    # An exclusive model stops the managed, running, unlisted containers on its GPUs, and nothing else.
    ([model('big', exclusive=True)],
     {'small': container('small', gpus=[UUID0]), 'other_gpu': container('other_gpu', gpus=[UUID1]),
      'hand_made': container('hand_made', managed=False, gpus=[UUID0]),
      'small.previous': container('small.previous', gpus=[UUID0]), 'off': container('off', running=False,
                                                                                    gpus=[UUID0])},
     {'small': 'exclusive big'}),
])
def test_stops(models, containers, expected):
    sets = dict((m['name'], {UUID0} if m['state'] == 'started' else set()) for m in models)
    assert _cog_plan.stops(models, containers, sets) == expected


@pytest.mark.parametrize('models, containers, to_stop, listening, errors, takeovers', [
    ([model('a', 5000)], {}, {}, set(), [], {}),
    ([model('a', 5000)], {'a': container('a', ports=[5000])}, {}, {5000}, [], {}),
    ([model('a', 5000)], {'b': container('b', ports=[5000])}, {}, {5000},
     ['models[0] (a).port 5000 is already published by container b'], {}),
    ([model('a', 5000)], {'b': container('b', ports=[5000])}, {'b': 'exclusive a'}, {5000}, [], {}),
    ([model('a', 5000)], {}, {}, {5000},
     ['models[0] (a).port 5000 is already in use on this host by a process that is not a container '
      '(see: ss -ltnp sport = :5000)'], {}),
    ([model('a', 5000, takeover=True)], {'mine': container('mine', managed=False, ports=[5000])}, {}, {5000},
     [], {'a': ['mine']}),
    ([model('a', 5000, takeover=True)], {'b': container('b', ports=[5000])}, {}, {5000},
     ['models[0] (a).port 5000 is already published by container b'], {}),
    ([model('a', 5000, state='stopped')], {'b': container('b', ports=[5000])}, {}, {5000}, [], {}),
])
def test_ports(models, containers, to_stop, listening, errors, takeovers):
    got_errors, got_takeovers, got_stop = _cog_plan.ports(models, containers, to_stop, listening)
    assert (got_errors, got_takeovers) == (errors, takeovers)
    for name in takeovers.get('a', []):
        assert got_stop[name] == 'port 5000 taken over by a'


@pytest.mark.parametrize('models, usage, to_stop, fits, released', [
    ([model('a', vram_mib=6000)], {}, {}, True, 0),
    ([model('a', vram_mib=7000)], {}, {}, False, 0),
    # Its own running container gives back what it holds now (measured), and so does one this run stops.
    ([model('a', vram_mib=7000)], {(UUID0, 'a'): 1062}, {}, True, 1062),
    ([model('a', vram_mib=7000)], {(UUID0, 'small'): 1500}, {'small': 'exclusive a'}, True, 1500),
    ([model('a', vram_mib=7000)], {(UUID0, 'small'): 1500}, {}, False, 0),
    ([model('a', vram_mib=7000)], {(UUID0, 'a.previous'): 900}, {}, True, 900),
])
def test_vram(models, usage, to_stop, fits, released):
    report, errors = _cog_plan.vram(models, {'a': {UUID0}}, GPUS, usage, to_stop)
    assert report[0]['fits'] is fits and report[0]['released_mib'] == released
    assert bool(errors) is not fits


@pytest.mark.parametrize('current, chash, image_id, action', [
    (None, 'h1', 'sha256:1', 'created'),
    (container('a'), 'h1', 'sha256:1', 'unchanged'),
    (container('a'), 'h2', 'sha256:1', 'replaced'),
    (container('a'), 'h1', 'sha256:2', 'replaced'),
    (container('a'), 'h1', None, 'unchanged'),
    (container('a', running=False), 'h1', 'sha256:1', 'started'),
    (container('a', managed=False, chash=None), 'h1', 'sha256:1', 'replaced'),
])
def test_action(current, chash, image_id, action):
    assert _cog_plan.action(current, chash, image_id) == action


def test_gpu_sets_and_missing_gpus():
    models = [model('a', gpus=[1]), model('b', gpus=[3]), model('c', gpus='none'), model('d', state='absent')]
    sets, errors = _cog_plan.gpu_sets(models, _cog_plan.gpu_requests(models), {'state': 'ok', 'gpus': GPUS})
    assert sets == {'a': {UUID1}, 'b': set(), 'c': set(), 'd': set()}
    assert errors == ['models[1] (b).gpus asks for GPU 3, which this host does not have (it has 0 GPU-aaaa, '
                      '1 GPU-bbbb)']


def test_gpu_request_method_needs_docker_facts_only_for_gpu_models():
    models = [model('a', gpus='none')]
    assert _cog_plan.needs_docker_gpu_facts(models, {'a': set()}, PARAMS) is False
    assert _cog_plan.needs_docker_gpu_facts([model('a')], {'a': {UUID0}}, PARAMS) is True
    assert _cog_plan.needs_docker_gpu_facts([model('a')], {'a': {UUID0}}, dict(PARAMS, gpu_request_mode='gpus')) is False
    request, names, errors = _cog_plan.gpu_request([model('a')], {'a': {UUID0}}, GPUS, {'a': ['0']},
                                                   dict(PARAMS, gpu_request_mode='gpus'), None)
    assert (request['method'], names, errors) == ('gpus', {}, [])
    found = {'info': {'server_version': '26.1.5', 'cdi_enabled': True, 'cdi_spec_dirs': ['/etc/cdi']},
             'devices': {'files': ['/etc/cdi/nvidia.yaml'], 'devices': ['0', '1', 'all'], 'errors': []}, 'error': None}
    request, names, errors = _cog_plan.gpu_request([model('a')], {'a': {UUID0}}, GPUS, {'a': ['0']}, PARAMS, found)
    assert (request['method'], names, errors) == ('cdi', {'a': ['0']}, [])


def test_predicted_state():
    before = {'state': 'running', 'config_hash': 'h1', 'image': 'img'}
    assert _cog_plan.predicted_state(model('a'), {'config_hash': 'h2'}, before) == {
        'state': 'running', 'config_hash': 'h2', 'image': 'r8.im/x/y:1'}
    assert _cog_plan.predicted_state(model('a', state='stopped'), {}, before) == dict(before, state='stopped')
    assert _cog_plan.predicted_state(model('a', state='absent'), {}, before) == {'state': 'absent'}


class FakeRun:
    def __init__(self, rc=0):
        self.rc = rc
        self.calls = []

    def __call__(self, module, argv, timeout=None, data=None):
        self.calls.append(argv)
        return CommandResult(self.rc, '', 'boom' if self.rc else '', False)


def test_dry_run_records_changes_and_runs_reads():
    run = FakeRun()
    docker = DockerCLI(None, '/usr/bin/docker', run, dry_run=True)
    docker.stop('a', 30)
    docker.rename('a', 'a.previous')
    docker.run_container(['run', '--detach', '--name', 'a', 'img'])
    assert docker.recorded == [['stop', '--time', '30', 'a'], ['rename', 'a', 'a.previous'],
                               ['run', '--detach', '--name', 'a', 'img']]
    assert run.calls == []
    docker.image_id('img')
    docker.image('img')
    # A present image is inspected once per run: the image checks and the pull share the answer.
    assert run.calls == [['/usr/bin/docker', 'image', 'inspect', 'img']]


def test_a_real_run_fails_with_the_command():
    docker = DockerCLI(None, '/usr/bin/docker', FakeRun(rc=1), dry_run=False)
    with pytest.raises(DeployFailed) as err:
        docker.rename('a', 'b')
    assert str(err.value) == 'docker rename a failed (rc=1): boom'
