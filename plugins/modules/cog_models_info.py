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
notes:
  - When Docker is not installed or its daemon does not answer, the module does not fail; RV(docker_answers) is
    V(false) and RV(models) is empty.
"""

EXAMPLES = r"""
- name: Read the models on the host
  homelab.gpu.cog_models_info:
  register: models

- name: Show the ones that are not READY
  ansible.builtin.debug:
    msg: "{{ models.models | rejectattr('health', 'equalto', 'READY') | map(attribute='name') }}"
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
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.gpu.plugins.module_utils import _cog
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_http
from ansible_collections.homelab.gpu.plugins.module_utils._common import range_error, run_command


class CogModelsInfo:
    def __init__(self, module):
        self.module = module
        self.params = module.params

    def docker(self):
        return self.params['docker_path'] or self.module.get_bin_path('docker')

    def read(self, docker):
        """``(containers by name, error)`` from one ps and one inspect."""
        ps = run_command(self.module, [docker, 'ps', '--all', '--quiet', '--no-trunc',
                                       '--filter', 'label=%s=true' % _cog.MANAGED_LABEL], timeout=60)
        if ps.rc != 0:
            return None, 'docker ps failed (rc=%s): %s' % (ps.rc, (ps.stderr or ps.stdout).strip())
        ids = ps.stdout.split()
        if not ids:
            return {}, None
        inspect = run_command(self.module, [docker, 'container', 'inspect'] + ids, timeout=60)
        if inspect.rc != 0:
            return None, 'docker container inspect failed (rc=%s): %s' % (inspect.rc, inspect.stderr.strip())
        return _cog.parse_inspect(inspect.stdout), None

    def describe(self, summary, now):
        image = summary['image'] or ''
        bind, port = (summary['bindings'][0] if summary['bindings'] else (None, None))
        started = _cog.parse_timestamp(summary.get('started_at'))
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
        }
        if summary['running'] and port:
            url = 'http://%s:%d' % (_cog.poll_host(bind), port)
            health, error = _cog_http.health(url, timeout=self.params['health_timeout'])
            if health is None:
                model.update(health='UNREACHABLE', health_error=error)
            else:
                model['health'] = health['status']
                if not _cog.is_ready(health):
                    model['setup_logs_tail'] = _cog.tail(health['setup_logs'], 20)
        return model

    def run(self):
        docker = self.docker()
        if not docker:
            return {'changed': False, 'docker_answers': False, 'models': [],
                    'message': 'docker is not installed: run the homelab.gpu.docker role'}
        containers, error = self.read(docker)
        if containers is None:
            return {'changed': False, 'docker_answers': False, 'models': [], 'message': error}
        wanted = set(self.params['names'])
        now = time.time()
        models = [self.describe(summary, now) for name, summary in sorted(containers.items())
                  if summary['managed'] and (not wanted or name in wanted)
                  and not name.endswith(_cog.PREVIOUS_SUFFIX)]
        return {'changed': False, 'docker_answers': True, 'models': models, 'message': ''}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            names=dict(type='list', elements='str', default=[]),
            health_timeout=dict(type='float', default=2.0),
            docker_path=dict(type='path'),
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
