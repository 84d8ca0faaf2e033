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
          - A run interrupted during a takeover (the user's container left as C(<name>.previous)) is finished by the
            next run when the new container answers READY, and undone otherwise. Undone means the user's container
            gets its name back, stopped as the interrupted run left it, and the takeover starts again.
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
        It needs Docker Engine 25 or later with CDI enabled (C(features.cdi) in daemon.json for 25.0 to 28.1,
        on by default from 28.2) and a CDI spec of kind C(nvidia.com/gpu), as C(nvidia-ctk cdi generate) writes it to
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.gpu.plugins.module_utils._common import bind_error
from ansible_collections.homelab.gpu.plugins.module_utils import _cdi
from ansible_collections.homelab.gpu.plugins.module_utils import _cog
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_deploy
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_schema


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
        gpu_request_mode=dict(type='str', choices=list(_cdi.MODES), default='auto'),
        gpu_info=dict(type='dict'),
        nvidia_smi_path=dict(type='path'),
        log_lines=dict(type='int', default=30),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    errors = _cog.option_errors(module.params, bind_error)
    if errors:
        module.fail_json(msg='; '.join(errors))
    _cog_deploy.run_module(module)


if __name__ == '__main__':
    main()
