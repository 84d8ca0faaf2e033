# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tables over the plain parts of _registry. The registry client and the pre-flight are tested against a
stand-in registry in tests/unit/plugins/modules/test_cog_model_images.py."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.homelab.gpu.plugins.module_utils import _registry

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'cog')
DIGEST = 'sha256:' + 'a' * 64

with open(os.path.join(FIXTURES, 'openapi.json')) as _handle:
    SCHEMA_TEXT = _handle.read()

LOCATION = [
    ('replicate', 'r8.im/meta/llama-2-7b-chat@' + DIGEST,
     {'host': 'r8.im', 'repository': 'meta/llama-2-7b-chat', 'reference': DIGEST, 'scheme': 'https'}),
    ('lab registry over http', '127.0.0.1:5000/cog-demo@' + DIGEST,
     {'host': '127.0.0.1:5000', 'repository': 'cog-demo', 'reference': DIGEST, 'scheme': 'http'}),
    ('localhost with a tag', 'localhost:5000/a/b:v1',
     {'host': 'localhost:5000', 'repository': 'a/b', 'reference': 'v1', 'scheme': 'http'}),
    ('docker hub official image', 'ubuntu',
     {'host': 'registry-1.docker.io', 'repository': 'library/ubuntu', 'reference': 'latest', 'scheme': 'https'}),
    ('docker hub user image', 'r8/cog:1',
     {'host': 'registry-1.docker.io', 'repository': 'r8/cog', 'reference': '1', 'scheme': 'https'}),
    ('registry host with port', 'registry.lan:443/m@' + DIGEST,
     {'host': 'registry.lan:443', 'repository': 'm', 'reference': DIGEST, 'scheme': 'https'}),
]


@pytest.mark.parametrize('image, expected', [c[1:] for c in LOCATION], ids=[c[0] for c in LOCATION])
def test_location(image, expected):
    assert _registry.location(image) == expected


CHALLENGE = [
    ('docker hub', 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                   'scope="repository:library/ubuntu:pull"',
     ('bearer', {'realm': 'https://auth.docker.io/token', 'service': 'registry.docker.io',
                 'scope': 'repository:library/ubuntu:pull'})),
    ('basic', 'Basic realm="Registry Realm"', ('basic', {'realm': 'Registry Realm'})),
    ('empty', '', ('', {})),
    ('none', None, ('', {})),
]


@pytest.mark.parametrize('header, expected', [c[1:] for c in CHALLENGE], ids=[c[0] for c in CHALLENGE])
def test_parse_challenge(header, expected):
    assert _registry.parse_challenge(header) == expected


def test_pick_platform():
    index = {'manifests': [{'digest': 'arm', 'platform': {'os': 'linux', 'architecture': 'arm64'}},
                           {'digest': 'att', 'annotations': {'vnd.docker.reference.type': 'attestation-manifest'},
                            'platform': {'os': 'unknown', 'architecture': 'unknown'}},
                           {'digest': 'amd', 'platform': {'os': 'linux', 'architecture': 'amd64'}}]}
    assert _registry.pick_platform(index)['digest'] == 'amd'
    assert _registry.pick_platform({'manifests': index['manifests'][:2]}) is None


def test_image_size():
    manifest = {'config': {'size': 7023}, 'layers': [{'size': 32654}, {'size': 16724}, {'size': 'x'}, {}]}
    assert _registry.image_size(manifest) == 7023 + 32654 + 16724
    assert _registry.image_size({}) == 0


CUDA = [('12.1', (12, 1)), ('12.1.1', (12, 1)), ('cuda>=11.8 brand=tesla', (11, 8)), ('13.0', (13, 0)),
        ('', None), (None, None), ('twelve', None), (12.1, None)]


@pytest.mark.parametrize('text, expected', CUDA)
def test_parse_cuda(text, expected):
    assert _registry.parse_cuda(text) == expected


FACTS = [
    ('gpu image with build.cuda', {'Labels': {'run.cog.config': '{"build":{"gpu":true,"cuda":"12.1"}}',
                                              'run.cog.version': '0.23.1', 'run.cog.openapi_schema': '{}'}},
     {'cog_version': '0.23.1', 'gpu': True, 'cuda': '12.1', 'cuda_from': 'run.cog.config build.cuda',
      'schema': '{}'}),
    ('cuda from the base image environment', {'Labels': {'run.cog.config': '{"build":{"gpu":true}}'},
                                              'Env': ['PATH=/usr/bin', 'CUDA_VERSION=11.8.0']},
     {'cog_version': None, 'gpu': True, 'cuda': '11.8.0', 'cuda_from': 'CUDA_VERSION of the image',
      'schema': None}),
    ('cpu image', {'Labels': {'run.cog.config': '{"build":{"python_version":"3.11"}}'}},
     {'cog_version': None, 'gpu': False, 'cuda': None, 'cuda_from': None, 'schema': None}),
    ('not a cog image', {'Labels': None, 'Env': None},
     {'cog_version': None, 'gpu': None, 'cuda': None, 'cuda_from': None, 'schema': None}),
    ('broken config label', {'Labels': {'run.cog.config': '{"build"'}},
     {'cog_version': None, 'gpu': None, 'cuda': None, 'cuda_from': None, 'schema': None}),
    ('nothing', None, {'cog_version': None, 'gpu': None, 'cuda': None, 'cuda_from': None, 'schema': None}),
]


@pytest.mark.parametrize('config, expected', [c[1:] for c in FACTS], ids=[c[0] for c in FACTS])
def test_cog_facts(config, expected):
    assert _registry.cog_facts(config) == expected


DRIVER = [((11, 8), ('520', '520.61.05')), ((12, 4), ('550', '550.54.14')), ((12, 7), ('570', '570.26')),
          ((13, 0), ('580', '580.65.06')), ((13, 1), None), ((10, 2), ('450', '450.36.06'))]


@pytest.mark.parametrize('cuda, expected', DRIVER)
def test_driver_for(cuda, expected):
    assert _registry.driver_for(cuda) == expected


CUDA_PROBLEM = [
    ('newer than the driver', '12.8', '12.4', '550.163.01',
     'models[0] (m): image IMG needs CUDA 12.8, but the host driver 550.163.01 supports CUDA 12.4 at most: install '
     'driver branch 570 or newer (570.26 at least; nvidia_driver_branch: "570")'),
    ('past the table', '13.2', '13.0', '580.159.04',
     'models[0] (m): image IMG needs CUDA 13.2, but the host driver 580.159.04 supports CUDA 13.0 at most: install '
     'a driver branch newer than 580 whose nvidia-smi reports CUDA 13.2 or later'),
    ('same', '12.4', '12.4', '550.163.01', None),
    ('patch level does not count', '12.4.1', '12.4', '550.163.01', None),
    ('older', '11.8', '13.0', '580.159.04', None),
    ('unknown host', '12.1', None, None, None),
]


@pytest.mark.parametrize('need, have, driver, expected', [c[1:] for c in CUDA_PROBLEM],
                         ids=[c[0] for c in CUDA_PROBLEM])
def test_cuda_problem(need, have, driver, expected):
    assert _registry.cuda_problem('models[0] (m)', 'IMG', need, have, driver) == expected


GIB = 1 << 30
SPACE = [
    ('fits', 4 * GIB, 30 * GIB, None),
    ('exactly', 4 * GIB, 11 * GIB, None),
    ('too big', 20 * GIB, 40 * GIB,
     'models[0] (m): image IMG is 20.0 GiB compressed; pulling it needs about 51.0 GiB (2.5 times that, plus '
     '1.0 GiB), but /var/lib/docker has 40.0 GiB free'),
    ('free space unknown', 20 * GIB, None, None),
]


@pytest.mark.parametrize('size, free, expected', [c[1:] for c in SPACE], ids=[c[0] for c in SPACE])
def test_space_problem(size, free, expected):
    assert _registry.space_problem('models[0] (m)', 'IMG', size, free, '/var/lib/docker') == expected


def test_space_counts_the_images_pulled_before():
    assert _registry.space_problem('m', 'IMG', 4 * GIB, 30 * GIB, '/d', planned=19 * GIB) is None
    assert _registry.space_problem('m', 'IMG', 4 * GIB, 30 * GIB, '/d', planned=20 * GIB) == (
        'm: image IMG is 4.0 GiB compressed; pulling it needs about 11.0 GiB (2.5 times that, plus 1.0 GiB), but '
        '/d has 10.0 GiB free once the images before it are pulled')


SMOKE = [
    ('fits after conversion', {'prompt': 'hi', 'n': '8'}, 'coerce', []),
    ('unknown name', {'prompt': 'hi', 'max_tokens': 8}, 'coerce',
     ['models[0] (m).smoke_input does not fit the schema of image IMG: the model has no input max_tokens; its '
      'inputs are: prompt (string, required), n (integer, default 16), temperature (number, default 0.7), '
      'stream (boolean, default false), voice (string, one of "alto", "bass", "tenor", default "alto"), '
      'steps (integer, one of 1, 2, 4, 8, default 4), seed (integer)']),
    ('strict', {'prompt': 'hi', 'n': '8'}, 'strict',
     ['models[0] (m).smoke_input does not fit the schema of image IMG: input n: "8" is not an integer '
      '(the model declares integer)']),
    ('raw', {'max_tokens': 8}, 'raw', []),
    ('no smoke input', None, 'coerce', []),
]


@pytest.mark.parametrize('smoke, mode, expected', [c[1:] for c in SMOKE], ids=[c[0] for c in SMOKE])
def test_smoke_problems(smoke, mode, expected):
    assert _registry.smoke_problems('models[0] (m)', 'IMG', SCHEMA_TEXT, smoke, mode) == expected


def test_smoke_without_a_usable_schema():
    assert _registry.smoke_problems('m', 'IMG', None, {'x': 1}, 'coerce') == []
    assert _registry.smoke_problems('m', 'IMG', json.dumps({'openapi': '3.0.2'}), {'x': 1}, 'coerce') == []
