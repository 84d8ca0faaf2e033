# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole-module tests of cog_models_info: docker answers are patched in, health comes from a stand-in
cog server on the loopback that answers like coglet 0.23.1."""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.gpu.plugins.module_utils._common import CommandResult
from ansible_collections.homelab.gpu.plugins.modules import cog_models_info

DIGEST = 'sha256:' + '8e6975e5ed6174911a6ff3d60540dfd4844201974602551e10e9e87ab143d81e'


class HealthStandIn(BaseHTTPRequestHandler):
    """Answers GET /health-check like coglet: always 200, the state in the body."""
    status = 'READY'

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = {'status': type(self).status,
                'setup': {'status': 'failed' if type(self).status == 'SETUP_FAILED' else 'succeeded',
                          'logs': 'loading weights\nCUDA out of memory\n', 'completed_at': '2026-11-27T09:00:01Z'}}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def cog(serve_loopback):
    return serve_loopback(HealthStandIn)


def inspect_entry(name, port, running=True, managed=True, image='127.0.0.1:5000/cog-demo@' + DIGEST):
    started = time.strftime('%Y-%m-%dT%H:%M:%S.000000000Z', time.gmtime(time.time() - 3725))
    return {
        'Id': name * 4, 'Name': '/' + name, 'Image': 'sha256:' + 'b' * 64, 'RestartCount': 1,
        'State': {'Status': 'running' if running else 'exited', 'Running': running, 'ExitCode': 0, 'Pid': 42,
                  'StartedAt': started},
        'HostConfig': {'PortBindings': {'5000/tcp': [{'HostIp': '127.0.0.1', 'HostPort': str(port)}]}},
        'Config': {'Image': image, 'Labels': {'homelab.gpu.managed': 'true' if managed else 'false',
                                              'homelab.gpu.gpus': 'GPU-1'}},
    }


DOCKER_INFO = CommandResult(0, json.dumps({'ServerVersion': '26.1.5', 'CDISpecDirs': [],
                                           'Runtimes': {'runc': {}, 'nvidia': {}}}), '', False)
NO_GPU = {'state': 'not_installed', 'gpus': []}


def run_module(monkeypatch, args, answers):
    calls = []
    answers = dict(answers)
    answers.setdefault('info', DOCKER_INFO)
    args = dict(args)
    args.setdefault('gpu_info', NO_GPU)

    def fake_run(module, argv, timeout=None, data=None):
        calls.append(argv)
        return answers[argv[1]]

    monkeypatch.setattr(cog_models_info, 'run_command', fake_run)
    monkeypatch.setattr(cog_models_info.AnsibleModule, 'get_bin_path', lambda self, name, *a, **k: '/usr/bin/docker')
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            cog_models_info.main()
    return calls


def result_of(capsys):
    return json.loads(capsys.readouterr().out)


def test_reports_models_with_health_and_uptime(monkeypatch, capsys, cog):
    HealthStandIn.status = 'READY'
    entries = [inspect_entry('llama_tiny', cog), inspect_entry('whisper', cog, running=False),
               inspect_entry('llama_tiny.previous', cog, running=False)]
    calls = run_module(monkeypatch, {}, {
        'ps': CommandResult(0, '\n'.join(e['Id'] for e in entries), '', False),
        'container': CommandResult(0, json.dumps(entries), '', False),
    })
    result = result_of(capsys)
    assert result['changed'] is False and result['docker_answers'] is True
    assert [m['name'] for m in result['models']] == ['llama_tiny', 'whisper']
    llama, whisper = result['models']
    assert llama['health'] == 'READY' and llama['port'] == cog and llama['image_digest'] == DIGEST
    assert 3720 <= llama['uptime_s'] <= 3735
    assert whisper['health'] is None and whisper['uptime_s'] is None and whisper['state'] == 'exited'
    # One ps filtered on the managed label, one inspect for all of them.
    assert calls[0][1:] == ['ps', '--all', '--quiet', '--no-trunc', '--filter', 'label=homelab.gpu.managed=true']
    # Then docker info, for how Docker hands out GPUs.
    assert calls[2][1:] == ['info', '--format', '{{json .}}']
    assert len(calls) == 3
    assert result['docker'] == {'server_version': '26.1.5', 'data_root': None, 'data_root_free_mib': None,
                                'cdi_enabled': False, 'cdi_spec_dirs': [],
                                'nvidia_cdi_devices': [], 'nvidia_cdi_specs': [],
                                'runtimes': ['nvidia', 'runc'], 'gpu_access': True}


def test_setup_failed_carries_the_logs(monkeypatch, capsys, cog):
    HealthStandIn.status = 'SETUP_FAILED'
    entries = [inspect_entry('big', cog)]
    run_module(monkeypatch, {}, {
        'ps': CommandResult(0, entries[0]['Id'], '', False),
        'container': CommandResult(0, json.dumps(entries), '', False),
    })
    model = result_of(capsys)['models'][0]
    assert model['health'] == 'SETUP_FAILED'
    assert model['setup_logs_tail'] == 'loading weights\nCUDA out of memory'


def test_unreachable_model(monkeypatch, capsys):
    entries = [inspect_entry('gone', 1)]  # nothing listens on port 1
    run_module(monkeypatch, {'health_timeout': 0.5}, {
        'ps': CommandResult(0, entries[0]['Id'], '', False),
        'container': CommandResult(0, json.dumps(entries), '', False),
    })
    model = result_of(capsys)['models'][0]
    assert model['health'] == 'UNREACHABLE'
    assert model['health_error']


def test_docker_not_answering_is_a_result_not_a_failure(monkeypatch, capsys):
    run_module(monkeypatch, {}, {
        'ps': CommandResult(1, '', 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.', False),
    })
    result = result_of(capsys)
    assert result.get('failed') is None
    assert result['docker_answers'] is False and result['models'] == []
    assert 'Cannot connect to the Docker daemon' in result['message']


def test_names_filter(monkeypatch, capsys, cog):
    HealthStandIn.status = 'READY'
    entries = [inspect_entry('a', cog), inspect_entry('b', cog)]
    run_module(monkeypatch, {'names': ['b']}, {
        'ps': CommandResult(0, 'x', '', False),
        'container': CommandResult(0, json.dumps(entries), '', False),
    })
    assert [m['name'] for m in result_of(capsys)['models']] == ['b']


def test_gpu_memory_per_model_and_other_processes(monkeypatch, capsys, cog):
    HealthStandIn.status = 'READY'
    entries = [inspect_entry('llama_tiny', cog), inspect_entry('whisper', cog, running=False)]
    llama_id, whisper_id = entries[0]['Id'], entries[1]['Id']
    gpu_info = {'state': 'ok', 'gpus': [{'index': 0, 'uuid': 'GPU-1', 'processes': [
        {'pid': 5638, 'name': 'python', 'used_memory_mib': 4616},
        {'pid': 2211, 'name': '/usr/lib/xorg/Xorg', 'used_memory_mib': 120}]}]}
    # The worker's cgroup names the llama_tiny container (ids in the stand-in inspect are not 64 hex: use real ones).
    llama_full = 'd' * 64
    entries[0]['Id'] = llama_full
    monkeypatch.setattr(cog_models_info._gpu_procs, 'read_cgroups', lambda pids: {
        5638: '0::/docker/%s\n' % llama_full, 2211: '0::/user.slice/user-1000.slice/session-2.scope\n'})
    run_module(monkeypatch, {'gpu_info': gpu_info}, {
        'ps': CommandResult(0, llama_full + '\n' + whisper_id, '', False),
        'container': CommandResult(0, json.dumps(entries), '', False),
    })
    result = result_of(capsys)
    llama, whisper = result['models']
    assert llama['gpu_memory'] == [{'gpu_index': 0, 'gpu_uuid': 'GPU-1', 'used_mib': 4616, 'pids': [5638]}]
    assert llama['gpu_memory_mib'] == 4616
    assert whisper['gpu_memory'] == [] and whisper['gpu_memory_mib'] == 0
    assert result['other_gpu_processes'] == [{'gpu_index': 0, 'gpu_uuid': 'GPU-1', 'pid': 2211,
                                              'name': '/usr/lib/xorg/Xorg', 'used_mib': 120, 'container_id': None}]
    assert result['gpu_probe_state'] == 'ok'
    assert llama_id != llama_full


def test_cdi_only_host_has_gpu_access(monkeypatch, capsys, tmp_path):
    (tmp_path / 'nvidia.yaml').write_text('cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: "0"\n'
                                          '  containerEdits: {deviceNodes: [{path: /dev/nvidia0}]}\n')
    info = CommandResult(0, json.dumps({'ServerVersion': '26.1.5', 'CDISpecDirs': [str(tmp_path)],
                                        'Runtimes': {'runc': {}}}), '', False)
    run_module(monkeypatch, {}, {'ps': CommandResult(0, '', '', False), 'info': info})
    result = result_of(capsys)
    assert result['docker']['gpu_access'] is True
    assert result['docker']['nvidia_cdi_devices'] == ['0']
    assert result['docker']['runtimes'] == ['runc']


def test_free_disk_under_the_data_root(monkeypatch, capsys, tmp_path):
    info = CommandResult(0, json.dumps({'ServerVersion': '26.1.5', 'DockerRootDir': str(tmp_path)}), '', False)
    run_module(monkeypatch, {}, {'ps': CommandResult(0, '', '', False), 'info': info})
    docker = result_of(capsys)['docker']
    assert docker['data_root'] == str(tmp_path)
    assert isinstance(docker['data_root_free_mib'], int) and docker['data_root_free_mib'] > 0
