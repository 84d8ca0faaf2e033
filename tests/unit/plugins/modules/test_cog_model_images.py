# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cog_model's image checks before a pull, against the stand-in registry of registry_standin.py.

Docker is the in-memory engine of test_cog_model.py, plus ``docker info`` that names a temporary folder as
the data root, so that the free space is real. The host's GPU is the RTX 3050 fixture: driver 550.163.01,
CUDA 12.4.
"""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.homelab.gpu.plugins.module_utils import _registry
from ansible_collections.homelab.gpu.plugins.module_utils._common import CommandResult
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_deploy

import registry_standin as standin  # pylint: disable=import-error
from test_cog_model import docker  # noqa: F401  pylint: disable=unused-import,import-error
from test_cog_model import demo, run_module  # pylint: disable=import-error

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'cog')
MIB = 1 << 20
AUTHS = [{'registry': None, 'username': standin.USER, 'password': standin.PASSWORD}]

with open(os.path.join(FIXTURES, 'openapi.json')) as _handle:
    SCHEMA_TEXT = _handle.read()


def standin_images():
    """The cog images that the stand-in registry serves: what each needs, as cog writes it in the labels.

    The same refusals against a real registry (Debian's docker-registry) and real images are in the molecule
    scenario molecule/deploy (side_effect.yml).
    """
    return {
        'cog-ok': standin.cog_image([300 * MIB, 20 * MIB], build={'gpu': True, 'cuda': '12.1'}, schema=SCHEMA_TEXT),
        'cog-cuda13': standin.cog_image([300 * MIB], build={'gpu': True, 'cuda': '13.0'}),
        'cog-envcuda': standin.cog_image([300 * MIB], build={'gpu': True}, env=['CUDA_VERSION=12.8.1']),
        'cog-huge': standin.cog_image([1 << 50], build={'gpu': True, 'cuda': '13.0'}),
    }


def amd64_manifest(name):
    index_digest, manifests, _blobs = standin_images()[name]
    entry = _registry.pick_platform(json.loads(manifests[index_digest][1]))
    return json.loads(manifests[entry['digest']][1])


@pytest.fixture
def stand_in(docker, monkeypatch, tmp_path):  # noqa: F811  pylint: disable=redefined-outer-name
    """The stand-in registry (registry_standin.py) serving standin_images(), and the in-memory Docker."""
    built = standin_images()
    server, port = standin.start(dict((name, (m, b)) for name, (_d, m, b) in built.items()))
    refs = dict((name, '127.0.0.1:%d/%s@%s' % (port, name, d)) for name, (d, _m, _b) in built.items())
    for ref in refs.values():
        docker.registry[ref] = 'sha256:' + '3' * 64
    fake = _cog_deploy.run_command
    root = tmp_path / 'docker-root'
    root.mkdir()
    # docker info, as the engine of the host answers it: the data root is a real folder.
    monkeypatch.setattr(_cog_deploy, 'run_command', lambda module, argv, timeout=None, data=None: (
        CommandResult(0, str(root) + '\n', '', False) if argv[1:2] == ['info'] else fake(module, argv, timeout, data)))
    yield type('StandInRegistry', (), {'refs': refs, 'port': port, 'docker': docker, 'root': str(root),
                                       'auths': [dict(AUTHS[0], registry='127.0.0.1:%d' % port)]})
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize('check_mode', [False, True])
def test_image_that_fits_is_pulled_after_its_checks(capsys, stand_in, check_mode):
    result = run_module(capsys, {'models': [demo(image=stand_in.refs['cog-ok'])], 'registry_auths': stand_in.auths},
                        check_mode=check_mode)
    assert result.get('failed') is not True, result
    assert result['image_checks'] == [{'image': stand_in.refs['cog-ok'], 'source': 'registry',
                                       'size': _registry.image_size(amd64_manifest('cog-ok')), 'cuda': '12.1',
                                       'schema': True, 'note': None}]
    assert result['image_checks'][0]['size'] > 320 * MIB
    assert 'pulled ' + stand_in.refs['cog-ok'] in result['actions']
    paths = [p for p, _auth in standin.RegistryStandIn.log]
    # The challenge, the token, the index, the amd64 manifest, and the config blob through its redirect.
    assert paths[0].startswith('/v2/cog-ok/manifests/sha256:')
    assert paths[1].startswith('/token?') and 'scope=repository%3Acog-ok%3Apull' in paths[1]
    assert len(standin.blob_gets()) == 2
    assert all(auth is None for p, auth in standin.RegistryStandIn.log if p.startswith('/storage/'))


def test_token_is_used_after_the_challenge(capsys, stand_in):
    run_module(capsys, {'models': [demo(image=stand_in.refs['cog-ok'])], 'registry_auths': stand_in.auths})
    # Every registry request after the challenge carries the token.
    assert [a for p, a in standin.RegistryStandIn.log[2:] if p.startswith('/v2/')] == ['Bearer ' + standin.TOKEN] * 3


@pytest.mark.parametrize('check_mode', [False, True])
def test_newer_cuda_than_the_driver_is_refused_before_the_pull(capsys, stand_in, check_mode):
    result = run_module(capsys, {'models': [demo(image=stand_in.refs['cog-cuda13'])], 'registry_auths': stand_in.auths},
                        check_mode=check_mode)
    assert result['failed'] is True and result['changed'] is False
    assert result['msg'] == (
        'Pre-flight refused the model list: models[0] (demo_a): image %s needs CUDA 13.0, but the host driver '
        '550.163.01 supports CUDA 12.4 at most: install driver branch 580 or newer (580.65.06 at least; '
        'nvidia_driver_branch: "580")' % stand_in.refs['cog-cuda13'])
    assert stand_in.docker.mutating_calls() == []
    # The config blob only: no layer.
    assert [p.split('/')[-1] for p in standin.blob_gets()] == [standin_images()['cog-cuda13'][2].popitem()[0]] * 2


def test_cuda_from_the_image_environment(capsys, stand_in):
    result = run_module(capsys, {'models': [demo(image=stand_in.refs['cog-envcuda'])],
                                 'registry_auths': stand_in.auths})
    assert 'needs CUDA 12.8.1, but the host driver 550.163.01 supports CUDA 12.4 at most: install driver ' \
        'branch 570 or newer' in result['msg']


def test_cuda_is_not_checked_for_a_model_without_gpus(capsys, stand_in):
    result = run_module(capsys, {'models': [demo(image=stand_in.refs['cog-cuda13'], gpus='none', vram_mib=None)],
                                 'registry_auths': stand_in.auths})
    assert result['changed'] is True and result['image_checks'][0]['cuda'] == '13.0'


@pytest.mark.parametrize('check_mode', [False, True])
def test_too_big_for_the_disk_is_refused_before_any_blob(capsys, stand_in, check_mode):
    result = run_module(capsys, {'models': [demo(image=stand_in.refs['cog-huge'])], 'registry_auths': stand_in.auths},
                        check_mode=check_mode)
    assert result['failed'] is True
    assert ('Pre-flight refused the model list: models[0] (demo_a): image %s is 1048576.0 GiB compressed; '
            'pulling it needs about 2621441.0 GiB (2.5 times that, plus 1.0 GiB), but %s has '
            % (stand_in.refs['cog-huge'], stand_in.root)) in result['msg']
    assert standin.blob_gets() == []
    assert stand_in.docker.mutating_calls() == []


def test_smoke_input_checked_against_the_image_schema(capsys, stand_in):
    result = run_module(capsys, {'models': [demo(image=stand_in.refs['cog-ok'], smoke_input={'text': 'hi'})],
                                 'registry_auths': stand_in.auths}, check_mode=True)
    assert result['failed'] is True
    assert ('models[0] (demo_a).smoke_input does not fit the schema of image %s: the model has no input text; '
            'its inputs are: prompt (string, required)' % stand_in.refs['cog-ok']) in result['msg']
    assert result['msg'].endswith('.smoke_input does not fit the schema of image %s: required input prompt missing'
                                  % stand_in.refs['cog-ok'])


def test_every_refusal_at_once(capsys, stand_in):
    result = run_module(capsys, {'models': [demo(image=stand_in.refs['cog-cuda13']),
                                            demo('demo_b', 5002, image=stand_in.refs['cog-huge'])],
                                 'registry_auths': stand_in.auths})
    assert 'models[0] (demo_a): image %s needs CUDA 13.0' % stand_in.refs['cog-cuda13'] in result['msg']
    assert 'models[1] (demo_b): image %s is 1048576.0 GiB compressed' % stand_in.refs['cog-huge'] in result['msg']


def test_without_credentials_the_image_is_pulled_unchecked(capsys, stand_in):
    result = run_module(capsys, {'models': [demo(image=stand_in.refs['cog-cuda13'])]})
    note = result['image_checks'][0]['note']
    assert note.startswith('not checked before the pull: the token service http://127.0.0.1:%d/token refused '
                           '(HTTP 401); registry_auths has no credentials for 127.0.0.1:%d'
                           % (stand_in.port, stand_in.port))
    assert result['actions'][0] == 'pulled ' + stand_in.refs['cog-cuda13']


def test_unknown_manifest_is_left_to_the_pull(capsys, stand_in):
    ref = '127.0.0.1:%d/cog-ok@sha256:%s' % (stand_in.port, 'c' * 64)
    stand_in.docker.registry[ref] = 'sha256:' + '4' * 64
    result = run_module(capsys, {'models': [demo(image=ref)], 'registry_auths': stand_in.auths})
    assert 'MANIFEST_UNKNOWN' in result['image_checks'][0]['note']
    assert result['changed'] is True


def test_basic_auth_registry(capsys, stand_in):
    standin.RegistryStandIn.auth = 'basic'
    result = run_module(capsys, {'models': [demo(image=stand_in.refs['cog-cuda13'])], 'registry_auths': stand_in.auths})
    assert 'needs CUDA 13.0' in result['msg']


def test_present_image_is_checked_from_its_local_config(capsys, stand_in, monkeypatch):
    ref = stand_in.refs['cog-cuda13']
    stand_in.docker.images[ref] = 'sha256:' + '3' * 64
    config = {'Labels': {'run.cog.config': json.dumps({'build': {'gpu': True, 'cuda': '13.0'}})}}
    fake = _cog_deploy.run_command

    def run(module, argv, timeout=None, data=None):
        # docker image inspect without --format answers the full JSON, as the real CLI does.
        if argv[1:3] == ['image', 'inspect'] and '--format' not in argv:
            return CommandResult(0, json.dumps([{'Id': 'sha256:' + '3' * 64, 'Config': config}]), '', False)
        return fake(module, argv, timeout, data)

    monkeypatch.setattr(_cog_deploy, 'run_command', run)
    result = run_module(capsys, {'models': [demo(image=ref)], 'registry_auths': stand_in.auths})
    assert 'needs CUDA 13.0, but the host driver 550.163.01 supports CUDA 12.4 at most' in result['msg']
    assert standin.RegistryStandIn.log == []
