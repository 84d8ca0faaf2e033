# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""CDI or --gpus: docker info, CDI spec files, the choice of method and the device names."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.homelab.gpu.plugins.module_utils import _cdi
from ansible_collections.homelab.gpu.plugins.module_utils._common import CommandResult

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'cdi')
UUID0 = 'GPU-3f2a9c8e-4b1d-4e6f-8a2c-5d7e9f1b3c4a'
UUID1 = 'GPU-8c1e2d3f-5a6b-4c7d-9e8f-0a1b2c3d4e5f'
GPUS = [{'index': 0, 'uuid': UUID0}, {'index': 1, 'uuid': UUID1}]


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


@pytest.mark.parametrize('text, version, support', [
    ('24.0.7', (24, 0, 7), 'none'),
    ('25.0.0', (25, 0, 0), 'feature_flag'),
    ('26.1.5+dfsg1', (26, 1, 5), 'feature_flag'),
    ('27.5.1', (27, 5, 1), 'feature_flag'),
    ('28.0.0', (28, 0, 0), 'feature_flag'),
    ('28.1.1', (28, 1, 1), 'feature_flag'),
    ('28.2.0', (28, 2, 0), 'builtin'),
    ('28.5.2', (28, 5, 2), 'builtin'),
    ('29.1', (29, 1, 0), 'builtin'),
    ('', None, 'unknown'),
    (None, None, 'unknown'),
    ('dev', None, 'unknown'),
])
def test_versions(text, version, support):
    assert _cdi.version_tuple(text) == version
    assert _cdi.engine_cdi_support(text) == support


@pytest.mark.parametrize('name, expected', [
    ('docker-info-26.1.5-cdi.json', {'server_version': '26.1.5+dfsg1', 'cdi_spec_dirs': ['/etc/cdi', '/var/run/cdi'],
                                     'cdi_enabled': True, 'runtimes': ['io.containerd.runc.v2', 'runc'],
                                     'default_runtime': 'runc', 'docker_root_dir': '/var/lib/docker'}),
    ('docker-info-24.0.7-nvidia-runtime.json', {'server_version': '24.0.7', 'cdi_spec_dirs': [], 'cdi_enabled': False,
                                                'runtimes': ['io.containerd.runc.v2', 'nvidia', 'runc'],
                                                'default_runtime': 'runc', 'docker_root_dir': '/srv/docker'}),
    ('docker-info-27.5.1-cdi-off.json', {'server_version': '27.5.1', 'cdi_spec_dirs': [], 'cdi_enabled': False,
                                         'runtimes': ['runc'], 'default_runtime': 'runc',
                                         'docker_root_dir': '/var/lib/docker'}),
])
def test_parse_docker_info(name, expected):
    assert _cdi.parse_docker_info(fixture(name)) == expected


@pytest.mark.parametrize('text', ['', 'not json', '[1, 2]', 'null'])
def test_parse_docker_info_refuses(text):
    with pytest.raises(ValueError):
        _cdi.parse_docker_info(text)


def test_parse_spec_nvidia_ctk_layout():
    spec = _cdi.parse_spec(fixture('handmade-nvidia-ctk-layout-2gpu.yaml'), 'nvidia.yaml')
    assert spec == {'kind': 'nvidia.com/gpu', 'devices': ['0', '1', UUID0, UUID1, 'all']}


def test_parse_spec_standin_layout():
    spec = _cdi.parse_spec(fixture('lent-h100-standin-spec.yaml'), 'nvidia.yaml')
    assert spec == {'kind': 'nvidia.com/gpu', 'devices': ['0', 'all']}


@pytest.mark.parametrize('name', ['handmade-nvidia-ctk-layout-2gpu.yaml', 'lent-h100-standin-spec.yaml'])
def test_line_reader_agrees_with_yaml(name):
    """Hosts without PyYAML read the same kind and device names."""
    spec = _cdi.parse_spec(fixture(name), 'x.yaml')
    assert _cdi._parse_spec_lines(fixture(name)) == (spec['kind'], spec['devices'])


def test_parse_spec_json():
    text = '{"cdiVersion": "0.6.0", "kind": "nvidia.com/gpu", "devices": [{"name": "0"}, {"name": "all"}]}'
    assert _cdi.parse_spec(text, '/var/run/cdi/nvidia.json') == {'kind': 'nvidia.com/gpu', 'devices': ['0', 'all']}


@pytest.mark.parametrize('text, path, message', [
    ('{"kind": ', 'x.json', 'is not valid JSON'),
    ('kind: [unclosed', 'x.yaml', 'is not valid YAML'),
    ('- just\n- a list\n', 'x.yaml', 'is not a CDI spec'),
])
def test_parse_spec_refuses(text, path, message):
    with pytest.raises(ValueError, match=message):
        _cdi.parse_spec(text, path)


def test_nvidia_devices_merges_and_skips_other_kinds():
    specs = [('/etc/cdi/nvidia.yaml', {'kind': 'nvidia.com/gpu', 'devices': ['1', '0', 'all']}),
             ('/etc/cdi/other.yaml', {'kind': 'vendor.com/fpga', 'devices': ['0']}),
             ('/etc/cdi/broken.yaml', 'is not valid YAML (x)'),
             ('/var/run/cdi/nvidia.yaml', {'kind': 'nvidia.com/gpu', 'devices': [UUID0]})]
    assert _cdi.nvidia_devices(specs) == {
        'files': ['/etc/cdi/nvidia.yaml', '/var/run/cdi/nvidia.yaml'],
        'devices': ['0', '1', UUID0, 'all'],
        'errors': ['/etc/cdi/broken.yaml is not valid YAML (x)']}


CDI_ON = _cdi.parse_docker_info(fixture('docker-info-26.1.5-cdi.json'))
CDI_OFF = _cdi.parse_docker_info(fixture('docker-info-27.5.1-cdi-off.json'))
OLD = _cdi.parse_docker_info(fixture('docker-info-24.0.7-nvidia-runtime.json'))
SPEC = {'files': ['/etc/cdi/nvidia.yaml'], 'devices': ['0', 'all'], 'errors': []}
NO_SPEC = {'files': [], 'devices': [], 'errors': []}


@pytest.mark.parametrize('mode, info, devices, method, reason', [
    ('auto', CDI_ON, SPEC, 'cdi', 'Docker 26.1.5+dfsg1 has CDI enabled and /etc/cdi/nvidia.yaml offers nvidia.com/gpu '
                                  'devices 0, all'),
    ('auto', CDI_ON, NO_SPEC, 'gpus', 'Docker 26.1.5+dfsg1 has CDI enabled, but no spec in /etc/cdi, /var/run/cdi '
                                      'offers nvidia.com/gpu devices'),
    ('auto', CDI_OFF, SPEC, 'gpus', 'Docker 27.5.1 has CDI off'),
    ('auto', OLD, SPEC, 'gpus', 'Docker 24.0.7 has CDI support only from 25.0 on'),
    ('auto', None, SPEC, 'gpus', 'Docker unknown has CDI off'),
    ('gpus', CDI_ON, SPEC, 'gpus', 'gpu_request_mode is gpus'),
    ('cdi', CDI_ON, SPEC, 'cdi', 'Docker 26.1.5+dfsg1 has CDI enabled and /etc/cdi/nvidia.yaml offers nvidia.com/gpu '
                                 'devices 0, all'),
])
def test_choose_method(mode, info, devices, method, reason):
    assert _cdi.choose_method(mode, info, devices) == (method, reason)


@pytest.mark.parametrize('info, devices, message', [
    (OLD, SPEC, 'gpu_request_mode is cdi, but Docker 24.0.7 has no CDI support (it came in Docker 25.0): upgrade '
                'Docker Engine to 25 or later'),
    (CDI_OFF, SPEC, 'gpu_request_mode is cdi, but Docker 27.5.1 has CDI turned off: set "features": {"cdi": true} in '
                    '/etc/docker/daemon.json and restart Docker'),
    (CDI_ON, NO_SPEC, 'gpu_request_mode is cdi, but no CDI spec in /etc/cdi, /var/run/cdi offers nvidia.com/gpu '
                      'devices: generate one with "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml"'),
    (CDI_ON, dict(NO_SPEC, errors=['/etc/cdi/nvidia.yaml is not valid YAML (x)']),
     'offers nvidia.com/gpu devices (/etc/cdi/nvidia.yaml is not valid YAML (x)): generate one'),
])
def test_choose_method_cdi_refuses_with_what_to_do(info, devices, message):
    method, error = _cdi.choose_method('cdi', info, devices)
    assert method is None
    assert message in error


@pytest.mark.parametrize('request_, matched, devices, names', [
    ('all', GPUS, ['0', '1', 'all'], ['all']),
    ('all', GPUS, ['0', '1'], ['0', '1']),
    (['1'], [GPUS[1]], ['0', '1', 'all'], ['1']),
    ([UUID1], [GPUS[1]], ['0', '1', 'all'], ['1']),
    ([UUID0], [GPUS[0]], [UUID0, UUID1, 'all'], [UUID0]),
    (['0', '1'], GPUS, ['0', '1'], ['0', '1']),
    ('none', [], ['0'], []),
])
def test_cdi_device_names(request_, matched, devices, names):
    assert _cdi.cdi_device_names(request_, matched, devices) == names


def test_cdi_device_names_missing_gpu():
    with pytest.raises(ValueError) as err:
        _cdi.cdi_device_names(['1'], [GPUS[1]], ['0', 'all'])
    assert str(err.value) == ('no CDI device for GPU 1 (%s): the nvidia.com/gpu spec offers 0, all; regenerate it '
                              'with nvidia-ctk cdi generate after a driver or GPU change' % UUID1)


def test_device_args():
    assert _cdi.device_args(['0', UUID1]) == ['--device', 'nvidia.com/gpu=0', '--device', 'nvidia.com/gpu=' + UUID1]


@pytest.mark.parametrize('info, devices, daemon, ok', [
    (CDI_ON, SPEC, None, True),          # CDI-only host: no nvidia runtime, and that is fine
    (CDI_ON, NO_SPEC, None, False),
    (CDI_OFF, SPEC, None, False),
    (OLD, NO_SPEC, None, True),          # runtime registered
    (None, NO_SPEC, ['nvidia'], True),   # docker info unreadable, daemon.json says so
    (None, NO_SPEC, [], False),
])
def test_gpu_access_ok(info, devices, daemon, ok):
    assert _cdi.gpu_access_ok(info, devices, daemon) is ok


def test_read_specs_and_probe(tmp_path):
    (tmp_path / 'nvidia.yaml').write_text(fixture('handmade-nvidia-ctk-layout-2gpu.yaml'))
    (tmp_path / 'notes.txt').write_text('not a spec')
    (tmp_path / 'bad.json').write_text('{')
    calls = []

    def run(argv, timeout):
        calls.append(argv)
        info = fixture('docker-info-26.1.5-cdi.json').replace('["/etc/cdi","/var/run/cdi"]', '["%s"]' % tmp_path)
        return CommandResult(0, info, '', False)

    found = _cdi.probe(run, '/usr/bin/docker')
    assert calls == [['/usr/bin/docker', 'info', '--format', '{{json .}}']]
    assert found['error'] is None
    assert found['devices'] == {'files': [str(tmp_path / 'nvidia.yaml')], 'devices': ['0', '1', UUID0, UUID1, 'all'],
                                'errors': ['%s is not valid JSON' % (tmp_path / 'bad.json')]}


def test_probe_when_docker_does_not_answer(tmp_path):
    def run(argv, timeout):
        return CommandResult(1, '', 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.', False)

    found = _cdi.probe(run, 'docker')
    assert found['info'] is None
    assert found['error'].startswith('docker info failed (rc=1): Cannot connect to the Docker daemon')


WANT = {'driver_version': '580.95.05', 'gpus': [UUID1, UUID0], 'spec': '/etc/cdi/nvidia.yaml'}
NOTE = json.dumps({'driver_version': '580.95.05', 'gpus': sorted([UUID0, UUID1]), 'spec': '/etc/cdi/nvidia.yaml'})


@pytest.mark.parametrize('spec_exists, note, reason', [
    (True, NOTE, ''),
    (True, NOTE.replace('580.95.05', '570.172.08'), 'written for driver 570.172.08, the host runs 580.95.05'),
    (True, json.dumps({'driver_version': '580.95.05', 'gpus': [UUID0], 'spec': '/etc/cdi/nvidia.yaml'}),
     'written for another GPU set'),
    (True, json.dumps({'driver_version': '580.95.05', 'gpus': [UUID0, UUID1, 'GPU-0000'],
                       'spec': '/etc/cdi/nvidia.yaml'}), 'written for another GPU set'),
    (True, NOTE.replace('/etc/cdi/nvidia.yaml', '/var/run/cdi/nvidia.yaml'), 'written for another spec path'),
    (True, '', 'no note of what it was written for'),
    (True, None, 'no note of what it was written for'),
    (True, '{"driver_version": ', 'its note is not JSON'),
    (True, '["580.95.05"]', 'its note is not JSON'),
    (False, NOTE, 'missing'),
    (False, '', 'missing'),
])
def test_spec_todo(spec_exists, note, reason):
    assert _cdi.spec_todo(WANT, spec_exists, note) == reason


def test_spec_todo_filter():
    from ansible.errors import AnsibleFilterError
    from ansible_collections.homelab.gpu.plugins.filter import host_todo as flt
    todo = flt.FilterModule().filters()['cdi_spec_todo']
    assert todo(WANT, True, NOTE) == ''
    assert todo(WANT, 'yes', None) == 'no note of what it was written for'
    with pytest.raises(AnsibleFilterError, match='cdi_spec_todo: the input must be a dict'):
        todo(['580.95.05'], True, NOTE)
