#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: docker_gpu_info
short_description: Tell how Docker on a host can give a container an NVIDIA GPU, through CDI or --gpus
version_added: 0.2.0
author:
  - homelab.gpu contributors (@homelab-gpu)
description:
  - Reads C(docker info) once (version, CDI spec directories, runtimes) and the CDI spec files in those
    directories, and says whether Docker can hand a container a GPU and which C(docker run) arguments do it.
  - Picks the method as M(homelab.gpu.cog_model) does for O(gpu_request_mode), so that a GPU-in-container
    check and the model containers ask for the GPU the same way.
  - Changes nothing, and does not fail when Docker does not answer (RV(docker_answers) says so).
extends_documentation_fragment:
  - homelab.gpu.attributes
  - homelab.gpu.attributes.info_module
options:
  gpu_request_mode:
    description:
      - V(auto) picks CDI when Docker has CDI enabled and a C(nvidia.com/gpu) spec is present, else C(--gpus).
      - V(cdi) and V(gpus) ask for that method; with V(cdi), RV(method) is V(null) and RV(reason) says what is
        missing and how to fix it when the host cannot do it.
    type: str
    choices: [auto, gpus, cdi]
    default: auto
  docker_path:
    description: Path of the docker CLI. Default is C(docker) from E(PATH).
    type: path
notes:
  - Docker Engine reads CDI specs from 25.0 on, behind C(features.cdi) in daemon.json up to 28.1, and by default from
    28.2. C(docker info) lists the CDI spec directories only while CDI is enabled.
seealso:
  - module: homelab.gpu.cog_model
  - name: NVIDIA Container Toolkit, support for the Container Device Interface
    description: How nvidia-ctk writes CDI specs and where.
    link: https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/cdi-support.html
"""

EXAMPLES = r"""
- name: How does Docker hand out GPUs here?
  homelab.gpu.docker_gpu_info:
  become: true
  register: docker_gpu

- name: Run nvidia-smi in a container with every GPU, the same way the models get theirs
  ansible.builtin.command:
    argv: "{{ ['docker', 'run', '--rm'] + docker_gpu.run_args_all + ['nvidia/cuda:12.4.1-base-ubuntu22.04', 'nvidia-smi', '-L'] }}"
  become: true
  changed_when: false
  when: docker_gpu.method is not none
"""

RETURN = r"""
docker_answers:
  description: Whether C(docker info) answered.
  returned: always
  type: bool
  sample: true
message:
  description: Why Docker did not answer, empty otherwise.
  returned: always
  type: str
  sample: ""
server_version:
  description: Docker Engine version.
  returned: always
  type: str
  sample: 26.1.5+dfsg1
cdi_support:
  description:
    - What the engine version can do. V(builtin) (28.2 and later), V(feature_flag) (25.0 to 28.1, CDI needs
      C(features.cdi) in daemon.json), V(none) (before 25.0) or V(unknown).
  returned: always
  type: str
  sample: feature_flag
cdi_enabled:
  description: Whether Docker reads CDI specs now (it lists CDI spec directories).
  returned: always
  type: bool
  sample: true
cdi_spec_dirs:
  description: The CDI spec directories Docker reads.
  returned: always
  type: list
  elements: str
  sample: [/etc/cdi, /var/run/cdi]
nvidia_cdi_specs:
  description: The spec files of kind C(nvidia.com/gpu).
  returned: always
  type: list
  elements: str
  sample: [/etc/cdi/nvidia.yaml]
nvidia_cdi_devices:
  description: The C(nvidia.com/gpu) device names those specs offer.
  returned: always
  type: list
  elements: str
  sample: ['0', all]
cdi_spec_errors:
  description: Spec files that could not be read or parsed, each with the reason.
  returned: always
  type: list
  elements: str
  sample: []
runtimes:
  description: The runtimes Docker knows (C(nvidia) once the toolkit's runtime is registered and Docker restarted).
  returned: always
  type: list
  elements: str
  sample: [io.containerd.runc.v2, nvidia, runc]
gpu_access:
  description: Whether a container can be given a GPU, through the C(nvidia) runtime or through CDI.
  returned: always
  type: bool
  sample: true
method:
  description: V(cdi) or V(gpus) for O(gpu_request_mode), V(null) when the asked-for method cannot work here.
  returned: always
  type: str
  sample: cdi
reason:
  description: Why this method, or what is missing.
  returned: always
  type: str
  sample: Docker 26.1.5+dfsg1 has CDI enabled and /etc/cdi/nvidia.yaml offers nvidia.com/gpu devices 0, all
run_args_all:
  description: The C(docker run) arguments that give a container every GPU with RV(method); empty without one.
  returned: always
  type: list
  elements: str
  sample: [--device, nvidia.com/gpu=all]
"""

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.gpu.plugins.module_utils import _cdi
from ansible_collections.homelab.gpu.plugins.module_utils._common import run_command


def gather(module):
    result = {'changed': False, 'docker_answers': False, 'message': '', 'server_version': None,
              'cdi_support': 'unknown', 'cdi_enabled': False, 'cdi_spec_dirs': [], 'nvidia_cdi_specs': [],
              'nvidia_cdi_devices': [], 'cdi_spec_errors': [], 'runtimes': [], 'gpu_access': False,
              'method': None, 'reason': '', 'run_args_all': []}
    docker = module.params['docker_path'] or module.get_bin_path('docker')
    if not docker:
        return dict(result, message='the docker CLI is not installed: run the homelab.gpu.docker role',
                    reason='Docker is not installed')
    found = _cdi.probe(lambda argv, timeout: run_command(module, argv, timeout=timeout), docker)
    devices = found['devices']
    info = found['info']
    if info is None:
        return dict(result, message=found['error'], reason='Docker does not answer: %s' % found['error'])
    method, reason = _cdi.choose_method(module.params['gpu_request_mode'], info, devices)
    if method == 'cdi':
        args = _cdi.device_args(['all'] if 'all' in devices['devices'] else
                                [d for d in devices['devices'] if re.fullmatch('[0-9]+', d)] or devices['devices'])
    elif method == 'gpus':
        args = ['--gpus', 'all']
    else:
        args = []
    result.update(_cdi.engine_facts(info, devices))
    return dict(result, docker_answers=True, cdi_support=_cdi.engine_cdi_support(info['server_version']),
                cdi_spec_errors=devices['errors'], method=method, reason=reason, run_args_all=args)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            gpu_request_mode=dict(type='str', choices=list(_cdi.MODES), default='auto'),
            docker_path=dict(type='path'),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**gather(module))


if __name__ == '__main__':
    main()
