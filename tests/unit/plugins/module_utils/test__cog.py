# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import base64
import json
import os

import pytest

from ansible_collections.homelab.gpu.plugins.module_utils import _cog
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_api
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_chat
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_image
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_inspect
from ansible_collections.homelab.gpu.plugins.module_utils import _nvidia_smi

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'nvidia-smi')
LLAMA = 'r8.im/meta/llama-2-7b-chat@sha256:8e6975e5ed6174911a6ff3d60540dfd4844201974602551e10e9e87ab143d81e'
DIGEST = 'sha256:8e6975e5ed6174911a6ff3d60540dfd4844201974602551e10e9e87ab143d81e'


def gpus_of(fixture):
    with open(os.path.join(FIXTURES, fixture)) as handle:
        return _nvidia_smi.classify(0, handle.read(), '')['gpus']


RTX3050 = gpus_of('handmade-rtx3050-8gb-consumer.xml')
H200X2 = gpus_of('h200x2-580.159.04-idle.xml')


# ---------------------------------------------------------------- image references

PARSE_IMAGE = [
    ('llama 2 chat by digest', LLAMA, {'name': 'r8.im/meta/llama-2-7b-chat', 'tag': None, 'digest': DIGEST}),
    ('tag and digest', 'r8.im/a/b:v1@' + DIGEST, {'name': 'r8.im/a/b', 'tag': 'v1', 'digest': DIGEST}),
    ('tag only', 'r8.im/a/b:v1', {'name': 'r8.im/a/b', 'tag': 'v1', 'digest': None}),
    ('implicit latest', 'ubuntu', {'name': 'ubuntu', 'tag': 'latest', 'digest': None}),
    ('registry with port', '127.0.0.1:5000/cog-demo@' + DIGEST,
     {'name': '127.0.0.1:5000/cog-demo', 'tag': None, 'digest': DIGEST}),
    ('registry with port and tag', 'localhost:5000/x/y:2', {'name': 'localhost:5000/x/y', 'tag': '2', 'digest': None}),
    ('uppercase registry host', 'Registry.Example.com/a', {'name': 'Registry.Example.com/a', 'tag': 'latest',
                                                           'digest': None}),
]


@pytest.mark.parametrize('ref, expected', [c[1:] for c in PARSE_IMAGE], ids=[c[0] for c in PARSE_IMAGE])
def test_parse_image(ref, expected):
    assert _cog_image.parse_image(ref) == expected


PARSE_IMAGE_BAD = [
    ('empty', '', 'is not an image reference'),
    ('space inside', 'r8.im/a b', 'is not an image reference'),
    ('short digest', 'r8.im/a@sha256:abc', 'malformed digest'),
    ('md5 digest', 'r8.im/a@md5:' + '0' * 32, 'malformed digest'),
    ('uppercase repository', 'r8.im/Meta/llama', "invalid repository path component 'Meta'"),
    ('empty component', 'r8.im//llama', 'empty name'),
    ('bad tag', 'r8.im/a:-x', "malformed tag '-x'"),
]


@pytest.mark.parametrize('ref, message', [c[1:] for c in PARSE_IMAGE_BAD], ids=[c[0] for c in PARSE_IMAGE_BAD])
def test_parse_image_refuses(ref, message):
    with pytest.raises(ValueError, match=message):
        _cog_image.parse_image(ref)


@pytest.mark.parametrize('name, registry', [
    ('r8.im/meta/llama', 'r8.im'),
    ('127.0.0.1:5000/cog-demo', '127.0.0.1:5000'),
    ('localhost/x', 'localhost'),
    ('library/ubuntu', 'docker.io'),
    ('ubuntu', 'docker.io'),
])
def test_registry_of(name, registry):
    assert _cog_image.registry_of(name) == registry


# ---------------------------------------------------------------- GPU requests

NORMALIZE = [
    ('default all', 'all', 'all'),
    ('ALL', 'ALL', 'all'),
    ('none', 'none', 'none'),
    ('null', None, 'none'),
    ('empty list', [], 'none'),
    ('empty string', '', 'none'),
    ('one index', [0], ['0']),
    ('int', 1, ['1']),
    ('index strings', ['0', '1'], ['0', '1']),
    ('csv string', '0,1', ['0', '1']),
    ('leading zero', ['01'], ['1']),
    ('many leading zeros', ['0' * 5000 + '3'], ['3']),
    ('index 9999', ['9999'], ['9999']),
    ('uuid', ['GPU-5a0e2c1d-8b7f-4e3a-9c61-2f4d7b8e9a10'], ['GPU-5a0e2c1d-8b7f-4e3a-9c61-2f4d7b8e9a10']),
    ('mig uuid', ['MIG-5a0e2c1d-8b7f'], ['MIG-5a0e2c1d-8b7f']),
]


@pytest.mark.parametrize('value, expected', [c[1:] for c in NORMALIZE], ids=[c[0] for c in NORMALIZE])
def test_normalize_gpus(value, expected):
    assert _cog.normalize_gpus(value) == expected


NORMALIZE_BAD = [
    ('boolean', True, 'not a boolean'),
    ('boolean in list', [True], 'boolean'),
    ('name', ['rtx3050'], "neither a GPU index"),
    ('negative', [-1], "not a GPU index"),
    ('negative string', ['-1'], "neither a GPU index"),
    # str.isdigit() takes these, int() then raised "invalid literal for int()": ASCII digits only.
    ('superscript two', ['\u00b2'],
     "has '\u00b2', which is neither a GPU index \\(0, 1, ...\\) nor a GPU UUID \\(GPU-...\\); write a GPU index in the digits 0-9"),
    ('Arabic-Indic digit', ['\u0663'], "has '\u0663', which is neither a GPU index"),
    ('fullwidth digit', ['\uff11'], "has '\uff11', which is neither a GPU index"),
    # int() raised "Exceeds the limit (4300 digits)": too large, by its length.
    ('5000 digits', ['9' * 5000], r"has '9999999999.*\.\.\. \(5002 characters\), which is too large for a GPU index"),
    ('10000', ['10000'], "has '10000', which is too large for a GPU index"),
    ('huge int', [10 ** 30], 'has 1000000000000000000000000000000, which is not a GPU index'),
    ('twice', [0, '0'], 'names GPU 0 twice'),
    ('dict', {'a': 1}, 'must be all, none'),
]


@pytest.mark.parametrize('value, message', [c[1:] for c in NORMALIZE_BAD], ids=[c[0] for c in NORMALIZE_BAD])
def test_normalize_gpus_refuses(value, message):
    with pytest.raises(ValueError, match=message):
        _cog.normalize_gpus(value)


def test_resolve_gpus_by_index_and_uuid():
    uuid1 = H200X2[1]['uuid']
    matched, missing = _cog.resolve_gpus(['0', uuid1.lower(), '7'], H200X2)
    assert [g['index'] for g in matched] == [0, 1]
    assert missing == ['7']


@pytest.mark.parametrize('request_, indexes', [('all', [0, 1]), ('none', []), (['1'], [1])])
def test_resolve_gpus_forms(request_, indexes):
    matched, missing = _cog.resolve_gpus(request_, H200X2)
    assert [g['index'] for g in matched] == indexes
    assert missing == []


def test_resolve_gpus_same_gpu_twice_counts_once():
    matched = _cog.resolve_gpus(['0', RTX3050[0]['uuid']], RTX3050)[0]
    assert len(matched) == 1


@pytest.mark.parametrize('request_, arg', [
    ('all', 'all'), ('none', None), (['0'], '"device=0"'), (['0', '1'], '"device=0,1"'),
    (['GPU-aa', 'GPU-bb'], '"device=GPU-aa,GPU-bb"'),
])
def test_docker_gpus_arg(request_, arg):
    assert _cog.docker_gpus_arg(request_) == arg


# ---------------------------------------------------------------- validation

def model(**kw):
    base = {'name': 'llama_tiny', 'image': LLAMA, 'port': 5000, 'gpus': 'all', 'state': 'started', 'env': {}}
    base.update(kw)
    return base


VALIDATE = [
    ('valid', [model()], []),
    ('two valid', [model(), model(name='sd', port=5001)], []),
    ('bad name', [model(name='llama tiny')], ["models[0].name 'llama tiny' is not a valid Docker container name"]),
    ('one-char name', [model(name='a')], ["models[0].name 'a' is not a valid Docker container name"]),
    ('reserved suffix', [model(name='a.previous')], ['ends with .previous']),
    ('duplicate name', [model(), model(port=5001)], ['models[1].name llama_tiny is already used by models[0]']),
    ('duplicate port', [model(), model(name='sd')],
     ['models[1] (sd).port 5000 is already used by models[0] (llama_tiny)']),
    ('absent may share a port', [model(), model(name='sd', state='absent')], []),
    ('port out of range', [model(port=70000)], ['models[0] (llama_tiny).port 70000 is outside 1-65535']),
    ('port missing', [model(port=None)], ['models[0] (llama_tiny).port is required when state is started']),
    ('port not needed when stopped', [model(port=None, state='stopped')], []),
    ('image missing', [model(image=None)], ['models[0] (llama_tiny).image is required when state is started']),
    ('image not needed when absent', [model(image=None, port=None, state='absent')], []),
    ('bad image', [model(image='r8.im/Meta/x')], ["models[0] (llama_tiny).image 'r8.im/Meta/x' has an invalid"]),
    ('bad gpus', [model(gpus=['rtx'])], ["models[0] (llama_tiny).gpus ['rtx'] has 'rtx'"]),
    ('negative vram', [model(vram_mib=-1)], ['models[0] (llama_tiny).vram_mib -1 is negative']),
    ('bad shm', [model(shm_size='6 gigs')], ["models[0] (llama_tiny).shm_size '6 gigs' is not a size"]),
    ('bad env name', [model(env={'A=B': '1'})], ["models[0] (llama_tiny).env has an invalid variable name 'A=B'"]),
    ('bad readiness timeout', [model(readiness_timeout=0)], ['readiness_timeout 0 must be a positive']),
]


@pytest.mark.parametrize('models, messages', [c[1:] for c in VALIDATE], ids=[c[0] for c in VALIDATE])
def test_validate_models(models, messages):
    errors = _cog.validate_models(models)
    assert len(errors) == len(messages), errors
    for error, message in zip(errors, messages):
        assert message in error


def test_exclusive_conflicts():
    models = [model(name='a', exclusive=True), model(name='b', port=5001), model(name='c', port=5002)]
    sets = {'a': {'GPU-0'}, 'b': {'GPU-0', 'GPU-1'}, 'c': {'GPU-1'}}
    assert _cog.exclusive_conflicts(models, sets) == [
        'a is exclusive but b is also started on the same GPU (GPU-0); stop one of them or drop exclusive']
    models[1]['state'] = 'stopped'
    assert _cog.exclusive_conflicts(models, sets) == []


# ---------------------------------------------------------------- docker run and config hash

def test_run_argv_llama_tiny_model():
    spec = _cog.run_spec(model(env={'B': 2, 'A': 'x'}))
    argv = _cog.run_argv('/usr/bin/docker', 'llama_tiny', spec, 'abc', ['GPU-1'])
    assert argv == [
        '/usr/bin/docker', 'run', '--detach', '--name', 'llama_tiny',
        '--label', 'homelab.gpu.managed=true', '--label', 'homelab.gpu.config-hash=abc',
        '--label', 'homelab.gpu.model=llama_tiny', '--label', 'homelab.gpu.gpus=GPU-1',
        '--restart', 'unless-stopped', '--shm-size', '6g', '--publish', '0.0.0.0:5000:5000',
        '--gpus', 'all', '--env', 'A=x', '--env', 'B=2', LLAMA]
    assert '--privileged' not in argv


@pytest.mark.parametrize('kw, gpu_requests, expected', [
    ({'gpus': [0, 1]}, True, ['--gpus', '"device=0,1"']),
    ({'gpus': 'none'}, True, []),
    ({'gpus': [0]}, False, []),
])
def test_run_argv_gpus(kw, gpu_requests, expected):
    argv = _cog.run_argv('docker', 'm', _cog.run_spec(model(**kw), gpu_requests), 'h', [])
    got = argv[argv.index('--gpus'):argv.index('--gpus') + 2] if '--gpus' in argv else []
    assert got == expected


@pytest.mark.parametrize('bind, published', [
    ('127.0.0.1', '127.0.0.1:5000:5000'), ('::1', '[::1]:5000:5000'), (None, '0.0.0.0:5000:5000')])
def test_publish(bind, published):
    argv = _cog.run_argv('docker', 'm', _cog.run_spec(model(bind_address=bind)), 'h', [])
    assert argv[argv.index('--publish') + 1] == published


SAME_HASH = [
    ('env order', model(env={'A': '1', 'B': '2'}), model(env={'B': '2', 'A': '1'})),
    ('env int vs str', model(env={'A': 1}), model(env={'A': '1'})),
    ('vram_mib', model(), model(vram_mib=7000)),
    ('smoke input', model(), model(smoke_input={'prompt': 'x'})),
    ('state', model(), model(state='stopped')),
    ('exclusive', model(), model(exclusive=True)),
    ('readiness timeout', model(), model(readiness_timeout=5)),
]
OTHER_HASH = [
    ('env value', model(env={'A': '1'}), model(env={'A': '2'})),
    ('image', model(), model(image='r8.im/meta/x@' + 'sha256:' + '1' * 64)),
    ('port', model(), model(port=5001)),
    ('gpus', model(), model(gpus=[0])),
    ('shm', model(), model(shm_size='1g')),
    ('bind', model(), model(bind_address='127.0.0.1')),
]


@pytest.mark.parametrize('a, b', [c[1:] for c in SAME_HASH], ids=[c[0] for c in SAME_HASH])
def test_config_hash_ignores(a, b):
    assert _cog.config_hash(_cog.run_spec(a)) == _cog.config_hash(_cog.run_spec(b))


@pytest.mark.parametrize('a, b', [c[1:] for c in OTHER_HASH], ids=[c[0] for c in OTHER_HASH])
def test_config_hash_changes(a, b):
    assert _cog.config_hash(_cog.run_spec(a)) != _cog.config_hash(_cog.run_spec(b))


def test_config_hash_depends_on_gpu_requests():
    assert _cog.config_hash(_cog.run_spec(model(), True)) != _cog.config_hash(_cog.run_spec(model(), False))


# ---------------------------------------------------------------- docker inspect, /proc

# Trimmed `docker container inspect` of a container that the module made (Docker 20.10).
INSPECT = [{
    'Id': 'a' * 64,
    'Name': '/demo_a',
    'Image': 'sha256:' + 'b' * 64,
    'RestartCount': 0,
    'State': {'Status': 'running', 'Running': True, 'ExitCode': 0, 'Pid': 4242, 'StartedAt': '2026-11-27T09:00:00.123456789Z'},
    'HostConfig': {'Privileged': False,
                   'PortBindings': {'5000/tcp': [{'HostIp': '0.0.0.0', 'HostPort': '5001'}]}},
    'Config': {'Image': '127.0.0.1:5000/cog-demo@' + DIGEST,
               'Labels': {'homelab.gpu.managed': 'true', 'homelab.gpu.config-hash': 'f' * 64,
                          'homelab.gpu.gpus': 'GPU-1,GPU-2', 'homelab.gpu.model': 'demo_a'}},
}, {
    'Id': 'c' * 64,
    'Name': '/registry',
    'Image': 'sha256:' + 'd' * 64,
    'RestartCount': 3,
    'State': {'Status': 'exited', 'Running': False, 'ExitCode': 2, 'Pid': 0},
    'HostConfig': {'PortBindings': {}},
    'Config': {'Image': 'registry:2', 'Labels': None},
}]


def test_parse_inspect():
    got = _cog_inspect.parse_inspect(json.dumps(INSPECT))
    assert got['demo_a'] == {
        'id': 'a' * 64, 'name': 'demo_a', 'image': '127.0.0.1:5000/cog-demo@' + DIGEST,
        'image_id': 'sha256:' + 'b' * 64, 'status': 'running', 'running': True, 'exit_code': 0,
        'restart_count': 0, 'pid': 4242, 'started_at': '2026-11-27T09:00:00.123456789Z', 'managed': True, 'config_hash': 'f' * 64,
        'gpu_uuids': ['GPU-1', 'GPU-2'], 'host_ports': [5001], 'bindings': [('0.0.0.0', 5001)], 'privileged': False}
    assert got['registry']['managed'] is False
    assert got['registry']['gpu_uuids'] == []
    assert got['registry']['restart_count'] == 3


def test_parse_inspect_empty():
    assert _cog_inspect.parse_inspect('') == {}
    assert _cog_inspect.parse_inspect('[]') == {}


# Recorded /proc/net/tcp of the lab host: sshd on 22, the registry on 127.0.0.1:5000, docker-proxy on 5001,
# and an established connection to 5001 (not listening).
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000   107        0 25811 1 0000000000000000 100 0 0 10 0
   2: 00000000:1389 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 29120 1 0000000000000000 100 0 0 10 0
   3: 0100007F:D2F0 0100007F:1389 01 00000000:00000000 00:00000000 00000000     0        0 29999 1 0000000000000000 20 4 30 10 -1
"""
# The same for IPv6, cut after the inode column (the parser reads the address and state columns).
PROC_NET_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21347 1
   1: 00000000000000000000000000000000:138A 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 29130 1
"""


@pytest.mark.parametrize('text, ports', [
    (PROC_NET_TCP, {22, 5000, 5001}), (PROC_NET_TCP6, {22, 5002}), ('', set()), ('header only\n', set())])
def test_parse_listening_ports(text, ports):
    assert _cog_inspect.parse_listening_ports(text) == ports


# ---------------------------------------------------------------- VRAM admission

def test_admission_fits_on_the_rtx3050():
    uuid = RTX3050[0]['uuid']
    report, errors = _cog.admission(RTX3050, {uuid: [('demo_a', 3000), ('demo_b', 3000)]}, {})
    assert errors == []
    assert report == [{'index': 0, 'uuid': uuid, 'name': 'NVIDIA GeForce RTX 3050', 'memory_total_mib': 8192,
                       'memory_free_mib': 6619, 'released_mib': 0, 'available_mib': 6619, 'needed_mib': 6000,
                       'models': ['demo_a', 'demo_b'], 'fits': True}]


def test_admission_refuses_two_models_that_do_not_fit_together():
    uuid = RTX3050[0]['uuid']
    errors = _cog.admission(RTX3050, {uuid: [('llama_tiny', 4000), ('sdxl', 3000)]}, {})[1]
    assert errors == [
        'GPU 0 (NVIDIA GeForce RTX 3050, %s) has 6619 MiB free of 8192 MiB, but the models that would run on it '
        'need 7000 MiB: llama_tiny (4000 MiB), sdxl (3000 MiB). Refusing before anything changes: lower '
        'vram_mib, move a model to another GPU, or use exclusive: true so that models take turns' % uuid]


def test_admission_a_model_bigger_than_the_card_is_not_told_to_take_turns():
    uuid = RTX3050[0]['uuid']
    errors = _cog.admission(RTX3050, {uuid: [('llama_tiny', 4000), ('llama_70b', 40000)]}, {})[1]
    assert errors == [
        'GPU 0 (NVIDIA GeForce RTX 3050, %s) has 8192 MiB in all, less than llama_70b alone needs (40000 MiB): '
        'it cannot fit on this GPU at all, not even with exclusive: true. Use a GPU with more memory or a smaller '
        'variant of the model (a quantized one, say). Refusing before anything changes' % uuid]
    assert 'exclusive: true so that' not in errors[0]


def test_admission_counts_the_models_own_container():
    uuid = RTX3050[0]['uuid']
    # The running python3.11 (1062 MiB) is llama_tiny's own container: replacing it gives its memory back.
    report, errors = _cog.admission(RTX3050, {uuid: [('llama_tiny', 7000)]}, {uuid: [('llama_tiny', 1062)]})
    assert errors == []
    assert report[0]['available_mib'] == 7681
    errors = _cog.admission(RTX3050, {uuid: [('llama_tiny', 7700)]}, {uuid: [('llama_tiny', 1062)]})[1]
    assert 'has 6619 MiB free of 8192 MiB plus 1062 MiB that llama_tiny uses now' in errors[0]


def test_admission_only_reports_gpus_with_demands():
    report, errors = _cog.admission(H200X2, {H200X2[1]['uuid']: [('m', 1000)]}, {})
    assert [r['index'] for r in report] == [1]
    assert errors == []


# ---------------------------------------------------------------- cog HTTP bodies (recorded from coglet 0.23.1)

HEALTH_STARTING = ('{"status":"STARTING","setup":{"started_at":"2026-11-27T09:32:16.282444661+00:00",'
                   '"status":"starting"},"version":{"coglet":"0.23.1","python_sdk":"0.23.1"}}')
HEALTH_READY = ('{"status":"READY","setup":{"started_at":"2026-11-27T09:32:16.282444661+00:00",'
                '"completed_at":"2026-11-27T09:32:17.468383388+00:00","status":"succeeded",'
                '"logs":"[coglet::setup] demo setup: loading for 1 s\\n[coglet] Server ready\\n"},'
                '"version":{"coglet":"0.23.1"}}')
HEALTH_BUSY = HEALTH_READY.replace('"status":"READY"', '"status":"BUSY"')
HEALTH_FAILED = ('{"status":"SETUP_FAILED","setup":{"started_at":"2026-11-27T09:32:26.414036274+00:00",'
                 '"completed_at":"2026-11-27T09:32:27.030508828+00:00","status":"failed","logs":"worker setup '
                 'failed: Setup failed: setup failed: RuntimeError: demo setup failed on purpose (FAIL_SETUP=1)"}}')
# The Python server of older cog images.
HEALTH_OLD_COG = '{"status": "READY", "setup": {"status": "succeeded", "logs": ""}}'

HEALTH = [
    ('starting', HEALTH_STARTING, 'STARTING', False),
    ('ready', HEALTH_READY, 'READY', True),
    ('busy', HEALTH_BUSY, 'BUSY', True),
    ('setup failed', HEALTH_FAILED, 'SETUP_FAILED', False),
    ('old cog', HEALTH_OLD_COG, 'READY', True),
    ('defunct', '{"status":"DEFUNCT"}', 'DEFUNCT', False),
    ('not json', '<html>bad gateway</html>', 'UNKNOWN', False),
    ('json list', '[]', 'UNKNOWN', False),
    ('empty', '', 'UNKNOWN', False),
]


@pytest.mark.parametrize('body, status, ready', [c[1:] for c in HEALTH], ids=[c[0] for c in HEALTH])
def test_parse_health(body, status, ready):
    health = _cog_api.parse_health(body)
    assert health['status'] == status
    assert _cog_api.is_ready(health) is ready


def test_parse_health_keeps_setup_logs_and_time():
    health = _cog_api.parse_health(HEALTH_FAILED)
    assert 'RuntimeError: demo setup failed on purpose (FAIL_SETUP=1)' in health['setup_logs']
    assert health['setup_completed_at'] == '2026-11-27T09:32:27.030508828+00:00'


@pytest.mark.parametrize('text, epoch', [
    ('2026-11-27T09:32:17.468383388+00:00', 1795771937.468383388),
    ('2026-11-27T09:32:17Z', 1795771937.0),
    ('2024-02-29T23:00:00-01:00', 1709251200.0),
    ('1970-01-01T00:00:00Z', 0.0),
    ('yesterday', None),
    ('', None),
])
def test_parse_timestamp(text, epoch):
    got = _cog_api.parse_timestamp(text)
    if epoch is None:
        assert got is None
    else:
        assert got == pytest.approx(epoch, abs=1e-6)


PREDICTIONS = [
    ('succeeded', 200, '{"id":"pred_1","logs":"","metrics":{"predict_time":0.0012},"output":"hello bob",'
                       '"status":"succeeded"}', None),
    ('failed with 200', 200, '{"error":"Prediction failed: ValueError: demo prediction failed on purpose '
                             '(text=fail)","id":"pred_2","logs":"","metrics":{},"status":"failed"}',
     'prediction pred_2 ended with status failed: Prediction failed: ValueError: demo prediction failed on purpose'),
    ('busy', 409, '{"error":"At capacity - all prediction slots busy","status":"failed"}',
     'the model is busy (HTTP 409: At capacity - all prediction slots busy)'),
    ('setting up', 503, '{"error":"Setup has not finished yet.","status":"failed"}',
     'the model is not ready (HTTP 503: Setup has not finished yet.)'),
    ('bad input', 422, '{"detail":[{"loc":["body","input","text"],"msg":"field required"}]}',
     'the model rejected the input (HTTP 422'),
    ('server error', 500, '{"error":"boom"}', 'HTTP 500: boom'),
    ('html', 502, '<html>bad gateway</html>', 'HTTP 502 with a body that is not a JSON object'),
    ('canceled', 200, '{"id":"p","status":"canceled"}', 'ended with status canceled: no error given'),
]


@pytest.mark.parametrize('code, body, error', [c[1:] for c in PREDICTIONS], ids=[c[0] for c in PREDICTIONS])
def test_prediction_outcome(code, body, error):
    result, got = _cog_api.prediction_outcome(code, body)
    if error is None:
        assert got is None
        assert result['output'] == 'hello bob'
        assert result['metrics'] == {'predict_time': 0.0012}
    else:
        assert error in got
    assert result['http_status'] == code


@pytest.mark.parametrize('output, text', [
    ([' Hello', ' there', '!\n'], 'Hello there!'),
    (' hello bob ', 'hello bob'),
    (None, None),
    ({'b': 1, 'a': 2}, '{"a": 2, "b": 1}'),
    ([1, 2], '[1, 2]'),
])
def test_output_text(output, text):
    assert _cog_api.output_text(output) == text


@pytest.mark.parametrize('text, lines, expected', [
    ('a\nb\nc\n', 2, 'b\nc'), ('a\nb', 5, 'a\nb'), ('', 3, ''), ('a\nb', 0, '')])
def test_tail(text, lines, expected):
    assert _cog_api.tail(text, lines) == expected


# ---------------------------------------------------------------- Llama-2 chat prompt

CHAT = [
    ('inst_lines one user', 'inst_lines', [{'role': 'user', 'content': 'Hello there, Llama'}], '[INST]Hello there, Llama[/INST]'),
    ('inst_lines conversation', 'inst_lines',
     [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello!'},
      {'role': 'user', 'content': 'How are you?'}],
     '[INST]Hi[/INST]\nHello!\n[INST]How are you?[/INST]'),
    ('inst_lines system as is', 'inst_lines', [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}],
     'Be brief.\n[INST]Hi[/INST]'),
    ('llama2 one user', 'llama2', [{'role': 'user', 'content': 'Hi'}], '<s>[INST] Hi [/INST]'),
    ('llama2 system', 'llama2', [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}],
     '<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]'),
    ('llama2 conversation', 'llama2',
     [{'role': 'system', 'content': 'S'}, {'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Yo'},
      {'role': 'user', 'content': 'Again'}],
     '<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST] Yo </s><s>[INST] Again [/INST]'),
]


@pytest.mark.parametrize('style, messages, prompt', [c[1:] for c in CHAT], ids=[c[0] for c in CHAT])
def test_chat_prompt(style, messages, prompt):
    assert _cog_chat.chat_prompt(messages, style) == prompt


CHAT_BAD = [
    ('bad role', 'inst_lines', [{'role': 'bot', 'content': 'x'}], r'messages\[0\] must be'),
    ('no content', 'inst_lines', [{'role': 'user'}], r'messages\[0\] must be'),
    ('two users', 'llama2', [{'role': 'user', 'content': 'a'}, {'role': 'user', 'content': 'b'}], 'two user'),
    ('ends with assistant', 'llama2', [{'role': 'user', 'content': 'a'}, {'role': 'assistant', 'content': 'b'}],
     'last message'),
    ('assistant first', 'llama2', [{'role': 'assistant', 'content': 'a'}], 'must follow a user'),
    ('late system', 'llama2', [{'role': 'user', 'content': 'a'}, {'role': 'assistant', 'content': 'b'},
                               {'role': 'system', 'content': 'c'}], 'only allowed first'),
]


@pytest.mark.parametrize('style, messages, message', [c[1:] for c in CHAT_BAD], ids=[c[0] for c in CHAT_BAD])
def test_chat_prompt_refuses(style, messages, message):
    with pytest.raises(ValueError, match=message):
        _cog_chat.chat_prompt(messages, style)


# ---------------------------------------------------------------- registry credentials

def auth(user, password):
    return base64.b64encode(('%s:%s' % (user, password)).encode()).decode()


AUTHS = [
    ('same', {'auths': {'r8.im': {'auth': auth('u', 'tok')}}}, 'r8.im', True),
    ('other password', {'auths': {'r8.im': {'auth': auth('u', 'old')}}}, 'r8.im', False),
    ('other registry', {'auths': {'ghcr.io': {'auth': auth('u', 'tok')}}}, 'r8.im', False),
    ('https key', {'auths': {'https://r8.im': {'auth': auth('u', 'tok')}}}, 'r8.im', True),
    ('docker hub', {'auths': {'https://index.docker.io/v1/': {'auth': auth('u', 'tok')}}}, 'docker.io', True),
    ('creds store', {'auths': {'r8.im': {}}, 'credsStore': 'pass'}, 'r8.im', False),
    ('no file', None, 'r8.im', False),
]


@pytest.mark.parametrize('config, registry, same', [c[1:] for c in AUTHS], ids=[c[0] for c in AUTHS])
def test_auth_matches(config, registry, same):
    text = json.dumps(config) if config is not None else ''
    assert _cog_image.auth_matches(text, registry, 'u', 'tok') is same


def test_auth_matches_broken_file():
    assert _cog_image.auth_matches('{not json', 'r8.im', 'u', 'tok') is False


@pytest.mark.parametrize('bind, host', [
    ('0.0.0.0', '127.0.0.1'), ('', '127.0.0.1'), (None, '127.0.0.1'), ('::', '[::1]'),
    ('192.168.0.16', '192.168.0.16'), ('fd00::16', '[fd00::16]'), ('127.0.0.1', '127.0.0.1'),
])
def test_poll_host(bind, host):
    assert _cog_inspect.poll_host(bind) == host


# ---------------------------------------------------------------- hostile input: whatever docker run refuses

UUID = 'GPU-5a0e2c1d-8b7f-4e3a-9c61-2f4d7b8e9a10'
# (id, model fields, the message that validate_models gives, or None where Docker takes the value too)
HOSTILE = [
    # container names (Docker: [a-zA-Z0-9][a-zA-Z0-9_.-]+, the whole name)
    ('name trailing newline', {'name': 'llama_tiny\n'}, "models[0].name 'llama_tiny\\n' is not a valid Docker"),
    ('name leading dash', {'name': '-llama'}, "models[0].name '-llama' is not a valid Docker"),
    ('name non-ASCII letter', {'name': 'llamé'}, "models[0].name 'llamé' is not a valid Docker"),
    ('name NUL', {'name': 'a\x00b'}, "models[0].name 'a\\x00b' is not a valid Docker"),
    ('name slash', {'name': 'a/b'}, "models[0].name 'a/b' is not a valid Docker"),
    ('name dots only', {'name': '..'}, "models[0].name '..' is not a valid Docker"),
    ('name dots and dashes', {'name': 'l.la-ma_2'}, None),
    # image references (distribution/reference)
    ('image trailing newline', {'image': LLAMA + '\n'}, 'image %r is not an image reference' % (LLAMA + '\n')),
    ('digest upper-case hex', {'image': 'r8.im/a@sha256:' + 'A' * 64}, 'has a malformed digest'),
    ('digest 65 hex digits', {'image': 'r8.im/a@sha256:' + 'a' * 65}, 'has a malformed digest'),
    ('digest NUL', {'image': 'r8.im/a@sha256:' + 'a' * 63 + '\x00'}, 'has a malformed digest'),
    ('tag non-ASCII', {'image': 'r8.im/a:vé'}, "has a malformed tag 'vé'"),
    ('tag 129 characters', {'image': 'r8.im/a:' + 'v' * 129}, 'has a malformed tag'),
    ('tag starts with a dot', {'image': 'r8.im/a:.x'}, "has a malformed tag '.x'"),
    ('tag 128 characters', {'image': 'r8.im/a:' + 'v' * 128}, None),
    ('path ends with a dash', {'image': 'r8.im/meta/llama-'}, "invalid repository path component 'llama-'"),
    ('path two dots', {'image': 'r8.im/a..b'}, "invalid repository path component 'a..b'"),
    ('path NUL', {'image': 'r8.im/a\x00'}, "invalid repository path component 'a\\x00'"),
    ('path non-ASCII digit', {'image': 'r8.im/llama٣'}, "invalid repository path component 'llama٣'"),
    ('registry underscore', {'image': 'my_reg.lan/a'}, "has an invalid registry host 'my_reg.lan'"),
    ('registry port not a number', {'image': 'reg.lan:50a0/a'}, "has an invalid registry host 'reg.lan:50a0'"),
    ('registry leading dash', {'image': '-reg.lan/a'}, "has an invalid registry host '-reg.lan'"),
    ('registry IPv6 with port', {'image': '[::1]:5000/cog-demo@' + DIGEST}, None),
    ('name of 256 characters', {'image': 'r8.im/' + 'a' * 250}, 'has a name of 256 characters, more than the 255'),
    # GPUs
    ('GPU UUID trailing newline', {'gpus': [UUID + '\n']}, None),  # stripped: docker gets the UUID alone
    ('GPU UUID with a space inside', {'gpus': ['GPU-5a0e 2c1d']}, "has 'GPU-5a0e 2c1d', which is neither"),
    ('GPU UUID with a comma', {'gpus': 'GPU-5a0e,x'}, "has 'x', which is neither"),
    ('GPU UUID non-ASCII', {'gpus': ['GPU-5a0é']}, "has 'GPU-5a0é', which is neither"),
    ('GPU index superscript', {'gpus': ['\u00b2']},
     "models[0] (llama_tiny).gpus ['\u00b2'] has '\u00b2', which is neither a GPU index (0, 1, ...) nor a GPU UUID "
     '(GPU-...); write a GPU index in the digits 0-9'),
    ('GPU index of 5000 digits', {'gpus': ['7' * 5000]}, "which is too large for a GPU index (0, 1, ... up to 9999)"),
    # shm size (docker run --shm-size)
    ('shm trailing newline', {'shm_size': '6g\n'}, "shm_size '6g\\n' is not a size such as 6g or 512m"),
    ('shm with a space', {'shm_size': '6 g'}, "shm_size '6 g' is not a size"),
    ('shm decimal', {'shm_size': '1.5g'}, "shm_size '1.5g' is not a size"),
    ('shm non-ASCII digit', {'shm_size': '６g'}, "shm_size '６g' is not a size"),
    ('shm negative', {'shm_size': '-1g'}, "shm_size '-1g' is not a size"),
    ('shm zero', {'shm_size': '0'}, "shm_size '0' is 0, which Docker reads as its default of 64m"),
    ('shm too large', {'shm_size': '9' * 20 + 'g'}, 'is larger than Docker can take (8 EiB)'),
    # int() raised ValueError (more than 4300 digits): judged by length, the value quoted only in part.
    ('shm 5000 digits', {'shm_size': '9' * 5000 + 'g'},
     "shm_size '" + '9' * 59 + '... (5003 characters) is larger than Docker can take (8 EiB)'),
    ('shm 5000 digits in bytes', {'shm_size': '1' * 5000}, 'is larger than Docker can take (8 EiB)'),
    ('shm leading zeros', {'shm_size': '0' * 5000 + '6g'}, None),
    ('shm the most Docker takes', {'shm_size': str(2 ** 63 - 1)}, None),
    ('shm one byte more', {'shm_size': str(2 ** 63)}, 'is larger than Docker can take (8 EiB)'),
    ('shm 8 EiB in g', {'shm_size': '8589934592g'}, 'is larger than Docker can take (8 EiB)'),
    ('shm zero in g', {'shm_size': '000g'}, "is 0, which Docker reads as its default of 64m"),
    ('shm 512m', {'shm_size': '512m'}, None),
    ('shm bytes', {'shm_size': '67108864'}, None),
    # bind address (docker run --publish ADDRESS:port:5000 takes an IP literal only)
    ('bind localhost', {'bind_address': 'localhost'}, "bind_address 'localhost' is not an IP address: Docker "
                                                      'publishes a port on an IP address only'),
    ('bind host name', {'bind_address': 'gpu-box.lan'}, "bind_address 'gpu-box.lan' is not an IP address"),
    ('bind trailing newline', {'bind_address': '127.0.0.1\n'}, "bind_address '127.0.0.1\\n' is not an IP address"),
    ('bind with a port', {'bind_address': '127.0.0.1:5000'}, "bind_address '127.0.0.1:5000' is not an IP address"),
    ('bind IPv6 in brackets', {'bind_address': '[::1]'}, "bind_address '[::1]' is not an IP address"),
    ('bind leading zeros', {'bind_address': '127.000.000.001'}, 'is not an IP address'),
    ('bind empty', {'bind_address': ''}, "bind_address '' is not an IP address"),
    ('bind IPv6 zone', {'bind_address': 'fe80::1%eth0'}, "bind_address 'fe80::1%eth0' has a zone (%eth0)"),
    ('bind IPv6 loopback', {'bind_address': '::1'}, None),
    ('bind every IPv6 interface', {'bind_address': '::'}, None),
    ('bind a LAN address', {'bind_address': '192.168.0.16'}, None),
    # environment
    ('env name trailing newline', {'env': {'HF_HOME\n': '/data'}}, "env has an invalid variable name 'HF_HOME\\n'"),
    ('env name empty', {'env': {'': 'x'}}, "env has an invalid variable name ''"),
    ('env name NUL', {'env': {'A\x00': 'x'}}, "env has an invalid variable name 'A\\x00'"),
    ('env name with =', {'env': {'A=B': 'x'}}, "env has an invalid variable name 'A=B'"),
    ('env value NUL', {'env': {'A': 'x\x00y'}}, 'env A has a NUL character in its value'),
    ('env name with a dash', {'env': {'my-var': 'x'}}, None),
    ('env value with a newline', {'env': {'A': 'line1\nline2'}}, None),
    # numbers
    ('readiness 0', {'readiness_timeout': 0}, 'readiness_timeout 0 must be a positive number of seconds, at most '
                                              '86400 (a day): how long to wait for READY after a start'),
    ('readiness negative', {'readiness_timeout': -5}, 'readiness_timeout -5 must be a positive number'),
    ('readiness over a day', {'readiness_timeout': 86401}, 'readiness_timeout 86401 must be a positive number'),
    ('readiness a day', {'readiness_timeout': 86400}, None),
    ('port 0', {'port': 0}, 'port 0 is outside 1-65535'),
    ('port negative', {'port': -1}, 'port -1 is outside 1-65535'),
]


@pytest.mark.parametrize('fields, message', [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_validate_models_refuses_what_docker_refuses(fields, message):
    errors = _cog.validate_models([model(**fields)])
    if message is None:
        assert errors == []
    else:
        assert len(errors) == 1, errors
        assert message in errors[0]


@pytest.mark.parametrize('value, error', [
    ('0.0.0.0', None), ('127.0.0.1', None), ('::', None), ('::ffff:127.0.0.1', None),
    ('localhost', 'is not an IP address'), (None, 'is not an IP address'), (3232235521, None)])
def test_bind_address_error(value, error):
    # An int is an address to the ipaddress module: the module's argument spec makes every value a str first.
    got = _cog.bind_address_error(value)
    assert (got is None) if error is None else (error in got)


REGISTRY_AUTHS = [
    ('valid', {'registry': 'r8.im', 'username': 'lab', 'password': 'S3cr-et'}, []),
    ('registry with port', {'registry': '127.0.0.1:5000', 'username': 'lab', 'password': 'S3cr-et'}, []),
    ('registry with scheme', {'registry': 'https://r8.im', 'username': 'lab', 'password': 'S3cr-et'},
     ["registry_auths[0].registry 'https://r8.im' is not a registry host such as r8.im or 127.0.0.1:5000"]),
    ('registry trailing newline', {'registry': 'r8.im\n', 'username': 'lab', 'password': 'S3cr-et'},
     ["registry_auths[0].registry 'r8.im\\n' is not a registry host"]),
    ('username with a colon', {'registry': 'r8.im', 'username': 'la:b', 'password': 'S3cr-et'},
     ["registry_auths[0].username 'la:b' is not a user name that docker login takes"]),
    ('username trailing newline', {'registry': 'r8.im', 'username': 'lab\n', 'password': 'S3cr-et'},
     ["registry_auths[0].username 'lab\\n' is not a user name"]),
    ('username empty', {'registry': 'r8.im', 'username': '', 'password': 'S3cr-et'},
     ["registry_auths[0].username '' is not a user name"]),
    ('password empty', {'registry': 'r8.im', 'username': 'lab', 'password': ''}, ['registry_auths[0].password is empty']),
]


@pytest.mark.parametrize('auth, messages', [c[1:] for c in REGISTRY_AUTHS], ids=[c[0] for c in REGISTRY_AUTHS])
def test_registry_auth_errors(auth, messages):
    errors = _cog.registry_auth_errors([auth])
    assert len(errors) == len(messages), errors
    for error, message in zip(errors, messages):
        assert error.startswith(message)
        assert 'S3cr-et' not in error


def test_chat_prompt_refuses_an_unknown_format():
    with pytest.raises(ValueError, match="chat format 'seed' is not one of inst_lines, llama2"):
        _cog_chat.chat_prompt([{'role': 'user', 'content': 'Hi'}], 'seed')
