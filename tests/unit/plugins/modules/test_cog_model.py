# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole-module tests of cog_model against an in-memory Docker engine and cog server (no Docker, no GPU)."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.gpu.plugins.module_utils import _cog
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_deploy
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_http
from ansible_collections.homelab.gpu.plugins.module_utils import _nvidia_smi
from ansible_collections.homelab.gpu.plugins.module_utils._common import CommandResult
from ansible_collections.homelab.gpu.plugins.modules import cog_model

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'nvidia-smi')
IMAGE = '127.0.0.1:5000/cog-demo@sha256:' + 'a' * 64
IMAGE2 = '127.0.0.1:5000/cog-demo@sha256:' + 'b' * 64
MUTATING = ('run', 'stop', 'start', 'rm', 'rename', 'pull', 'login', 'image rm')


def gpu_info(fixture='handmade-rtx3050-8gb-consumer.xml'):
    with open(os.path.join(FIXTURES, fixture)) as handle:
        result = _nvidia_smi.classify(0, handle.read(), '')
    result.pop('notices')
    return result


RTX = gpu_info()
RTX_UUID = RTX['gpus'][0]['uuid']


class FakeDocker:
    """Just enough of the docker CLI for the module: containers, images, a registry, logins."""

    def __init__(self, config_dir):
        self.containers = {}
        self.images = {}
        self.registry = {IMAGE: 'sha256:' + '1' * 64, IMAGE2: 'sha256:' + '2' * 64}
        self.calls = []
        self.counter = 0
        self.config = os.path.join(config_dir, 'config.json')
        self.listening = set()
        self.warned = []
        # docker info: an engine without CDI (before 25.0), with the nvidia runtime registered.
        self.info = {'ServerVersion': '24.0.7', 'CDISpecDirs': None, 'Runtimes': {'runc': {}, 'nvidia': {}}}
        # Commands (their first two words) that hang until run_command's time limit kills them.
        self.hang = set()

    def ok(self, out=''):
        return CommandResult(0, out, '', False)

    def err(self, text, rc=1):
        return CommandResult(rc, '', text, False)

    def inspect_entry(self, c):
        return {'Id': c['id'], 'Name': '/' + c['name'], 'Image': c['image_id'], 'RestartCount': 0,
                'State': {'Status': 'running' if c['running'] else 'exited', 'Running': c['running'],
                          'ExitCode': 0, 'Pid': 100 if c['running'] else 0},
                'HostConfig': {'Privileged': False, 'PortBindings': {'5000/tcp': [
                    {'HostIp': c['bind'], 'HostPort': str(c['port'])}]} if c['port'] else {}},
                'Config': {'Image': c['image'], 'Labels': c['labels'], 'Env': c['env']}}

    def add(self, name, image=IMAGE, port=5001, labels=None, running=True, env=None, managed=True):
        self.counter += 1
        image_id = self.images.setdefault(image, self.registry.get(image, 'sha256:' + 'f' * 64))
        base = {_cog.MANAGED_LABEL: 'true'} if managed else {}
        base.update(labels or {})
        self.containers[name] = {'id': '%064x' % self.counter, 'name': name, 'image': image, 'image_id': image_id,
                                 'running': running, 'labels': base, 'port': port, 'bind': '0.0.0.0',
                                 'env': ['%s=%s' % kv for kv in (env or {}).items()]}
        return self.containers[name]

    def __call__(self, module, argv, timeout=None, data=None):
        args = list(argv[1:])
        self.calls.append((args, data))
        if any(tuple(args[:len(h)]) == h for h in self.hang):
            return CommandResult(-9, '', '', True, timeout)
        if args[:1] == ['ps']:
            return self.ok('\n'.join(c['id'] for c in self.containers.values()))
        if args[:2] == ['container', 'inspect']:
            found = [self.inspect_entry(c) for c in self.containers.values() if c['id'] in args[2:] or c['name'] in args[2:]]
            return CommandResult(0 if found else 1, json.dumps(found), '' if found else 'No such container', False)
        if args[:2] == ['image', 'inspect']:
            ref = args[-1]
            if ref not in self.images:
                return self.err('Error: No such image: ' + ref)
            return self.ok(json.dumps([{'Id': self.images[ref], 'Config': {'Labels': None}}]))
        if args[:2] == ['image', 'rm']:
            self.images.pop(args[2])
            return self.ok()
        if args[0] == 'pull':
            ref = args[-1]
            if ref not in self.registry:
                return self.err('manifest unknown')
            self.images[ref] = self.registry[ref]
            return self.ok(ref + '\n')
        if args[0] == 'login':
            user, registry = args[2], args[-1]
            try:
                with open(self.config) as handle:
                    conf = json.load(handle)
            except (IOError, OSError):
                conf = {}
            conf.setdefault('auths', {})[registry] = {
                'auth': base64.b64encode(('%s:%s' % (user, data)).encode()).decode()}
            with open(self.config, 'w') as handle:
                json.dump(conf, handle)
            os.chmod(self.config, 0o644)  # a sloppy writer: the module must fix the mode
            return self.ok('Login Succeeded')
        if args[0] == 'run':
            return self.run(args)
        if args[0] == 'stop':
            self.containers[args[-1]]['running'] = False
            return self.ok(args[-1])
        if args[0] == 'start':
            self.containers[args[-1]]['running'] = True
            return self.ok(args[-1])
        if args[0] == 'rm':
            del self.containers[args[-1]]
            return self.ok(args[-1])
        if args[0] == 'rename':
            c = self.containers.pop(args[1])
            c['name'] = args[2]
            self.containers[args[2]] = c
            return self.ok()
        if args[0] == 'info':
            return self.ok(json.dumps(self.info))
        if args[0] == 'logs':
            return CommandResult(0, 'line 1\nline 2\n', 'RuntimeError: boom\n', False)
        raise AssertionError('unexpected docker call %r' % args)

    def run(self, args):
        name = args[args.index('--name') + 1]
        image = args[-1]
        if image not in self.images:
            return self.err('Unable to find image')
        labels = dict(args[i + 1].split('=', 1) for i, a in enumerate(args) if a == '--label')
        env = dict(args[i + 1].split('=', 1) for i, a in enumerate(args) if a == '--env')
        publish = args[args.index('--publish') + 1]
        c = self.add(name, image=image, port=int(publish.split(':')[-2]), labels=labels, env=env)
        c['argv'] = args
        return self.ok(c['id'])

    def mutating_calls(self):
        return [call[0] for call in self.calls if ' '.join(call[0][:2]) in MUTATING or call[0][0] in MUTATING]

    def env_of(self, name):
        return dict(e.split('=', 1) for e in self.containers[name]['env'])


@pytest.fixture
def docker(tmp_path, monkeypatch):
    fake = FakeDocker(str(tmp_path))
    monkeypatch.setenv('DOCKER_CONFIG', str(tmp_path))
    monkeypatch.setattr(_cog_deploy, 'run_command', fake)
    real_get_bin_path = AnsibleModule.get_bin_path

    def get_bin_path(self, arg, *args, **kwargs):
        if arg == 'docker':
            return '/usr/bin/docker'
        return real_get_bin_path(self, arg, *args, **kwargs)

    monkeypatch.setattr(AnsibleModule, 'get_bin_path', get_bin_path)
    # ansible-core keeps warnings process-wide and shows each text once, so tests read them here.
    real_warn = AnsibleModule.warn

    def warn(self, warning):
        fake.warned.append(warning)
        real_warn(self, warning)

    monkeypatch.setattr(AnsibleModule, 'warn', warn)

    def health(url, timeout=2.0, validate_certs=True):
        port = int(url.rsplit(':', 1)[1])
        for c in fake.containers.values():
            if c['port'] == port and c['running']:
                env = dict(e.split('=', 1) for e in c['env'])
                if env.get('FAIL_SETUP') == '1':
                    return {'status': 'SETUP_FAILED', 'setup_status': 'failed', 'setup_completed_at': None,
                            'setup_logs': 'RuntimeError: demo setup failed on purpose (FAIL_SETUP=1)'}, None
                return {'status': 'READY', 'setup_status': 'succeeded', 'setup_logs': 'ok',
                        'setup_completed_at': None}, None
        return None, 'Connection refused'

    def predict(url, inputs, timeout, validate_certs=True):
        return {'status': 'succeeded', 'output': 'hello ' + inputs['text'], 'metrics': {}, 'http_status': 200}, None

    monkeypatch.setattr(_cog_http, 'health', health)
    monkeypatch.setattr(_cog_http, 'predict', predict)
    monkeypatch.setattr(_cog_deploy, 'listening_ports',
                        lambda: set(c['port'] for c in fake.containers.values() if c['running']) | fake.listening)
    monkeypatch.setattr(_cog_deploy.time, 'sleep', lambda s: None)
    return fake


def run_module(capsys, args, check_mode=False, diff=True):
    args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    args.setdefault('gpu_info', RTX)
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            cog_model.main()
    out = capsys.readouterr().out
    result = json.loads(out)
    assert (exc.value.code != 0) == bool(result.get('failed')), result
    return result


def demo(name='demo_a', port=5001, **kw):
    model = {'name': name, 'image': IMAGE, 'port': port, 'gpus': [0], 'vram_mib': 3000,
             'env': {'GREETING': 'hello'}}
    model.update(kw)
    return model


# ---------------------------------------------------------------- deploy and idempotence

def test_first_deploy_pulls_creates_and_waits(capsys, docker):
    result = run_module(capsys, {'models': [demo(smoke_input={'text': 'smoke'}),
                                            demo('demo_b', 5002, gpus='none', vram_mib=None)],
                                 'gpu_requests': False})
    assert result['changed'] is True
    assert result['actions'] == ['pulled ' + IMAGE, 'created demo_a (%s on port 5001)' % IMAGE,
                                 'created demo_b (%s on port 5002)' % IMAGE]
    assert [m['action'] for m in result['models']] == ['created', 'created']
    assert [m['health'] for m in result['models']] == ['READY', 'READY']
    assert result['models'][0]['smoke']['output'] == 'hello smoke'
    assert result['models'][0]['gpus'] == [RTX_UUID]
    assert result['models'][0]['url'] == 'http://127.0.0.1:5001'
    assert result['gpus'][0]['needed_mib'] == 3000 and result['gpus'][0]['fits'] is True
    argv = docker.containers['demo_a']['argv']
    assert '--gpus' not in argv and '--privileged' not in argv
    assert 'homelab.gpu.gpus=%s' % RTX_UUID in argv
    assert result['diff']['before'] == {'demo_a': {'state': 'absent'}, 'demo_b': {'state': 'absent'}}
    assert result['diff']['after']['demo_a']['state'] == 'running'
    # The pull is by digest, once for both models.
    assert [call[0] for call in docker.calls if call[0][0] == 'pull'] == [['pull', '--quiet', IMAGE]]


def test_second_run_changes_nothing(capsys, docker):
    args = {'models': [demo(), demo('demo_b', 5002, gpus='none')]}
    run_module(capsys, args)
    docker.calls = []
    result = run_module(capsys, args)
    assert result['changed'] is False
    assert result['actions'] == []
    assert [m['action'] for m in result['models']] == ['unchanged', 'unchanged']
    assert [m['health'] for m in result['models']] == ['READY', 'READY']
    assert docker.mutating_calls() == []
    assert result['diff']['before'] == result['diff']['after']


def test_gpu_request_goes_to_docker(capsys, docker):
    run_module(capsys, {'models': [demo(gpus=[0])]})
    argv = docker.containers['demo_a']['argv']
    assert argv[argv.index('--gpus') + 1] == '"device=0"'


CDI_SPEC = """cdiVersion: 0.5.0
kind: nvidia.com/gpu
devices:
- name: "0"
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
- name: all
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
"""


def with_cdi(docker, tmp_path, version='26.1.5+dfsg1', spec=CDI_SPEC):
    spec_dir = tmp_path / 'cdi'
    spec_dir.mkdir(exist_ok=True)
    if spec is not None:
        (spec_dir / 'nvidia.yaml').write_text(spec)
    docker.info = {'ServerVersion': version, 'CDISpecDirs': [str(spec_dir)], 'Runtimes': {'runc': {}}}
    return spec_dir


def test_auto_uses_cdi_when_docker_has_it_and_a_spec_offers_the_gpu(capsys, docker, tmp_path):
    spec_dir = with_cdi(docker, tmp_path)
    result = run_module(capsys, {'models': [demo(gpus=[0]), demo('demo_b', 5002, gpus='all')]})
    argv = docker.containers['demo_a']['argv']
    assert '--gpus' not in argv
    assert argv[argv.index('--device') + 1] == 'nvidia.com/gpu=0'
    argv_b = docker.containers['demo_b']['argv']
    assert argv_b[argv_b.index('--device') + 1] == 'nvidia.com/gpu=all'
    assert result['gpu_request'] == {
        'mode': 'auto', 'method': 'cdi', 'docker_version': '26.1.5+dfsg1', 'cdi_devices': ['0', 'all'],
        'reason': 'Docker 26.1.5+dfsg1 has CDI enabled and %s/nvidia.yaml offers nvidia.com/gpu devices 0, all'
                  % spec_dir}
    assert [m['cdi_devices'] for m in result['models']] == [['0'], ['all']]
    # Converged: the same choice gives the same config hash.
    again = run_module(capsys, {'models': [demo(gpus=[0]), demo('demo_b', 5002, gpus='all')]})
    assert again['changed'] is False
    # Forcing --gpus is a different docker run: the containers are replaced.
    forced = run_module(capsys, {'models': [demo(gpus=[0]), demo('demo_b', 5002, gpus='all')],
                                 'gpu_request_mode': 'gpus'})
    assert [m['action'] for m in forced['models']] == ['replaced', 'replaced']
    argv = docker.containers['demo_a']['argv']
    assert '--device' not in argv and argv[argv.index('--gpus') + 1] == '"device=0"'


def test_auto_falls_back_to_gpus_and_keeps_the_old_config_hash(capsys, docker):
    first = run_module(capsys, {'models': [demo(gpus=[0])], 'gpu_request_mode': 'gpus'})
    result = run_module(capsys, {'models': [demo(gpus=[0])]})
    assert result['gpu_request']['method'] == 'gpus'
    assert result['gpu_request']['reason'] == 'Docker 24.0.7 has CDI support only from 25.0 on'
    assert result['changed'] is False
    assert result['models'][0]['config_hash'] == first['models'][0]['config_hash']


def test_cdi_spec_without_the_gpu_is_refused_before_anything_changes(capsys, docker, tmp_path):
    with_cdi(docker, tmp_path, spec=CDI_SPEC.replace('"0"', '"3"').replace('- name: all', '- name: "4"'))
    result = run_module(capsys, {'models': [demo(gpus=[0])]})
    assert result['failed'] is True
    assert ('models[0] (demo_a): no CDI device for GPU 0 (%s): the nvidia.com/gpu spec offers 3, 4; regenerate it '
            'with nvidia-ctk cdi generate after a driver or GPU change' % RTX_UUID) in result['msg']
    assert docker.mutating_calls() == []


@pytest.mark.parametrize('version, spec, message', [
    ('24.0.7', CDI_SPEC, 'gpu_request_mode is cdi, but Docker 24.0.7 has no CDI support (it came in Docker 25.0)'),
    ('26.1.5', None, 'gpu_request_mode is cdi, but no CDI spec in'),
])
def test_cdi_mode_refuses_with_what_to_do(capsys, docker, tmp_path, version, spec, message):
    with_cdi(docker, tmp_path, version=version, spec=spec)
    if version.startswith('24'):
        docker.info.pop('CDISpecDirs')
    result = run_module(capsys, {'models': [demo(gpus=[0])], 'gpu_request_mode': 'cdi'}, check_mode=True)
    assert result['failed'] is True
    assert result['msg'].startswith('Pre-flight refused the model list: ' + message)
    assert docker.mutating_calls() == []


def test_no_gpu_model_asks_docker_nothing(capsys, docker):
    result = run_module(capsys, {'models': [demo(gpus='none')]})
    assert result['gpu_request'] is None
    assert [c for c in docker.calls if c[0][0] == 'info'] == []


def test_smoke_prediction_only_for_a_model_changed_in_this_run(capsys, docker, monkeypatch):
    sent = []

    def predict(url, inputs, timeout, validate_certs=True):
        sent.append(url)
        return {'status': 'succeeded', 'output': 'ok', 'metrics': {}, 'http_status': 200}, None

    monkeypatch.setattr(_cog_http, 'predict', predict)
    args = {'models': [demo(smoke_input={'text': 'x'}), demo('demo_b', 5002, gpus='none', smoke_input={'text': 'y'})]}
    run_module(capsys, args)
    assert sent == ['http://127.0.0.1:5001', 'http://127.0.0.1:5002']
    sent[:] = []
    args['models'][1]['env'] = {'GREETING': 'changed'}
    result = run_module(capsys, args)
    # demo_a is unchanged (someone may be using it): health only; demo_b was replaced: smoke-tested.
    assert sent == ['http://127.0.0.1:5002']
    assert [m['smoke'] is None for m in result['models']] == [True, False]
    assert [m['health'] for m in result['models']] == ['READY', 'READY']


def test_an_unchanged_model_that_is_busy_is_healthy(capsys, docker, monkeypatch):
    # Someone is using the model while the playbook runs: cog says BUSY, which is a healthy model at work.
    args = {'models': [demo(smoke_input={'text': 'x'})]}
    run_module(capsys, args)
    sent = []
    monkeypatch.setattr(_cog_http, 'health', lambda url, timeout=2.0, validate_certs=True: (
        {'status': 'BUSY', 'setup_status': 'succeeded', 'setup_logs': 'ok', 'setup_completed_at': None}, None))
    monkeypatch.setattr(_cog_http, 'predict', lambda url, inputs, timeout, validate_certs=True: sent.append(url))
    docker.calls = []
    result = run_module(capsys, args)
    assert not result.get('failed'), result.get('msg')
    assert result['changed'] is False and docker.mutating_calls() == []
    assert [m['health'] for m in result['models']] == ['BUSY']
    assert sent == []


def test_env_change_recreates_only_that_model(capsys, docker):
    run_module(capsys, {'models': [demo(), demo('demo_b', 5002, gpus='none')]})
    b_id = docker.containers['demo_b']['id']
    result = run_module(capsys, {'models': [demo(env={'GREETING': 'hey'}), demo('demo_b', 5002, gpus='none')]})
    assert result['changed'] is True
    assert [m['action'] for m in result['models']] == ['replaced', 'unchanged']
    assert result['actions'][0].startswith('replaced demo_a (config hash ')
    assert docker.env_of('demo_a') == {'GREETING': 'hey'}
    assert docker.containers['demo_b']['id'] == b_id
    assert sorted(docker.containers) == ['demo_a', 'demo_b']


def test_vram_change_replaces_nothing(capsys, docker):
    run_module(capsys, {'models': [demo()]})
    result = run_module(capsys, {'models': [demo(vram_mib=2000, smoke_input={'text': 'x'})]})
    assert result['changed'] is False


def test_stopped_model_is_started_again(capsys, docker):
    run_module(capsys, {'models': [demo()]})
    docker.containers['demo_a']['running'] = False
    result = run_module(capsys, {'models': [demo()]})
    assert result['models'][0]['action'] == 'started'
    assert result['actions'] == ['started demo_a']
    assert docker.containers['demo_a']['running']


# ---------------------------------------------------------------- failures and rollback

def test_failed_replacement_rolls_back(capsys, docker):
    run_module(capsys, {'models': [demo()]})
    old_id = docker.containers['demo_a']['id']
    result = run_module(capsys, {'models': [demo(env={'GREETING': 'hello', 'FAIL_SETUP': '1'})]})
    assert result['failed'] is True
    msg = result['msg']
    assert msg.startswith('demo_a: the new container (image %s, config hash ' % IMAGE)
    assert 'it was removed and the previous container (config hash ' in msg
    assert 'serves again (READY)' in msg
    assert 'cog reports SETUP_FAILED. Setup logs:\nRuntimeError: demo setup failed on purpose (FAIL_SETUP=1)' in msg
    assert 'Last 30 lines of the container log:\nline 1\nline 2\nRuntimeError: boom' in msg
    assert sorted(docker.containers) == ['demo_a']
    assert docker.containers['demo_a']['id'] == old_id
    assert docker.containers['demo_a']['running']
    assert any(a.startswith('rolled back demo_a') for a in result['actions'])


def test_an_image_inspect_that_times_out_is_no_answer(capsys, docker):
    # A hung docker is not "no such image": nothing is pulled, created or removed on its word.
    run_module(capsys, {'models': [demo()]})
    before = (dict(docker.containers), dict(docker.images))
    docker.hang.add(('image', 'inspect'))
    calls = len(docker.calls)
    result = run_module(capsys, {'models': [demo(image=IMAGE2)]})
    assert result['failed'] is True
    assert 'docker image inspect timed out after 60 s' in result['msg']
    assert (docker.containers, docker.images) == before
    assert not [a for a, _data in docker.calls[calls:] if a[:1] in (['pull'], ['run'], ['rm'], ['stop'], ['rename'])]


def test_a_container_inspect_that_times_out_fails_the_start_and_the_next_run_recovers(capsys, docker):
    # The new container's own inspect hangs: that is a failed start named as a time-out, not a gone container.
    docker.hang.add(('container', 'inspect', 'demo_b'))
    result = run_module(capsys, {'models': [demo(), demo('demo_b', 5002)]})
    assert result['failed'] is True
    assert 'docker container inspect timed out after 60 s' in result['msg']
    assert 'is gone' not in result['msg']
    docker.hang.clear()
    result = run_module(capsys, {'models': [demo(), demo('demo_b', 5002)]})
    assert not result.get('failed'), result['msg']
    assert sorted(docker.containers) == ['demo_a', 'demo_b']
    assert [m['health'] for m in result['models']] == ['READY', 'READY']


def test_failed_new_model_is_removed(capsys, docker):
    result = run_module(capsys, {'models': [demo(env={'FAIL_SETUP': '1'})]})
    assert result['failed'] is True
    assert 'demo_a: the new container failed and was removed; there was no previous version to go back to' in \
        result['msg']
    assert docker.containers == {}


def test_timeout_names_the_last_state(capsys, docker, monkeypatch):
    monkeypatch.setattr(_cog_http, 'health', lambda url, timeout=2.0, validate_certs=True: (
        {'status': 'STARTING', 'setup_status': 'starting', 'setup_logs': 'loading weights',
         'setup_completed_at': None}, None))
    clock = {'t': 0.0}

    def monotonic():
        clock['t'] += 0.5
        return clock['t']

    monkeypatch.setattr(_cog_deploy.time, 'monotonic', monotonic)
    result = run_module(capsys, {'models': [demo(readiness_timeout=5)]})
    assert 'not READY after 5 s: cog still reports STARTING. Setup logs so far:\nloading weights' in result['msg']
    assert docker.containers == {}


def test_exited_container_fails_fast(capsys, docker, monkeypatch):
    def health(url, timeout=2.0, validate_certs=True):
        for c in docker.containers.values():
            c['running'] = False
        return None, 'Connection refused'

    monkeypatch.setattr(_cog_http, 'health', health)
    result = run_module(capsys, {'models': [demo()]})
    assert 'the container exited (status exited, exit code 0, restarts 0)' in result['msg']


def test_failed_smoke_prediction_rolls_back(capsys, docker, monkeypatch):
    run_module(capsys, {'models': [demo()]})
    monkeypatch.setattr(_cog_http, 'predict', lambda url, inputs, timeout, validate_certs=True: (
        {'status': 'failed'}, 'prediction p1 ended with status failed: ValueError: no'))
    result = run_module(capsys, {'models': [demo(env={'GREETING': 'x'}, smoke_input={'text': 'fail'})]})
    assert 'the smoke prediction failed: prediction p1 ended with status failed: ValueError: no' in result['msg']
    assert docker.env_of('demo_a') == {'GREETING': 'hello'}


def test_leftover_previous_gets_its_name_back(capsys, docker):
    docker.images[IMAGE] = docker.registry[IMAGE]
    run_module(capsys, {'models': [demo()]})
    docker.containers['demo_a']['name'] = 'demo_a.previous'
    docker.containers['demo_a.previous'] = docker.containers.pop('demo_a')
    result = run_module(capsys, {'models': [demo()]})
    assert result['actions'] == ['renamed demo_a.previous, left by an interrupted run, back to demo_a']
    assert sorted(docker.containers) == ['demo_a']


# ---------------------------------------------------------------- pre-flight refusals change nothing

def refused(capsys, docker, args, *parts):
    result = run_module(capsys, args)
    assert result['failed'] is True
    assert result['msg'].startswith('Pre-flight refused the model list: ')
    for part in parts:
        assert part in result['msg']
    assert docker.mutating_calls() == []
    return result


def test_vram_admission_refuses_before_anything_changes(capsys, docker):
    result = refused(capsys, docker, {'models': [demo(), demo('demo_c', 5003, vram_mib=4000)]},
                     'GPU 0 (NVIDIA GeForce RTX 3050, %s) has 6619 MiB free of 8192 MiB' % RTX_UUID,
                     'need 7000 MiB: demo_a (3000 MiB), demo_c (4000 MiB)')
    assert result['gpus'][0]['fits'] is False


def test_vram_admission_counts_the_running_own_container(capsys, docker, monkeypatch):
    run_module(capsys, {'models': [demo()]})
    monkeypatch.setattr(_cog_deploy.CogModels, 'gpu_usage', lambda self, gpus: {(RTX_UUID, 'demo_a'): 1062})
    result = run_module(capsys, {'models': [demo(vram_mib=7000, env={'GREETING': 'x'})]})
    assert result['changed'] is True
    assert result['gpus'][0]['released_mib'] == 1062


def test_missing_gpu(capsys, docker):
    refused(capsys, docker, {'models': [demo(gpus=[1, 'GPU-00000000-dead'])]},
            'models[0] (demo_a).gpus asks for GPU 1, GPU-00000000-dead, which this host does not have '
            '(it has 0 %s)' % RTX_UUID)


def test_no_working_gpu(capsys, docker):
    refused(capsys, docker, {'models': [demo()], 'gpu_info': {'state': 'driver_not_loaded', 'gpus': [],
                                                              'message': 'load the module'}},
            'models[0] (demo_a) asks for GPUs [0], but nvidia-smi reports state driver_not_loaded: load the module')


def test_gpu_none_needs_no_nvidia_smi(capsys, docker):
    result = run_module(capsys, {'models': [demo(gpus='none')], 'gpu_info': {'state': 'not_installed'}})
    assert result['changed'] is True


def test_port_taken_by_a_process(capsys, docker):
    docker.listening.add(5000)
    refused(capsys, docker, {'models': [demo(port=5000)]},
            'models[0] (demo_a).port 5000 is already in use on this host by a process that is not a container')


def test_port_taken_by_another_container(capsys, docker):
    docker.add('registry', image='registry:2', port=5001, managed=False)
    refused(capsys, docker, {'models': [demo()]}, 'models[0] (demo_a).port 5001 is already published by container '
                                                  'registry')


def test_name_taken_by_unmanaged_container(capsys, docker):
    docker.add('demo_a', port=6000, managed=False)
    refused(capsys, docker, {'models': [demo()]},
            'models[0] (demo_a): a container named demo_a exists and is not managed by homelab.gpu')


def test_list_errors_together(capsys, docker):
    refused(capsys, docker, {'models': [demo(name='bad name'), demo(port=5001)]},
            "models[0].name 'bad name' is not a valid Docker container name",
            'models[1] (demo_a).port 5001 is already used by models[0] (bad name)')


def test_exclusive_and_another_started_model_on_the_same_gpu(capsys, docker):
    refused(capsys, docker, {'models': [demo(exclusive=True), demo('demo_c', 5003, vram_mib=1000)]},
            'demo_a is exclusive but demo_c is also started on the same GPU')


@pytest.mark.parametrize('key, value, message', [
    ('readiness_timeout', 0, 'readiness_timeout must be a positive number of seconds, got 0'),
    ('poll_interval', 0, 'poll_interval must be more than 0'),
])
def test_bad_options(capsys, docker, key, value, message):
    result = run_module(capsys, {'models': [demo()], key: value})
    assert message in result['msg']


def test_unknown_model_key_is_rejected(capsys, docker):
    model = demo()
    model['bogus'] = 1
    result = run_module(capsys, {'models': [model]})
    assert 'bogus' in result['msg']


def test_tag_is_warned_about(capsys, docker):
    docker.registry['127.0.0.1:5000/cog-demo:v1'] = 'sha256:' + '3' * 64
    result = run_module(capsys, {'models': [demo(image='127.0.0.1:5000/cog-demo:v1')]})
    assert result['changed'] is True
    assert docker.warned == ['models[0] (demo_a) image 127.0.0.1:5000/cog-demo:v1 has no digest: a tag can move, '
                             'and it is pulled only when absent. Pin it as name@sha256:...']


# ---------------------------------------------------------------- swap, stop, absent

def test_exclusive_stops_the_other_models_on_its_gpu(capsys, docker):
    run_module(capsys, {'models': [demo(), demo('demo_b', 5002, gpus='none')]})
    result = run_module(capsys, {'models': [demo('demo_c', 5003, exclusive=True)]})
    assert result['actions'] == ['stopped demo_a (exclusive demo_c)', 'created demo_c (%s on port 5003)' % IMAGE]
    assert not docker.containers['demo_a']['running']
    assert docker.containers['demo_b']['running']
    assert result['diff']['before']['demo_a']['state'] == 'running'
    assert result['diff']['after']['demo_a']['state'] == 'stopped'
    # Swap back: demo_a starts with its old container, demo_c stops.
    result = run_module(capsys, {'models': [demo(exclusive=True)]})
    assert result['actions'] == ['stopped demo_c (exclusive demo_a)', 'started demo_a']
    again = run_module(capsys, {'models': [demo(exclusive=True)]})
    assert again['changed'] is False


def test_state_stopped_and_absent(capsys, docker):
    run_module(capsys, {'models': [demo(), demo('demo_b', 5002, gpus='none')]})
    result = run_module(capsys, {'models': [demo(state='stopped'), {'name': 'demo_b', 'state': 'absent'}]})
    assert result['actions'] == ['stopped demo_a (state stopped)', 'removed demo_b']
    assert [m['action'] for m in result['models']] == ['stopped', 'removed']
    assert not docker.containers['demo_a']['running']
    assert 'demo_b' not in docker.containers
    again = run_module(capsys, {'models': [demo(state='stopped'), {'name': 'demo_b', 'state': 'absent'}]})
    assert again['changed'] is False


def test_prune_keeps_an_image_in_use(capsys, docker):
    run_module(capsys, {'models': [demo(), demo('demo_b', 5002, gpus='none')]})
    result = run_module(capsys, {'models': [{'name': 'demo_b', 'state': 'absent', 'image': IMAGE,
                                             'prune_image': True}]})
    assert result['actions'] == ['removed demo_b']
    assert docker.warned == ['demo_b: image %s is kept, containers demo_a still use it' % IMAGE]
    assert IMAGE in docker.images


def test_prune_removes_an_unused_image(capsys, docker):
    run_module(capsys, {'models': [demo()]})
    result = run_module(capsys, {'models': [{'name': 'demo_a', 'state': 'absent', 'image': IMAGE,
                                             'prune_image': True}]})
    assert result['actions'] == ['removed demo_a', 'removed image ' + IMAGE]
    assert IMAGE not in docker.images


# ---------------------------------------------------------------- check mode

def test_check_mode_predicts_and_changes_nothing(capsys, docker):
    result = run_module(capsys, {'models': [demo()]}, check_mode=True)
    assert result['changed'] is True
    assert result['actions'] == ['pulled ' + IMAGE, 'created demo_a (%s on port 5001)' % IMAGE]
    assert result['diff']['after']['demo_a']['state'] == 'running'
    assert docker.mutating_calls() == []
    assert docker.containers == {}


def test_check_mode_predicts_a_replacement(capsys, docker):
    run_module(capsys, {'models': [demo()]})
    docker.calls = []
    result = run_module(capsys, {'models': [demo(env={'GREETING': 'x'})]}, check_mode=True)
    assert result['models'][0]['action'] == 'replaced'
    assert result['diff']['before']['demo_a']['config_hash'] != result['diff']['after']['demo_a']['config_hash']
    assert docker.mutating_calls() == []


# ---------------------------------------------------------------- registry login

def test_login_once_with_password_on_stdin(capsys, docker):
    args = {'models': [demo()], 'registry_auths': [{'registry': '127.0.0.1:5000', 'username': 'lab',
                                                    'password': 's3cret-token'}]}
    result = run_module(capsys, args)
    logins = [call for call in docker.calls if call[0][0] == 'login']
    assert logins == [(['login', '--username', 'lab', '--password-stdin', '127.0.0.1:5000'], 's3cret-token')]
    assert 'logged in to 127.0.0.1:5000 as lab' in result['actions']
    assert 's3cret-token' not in json.dumps(result)
    assert stat.S_IMODE(os.stat(docker.config).st_mode) == 0o600
    docker.calls = []
    again = run_module(capsys, args)
    assert again['changed'] is False
    assert [call[0] for call in docker.calls if call[0][0] == 'login'] == []


def test_new_password_logs_in_again(capsys, docker):
    args = {'models': [demo()], 'registry_auths': [{'registry': 'r8.im', 'username': 'u', 'password': 'tok-1-xyz'}]}
    run_module(capsys, args)
    args['registry_auths'][0]['password'] = 'tok-2-xyz'
    result = run_module(capsys, args)
    assert result['actions'] == ['logged in to r8.im as u', 'made %s mode 0600' % docker.config]


# ---------------------------------------------------------------- taking over a container started by hand

def test_hand_made_container_blocks_without_takeover(capsys, docker):
    docker.add('llama_tiny', port=5001, managed=False)
    result = run_module(capsys, {'models': [demo('llama_tiny')]})
    assert result['failed'] is True
    assert ('a container named llama_tiny exists and is not managed by homelab.gpu (no label homelab.gpu.managed=true); '
            'rename or remove it, pick another name, or set takeover: true') in result['msg']
    assert docker.mutating_calls() == []


def test_takeover_of_a_container_of_the_same_name(capsys, docker):
    hand_made = docker.add('llama_tiny', port=5001, managed=False)
    result = run_module(capsys, {'models': [demo('llama_tiny', takeover=True)]})
    assert result['changed'] is True
    assert result['actions'][-1] == ('took over llama_tiny, a container not managed by homelab.gpu (kept as '
                                     'llama_tiny.previous until the new one is READY)')
    calls = docker.mutating_calls()
    assert calls[:2] == [['stop', '--time', '30', 'llama_tiny'], ['rename', 'llama_tiny', 'llama_tiny.previous']]
    assert calls[-1] == ['rm', '--force', 'llama_tiny.previous']
    assert docker.containers['llama_tiny']['labels'][_cog.MANAGED_LABEL] == 'true'
    assert docker.containers['llama_tiny']['id'] != hand_made['id']
    # From now on it is a managed model like any other.
    assert run_module(capsys, {'models': [demo('llama_tiny', takeover=True)]})['changed'] is False


def test_failed_takeover_gives_the_hand_made_container_back(capsys, docker):
    hand_made = docker.add('llama_tiny', port=5001, managed=False)
    result = run_module(capsys, {'models': [demo('llama_tiny', takeover=True, env={'FAIL_SETUP': '1'})]})
    assert result['failed'] is True
    assert docker.containers['llama_tiny']['id'] == hand_made['id']
    assert docker.containers['llama_tiny']['running'] is True
    assert 'llama_tiny.previous' not in docker.containers
    assert 'serves again (READY)' in result['msg']


def test_takeover_of_the_port_of_a_container_of_another_name(capsys, docker):
    docker.add('my_llama', port=5001, managed=False)
    result = run_module(capsys, {'models': [demo('llama_tiny', takeover=True)]})
    assert result['changed'] is True
    assert 'stopped my_llama (port 5001 taken over by llama_tiny)' in result['actions']
    assert docker.containers['my_llama']['running'] is False  # kept, stopped
    assert docker.containers['llama_tiny']['running'] is True


def test_failed_port_takeover_starts_the_other_container_again(capsys, docker):
    docker.add('my_llama', port=5001, managed=False)
    result = run_module(capsys, {'models': [demo('llama_tiny', takeover=True, env={'FAIL_SETUP': '1'})]})
    assert result['failed'] is True
    assert docker.containers['my_llama']['running'] is True
    assert 'llama_tiny' not in docker.containers
    assert 'started my_llama again (the model that took over its port failed)' in result['actions']


def test_takeover_never_touches_a_managed_models_port(capsys, docker):
    run_module(capsys, {'models': [demo('other', 5001)]})
    result = run_module(capsys, {'models': [demo('llama_tiny', 5001, takeover=True)]}, check_mode=True)
    assert result['failed'] is True
    assert 'models[0] (llama_tiny).port 5001 is already published by container other' in result['msg']


# ---------------------------------------------------------------- an interrupted takeover

KEPT = 'llama_tiny.previous (not managed by homelab.gpu, kept by a takeover)'


def interrupted_takeover(capsys, docker, new):
    """What a takeover of the hand-made llama_tiny leaves when it is interrupted: the hand-made container stopped and
    renamed llama_tiny.previous, next to the new managed llama_tiny (``new``: ready, stopped, failing) or none."""
    args = {'models': [demo('llama_tiny', takeover=True)]}
    if new is not None:
        docker.add('llama_tiny', port=5001, managed=False)
        run_module(capsys, args)
        docker.containers['llama_tiny']['running'] = new != 'stopped'
        if new == 'failing':
            docker.containers['llama_tiny']['env'].append('FAIL_SETUP=1')
    docker.images.setdefault(IMAGE, docker.registry[IMAGE])
    hand_made = docker.add('llama_tiny.previous', port=5001, managed=False, running=False)
    docker.calls = []
    return args, hand_made


@pytest.mark.parametrize('new', [None, 'stopped', 'failing'])
def test_interrupted_takeover_is_taken_over_again(capsys, docker, new):
    args, hand_made = interrupted_takeover(capsys, docker, new)
    undo = ['removed llama_tiny, the new container of an interrupted takeover, which is not READY'] if new else []
    actions = undo + ['renamed %s, left by an interrupted run, back to llama_tiny' % KEPT,
                      'took over llama_tiny, a container not managed by homelab.gpu (kept as llama_tiny.previous '
                      'until the new one is READY)']
    check = run_module(capsys, args, check_mode=True)
    assert (check['changed'], check['actions']) == (True, actions)
    assert docker.mutating_calls() == []
    result = run_module(capsys, args)
    assert result['actions'] == actions
    assert result['models'][0]['health'] == 'READY'
    assert sorted(docker.containers) == ['llama_tiny']
    assert docker.containers['llama_tiny']['id'] != hand_made['id']
    assert docker.containers['llama_tiny']['labels'][_cog.MANAGED_LABEL] == 'true'
    assert run_module(capsys, args)['changed'] is False


@pytest.mark.parametrize('new', [None, 'stopped'])
def test_interrupted_takeover_that_fails_again_keeps_the_hand_made_container(capsys, docker, new):
    args, hand_made = interrupted_takeover(capsys, docker, new)
    result = run_module(capsys, {'models': [demo('llama_tiny', takeover=True, env={'FAIL_SETUP': '1'})]})
    assert result['failed'] is True
    assert 'the previous container (config hash none) is stopped, as it was before' in result['msg']
    assert sorted(docker.containers) == ['llama_tiny']
    assert docker.containers['llama_tiny']['id'] == hand_made['id']
    # The next run is not locked out: it takes the hand-made container over.
    assert run_module(capsys, args)['models'][0]['action'] == 'replaced'


def test_interrupted_takeover_next_to_a_ready_new_container_is_finished(capsys, docker):
    args, hand_made = interrupted_takeover(capsys, docker, 'ready')
    new_id = docker.containers['llama_tiny']['id']
    actions = ['removed %s, left by an interrupted run: the new llama_tiny is READY' % KEPT]
    check = run_module(capsys, args, check_mode=True)
    assert (check['changed'], check['actions']) == (True, actions)
    assert docker.mutating_calls() == []
    result = run_module(capsys, args)
    assert (result['actions'], result['models'][0]['action']) == (actions, 'unchanged')
    assert docker.mutating_calls() == [['rm', '--force', 'llama_tiny.previous']]
    assert sorted(docker.containers) == ['llama_tiny'] and docker.containers['llama_tiny']['id'] == new_id
    assert run_module(capsys, args)['changed'] is False


def test_interrupted_takeover_with_another_state_says_what_to_do(capsys, docker):
    docker.add('llama_tiny.previous', port=5001, managed=False, running=False)
    refused(capsys, docker, {'models': [demo('llama_tiny', takeover=True, state='stopped')]},
            'models[0] (llama_tiny): a container named llama_tiny.previous exists and is not managed by homelab.gpu '
            '(no label homelab.gpu.managed=true); takeover applies only with state: started: set state: started to '
            'let homelab.gpu replace it (kept until the new container is READY), or rename or remove it')
