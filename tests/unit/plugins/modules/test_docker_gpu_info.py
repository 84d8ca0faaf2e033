# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole-module tests of docker_gpu_info with docker info answers patched in and real spec files on disk."""

from __future__ import annotations

import json
import os

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.gpu.plugins.module_utils._common import CommandResult
from ansible_collections.homelab.gpu.plugins.modules import docker_gpu_info

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'cdi')


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def run_module(monkeypatch, capsys, args, answer, docker='/usr/bin/docker'):
    calls = []

    def fake_run(module, argv, timeout=None, data=None):
        calls.append(argv)
        return answer

    monkeypatch.setattr(docker_gpu_info, 'run_command', fake_run)
    monkeypatch.setattr(docker_gpu_info.AnsibleModule, 'get_bin_path', lambda self, name, *a, **k: docker)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            docker_gpu_info.main()
    return json.loads(capsys.readouterr().out), calls


def info_with_dirs(name, dirs):
    data = json.loads(fixture(name))
    data['CDISpecDirs'] = dirs
    return CommandResult(0, json.dumps(data), '', False)


def test_cdi_host(monkeypatch, capsys, tmp_path):
    (tmp_path / 'nvidia.yaml').write_text(fixture('lent-h100-standin-spec.yaml'))
    result, calls = run_module(monkeypatch, capsys, {}, info_with_dirs('docker-info-26.1.5-cdi.json', [str(tmp_path)]))
    assert calls == [['/usr/bin/docker', 'info', '--format', '{{json .}}']]
    assert result['changed'] is False
    assert result['docker_answers'] is True
    assert result['server_version'] == '26.1.5+dfsg1'
    assert result['cdi_support'] == 'feature_flag' and result['cdi_enabled'] is True
    assert result['nvidia_cdi_specs'] == [str(tmp_path / 'nvidia.yaml')]
    assert result['nvidia_cdi_devices'] == ['0', 'all']
    assert result['gpu_access'] is True
    assert result['method'] == 'cdi'
    assert result['run_args_all'] == ['--device', 'nvidia.com/gpu=all']


def test_spec_without_all_lists_each_index(monkeypatch, capsys, tmp_path):
    (tmp_path / 'nvidia.yaml').write_text(fixture('lent-h100-standin-spec.yaml').replace('- name: all', '- name: "1"'))
    result, dummy = run_module(monkeypatch, capsys, {}, info_with_dirs('docker-info-26.1.5-cdi.json', [str(tmp_path)]))
    assert result['run_args_all'] == ['--device', 'nvidia.com/gpu=0', '--device', 'nvidia.com/gpu=1']


def test_runtime_host_uses_gpus(monkeypatch, capsys):
    result, dummy = run_module(monkeypatch, capsys, {}, CommandResult(0, fixture('docker-info-24.0.7-nvidia-runtime.json'),
                                                                      '', False))
    assert result['method'] == 'gpus' and result['run_args_all'] == ['--gpus', 'all']
    assert result['cdi_support'] == 'none' and result['gpu_access'] is True
    assert result['reason'] == 'Docker 24.0.7 has CDI support only from 25.0 on'


def test_cdi_asked_for_but_off(monkeypatch, capsys):
    result, dummy = run_module(monkeypatch, capsys, {'gpu_request_mode': 'cdi'},
                               CommandResult(0, fixture('docker-info-27.5.1-cdi-off.json'), '', False))
    assert result['method'] is None and result['run_args_all'] == []
    assert result['reason'].startswith('gpu_request_mode is cdi, but Docker 27.5.1 has CDI turned off')
    assert result['gpu_access'] is False


def test_docker_down_is_a_result(monkeypatch, capsys):
    result, dummy = run_module(monkeypatch, capsys, {}, CommandResult(
        1, '', 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?', False))
    assert result['docker_answers'] is False and result['method'] is None
    assert result['message'].startswith('docker info failed (rc=1): Cannot connect to the Docker daemon')


def test_docker_not_installed(monkeypatch, capsys):
    result, calls = run_module(monkeypatch, capsys, {}, None, docker=None)
    assert calls == []
    assert result['message'] == 'the docker CLI is not installed: run the homelab.gpu.docker role'
