# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A command that hangs is reported as a time-out, with its limit, whichever signal ended it.

Each case runs a real process under the modules' own run_command (coreutils timeout) or run_bounded, with the
limits cut to 1 s and the SIGKILL that follows an ignored SIGTERM 0.2 s later, so a case takes about a second.
The hung command is a stand-in (see HANGS), put where the module looks for docker, iptables-save or iptables.
"""

from __future__ import annotations

import json
import shutil

import pytest

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.gpu.plugins.module_utils import _cdi
from ansible_collections.homelab.gpu.plugins.module_utils import _common
from ansible_collections.homelab.gpu.plugins.module_utils import _firewall
from ansible_collections.homelab.gpu.plugins.module_utils import _host_facts
from ansible_collections.homelab.gpu.plugins.module_utils import _registry
from ansible_collections.homelab.gpu.plugins.modules import cog_model_logs
from ansible_collections.homelab.gpu.plugins.modules import cog_models_info
from ansible_collections.homelab.gpu.plugins.modules import docker_gpu_info

pytestmark = pytest.mark.skipif(shutil.which('timeout') is None, reason='needs coreutils timeout')

HANGS = {
    # STAND-IN for a docker CLI (or iptables) whose daemon hangs on a lock and that ignores SIGTERM: timeout(1)
    # has to SIGKILL it, and run_command sees rc -9 (or 137), which once read as "docker info failed (rc=-9)".
    'ignores SIGTERM': "#!/bin/sh\ntrap '' TERM\nsleep 60\n",
    # STAND-IN for one that hangs but stops at SIGTERM: rc 124.
    'stops at SIGTERM': '#!/bin/sh\nsleep 60\n',
}


@pytest.fixture
def hung(tmp_path, monkeypatch):
    """``hung(kind)`` writes the stand-in of HANGS[kind] and returns its path; every limit is 1 s."""
    monkeypatch.setattr(_common, 'KILL_AFTER', 0.2)
    monkeypatch.setattr(_cdi, 'INFO_TIMEOUT', 1)
    monkeypatch.setattr(_registry, 'INFO_TIMEOUT', 1)
    monkeypatch.setattr(_firewall, 'COMMAND_TIMEOUT', 1)
    monkeypatch.setattr(cog_models_info.CogModelsInfo, 'docker_timeout', 1)
    monkeypatch.setattr(cog_model_logs, 'DOCKER_TIMEOUT', 1)

    def write(kind):
        path = tmp_path / 'hung-command'
        path.write_text(HANGS[kind])
        path.chmod(0o755)
        return str(path)

    return write


def module_result(capsys, module, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


def an_ansible_module():
    with patch_module_args({}):
        return AnsibleModule(argument_spec={})


def via_cog_models_info(capsys, tmp_path, command):
    # gpu_info given: nvidia-smi is not run; the first docker command is docker ps.
    result = module_result(capsys, cog_models_info, {
        'docker_path': command, 'gpu_info': {'state': 'ok', 'gpus': []},
        'daemon_json_path': str(tmp_path / 'daemon.json')})
    assert result.get('failed') is None and result['docker_answers'] is False
    return result['message']


def via_docker_gpu_info(capsys, tmp_path, command):
    # _cdi.probe, which cog_model's pre-flight and cog_models_info use too.
    result = module_result(capsys, docker_gpu_info, {'docker_path': command})
    assert result['docker_answers'] is False
    assert result['reason'] == 'Docker does not answer: ' + result['message']
    return result['message']


def via_cdi_probe(capsys, tmp_path, command):
    module = an_ansible_module()
    return _cdi.probe(lambda argv, timeout: _common.run_command(module, argv, timeout=timeout), command)['error']


def via_cog_model_logs(capsys, tmp_path, command):
    result = module_result(capsys, cog_model_logs, {'docker_path': command})
    assert result['failed'] is True
    return result['msg']


def via_gpu_host_facts_probe(capsys, tmp_path, command):
    # run_bounded, the threads' runner, through the same _cdi.probe.
    return _host_facts.probe_docker(command)['message']


def via_registry_free_space(capsys, tmp_path, command):
    root, free, error = _registry.free_space(_common.run_command, an_ansible_module(), command)
    assert (root, free) == (None, None)
    return error


def via_iptables_save(capsys, tmp_path, command):
    runner = _firewall.Runner(an_ansible_module(), dry_run=False)
    runner.bins['iptables-save'] = command
    with pytest.raises(_firewall.FirewallError) as exc:
        runner.save()
    return str(exc.value)


def via_iptables_change(capsys, tmp_path, command):
    runner = _firewall.Runner(an_ansible_module(), dry_run=False)
    runner.bins['iptables'] = command
    with pytest.raises(_firewall.FirewallError) as exc:
        runner.run(_firewall.Command('iptables', ['-w', '-N', 'HOMELAB-GPU-MODELS']))
    return str(exc.value)


CASES = [
    (via_cog_models_info, 'ignores SIGTERM', 'docker ps timed out after 1 s'),
    (via_cog_models_info, 'stops at SIGTERM', 'docker ps timed out after 1 s'),
    (via_docker_gpu_info, 'ignores SIGTERM', 'docker info timed out after 1 s'),
    (via_cdi_probe, 'ignores SIGTERM', 'docker info timed out after 1 s'),
    (via_cdi_probe, 'stops at SIGTERM', 'docker info timed out after 1 s'),
    (via_cog_model_logs, 'ignores SIGTERM', 'docker ps timed out after 1 s'),
    # run_bounded waits KILL_AFTER (5 s) after the SIGTERM; the one that stops at it keeps this case fast.
    (via_gpu_host_facts_probe, 'stops at SIGTERM', 'docker info timed out after 1 s'),
    (via_registry_free_space, 'ignores SIGTERM', 'docker info timed out after 1 s'),
    (via_iptables_save, 'ignores SIGTERM', 'iptables-save -t filter timed out after 1 s'),
    (via_iptables_change, 'stops at SIGTERM', 'iptables -w -N HOMELAB-GPU-MODELS timed out after 1 s'),
]


@pytest.mark.parametrize('path, kind, message', CASES, ids=['%s, %s' % (c[0].__name__, c[1]) for c in CASES])
def test_a_hung_command_is_named_a_time_out(capsys, tmp_path, hung, path, kind, message):
    assert path(capsys, tmp_path, hung(kind)) == message
