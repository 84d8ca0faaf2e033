#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cog_models_info
short_description: Report the cog model containers that homelab.gpu manages on a host
version_added: 0.1.0
author:
  - homelab.gpu contributors (@homelab-gpu)
description:
  - Lists the containers labelled as managed by M(homelab.gpu.cog_model) with their state, published port, image,
    uptime and GPUs, and asks each running one for its cog health state (C(GET /health-check)).
  - One C(docker ps) and one C(docker container inspect) for all containers, then one health request per running
    model, in the module on the host.
  - Changes nothing.
extends_documentation_fragment:
  - homelab.gpu.attributes
  - homelab.gpu.attributes.info_module
options:
  names:
    description: Report only these models. Default is every managed model.
    type: list
    elements: str
    default: []
  health_timeout:
    description: Seconds to wait for each C(/health-check) answer.
    type: float
    default: 2.0
  docker_path:
    description: Path of the docker CLI. Default is C(docker) from C(PATH).
    type: path
  gpu_info:
    description:
      - The result of M(homelab.gpu.nvidia_smi_info) for this host, to reuse instead of running nvidia-smi again.
        Its per-GPU C(processes) give each model's GPU memory.
      - When not given, the module runs C(nvidia-smi -q -x) once if nvidia-smi is on E(PATH) (or at
        O(nvidia_smi_path)); without it, RV(models[].gpu_memory) stays empty.
    type: dict
  nvidia_smi_path:
    description: nvidia-smi binary to run when O(gpu_info) is not given. Searched on E(PATH) when not set.
    type: path
  daemon_json_path:
    description: Docker's daemon configuration file, read (never written) for RV(daemon_json).
    type: path
    default: /etc/docker/daemon.json
notes:
  - When Docker is not installed or its daemon does not answer, the module does not fail; RV(docker_answers) is
    V(false) and RV(models) is empty.
  - GPU memory is matched to a model through the processes that nvidia-smi lists, each with its host PID. The
    C(/proc/<pid>/cgroup) of a model's GPU process (for cog images, the worker under the container's init) names
    the container. Run it with become, so that every process can be read.
"""

EXAMPLES = r"""
- name: Read the models on the host
  homelab.gpu.cog_models_info:
  register: models

- name: Show the ones that are not READY
  ansible.builtin.debug:
    msg: "{{ models.models | rejectattr('health', 'equalto', 'READY') | map(attribute='name') }}"

- name: How much GPU memory each model holds
  ansible.builtin.debug:
    msg: "{{ item.name }} uses {{ item.gpu_memory_mib }} MiB"
  loop: "{{ models.models }}"
  loop_control:
    label: "{{ item.name }}"
"""

RETURN = r"""
docker_answers:
  description: Whether the Docker daemon answered.
  returned: always
  type: bool
  sample: true
message:
  description: Why the list is empty when Docker did not answer.
  returned: always
  type: str
  sample: ""
models:
  description: The managed model containers, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Container (model) name.
      type: str
      sample: llama_tiny
    state:
      description: Docker's state of the container.
      type: str
      sample: running
    health:
      description:
        - The cog health state (C(READY), C(STARTING), C(BUSY), C(SETUP_FAILED), C(DEFUNCT), C(UNHEALTHY)), or
          V(null) when the container is not running or has no published port, or C(UNREACHABLE) when the
          request failed.
      type: str
      sample: READY
    health_error:
      description: Why the health request failed, when C(health) is C(UNREACHABLE).
      type: str
      sample: null
    setup_logs_tail:
      description: The last lines of the setup logs in the health answer, when the state is not C(READY) or C(BUSY).
      type: str
      sample: ""
    port:
      description: The published host port (the first one), or V(null).
      type: int
      sample: 5000
    bind_address:
      description: The address the port is published on.
      type: str
      sample: 0.0.0.0
    image:
      description: The image reference the container was started from (with its digest when pulled by one).
      type: str
      sample: r8.im/meta/llama-2-7b-chat@sha256:8e6975e5ed6174911a6ff3d60540dfd4844201974602551e10e9e87ab143d81e
    image_digest:
      description: The digest part of RV(models[].image), or V(null) when started from a tag.
      type: str
      sample: sha256:8e6975e5ed6174911a6ff3d60540dfd4844201974602551e10e9e87ab143d81e
    image_id:
      description: The local image ID.
      type: str
      sample: sha256:0c4a6d3f1b5c...
    uptime_s:
      description: Seconds since the container started, or V(null) when it is not running.
      type: int
      sample: 3725
    restart_count:
      description: How often Docker restarted the container.
      type: int
      sample: 0
    gpu_uuids:
      description: The GPUs the model was started on, from its label.
      type: list
      elements: str
      sample: [GPU-d85fcc1e-1280-17c7-c4ae-49c25c444478]
    gpu_memory:
      description: GPU memory that the container's processes hold now, as nvidia-smi counts it, one entry per GPU.
      type: list
      elements: dict
      sample: [{gpu_index: 0, gpu_uuid: GPU-d85fcc1e-1280-17c7-c4ae-49c25c444478, used_mib: 4616, pids: [5638]}]
      contains:
        gpu_index:
          description: Index of the GPU, as nvidia-smi numbers it.
          type: int
        gpu_uuid:
          description: UUID of the GPU.
          type: str
        used_mib:
          description: GPU memory that the container's processes hold on this GPU, in MiB.
          type: int
        pids:
          description: Host PIDs of the container's processes on this GPU.
          type: list
          elements: int
    gpu_memory_mib:
      description: The sum of RV(models[].gpu_memory[].used_mib).
      type: int
      sample: 4616
    inputs:
      description:
        - The model's inputs from its schema (C(GET /openapi.json)), in the model's order, when the model is
          C(READY) or C(BUSY) and serves a schema; V(null) otherwise, and RV(models[].inputs_note) says why.
      type: list
      elements: dict
      sample:
        - {name: prompt, type: string, default: null, required: true, choices: null}
        - {name: max_new_tokens, type: integer, default: 128, required: false, choices: null}
      contains:
        name:
          description: Input name, as O(homelab.gpu.cog_predict#module:input) takes it.
          type: str
        type:
          description: JSON type (C(string), C(integer), C(number), C(boolean), C(array), C(object), C(any)).
          type: str
        default:
          description: Default value, V(null) when there is none.
          type: raw
        required:
          description: Whether a prediction must give this input.
          type: bool
        choices:
          description: The allowed values, V(null) when any value of the type is allowed.
          type: list
          elements: raw
    inputs_note:
      description: Why RV(models[].inputs) is V(null) for a running model, else V(null).
      type: str
      sample: "no schema at http://127.0.0.1:5000/openapi.json: HTTP 503 {\"error\":\"OpenAPI schema not available\"}"
other_gpu_processes:
  description:
    - GPU processes that belong to no managed model (another container, or a process on the host), as nvidia-smi
      lists them. C(container_id) is set when the process runs in a container that homelab.gpu does not manage.
  returned: always
  type: list
  elements: dict
  sample: [{gpu_index: 0, gpu_uuid: GPU-d85f..., pid: 2211, name: /usr/lib/xorg/Xorg, used_mib: 120, container_id: null}]
gpu_probe_state:
  description: The state of the nvidia-smi probe the GPU memory comes from (V(ok), V(not_installed), ...).
  returned: always
  type: str
  sample: ok
gpu:
  description:
    - The nvidia-smi probe the GPU memory comes from, as M(homelab.gpu.nvidia_smi_info) returns it (O(gpu_info) when
      given). Read whatever Docker answers.
  returned: always
  type: dict
  sample: {state: ok, gpu_count: 1, driver_version: "550.120", gpus: [{index: 0, name: NVIDIA GeForce RTX 3050}]}
daemon_json:
  description: Docker's daemon.json as read from O(daemon_json_path), whatever Docker answers.
  returned: always
  type: dict
  contains:
    path:
      description: The file read.
      type: str
      sample: /etc/docker/daemon.json
    exists:
      description: Whether the file exists.
      type: bool
    config:
      description: Its content, V(null) when it does not exist or cannot be read.
      type: dict
    error:
      description: Why it cannot be read (not JSON, not a regular file), else V(null).
      type: str
docker:
  description:
    - The Docker engine, its data root and how it can hand a GPU to a container; V(null) when Docker did not answer.
  returned: always
  type: dict
  contains:
    server_version:
      description: Docker Engine version.
      type: str
      sample: 26.1.5+dfsg1
    data_root:
      description: Docker's data root (images, containers).
      type: str
      sample: /var/lib/docker
    data_root_free_mib:
      description: Free space under the data root in MiB, V(null) when it cannot be read.
      type: int
      sample: 412300
    cdi_enabled:
      description: Whether Docker reads CDI specs (it lists CDI spec directories).
      type: bool
      sample: true
    cdi_spec_dirs:
      description: The CDI spec directories Docker reads.
      type: list
      elements: str
      sample: [/etc/cdi, /var/run/cdi]
    nvidia_cdi_devices:
      description: The C(nvidia.com/gpu) device names that the CDI specs offer.
      type: list
      elements: str
      sample: ['0', all]
    nvidia_cdi_specs:
      description: The CDI spec files of kind C(nvidia.com/gpu).
      type: list
      elements: str
      sample: [/etc/cdi/nvidia.yaml]
    runtimes:
      description: The runtimes Docker knows (C(nvidia) once the toolkit's runtime is registered).
      type: list
      elements: str
      sample: [io.containerd.runc.v2, runc]
    gpu_access:
      description: Whether a container can be given a GPU, through the C(nvidia) runtime or through CDI.
      type: bool
      sample: true
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.gpu.plugins.module_utils import _cdi
from ansible_collections.homelab.gpu.plugins.module_utils import _cog
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_api
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_inspect
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_http
from ansible_collections.homelab.gpu.plugins.module_utils import _gpu_procs
from ansible_collections.homelab.gpu.plugins.module_utils import _host_facts
from ansible_collections.homelab.gpu.plugins.module_utils import _nvidia_smi
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_schema
from ansible_collections.homelab.gpu.plugins.module_utils._common import (command_error, free_bytes, range_error,
                                                                          run_command)


class CogModelsInfo:
    # Seconds that each docker command may take.
    docker_timeout = 60

    def __init__(self, module):
        self.module = module
        self.params = module.params

    def docker(self):
        return self.params['docker_path'] or self.module.get_bin_path('docker')

    def read(self, docker):
        """``(containers by name, error)`` from one ps and one inspect."""
        ps = run_command(self.module, [docker, 'ps', '--all', '--quiet', '--no-trunc',
                                       '--filter', 'label=%s=true' % _cog.MANAGED_LABEL], timeout=self.docker_timeout)
        if ps.rc != 0:
            return None, command_error('docker ps', ps)
        ids = ps.stdout.split()
        if not ids:
            return {}, None
        inspect = run_command(self.module, [docker, 'container', 'inspect'] + ids, timeout=self.docker_timeout)
        if inspect.rc != 0:
            return None, command_error('docker container inspect', inspect)
        return _cog_inspect.parse_inspect(inspect.stdout), None

    def describe(self, summary, now):
        image = summary['image'] or ''
        bind, port = (summary['bindings'][0] if summary['bindings'] else (None, None))
        started = _cog_api.parse_timestamp(summary.get('started_at'))
        model = {
            'name': summary['name'],
            'state': summary['status'],
            'health': None,
            'health_error': None,
            'setup_logs_tail': '',
            'port': port,
            'bind_address': bind,
            'image': image,
            'image_digest': image.split('@', 1)[1] if '@' in image else None,
            'image_id': summary['image_id'],
            'uptime_s': int(now - started) if (summary['running'] and started) else None,
            'restart_count': summary['restart_count'],
            'gpu_uuids': summary['gpu_uuids'],
            'gpu_memory': [],
            'gpu_memory_mib': 0,
        }
        if summary['running'] and port:
            url = 'http://%s:%d' % (_cog_inspect.poll_host(bind), port)
            health, error = _cog_http.health(url, timeout=self.params['health_timeout'])
            if health is None:
                model.update(health='UNREACHABLE', health_error=error)
            else:
                model['health'] = health['status']
                if not _cog_api.is_ready(health):
                    model['setup_logs_tail'] = _cog_api.tail(health['setup_logs'], 20)
        # schema hook (homelab.gpu _cog_schema): the inputs of a model that serves.
        model['inputs'], model['inputs_note'] = None, None
        if model['health'] in (_cog_api.HEALTH_READY, _cog_api.HEALTH_BUSY):
            model['inputs'], model['inputs_note'] = _cog_schema.inputs_of(url, self.params['health_timeout'])
        return model

    def gpu_info(self):
        return _nvidia_smi.probe(self.module, run_command, self.params['gpu_info'], self.params['nvidia_smi_path'])

    def docker_facts(self, docker):
        found = _cdi.probe(lambda argv, timeout: run_command(self.module, argv, timeout=timeout), docker)
        info = found['info']
        if info is None:
            return None
        free = free_bytes(info['docker_root_dir']) if info['docker_root_dir'] else None
        if free is not None:
            free //= 1024 * 1024
        return dict(_cdi.engine_facts(info, found['devices']), data_root=info['docker_root_dir'],
                    data_root_free_mib=free)

    def run(self):
        # The GPUs and daemon.json are read whatever Docker answers: the status report shows them either way.
        probe = self.gpu_info()
        result = {'changed': False, 'docker_answers': False, 'models': [], 'message': '', 'other_gpu_processes': [],
                  'gpu_probe_state': probe.get('state'), 'gpu': probe, 'docker': None,
                  'daemon_json': _host_facts.read_daemon_json(self.params['daemon_json_path'])}
        docker = self.docker()
        if not docker:
            return dict(result, message='docker is not installed: run the homelab.gpu.docker role')
        containers, error = self.read(docker)
        if containers is None:
            return dict(result, message=error)
        wanted = set(self.params['names'])
        now = time.time()
        models = [self.describe(summary, now) for name, summary in sorted(containers.items())
                  if summary['managed'] and (not wanted or name in wanted)
                  and not name.endswith(_cog.PREVIOUS_SUFFIX)]
        gpus = probe.get('gpus') or []
        names = dict((c['id'], name) for name, c in containers.items() if c['managed'])
        by_model, others = _gpu_procs.attribute(gpus, _gpu_procs.read_cgroups(_gpu_procs.gpu_pids(gpus)), names)
        for model in models:
            model['gpu_memory'] = by_model.get(model['name'], [])
            model['gpu_memory_mib'] = sum(e['used_mib'] for e in model['gpu_memory'])
        if wanted:
            # Memory of a managed model left out by names is still a model's, not someone else's.
            others = [p for p in others if p['container_id'] not in names]
        return dict(result, docker_answers=True, models=models, other_gpu_processes=others,
                    docker=self.docker_facts(docker))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            names=dict(type='list', elements='str', default=[]),
            health_timeout=dict(type='float', default=2.0),
            docker_path=dict(type='path'),
            gpu_info=dict(type='dict'),
            nvidia_smi_path=dict(type='path'),
            daemon_json_path=dict(type='path', default='/etc/docker/daemon.json'),
        ),
        supports_check_mode=True,
    )
    error = range_error('health_timeout', module.params['health_timeout'], 0.1, 300, 'more than 0 seconds',
                        'how long to wait for each /health-check answer; at 0 no model, healthy or not, could '
                        'answer in time')
    if error:
        module.fail_json(msg=error)
    module.exit_json(**CogModelsInfo(module).run())


if __name__ == '__main__':
    main()
