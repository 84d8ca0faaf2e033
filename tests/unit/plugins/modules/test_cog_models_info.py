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


def run_module(monkeypatch, args, answers):
    calls = []

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
    assert len(calls) == 2


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
