# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fault cases of docs/RELIABILITY.md at module level: Docker down, registry down, login refused. Each one must
fail clearly, change nothing on the host (no stop, rm, rename or run) and never show the registry password.
The in-memory Docker engine and cog server are those of tests/unit/plugins/modules/test_cog_model.py."""

from __future__ import annotations

import json

from ansible_collections.homelab.gpu.plugins.module_utils._common import CommandResult
from ansible_collections.homelab.gpu.tests.unit.plugins.modules.test_cog_model import IMAGE2, demo, run_module
# The fixture of the in-memory Docker engine; pytest finds it by name in this module.
from ansible_collections.homelab.gpu.tests.unit.plugins.modules.test_cog_model import docker  # noqa: F401 pylint: disable=unused-import

TOKEN = 'rel-unit-token-93b1'
AUTHS = [{'registry': '127.0.0.1:5000', 'username': 'lab', 'password': TOKEN}]


def deployed(capsys, docker):
    """demo_a running from IMAGE, logged in with TOKEN; the calls so far are forgotten."""
    run_module(capsys, {'models': [demo()], 'registry_auths': AUTHS})
    docker.calls = []
    return dict(docker.containers['demo_a'])


def test_docker_daemon_down_says_so_and_what_to_do(capsys, docker, monkeypatch):
    down = ('Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?')
    real = docker.__class__.__call__

    def call(self, module, argv, timeout=None, data=None):
        if argv[1:2] == ['ps']:
            return CommandResult(1, '', down, False)
        return real(self, module, argv, timeout, data)

    monkeypatch.setattr(docker.__class__, '__call__', call)
    result = run_module(capsys, {'models': [demo()], 'registry_auths': AUTHS})
    assert result['msg'] == (
        'Cannot list containers: docker ps failed (rc=1): %s Nothing was changed: start Docker (systemctl start '
        'docker) or run the homelab.gpu.docker role (playbook homelab.gpu.provision), which starts it, then '
        're-run.' % down)
    assert result['changed'] is False
    assert docker.mutating_calls() == []
    assert TOKEN not in json.dumps(result)


def test_registry_unreachable_leaves_the_running_model_alone(capsys, docker):
    before = deployed(capsys, docker)
    unreachable = '127.0.0.1:5999/cog-demo@sha256:' + 'c' * 64
    result = run_module(capsys, {'models': [demo(image=unreachable)], 'registry_auths': AUTHS})
    assert result['failed'] is True
    assert result['msg'] == 'docker pull %s failed (rc=1): manifest unknown' % unreachable
    assert [call for call in docker.mutating_calls() if call[0] != 'pull'] == []
    assert docker.containers['demo_a'] == before


def test_login_refused_leaves_the_running_model_alone(capsys, docker, monkeypatch):
    before = deployed(capsys, docker)
    real = docker.__class__.__call__

    def call(self, module, argv, timeout=None, data=None):
        if argv[1:2] == ['login']:
            self.calls.append((list(argv[1:]), data))
            return CommandResult(1, '', 'Error response from daemon: Get "http://127.0.0.1:5000/v2/": unauthorized: '
                                        'authentication required', False)
        return real(self, module, argv, timeout, data)

    monkeypatch.setattr(docker.__class__, '__call__', call)
    wrong = [dict(AUTHS[0], password='rel-unit-wrong-5d2e')]
    result = run_module(capsys, {'models': [demo(image=IMAGE2)], 'registry_auths': wrong})
    assert result['msg'].startswith('docker login to 127.0.0.1:5000 failed (rc=1): Error response from daemon')
    assert 'unauthorized' in result['msg']
    assert [call[0][0] for call in docker.calls if call[0][0] in ('login', 'pull', 'run', 'stop', 'rm', 'rename')] \
        == ['login']
    assert docker.containers['demo_a'] == before
    assert result['changed'] is False and result['actions'] == []
    out = json.dumps(result)
    assert 'rel-unit-wrong-5d2e' not in out and TOKEN not in out


def test_password_never_in_the_result_even_on_a_failed_start(capsys, docker):
    deployed(capsys, docker)
    result = run_module(capsys, {'models': [demo(env={'GREETING': 'x', 'FAIL_SETUP': '1'})],
                                 'registry_auths': AUTHS})
    assert result['failed'] is True
    assert 'serves again (READY)' in result['msg']
    assert TOKEN not in json.dumps(result)
