#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cog_model_logs
short_description: Read the last lines of the logs of the cog model containers that homelab.gpu manages
version_added: 0.2.0
author:
  - homelab.gpu contributors (@homelab-gpu)
description:
  - Lists the containers labelled as managed by M(homelab.gpu.cog_model) (one C(docker ps)) and reads the last
    O(lines) lines of the log of each, or of the models in O(names), with C(docker logs --timestamps --tail).
  - Docker hands a container's stdout and stderr back on two pipes; the module merges them by Docker's time stamps,
    so the lines come in the order the model wrote them, as C(docker logs) in a terminal shows them.
  - What C(docker logs --follow) over SSH was for, from the controller. The playbook
    C(homelab.gpu.logs) prints them with each model's health (M(homelab.gpu.cog_models_info)).
  - Changes nothing.
extends_documentation_fragment:
  - homelab.gpu.attributes
  - homelab.gpu.attributes.info_module
options:
  names:
    description:
      - The models (container names) to read. Each must be a container that homelab.gpu manages on the host; the
        module fails, naming the managed ones, when it is not.
      - Default is every managed model (without the C(<name>.previous) container kept during a replacement).
    type: list
    elements: str
    default: []
  lines:
    description: How many of the last log lines to return per model, from 1 to 10000.
    type: int
    default: 100
  timestamps:
    description: Keep Docker's time stamp (RFC 3339, UTC) at the start of each line.
    type: bool
    default: false
  docker_path:
    description: Path of the docker CLI. Default is C(docker) from C(PATH).
    type: path
notes:
  - Needs a user that may talk to Docker (root, or a member of the C(docker) group), so use C(become).
  - A container whose log driver keeps no log that Docker can read back (C(none), C(syslog), ...) comes back with
    RV(models[].error) set instead of lines.
seealso:
  - module: homelab.gpu.cog_models_info
"""

EXAMPLES = r"""
- name: Read the last 50 lines of llama_tiny's log
  homelab.gpu.cog_model_logs:
    names: [llama_tiny]
    lines: 50
  become: true
  register: logs

- name: Show them
  ansible.builtin.debug:
    msg: "{{ logs.models[0].lines }}"
"""

RETURN = r"""
models:
  description: One entry per model read, in the order of O(names), else sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Container (model) name.
      type: str
      sample: llama_tiny
    lines:
      description: The last log lines, oldest first, stdout and stderr merged in the order they were written.
      type: list
      elements: str
      sample: ["demo setup: loading for 2 s", "demo setup: done"]
    error:
      description: Why the log could not be read, or V(null).
      type: str
      sample: null
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.gpu.plugins.module_utils import _cog
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_logs
from ansible_collections.homelab.gpu.plugins.module_utils._common import command_error, run_command

# Seconds that each docker command may take.
DOCKER_TIMEOUT = 60


def read_logs(module, docker):
    params = module.params
    ps = run_command(module, _cog_logs.ps_argv(docker, _cog.MANAGED_LABEL), timeout=DOCKER_TIMEOUT)
    if ps.rc != 0:
        module.fail_json(msg=command_error('docker ps', ps))
    names, error = _cog_logs.select_models(ps.stdout, params['names'])
    if error:
        module.fail_json(msg=error)
    models = []
    for name in names:
        logs = run_command(module, _cog_logs.logs_argv(docker, name, params['lines']), timeout=DOCKER_TIMEOUT)
        if logs.rc != 0:
            models.append({'name': name, 'lines': [], 'error': command_error('docker logs %s' % name, logs)})
            continue
        models.append({'name': name, 'error': None, 'lines': _cog_logs.merge_streams(
            logs.stdout, logs.stderr, params['lines'], timestamps=params['timestamps'])})
    return models


def main():
    module = AnsibleModule(
        argument_spec=dict(
            names=dict(type='list', elements='str', default=[]),
            lines=dict(type='int', default=100),
            timestamps=dict(type='bool', default=False),
            docker_path=dict(type='path'),
        ),
        supports_check_mode=True,
    )
    errors = _cog_logs.validate(module.params['names'], module.params['lines'])
    if errors:
        module.fail_json(msg='; '.join(errors))
    docker = module.params['docker_path'] or module.get_bin_path('docker')
    if not docker:
        module.fail_json(msg='docker is not installed: run the homelab.gpu.docker role')
    module.exit_json(changed=False, models=read_logs(module, docker))


if __name__ == '__main__':
    main()
