# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole-module tests of cog_model_logs, with docker's answers patched in."""

from __future__ import annotations

import json

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.gpu.plugins.module_utils._common import CommandResult
from ansible_collections.homelab.gpu.plugins.modules import cog_model_logs

PS = CommandResult(0, 'demo_a\ndemo_b\ndemo_a.previous\n', '', False)
LOGS = CommandResult(0, '2026-11-28T04:20:01.1Z demo setup: done\n', '2026-11-28T04:20:01.0Z INFO starting\n', False)


def run_module(monkeypatch, capsys, args, answers):
    calls = []

    def fake_run(module, argv, timeout=None, data=None):
        calls.append(argv)
        return answers[(argv[1], argv[-1])] if (argv[1], argv[-1]) in answers else answers[argv[1]]

    monkeypatch.setattr(cog_model_logs, 'run_command', fake_run)
    monkeypatch.setattr(cog_model_logs.AnsibleModule, 'get_bin_path', lambda self, name, *a, **k: '/usr/bin/docker')
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            cog_model_logs.main()
    return calls, json.loads(capsys.readouterr().out)


def test_every_managed_model(monkeypatch, capsys):
    calls, result = run_module(monkeypatch, capsys, {'lines': 5}, {
        'ps': PS, ('logs', 'demo_a'): LOGS,
        ('logs', 'demo_b'): CommandResult(1, '', 'Error response from daemon: configured logging driver does not '
                                                 'support reading', False)})
    assert result['changed'] is False
    assert result['models'] == [
        {'name': 'demo_a', 'error': None, 'lines': ['INFO starting', 'demo setup: done']},
        {'name': 'demo_b', 'lines': [], 'error': 'docker logs demo_b failed (rc=1): Error response from daemon: '
                                                 'configured logging driver does not support reading'}]
    assert calls[1] == ['/usr/bin/docker', 'logs', '--timestamps', '--tail', '5', 'demo_a']


def test_one_model_that_is_not_managed_fails(monkeypatch, capsys):
    calls, result = run_module(monkeypatch, capsys, {'names': ['llama_tiny']}, {'ps': PS})
    assert result['failed'] is True
    assert result['msg'] == ('llama_tiny is no model container that homelab.gpu manages on this host (managed: '
                             'demo_a, demo_b)')
    assert len(calls) == 1


@pytest.mark.parametrize('args, msg', [
    ({'names': ['x; rm -rf /']}, "names[0] 'x; rm -rf /' is not a valid model (Docker container) name: a letter or "
                                 "digit, then letters, digits, _ . -; at least 2 characters"),
    ({'lines': -5}, 'lines -5 must be a whole number from 1 to 10000'),
])
def test_bad_input_fails_before_docker(monkeypatch, capsys, args, msg):
    calls, result = run_module(monkeypatch, capsys, args, {})
    assert result['failed'] is True
    assert result['msg'] == msg
    assert calls == []


def test_docker_ps_failure(monkeypatch, capsys):
    _calls, result = run_module(monkeypatch, capsys, {}, {
        'ps': CommandResult(1, '', 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.', False)})
    assert result['msg'] == ('docker ps failed (rc=1): Cannot connect to the Docker daemon at '
                             'unix:///var/run/docker.sock.')
