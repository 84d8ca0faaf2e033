# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Option checks of cog_model and cog_models_info: every number has a range, every value docker run refuses
is refused first. These fail in main(), before the docker CLI is even looked for, so no Docker stand-in is
needed; the per-model checks of pre-flight are in tests/unit/plugins/module_utils/test__cog.py."""

from __future__ import annotations

import json

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.gpu.plugins.module_utils import _cog_plan
from ansible_collections.homelab.gpu.plugins.modules import cog_model
from ansible_collections.homelab.gpu.plugins.modules import cog_models_info

DIGEST = 'sha256:8e6975e5ed6174911a6ff3d60540dfd4844201974602551e10e9e87ab143d81e'
MODEL = {'name': 'llama_tiny', 'image': 'r8.im/meta/llama-2-7b-chat@' + DIGEST, 'port': 5000, 'gpus': 'none'}


def run(capsys, module, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            module.main()
    result = json.loads(capsys.readouterr().out)
    assert (exc.value.code != 0) == bool(result.get('failed')), result
    return result


@pytest.fixture
def no_docker(monkeypatch):
    """No docker CLI on PATH: a call that gets past the option checks fails saying so."""
    monkeypatch.setattr(cog_model.AnsibleModule, 'get_bin_path', lambda self, name, *a, **kw: None)


NO_DOCKER = 'The docker CLI was not found on PATH'

COG_MODEL_OPTIONS = [
    ('readiness_timeout 0', {'readiness_timeout': 0},
     'readiness_timeout must be a positive number of seconds, got 0: how long to wait for READY after a start, at '
     'most a day (1 to 86400)'),
    ('readiness_timeout over a day', {'readiness_timeout': 86401}, 'got 86401'),
    ('pull_timeout 0', {'pull_timeout': 0},
     'pull_timeout must be a positive number of seconds, got 0: how long a docker pull may take, at most a week '
     '(1 to 604800)'),
    ('smoke_timeout negative', {'smoke_timeout': -1}, 'smoke_timeout must be a positive number of seconds, got -1'),
    ('stop_timeout negative', {'stop_timeout': -1},
     'stop_timeout must be 0 or more seconds, got -1: how long docker stop waits before it kills a container; 0 '
     'kills at once, and Docker would read a negative time as wait forever (0 to 86400)'),
    ('stop_timeout 0', {'stop_timeout': 0}, NO_DOCKER),
    ('log_lines negative', {'log_lines': -1},
     'log_lines must be 0 or more lines, got -1: how many lines of the container log a failure message quotes; '
     'docker logs would read a negative number as all of them (0 to 10000)'),
    ('log_lines 0', {'log_lines': 0}, NO_DOCKER),
    ('poll_interval NaN', {'poll_interval': 'nan'}, 'poll_interval must be more than 0 and at most 5 seconds, got nan'),
    ('poll_interval infinite', {'poll_interval': 'inf'}, 'poll_interval must be more than 0 and at most 5 seconds'),
    ('bind_address localhost', {'bind_address': 'localhost'},
     "bind_address 'localhost' is not an IP address: Docker publishes a port on an IP address only"),
    ('bind_address trailing newline', {'bind_address': '0.0.0.0\n'}, "bind_address '0.0.0.0\\n' is not an IP"),
    ('bind_address of another machine', {'bind_address': '192.0.2.1'},
     'bind_address 192.0.2.1 is not an address of this host (Cannot assign requested address), so docker run could '
     'not publish the port there'),
    ('a model bound to another machine', {'models': [dict(MODEL, bind_address='192.0.2.1')]},
     'models[0] (llama_tiny).bind_address 192.0.2.1 is not an address of this host'),
    ('a stopped model bound to another machine', {'models': [dict(MODEL, bind_address='192.0.2.1', state='stopped')]},
     NO_DOCKER),
    ('shm_size trailing newline', {'shm_size': '6g\n'}, "shm_size '6g\\n' is not a size such as 6g or 512m"),
    ('shm_size 0', {'shm_size': '0'}, "shm_size '0' is 0, which Docker reads as its default of 64m"),
    # Once a traceback: int() refuses more than 4300 digits.
    ('shm_size of 5000 digits', {'shm_size': '9' * 5000 + 'g'},
     "shm_size '" + '9' * 59 + "... (5003 characters) is larger than Docker can take (8 EiB); give a size such as 6g"),
    ('registry with a scheme', {'registry_auths': [{'registry': 'https://r8.im', 'username': 'u', 'password': 'Pw-4e1d'}]},
     "registry_auths[0].registry 'https://r8.im' is not a registry host"),
    ('two errors at once', {'stop_timeout': -1, 'log_lines': -1}, 'got -1: how long docker stop waits'),
]


@pytest.mark.parametrize('args, message', [c[1:] for c in COG_MODEL_OPTIONS], ids=[c[0] for c in COG_MODEL_OPTIONS])
def test_cog_model_options(capsys, no_docker, args, message):
    result = run(capsys, cog_model, dict({'models': [MODEL]}, **args))
    assert result['failed'] is True
    assert message in result['msg']
    if message != NO_DOCKER:
        assert NO_DOCKER not in result['msg']


def test_readiness_timeout_0_of_a_model_is_kept_for_pre_flight_to_refuse():
    params = {'shm_size': '6g', 'bind_address': '0.0.0.0', 'readiness_timeout': 900}
    models = _cog_plan.normalize([dict(MODEL, readiness_timeout=0), dict(MODEL, name='b')], params)
    assert [m['readiness_timeout'] for m in models] == [0, 900]


@pytest.mark.parametrize('value, message', [
    (0, 'health_timeout must be more than 0 seconds, got 0.0: how long to wait for each /health-check answer; at 0 '
        'no model, healthy or not, could answer in time (0.1 to 300)'),
    (-1, 'got -1.0'),
    ('nan', 'got nan'),
    (301, 'got 301.0'),
])
def test_cog_models_info_health_timeout(capsys, value, message):
    result = run(capsys, cog_models_info, {'health_timeout': value})
    assert result['failed'] is True
    assert message in result['msg']
