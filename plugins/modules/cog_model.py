#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cog_model
short_description: Run Replicate cog model containers on a GPU host, ready to answer, with rollback
version_added: 0.1.0
author:
  - homelab.gpu contributors (@homelab-gpu)
description:
  - Deploys a whole list of cog models on one host in one call. First it checks everything without changing
    anything (pre-flight) and refuses with a message that names the model and the value. Then it logs in to
    registries, pulls the images, and stops, removes, creates, replaces or starts containers.
  - Pre-flight checks that names are valid Docker container names and not taken by containers this
    collection does not manage, that ports are unique and free on the host, that every requested GPU index or
    UUID exists, and that the models that would run on a GPU fit in its memory (VRAM admission, see
    O(models[].vram_mib)).
  - Images are pulled by digest, and only when that digest is not present yet. A tag is accepted with a
    warning, and pulled only when absent (it is never refreshed).
  - Each container gets the labels C(homelab.gpu.managed=true) and C(homelab.gpu.config-hash), the sha256 of
    everything that goes into its C(docker run). A different hash (image, port, bind address, GPUs, shm size,
    env) recreates the container; nothing else does.
  - After a start the module polls C(GET /health-check) on the host until cog says C(READY), every
    O(poll_interval) seconds. C(SETUP_FAILED), C(DEFUNCT), an exited container or O(models[].readiness_timeout)
    fail the model, with the setup logs of the health check and the last lines of the container log.
  - A changed model is replaced with rollback. The old container is stopped and renamed to C(<name>.previous),
    the new one starts, and only once it is ready is the old one removed. When the new one fails, it is removed,
    the old one gets its name back and starts again, and the module fails saying so.
extends_documentation_fragment:
  - homelab.gpu.attributes
attributes:
  check_mode:
    support: full
    details:
      - Pre-flight runs in full. Pulls, logins and container changes are predicted, not done.
  diff_mode:
    support: full
  idempotent:
    support: full
    details:
      - A model that is already running with the same config hash only gets a health check (C(READY) or C(BUSY),
        someone may be using it). The smoke prediction runs only for a model started or replaced in this run.
options:
  models:
    description:
      - The cog models of this host. Models that are not in the list are left alone, except by
        O(models[].exclusive).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Container name. A Docker container name, unique in the list.
        type: str
        required: true
      image:
        description:
          - Image reference, best pinned by digest, for example
            C(r8.im/meta/llama-2-7b-chat@sha256:8e69...). A reference without digest gets a warning.
          - Required unless O(models[].state=absent).
        type: str
      port:
        description:
          - Host port that publishes cog's port 5000. Unique on the host.
          - Required when O(models[].state=started).
        type: int
      gpus:
        description:
          - GPUs the container gets. V(all), V(none), or a list of GPU indexes and UUIDs (C(GPU-...)) as
            nvidia-smi shows them.
          - Every index or UUID must exist on the host.
          - How Docker is asked for them (C(--gpus) or CDI devices) is O(gpu_request_mode).
        type: raw
        default: all
      vram_mib:
        description:
          - GPU memory in MiB that the model needs on each GPU it gets. Used for VRAM admission.
          - The models that would run on a GPU must need no more than its free memory, plus what their own
            running containers and the containers this run stops use now. Models without V(vram_mib) count as 0.
        type: int
      env:
        description: Environment variables of the container.
        type: dict
        default: {}
      state:
        description:
          - V(started) runs the model and waits until it is ready. V(stopped) stops its container if it runs.
            V(absent) removes its container.
        type: str
        choices: [started, stopped, absent]
        default: started
      exclusive:
        description:
          - Before starting this model, stop the other containers managed by this collection that use one of its
            GPUs, so that models take turns on a small card.
          - Another model of the list that is started on one of these GPUs is refused in pre-flight.
        type: bool
        default: false
      smoke_input:
        description:
          - Input of a prediction (C(POST /predictions)) that must succeed once the model is ready. Its output
            is in the result. A failed smoke prediction counts as a failed start, so a changed model is rolled back.
          - Sent only to a model created, replaced or started in this run, never to one that was already running
            unchanged (a user of the model would get HTTP 409 busy).
        type: dict
      readiness_timeout:
        description: Seconds to wait for C(READY) after a start. Defaults to O(readiness_timeout).
        type: int
      prune_image:
        description:
          - With O(models[].state=absent), also remove the model's image when no other container uses it.
        type: bool
        default: false
      shm_size:
        description: Size of C(/dev/shm). Defaults to O(shm_size).
        type: str
      bind_address:
        description: Address the port is published on. Defaults to O(bind_address).
        type: str
      takeover:
        description:
          - Take over a container that this collection does not manage, such as one started by hand with
            C(docker run -d -p 5000:5000 --name=llama_tiny --gpus=all ...). Without it, such a container is a
            pre-flight error.
          - A container of the model's name is stopped and renamed C(<name>.previous) until the new container is
            READY, then removed. If the new one fails, it gets its name back and is started again, as in a
            rollback.
          - A container of another name that publishes the model's port is stopped before the new container
            starts, and started again if the new one fails. Once the new one is READY it is left stopped, not
            removed.
          - Only with O(models[].state=started).
        type: bool
        default: false
      allowed_networks:
        description:
          - Accepted and ignored here, so that one model list serves both modules. M(homelab.gpu.cog_firewall)
            applies it (the networks allowed to reach this model's port).
        type: list
        elements: str
  registry_auths:
    description:
      - Registry credentials. The module logs in with C(docker login --password-stdin) unless the Docker config
        of the user it runs as (C(/root/.docker/config.json) with become) already holds exactly these
        credentials. That file is made mode 0600.
      - Credentials kept by a credential helper (C(credsStore)) cannot be compared, so a login happens on every run.
    type: list
    elements: dict
    default: []
    suboptions:
      registry:
        description: Registry host, for example V(r8.im) or V(ghcr.io).
        type: str
        required: true
      username:
        description: User name.
        type: str
        required: true
      password:
        description: Password or token. Never logged.
        type: str
        required: true
  bind_address:
    description:
      - Default address that ports are published on, an IP address (v4 or v6) that this host has, or V(0.0.0.0) /
        V(::). V(0.0.0.0) publishes on every interface, as a hand-made C(docker run -p 5000:5000) does. Use
        V(127.0.0.1) to keep models to the host. A host name is refused before anything changes (Docker takes
        only IP addresses).
    type: str
    default: 0.0.0.0
  shm_size:
    description: Default size of C(/dev/shm) in the containers. V(6g) is what the cog CLI gives, for PyTorch.
    type: str
    default: 6g
  readiness_timeout:
    description: Default seconds to wait for C(READY) after a start. Large models take minutes to load.
    type: int
    default: 900
  poll_interval:
    description:
      - Seconds between two health checks while waiting for C(READY). At V(0.2), readiness is seen within
        about a quarter of a second after the server reports it.
    type: float
    default: 0.2
  pull_timeout:
    description:
      - Seconds a C(docker pull) may take. Cog images are tens of GB.
    type: int
    default: 7200
  stop_timeout:
    description: Seconds C(docker stop) waits before it kills a container.
    type: int
    default: 30
  smoke_timeout:
    description: Seconds a smoke prediction may take.
    type: int
    default: 600
  smoke_schema:
    description:
      - How O(models[].smoke_input) is fitted to the running model's schema (C(GET /openapi.json)) before the
        smoke prediction, as O(homelab.gpu.cog_predict#module:schema) does it.
      - V(coerce) converts strings to the declared types, V(strict) only checks, and both refuse an unknown
        input name (listing the model's inputs), a value that cannot be converted, a value outside the
        declared choices or bounds and a missing required input. A refused smoke input counts as a failed
        smoke prediction, so a changed model is rolled back.
      - V(raw) sends O(models[].smoke_input) untouched. Without a schema it is sent as given, and
        RV(models[].smoke_schema) says why.
    type: str
    choices: [coerce, strict, raw]
    default: coerce
  gpu_requests:
    description:
      - Pass the GPU request to Docker. V(false) is for labs without the NVIDIA container
        runtime, where a stand-in nvidia-smi reports GPUs. Pre-flight and VRAM admission still run, but the
        containers get no GPU.
    type: bool
    default: true
  gpu_request_mode:
    description:
      - How a container is given its GPUs.
      - V(gpus) uses C(docker run --gpus), which needs the NVIDIA container toolkit's C(nvidia) runtime hook
        registered with Docker (any Docker version the toolkit supports).
      - V(cdi) uses Container Device Interface devices, C(docker run --device nvidia.com/gpu=<index|uuid|all>).
        It needs Docker Engine 25 or later with CDI enabled (C(features.cdi) in daemon.json for 25 to 27, on by
        default from 28) and a CDI spec of kind C(nvidia.com/gpu), as C(nvidia-ctk cdi generate) writes it to
        C(/etc/cdi/nvidia.yaml). Pre-flight refuses with what to do when either is missing.
      - V(auto) picks V(cdi) when Docker reports CDI enabled and a C(nvidia.com/gpu) spec is present, else V(gpus).
        The choice and its reason are in RV(gpu_request).
      - The method is part of the container's configuration, so switching it recreates the GPU models.
    type: str
    choices: [auto, gpus, cdi]
    default: auto
  gpu_info:
    description:
      - The result of M(homelab.gpu.nvidia_smi_info) for this host, to reuse instead of running nvidia-smi again.
      - When not given, the module runs C(nvidia-smi -q -x) once, and only if a model asks for GPUs.
    type: dict
  nvidia_smi_path:
    description: nvidia-smi binary to run when O(gpu_info) is not given. Searched on E(PATH) when not set.
    type: path
  log_lines:
    description: Number of lines of the container log that a failure message quotes.
    type: int
    default: 30
requirements:
  - The docker CLI and a running Docker engine on the host; for GPUs, the NVIDIA container toolkit.
notes:
  - Containers run with restart policy C(unless-stopped), never privileged, and publish cog's port 5000.
  - A model whose image, env, port, bind address, GPUs or shm size changes is replaced. A change of
    O(models[].vram_mib), O(models[].smoke_input), O(models[].readiness_timeout) or O(models[].exclusive)
    replaces nothing.
  - During a replacement the model does not answer (one port, and usually not enough GPU memory for both).
    After a failed replacement the previous container serves again.
  - Before any pull, and in check mode too, pre-flight reads each image to start from its registry (Registry
    HTTP API v2, with the credentials of O(registry_auths); the manifest, then the config blob, never a layer)
    or, when the image is present, from its local config. It refuses an image whose CUDA version (cog.yaml's
    C(build.cuda) in the label C(run.cog.config), else the image's C(CUDA_VERSION)) is newer than what the host
    driver supports (the CUDA version that nvidia-smi reports), naming the driver branch to install. It refuses
    an image whose compressed size times 2.5, plus 1 GiB, is more than the free space under Docker's data root
    (layers unpack to about twice their compressed size while the download is kept); this needs the manifest
    only. When the image carries its schema (label C(run.cog.openapi_schema)), it checks
    O(models[].smoke_input) against it as O(smoke_schema) says. When the registry cannot be read, the image is
    pulled unchecked and RV(image_checks[].note) says why.
seealso:
  - module: homelab.gpu.cog_predict
  - module: homelab.gpu.nvidia_smi_info
  - name: Deploying cog models
    description: How cog images run with Docker.
    link: https://github.com/replicate/cog/blob/main/docs/deploy.md
"""

EXAMPLES = r"""
- name: Deploy the host's models
  homelab.gpu.cog_model:
    models:
      - name: llama_tiny
        image: r8.im/meta/llama-2-7b-chat@sha256:8e6975e5ed6174911a6ff3d60540dfd4844201974602551e10e9e87ab143d81e
        port: 5000
        gpus: [0]
        vram_mib: 7000
        smoke_input:
          prompt: "[INST]Say hello[/INST]"
          max_new_tokens: 16
    registry_auths:
      - registry: r8.im
        username: "{{ vault_r8_user }}"
        password: "{{ vault_r8_token }}"
  become: true

- name: Let a big model take GPU 0 for itself (stops the other managed models there)
  homelab.gpu.cog_model:
    models:
      - name: sdxl
        image: r8.im/stability-ai/sdxl@sha256:7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc
        port: 5001
        gpus: [0]
        exclusive: true
  become: true

- name: Remove a model and its image
  homelab.gpu.cog_model:
    models:
      - name: llama_tiny
        state: absent
        prune_image: true
  become: true
"""

RETURN = r"""
actions:
  description: What was done (or in check mode, what would be done), in order.
  returned: always
  type: list
  elements: str
  sample:
    - pulled r8.im/meta/llama-2-7b-chat@sha256:8e69...
    - replaced llama_tiny (config hash 1f2e3d4c5b6a -> 9a8b7c6d5e4f)
models:
  description: One entry per model, in the order of O(models).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Container name.
      type: str
      sample: llama_tiny
    state:
      description: The requested state.
      type: str
      sample: started
    action:
      description:
        - What happened to the container. V(created), V(replaced), V(started), V(unchanged), V(stopped),
          V(removed), or V(none) for a container that was already as requested.
      type: str
      sample: replaced
    changed:
      description: Whether this model changed.
      type: bool
      sample: true
    config_hash:
      description: sha256 of the container's run configuration (label C(homelab.gpu.config-hash)).
      type: str
      sample: 9a8b7c6d5e4f...
    image:
      description: The image reference.
      type: str
      sample: r8.im/meta/llama-2-7b-chat@sha256:8e69...
    image_id:
      description: Local id of the image.
      type: str
      sample: sha256:0b1c...
    container_id:
      description: Id of the container, V(null) when there is none.
      type: str
    gpus:
      description: UUIDs of the GPUs the model gets.
      type: list
      elements: str
    cdi_devices:
      description: The CDI device names the container is given (C(nvidia.com/gpu=<name>)), empty with C(--gpus).
      type: list
      elements: str
      sample: ['0']
    url:
      description: Base URL of the model as seen from the host.
      type: str
      sample: http://127.0.0.1:5000
    health:
      description: Health status that cog reported last (V(READY) once ready), V(null) when not checked.
      type: str
      sample: READY
    ready_seconds:
      description: Seconds from the start of the container (or of the check) until READY was seen.
      type: float
      sample: 41.7
    ready_seen_after_s:
      description:
        - Seconds between the moment cog finished setup (C(setup.completed_at) of the health body) and the
          moment the module saw READY, for a container started in this run. V(null) when not measured.
      type: float
      sample: 0.12
    smoke:
      description: Result of the smoke prediction (C(status), C(output), C(metrics), C(id)), V(null) without one.
      type: dict
    smoke_schema:
      description:
        - How O(models[].smoke_input) was fitted to the model's schema (C(mode), C(available), C(note),
          C(converted), see O(smoke_schema)).
      type: dict
      returned: when the model was checked with a smoke prediction
gpu_request:
  description:
    - How the GPUs were requested from Docker, V(null) when no model of the list asks for one (or with
      O(gpu_requests=false)).
  returned: always
  type: dict
  contains:
    mode:
      description: The O(gpu_request_mode) asked for.
      type: str
      sample: auto
    method:
      description: V(cdi) or V(gpus).
      type: str
      sample: cdi
    reason:
      description: Why this method.
      type: str
      sample: Docker 26.1.5 has CDI enabled and /etc/cdi/nvidia.yaml offers nvidia.com/gpu devices 0, all
    docker_version:
      description: Docker Engine version, from C(docker info).
      type: str
      sample: 26.1.5
    cdi_devices:
      description: The C(nvidia.com/gpu) device names that the CDI specs on the host offer.
      type: list
      elements: str
      sample: ['0', all]
image_checks:
  description: What pre-flight read of each image to start, before any pull.
  returned: always
  type: list
  elements: dict
  contains:
    image:
      description: The image reference.
      type: str
    source:
      description: V(registry), V(local) for an image already present, or V(null) when it could not be read.
      type: str
      sample: registry
    size:
      description: Compressed size in bytes from the registry's manifest, V(null) for a local image.
      type: int
      sample: 13421772800
    cuda:
      description: The CUDA version that the image needs, V(null) when it does not say.
      type: str
      sample: "12.1"
    schema:
      description: Whether the image carries its OpenAPI schema in its labels.
      type: bool
    note:
      description: Why the image was not checked, V(null) when it was.
      type: str
      sample: null
gpus:
  description: VRAM admission per GPU that a model with O(models[].vram_mib) uses.
  returned: always
  type: list
  elements: dict
  sample:
    - index: 0
      uuid: GPU-5a0e2c1d-8b7f-4e3a-9c61-2f4d7b8e9a10
      name: NVIDIA GeForce RTX 3050
      memory_total_mib: 8192
      memory_free_mib: 6619
      released_mib: 0
      available_mib: 6619
      needed_mib: 3000
      models: [demo_a]
      fits: true
"""

import os
import pwd
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.gpu.plugins.module_utils._common import bind_error, run_command
from ansible_collections.homelab.gpu.plugins.module_utils import _cdi
from ansible_collections.homelab.gpu.plugins.module_utils import _cog
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_http
from ansible_collections.homelab.gpu.plugins.module_utils import _gpu_procs
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_schema
from ansible_collections.homelab.gpu.plugins.module_utils import _nvidia_smi
from ansible_collections.homelab.gpu.plugins.module_utils import _registry


class DeployFailed(Exception):
    """A model could not be brought up; the message says what happened (rollback included)."""


class CogModels:
    """Pre-flight, pull, run, wait for READY and roll back the cog models of one host."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.check = module.check_mode
        self.docker = None
        self.actions = []
        self.changed = False
        self.containers = {}
        self.image_ids = {}
        self.gpu_request = None
        self.cdi_names = {}
        # model name -> names of unmanaged containers of another name, holding its port, that it takes over
        self.port_takeovers = {}

    # ------------------------------------------------------------------ helpers

    def fail(self, msg, **extra):
        self.module.fail_json(msg=msg, changed=self.changed, actions=self.actions, **extra)

    def act(self, text):
        self.actions.append(text)
        self.changed = True

    def docker_cmd(self, args, timeout=120, data=None, what=None):
        cmd = run_command(self.module, [self.docker] + args, timeout=timeout, data=data)
        if cmd.rc != 0:
            if cmd.timed_out:
                raise DeployFailed('docker %s timed out after %s s' % (what or args[0], timeout))
            said = (cmd.stderr or cmd.stdout).strip()
            raise DeployFailed('docker %s failed (rc=%s): %s' % (what or ' '.join(args[:2]), cmd.rc, said))
        return cmd.stdout

    def models(self):
        out = []
        for model in self.params['models']:
            model = dict(model)
            model['state'] = model.get('state') or 'started'
            model['shm_size'] = model.get('shm_size') or self.params['shm_size']
            model['bind_address'] = model.get('bind_address') or self.params['bind_address']
            # Only a value that is not given takes the default: 0 is refused by pre-flight, not turned into 900.
            if model.get('readiness_timeout') is None:
                model['readiness_timeout'] = self.params['readiness_timeout']
            out.append(model)
        return out

    def url_of(self, model):
        return 'http://%s:%d' % (_cog.poll_host(model['bind_address']), model['port'])

    # ------------------------------------------------------------------ reading the host

    def read_containers(self):
        ids = self.docker_cmd(['ps', '--all', '--quiet', '--no-trunc'], what='ps').split()
        if not ids:
            return {}
        return _cog.parse_inspect(self.docker_cmd(['container', 'inspect'] + ids, what='container inspect'))

    def image_id(self, ref):
        cmd = run_command(self.module, [self.docker, 'image', 'inspect', '--format', '{{.Id}}', ref], timeout=60)
        return cmd.stdout.strip() if cmd.rc == 0 else None

    def listening_ports(self):
        ports = set()
        for path in ('/proc/net/tcp', '/proc/net/tcp6'):
            try:
                with open(path) as handle:
                    ports |= _cog.parse_listening_ports(handle.read())
            except (IOError, OSError):
                continue
        return ports

    def gpu_info(self):
        info = self.params['gpu_info']
        if info:
            return info
        path = self.params['nvidia_smi_path'] or self.module.get_bin_path('nvidia-smi')
        if not path:
            return {'state': _nvidia_smi.STATE_NOT_INSTALLED, 'gpus': [],
                    'message': 'nvidia-smi was not found on PATH'}
        cmd = run_command(self.module, [path, '-q', '-x'], timeout=30)
        result = _nvidia_smi.classify(cmd.rc, cmd.stdout, cmd.stderr, timed_out=cmd.timed_out, timeout=30)
        result.pop('notices', None)
        return result

    def gpu_usage_by_container(self, gpus):
        """{(gpu uuid, container name): MiB} from the GPU's processes and their cgroups."""
        by_id = dict((c['id'], c['name']) for c in self.containers.values())
        cgroups = _gpu_procs.read_cgroups(_gpu_procs.gpu_pids(gpus))
        by_container, dummy = _gpu_procs.attribute(gpus, cgroups, by_id)
        usage = {}
        for name, entries in by_container.items():
            for entry in entries:
                if entry['used_mib']:
                    usage[(entry['gpu_uuid'], name)] = entry['used_mib']
        return usage

    def choose_gpu_request(self, models, gpu_sets, gpus, requests):
        """Pick --gpus or CDI for the models that get a GPU; return error messages."""
        wanting = [m for m in models if m['state'] == 'started' and gpu_sets.get(m['name'])]
        if not self.params['gpu_requests'] or not wanting:
            return []
        mode = self.params['gpu_request_mode']
        found = {'info': None, 'devices': {'files': [], 'devices': [], 'errors': []}, 'error': None}
        if mode != 'gpus':
            found = _cdi.probe(lambda argv, timeout: run_command(self.module, argv, timeout=timeout), self.docker)
        method, reason = _cdi.choose_method(mode, found['info'], found['devices'])
        info = found['info'] or {}
        self.gpu_request = {'mode': mode, 'method': method, 'reason': reason,
                            'docker_version': info.get('server_version'),
                            'cdi_devices': found['devices']['devices']}
        if method is None:
            return ['%s%s' % (reason, ' (%s)' % found['error'] if found['error'] else '')]
        if method != 'cdi':
            return []
        errors = []
        for i, model in enumerate(models):
            if model not in wanting:
                continue
            matched, dummy = _cog.resolve_gpus(requests[model['name']], gpus)
            try:
                self.cdi_names[model['name']] = _cdi.cdi_device_names(requests[model['name']], matched,
                                                                      found['devices']['devices'])
            except ValueError as exc:
                errors.append('models[%d] (%s): %s' % (i, model['name'], exc))
        return errors

    # ------------------------------------------------------------------ pre-flight

    def preflight(self, models):
        errors = _cog.validate_models(models)
        if errors:
            self.fail('Pre-flight refused the model list: %s' % '; '.join(errors))
        for i, model in enumerate(models):
            image = model.get('image')
            if image and model['state'] != 'absent' and not _cog.parse_image(image)['digest']:
                self.module.warn('models[%d] (%s) image %s has no digest: a tag can move, and it is pulled only '
                                 'when absent. Pin it as name@sha256:...' % (i, model['name'], image))

        errors = []
        for i, model in enumerate(models):
            where = 'models[%d] (%s)' % (i, model['name'])
            for name in (model['name'], model['name'] + _cog.PREVIOUS_SUFFIX):
                existing = self.containers.get(name)
                if (existing and not existing['managed'] and name == model['name'] and model.get('takeover')
                        and model['state'] == 'started'):
                    continue
                if existing and not existing['managed']:
                    errors.append('%s: a container named %s exists and is not managed by homelab.gpu (no label '
                                  '%s=true); rename or remove it, pick another name, or set takeover: true to let '
                                  'homelab.gpu replace it (kept until the new container is READY)'
                                  % (where, name, _cog.MANAGED_LABEL))

        # GPUs: every requested index or UUID must exist.
        requests = dict((m['name'], _cog.normalize_gpus(m.get('gpus'))) for m in models)
        wants_gpu = [m for m in models if m['state'] != 'absent' and requests[m['name']] != 'none']
        info = {'state': None, 'gpus': []}
        if wants_gpu:
            info = self.gpu_info()
        gpus = info.get('gpus') or []
        gpu_sets = {}
        for i, model in enumerate(models):
            if model['state'] == 'absent' or requests[model['name']] == 'none':
                gpu_sets[model['name']] = set()
                continue
            where = 'models[%d] (%s)' % (i, model['name'])
            if info.get('state') != _nvidia_smi.STATE_OK:
                errors.append('%s asks for GPUs %s, but nvidia-smi reports state %s: %s'
                              % (where, model.get('gpus'), info.get('state'), info.get('message')))
                gpu_sets[model['name']] = set()
                continue
            matched, missing = _cog.resolve_gpus(requests[model['name']], gpus)
            if missing:
                errors.append('%s.gpus asks for GPU %s, which this host does not have (it has %s)'
                              % (where, ', '.join(missing),
                                 ', '.join('%s %s' % (g.get('index'), g.get('uuid')) for g in gpus) or 'none'))
            gpu_sets[model['name']] = set(g.get('uuid') for g in matched)
        errors += _cog.exclusive_conflicts(models, gpu_sets)
        if not errors:
            errors += self.choose_gpu_request(models, gpu_sets, gpus, requests)
        if errors:
            self.fail('Pre-flight refused the model list: %s' % '; '.join(errors))

        # Containers that this run stops: listed stopped/absent models, and managed containers on the GPUs of
        # an exclusive model.
        listed_started = set(m['name'] for m in models if m['state'] == 'started')
        to_stop = {}
        for model in models:
            if model['state'] != 'started' and model['name'] in self.containers:
                to_stop[model['name']] = 'state %s' % model['state']
        for model in models:
            if model['state'] != 'started' or not model.get('exclusive'):
                continue
            mine = gpu_sets[model['name']]
            for name, cont in sorted(self.containers.items()):
                if (cont['managed'] and cont['running'] and name not in listed_started
                        and not name.endswith(_cog.PREVIOUS_SUFFIX) and mine & set(cont['gpu_uuids'])):
                    to_stop.setdefault(name, 'exclusive %s' % model['name'])

        # Ports: free on the host, or held by the model's own container or by one that this run stops.
        listening = self.listening_ports()
        holders = {}
        for name, cont in self.containers.items():
            if cont['running']:
                for port in cont['host_ports']:
                    holders.setdefault(port, []).append(name)
        for i, model in enumerate(models):
            if model['state'] != 'started':
                continue
            where = 'models[%d] (%s)' % (i, model['name'])
            own = (model['name'], model['name'] + _cog.PREVIOUS_SUFFIX)
            others = [n for n in holders.get(model['port'], []) if n not in own and n not in to_stop]
            adoptable = [n for n in others if model.get('takeover') and not self.containers[n]['managed']
                         and not n.endswith(_cog.PREVIOUS_SUFFIX)]
            if adoptable:
                self.port_takeovers[model['name']] = sorted(adoptable)
                for name in adoptable:
                    to_stop[name] = 'port %s taken over by %s' % (model['port'], model['name'])
                others = [n for n in others if n not in adoptable]
            if others:
                errors.append('%s.port %s is already published by container %s'
                              % (where, model['port'], ', '.join(sorted(others))))
            elif model['port'] in listening and not holders.get(model['port']):
                errors.append('%s.port %s is already in use on this host by a process that is not a container '
                              '(see: ss -ltnp sport = :%s)' % (where, model['port'], model['port']))

        # VRAM admission.
        usage = self.gpu_usage_by_container(gpus) if gpus else {}
        demands, releases = {}, {}
        for model in models:
            if model['state'] != 'started':
                continue
            for uuid in gpu_sets[model['name']]:
                if model.get('vram_mib') is not None:
                    demands.setdefault(uuid, []).append((model['name'], model['vram_mib']))
        for (uuid, name), mib in sorted(usage.items()):
            base = name[:-len(_cog.PREVIOUS_SUFFIX)] if name.endswith(_cog.PREVIOUS_SUFFIX) else name
            if base in listed_started or name in to_stop:
                releases.setdefault(uuid, []).append((name, mib))
        report, gpu_errors = _cog.admission(gpus, demands, releases)
        errors += gpu_errors
        if errors:
            self.fail('Pre-flight refused the model list: %s' % '; '.join(errors), gpus=report,
                      gpu_request=self.gpu_request)
        return gpu_sets, to_stop, report

    # ------------------------------------------------------------------ registry and images

    def docker_config_path(self):
        # The docker CLI run by this module (as the become user) reads its credentials from here.
        home = pwd.getpwuid(os.getuid()).pw_dir
        base = os.environ.get('DOCKER_CONFIG') or os.path.join(home, '.docker')
        return os.path.join(base, 'config.json')

    def login(self):
        path = self.docker_config_path()
        for auth in self.params['registry_auths']:
            try:
                with open(path) as handle:
                    current = handle.read()
            except (IOError, OSError):
                current = ''
            if _cog.auth_matches(current, auth['registry'], auth['username'], auth['password']):
                continue
            if not self.check:
                self.docker_cmd(['login', '--username', auth['username'], '--password-stdin', auth['registry']],
                                data=auth['password'], timeout=120, what='login to %s' % auth['registry'])
            # Recorded once done, so that a refused login does not show up as a change.
            self.act('logged in to %s as %s' % (auth['registry'], auth['username']))
        if os.path.exists(path) and (os.stat(path).st_mode & 0o777) != 0o600:
            if not self.check:
                os.chmod(path, 0o600)
            self.act('made %s mode 0600' % path)

    def pull(self, models):
        for model in models:
            image = model.get('image')
            if not image or image in self.image_ids:
                continue
            self.image_ids[image] = self.image_id(image)
            if self.image_ids[image] or model['state'] != 'started':
                continue
            self.act('pulled %s' % image)
            if self.check:
                continue
            self.docker_cmd(['pull', '--quiet', image], timeout=self.params['pull_timeout'],
                            what='pull %s' % image)
            self.image_ids[image] = self.image_id(image)

    # ------------------------------------------------------------------ containers

    def wait_ready(self, model, started_wall):
        """Poll /health-check until READY; return an info dict, or raise DeployFailed."""
        name = model['name']
        url = self.url_of(model)
        interval = self.params['poll_interval']
        timeout = model['readiness_timeout']
        start = time.monotonic()
        last_inspect = 0.0
        last = None
        last_error = None
        while True:
            loop_start = time.monotonic()
            health, error = _cog_http.health(url, timeout=min(2.0, max(0.5, timeout)))
            if health is not None:
                last = health
                if _cog.is_ready(health):
                    seen = time.time()
                    done = _cog.parse_timestamp(health.get('setup_completed_at') or '')
                    return {'health': health['status'], 'ready_seconds': round(time.monotonic() - start, 3),
                            'ready_seen_after_s': (round(seen - done, 3)
                                                   if done is not None and started_wall is not None
                                                   and done >= started_wall - 1 else None)}
                if health['status'] in _cog.HEALTH_FATAL:
                    raise DeployFailed('cog reports %s. Setup logs:\n%s'
                                       % (health['status'], health['setup_logs'].strip()))
            else:
                last_error = error
            if loop_start - last_inspect >= 1.0:
                last_inspect = loop_start
                cont = self.read_one(name)
                if cont is None:
                    raise DeployFailed('the container %s is gone' % name)
                if not cont['running'] or cont['restart_count'] > 0:
                    raise DeployFailed('the container exited (status %s, exit code %s, restarts %s)'
                                       % (cont['status'], cont['exit_code'], cont['restart_count']))
            if time.monotonic() - start >= timeout:
                if last is not None:
                    raise DeployFailed('not READY after %s s: cog still reports %s. Setup logs so far:\n%s'
                                       % (timeout, last['status'], last['setup_logs'].strip()))
                raise DeployFailed('not READY after %s s: %s does not answer (%s)' % (timeout, url, last_error))
            time.sleep(max(0.0, interval - (time.monotonic() - loop_start)))

    def read_one(self, name):
        cmd = run_command(self.module, [self.docker, 'container', 'inspect', name], timeout=60)
        if cmd.rc != 0:
            return None
        return _cog.parse_inspect(cmd.stdout).get(name)

    def logs(self, name):
        cmd = run_command(self.module, [self.docker, 'logs', '--tail', str(self.params['log_lines']), name],
                          timeout=60)
        return _cog.tail('%s%s' % (cmd.stdout, cmd.stderr), self.params['log_lines'])

    def verify(self, model, started_wall, smoke=True):
        """Readiness, then the smoke prediction if any and asked for; returns the info for the model's result."""
        info = self.wait_ready(model, started_wall)
        info['smoke'] = None
        if smoke and model.get('smoke_input') is not None:
            # schema hook (homelab.gpu _cog_schema): fit smoke_input to the running model's schema.
            smoke_input, info['smoke_schema'], problem = _cog_schema.prepare(
                self.url_of(model), model['smoke_input'], self.params['smoke_schema'])
            if problem:
                raise DeployFailed('the smoke prediction was not sent: %s' % problem)
            result, error = _cog_http.predict(self.url_of(model), smoke_input,
                                              timeout=self.params['smoke_timeout'])
            if error:
                raise DeployFailed('the smoke prediction failed: %s' % error)
            info['smoke'] = result
        return info

    def run_container(self, model, spec, chash, gpu_uuids):
        argv = _cog.run_argv(self.docker, model['name'], spec, chash, gpu_uuids)
        started_wall = time.time()
        self.docker_cmd(argv[1:], timeout=300, what='run %s' % model['name'])
        return started_wall

    def remove(self, name):
        self.docker_cmd(['rm', '--force', name], what='rm %s' % name)

    def stop(self, name):
        self.docker_cmd(['stop', '--time', str(self.params['stop_timeout']), name],
                        timeout=self.params['stop_timeout'] + 60, what='stop %s' % name)

    def failure(self, model, what, exc, logs):
        return ('%s: %s: %s\nLast %d lines of the container log:\n%s'
                % (model['name'], what, exc, self.params['log_lines'], logs or '(empty)'))

    def deploy(self, model, gpu_uuids, result):
        """Bring one started model to READY. Returns nothing; raises DeployFailed after any rollback."""
        name = model['name']
        spec = _cog.run_spec(model, self.params['gpu_requests'], self.cdi_names.get(model['name']))
        result['cdi_devices'] = list(spec.get('cdi_devices') or [])
        chash = _cog.config_hash(spec)
        result['config_hash'] = chash
        current = self.containers.get(name)
        image_id = self.image_ids.get(model['image'])
        result['image_id'] = image_id
        if current is None:
            action = 'created'
        elif current['config_hash'] != chash or (image_id and current['image_id'] != image_id):
            action = 'replaced'
        elif not current['running']:
            action = 'started'
        else:
            action = 'unchanged'
        result['action'] = action
        result['changed'] = action != 'unchanged'
        if action == 'created':
            self.act('created %s (%s on port %s)' % (name, model['image'], model['port']))
        elif action == 'replaced' and not current['managed']:
            self.act('took over %s, a container not managed by homelab.gpu (kept as %s%s until the new one is READY)'
                     % (name, name, _cog.PREVIOUS_SUFFIX))
        elif action == 'replaced':
            self.act('replaced %s (config hash %s -> %s)'
                     % (name, (current['config_hash'] or 'none')[:12], chash[:12]))
        elif action == 'started':
            self.act('started %s' % name)
        if self.check:
            result['container_id'] = current['id'] if current else None
            return

        if action == 'unchanged':
            result['container_id'] = current['id']
            try:
                result.update(self.verify(model, None, smoke=False))
            except DeployFailed as exc:
                raise DeployFailed(self.failure(model, 'the running container (unchanged) is not healthy', exc,
                                                self.logs(name)))
            return

        if action == 'started':
            self.docker_cmd(['start', name], what='start %s' % name)
            result['container_id'] = current['id']
            try:
                result.update(self.verify(model, time.time()))
            except DeployFailed as exc:
                logs = self.logs(name)
                self.stop(name)
                raise DeployFailed(self.failure(model, 'the existing container did not become ready after a start '
                                                       '(it was stopped again)', exc, logs))
            return

        previous = None
        if action == 'replaced':
            previous = name + _cog.PREVIOUS_SUFFIX
            if previous in self.containers:
                self.remove(previous)
            if current['running']:
                self.stop(name)
            self.docker_cmd(['rename', name, previous], what='rename %s' % name)
        try:
            started_wall = self.run_container(model, spec, chash, gpu_uuids)
            fresh = self.read_one(name)
            result['container_id'] = fresh['id'] if fresh else None
            result.update(self.verify(model, started_wall))
        except DeployFailed as exc:
            logs = self.logs(name)
            if self.read_one(name) is not None:
                self.remove(name)
            self.restart_taken_over(model)
            if previous is None:
                raise DeployFailed(self.failure(model, 'the new container failed and was removed; there was no '
                                                       'previous version to go back to', exc, logs))
            self.docker_cmd(['rename', previous, name], what='rename %s back' % previous)
            self.act('rolled back %s to its previous container (config hash %s)'
                     % (name, (current['config_hash'] or 'none')[:12]))
            back = 'is stopped, as it was before'
            if current['running']:
                self.docker_cmd(['start', name], what='start %s' % name)
                old = dict(model)
                if current['bindings']:
                    old.update(bind_address=current['bindings'][0][0] or '0.0.0.0', port=current['bindings'][0][1])
                try:
                    again = self.wait_ready(old, None)
                    back = 'serves again (%s)' % again['health']
                except DeployFailed as exc2:
                    back = 'was started again but is not ready either: %s' % exc2
            raise DeployFailed(self.failure(model, 'the new container (image %s, config hash %s) failed, so it was '
                                                   'removed and the previous container (config hash %s) %s. Failure'
                                            % (model['image'], chash[:12], (current['config_hash'] or 'none')[:12],
                                               back), exc, logs))
        if previous is not None:
            self.remove(previous)

    def restart_taken_over(self, model):
        """Start again the containers of another name whose port this failed model took over."""
        for other in self.port_takeovers.get(model['name'], []):
            cont = self.containers.get(other)
            if cont is not None and cont['running']:
                self.docker_cmd(['start', other], what='start %s' % other)
                self.act('started %s again (the model that took over its port failed)' % other)

    def recover_leftovers(self, models):
        """A .previous container from an interrupted run: give it its name back, or drop it when stale."""
        for model in models:
            name = model['name']
            previous = name + _cog.PREVIOUS_SUFFIX
            if previous not in self.containers:
                continue
            if name in self.containers:
                self.act('removed the stale %s' % previous)
                if not self.check:
                    self.remove(previous)
                del self.containers[previous]
            else:
                self.act('renamed %s, left by an interrupted run, back to %s' % (previous, name))
                if not self.check:
                    self.docker_cmd(['rename', previous, name], what='rename %s' % previous)
                cont = self.containers.pop(previous)
                cont['name'] = name
                self.containers[name] = cont

    # ------------------------------------------------------------------ main

    def state_of(self, name):
        cont = self.containers.get(name)
        if cont is None:
            return {'state': 'absent'}
        return {'state': 'running' if cont['running'] else 'stopped', 'config_hash': cont['config_hash'],
                'image': cont['image']}

    @staticmethod
    def predicted_state(model, result, before):
        if model['state'] == 'started':
            return {'state': 'running', 'config_hash': result['config_hash'], 'image': model['image']}
        if model['state'] == 'absent' or before['state'] == 'absent':
            return {'state': 'absent'}
        return dict(before, state='stopped')

    def run(self):
        models = self.models()
        self.docker = self.module.get_bin_path('docker')
        if not self.docker:
            self.fail('The docker CLI was not found on PATH; install Docker first (homelab.gpu.docker role)')
        try:
            self.containers = self.read_containers()
        except DeployFailed as exc:
            hint = ''
            if 'Cannot connect to the Docker daemon' in str(exc):
                hint = (' Nothing was changed: start Docker (systemctl start docker) or run the homelab.gpu.docker '
                        'role (playbook homelab.gpu.provision), which starts it, then re-run.')
            self.fail('Cannot list containers: %s%s' % (exc, hint))
        gpu_sets, to_stop, report = self.preflight(models)
        # registry hook (homelab.gpu _registry): read each image to start before any pull, in check mode too.
        image_errors, image_checks = _registry.preflight(self.module, self.docker, models, self.gpu_info, run_command)
        if image_errors:
            self.fail('Pre-flight refused the model list: %s' % '; '.join(image_errors), image_checks=image_checks)
        before = dict((m['name'], self.state_of(m['name'])) for m in models)
        for name in to_stop:
            before.setdefault(name, self.state_of(name))

        results = []
        for model in models:
            results.append({'name': model['name'], 'state': model['state'], 'action': 'none', 'changed': False,
                            'image': model.get('image'), 'image_id': None, 'config_hash': None,
                            'container_id': None, 'gpus': sorted(gpu_sets.get(model['name']) or []),
                            'url': self.url_of(model) if model.get('port') else None, 'health': None,
                            'ready_seconds': None, 'ready_seen_after_s': None, 'smoke': None,
                            'cdi_devices': []})
        try:
            self.recover_leftovers(models)
            self.login()
            self.pull(models)
            # Free ports and GPU memory first: stops and removals, then the starts in list order.
            by_name = dict((r['name'], r) for r in results)
            for name, why in to_stop.items():
                cont = self.containers.get(name)
                model = next((m for m in models if m['name'] == name), None)
                if cont is None:
                    continue
                if model is not None and model['state'] == 'absent':
                    self.act('removed %s' % name)
                    by_name[name].update(action='removed', changed=True, container_id=cont['id'])
                    if not self.check:
                        self.remove(name)
                    continue
                if cont['running']:
                    self.act('stopped %s (%s)' % (name, why))
                    if name in by_name:
                        by_name[name].update(action='stopped', changed=True, container_id=cont['id'])
                    if not self.check:
                        self.stop(name)
                elif name in by_name:
                    by_name[name]['container_id'] = cont['id']
            for model in models:
                if model['state'] == 'absent' and model.get('prune_image') and model.get('image'):
                    self.prune(model)
            for model in models:
                if model['state'] == 'started':
                    self.deploy(model, sorted(gpu_sets[model['name']]), by_name[model['name']])
        except DeployFailed as exc:
            self.fail(str(exc), models=results, gpus=report, gpu_request=self.gpu_request)

        after = {}
        if self.check:
            for model, res in zip(models, results):
                after[model['name']] = self.predicted_state(model, res, before[model['name']])
            for name in to_stop:
                after.setdefault(name, dict(before[name], state='stopped'))
        else:
            self.containers = self.read_containers()
            for name in before:
                after[name] = self.state_of(name)
        self.module.exit_json(changed=self.changed, actions=self.actions, models=results, gpus=report,
                              gpu_request=self.gpu_request, diff={'before': before, 'after': after},
                              image_checks=image_checks)

    def prune(self, model):
        image = model['image']
        image_id = self.image_ids.get(image) or self.image_id(image)
        if not image_id:
            return
        users = [c['name'] for c in self.containers.values()
                 if c['image_id'] == image_id and c['name'] != model['name']]
        if users:
            self.module.warn('%s: image %s is kept, containers %s still use it'
                             % (model['name'], image, ', '.join(sorted(users))))
            return
        self.act('removed image %s' % image)
        if not self.check:
            self.docker_cmd(['image', 'rm', image], what='image rm %s' % image)


def main():
    model_options = dict(
        name=dict(type='str', required=True),
        image=dict(type='str'),
        port=dict(type='int'),
        gpus=dict(type='raw', default='all'),
        vram_mib=dict(type='int'),
        env=dict(type='dict', default={}),
        state=dict(type='str', choices=['started', 'stopped', 'absent'], default='started'),
        exclusive=dict(type='bool', default=False),
        smoke_input=dict(type='dict'),
        readiness_timeout=dict(type='int'),
        prune_image=dict(type='bool', default=False),
        takeover=dict(type='bool', default=False),
        shm_size=dict(type='str'),
        bind_address=dict(type='str'),
        allowed_networks=dict(type='list', elements='str'),
    )
    argument_spec = dict(
        models=dict(type='list', elements='dict', required=True, options=model_options),
        registry_auths=dict(type='list', elements='dict', default=[], options=dict(
            registry=dict(type='str', required=True),
            username=dict(type='str', required=True),
            password=dict(type='str', required=True, no_log=True),
        )),
        bind_address=dict(type='str', default='0.0.0.0'),
        shm_size=dict(type='str', default='6g'),
        readiness_timeout=dict(type='int', default=900),
        poll_interval=dict(type='float', default=0.2),
        pull_timeout=dict(type='int', default=7200),
        stop_timeout=dict(type='int', default=30),
        smoke_timeout=dict(type='int', default=600),
        smoke_schema=dict(type='str', choices=list(_cog_schema.MODES), default='coerce'),
        gpu_requests=dict(type='bool', default=True),
        gpu_request_mode=dict(type='str', choices=['auto', 'gpus', 'cdi'], default='auto'),
        gpu_info=dict(type='dict'),
        nvidia_smi_path=dict(type='path'),
        log_lines=dict(type='int', default=30),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    errors = _cog.option_errors(module.params, bind_error)
    if errors:
        module.fail_json(msg='; '.join(errors))
    CogModels(module).run()


if __name__ == '__main__':
    main()
