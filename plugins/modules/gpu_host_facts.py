#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_host_facts
short_description: Read everything the homelab.gpu roles need to know about a GPU host, in one call
version_added: 0.2.0
author:
  - homelab.gpu contributors (@homelab-gpu)
description:
  - The one read of a GPU host per run. Returns the distribution facts that C(setup) (C(gather_subset=min)) would
    give the roles, and C(homelab_gpu_host), a dict with Secure Boot, systemd, nouveau, the asked-for Debian
    packages, files, systemd units, users and groups, Docker's daemon.json, what the Docker engine says, where its
    data root is and how much room it has, and what nvidia-smi says of the GPUs.
  - Roles call it once and decide the rest on the controller, so that a converged re-run needs no other probe.
  - Changes nothing. Never fails because a tool is missing or a daemon is down; the result says so instead
    (RV(ansible_facts.homelab_gpu_host.secure_boot=null), RV(ansible_facts.homelab_gpu_host.dpkg_error),
    RV(ansible_facts.homelab_gpu_host.docker.answers=false), C(gpu.state)).
  - Runs its commands (C(mokutil), C(dpkg-query), C(systemctl show), C(docker info), C(nvidia-smi)) at the same
    time, each at most once, and reads the files meanwhile.
  - Every name option is checked before anything runs; a bad value fails the module with a message that names it.
extends_documentation_fragment:
  - homelab.gpu.attributes
  - homelab.gpu.attributes.info_module
  - ansible.builtin.action_common_attributes.facts
attributes:
  facts:
    support: full
options:
  packages:
    description:
      - Debian packages to look up, with one C(dpkg-query --show) call. Names as Debian policy allows them
        (no architecture qualifier).
    type: list
    elements: str
    default: []
  files:
    description: Absolute paths to look at (and read, for small text files). A link is reported as a link; its
      target is read.
    type: list
    elements: path
    default: []
  units:
    description:
      - systemd units to look up, with one C(systemctl show) call. A name without a unit type is a C(.service), as
        for systemctl. Left out on a host without systemd (RV(ansible_facts.homelab_gpu_host.systemd=false)).
    type: list
    elements: str
    default: []
  users:
    description: Users to look up, with the system's user database (no command).
    type: list
    elements: str
    default: []
  groups:
    description: Groups to look up, with the system's group database (no command).
    type: list
    elements: str
    default: []
  daemon_json_path:
    description: Path of Docker's daemon configuration. Read only; a FIFO or a device there is refused unread.
    type: path
    default: /etc/docker/daemon.json
  docker:
    description: Ask the Docker engine (C(docker info)) and read the CDI specs. With V(false),
      RV(ansible_facts.homelab_gpu_host.docker) is V(null).
    type: bool
    default: true
  docker_default_root:
    description: The data root to report when the engine does not answer and daemon.json sets no C(data-root).
    type: path
    default: /var/lib/docker
  gpu:
    description: Run C(nvidia-smi -q -x). With V(false), RV(ansible_facts.homelab_gpu_host.gpu) is V(null).
    type: bool
    default: true
  nvidia_smi_path:
    description:
      - Path of the C(nvidia-smi) binary. When not set, C(nvidia-smi) is searched on E(PATH) (and in the C(sbin)
        directories).
    type: path
  nvidia_smi_timeout:
    description:
      - Seconds after which C(nvidia-smi) is stopped (it can hang on a wedged GPU); C(gpu.state) is then
        V(error). A C(nvidia-smi) that ignores the stop signal is killed 5 seconds later.
      - From V(1) to V(3600).
    type: int
    default: 30
  secure_boot:
    description: Ask C(mokutil --sb-state). With V(false), RV(ansible_facts.homelab_gpu_host.secure_boot) and
      RV(ansible_facts.homelab_gpu_host.secure_boot_detail) are V(null).
    type: bool
    default: true
notes:
  - Run it with C(become=true); without root, C(docker info) and some files may not be readable, and the result says so.
  - The distribution facts are those of C(setup) with C(gather_subset=min), computed by ansible-core's own
    distribution collector, so RV(ansible_facts.ansible_distribution) and the like are the same values.
    C(architecture) and C(kernel) are what ansible-core's platform collector computes; that collector is not run
    because it also resolves the host's FQDN, which can wait seconds on a broken resolver.
requirements:
  - A Debian or Ubuntu host for RV(ansible_facts.homelab_gpu_host.packages); every other part works without dpkg.
seealso:
  - module: homelab.gpu.nvidia_smi_info
  - module: homelab.gpu.docker_gpu_info
  - module: ansible.builtin.setup
"""

EXAMPLES = r"""
- name: Read the GPU host once
  homelab.gpu.gpu_host_facts:
    packages: [nvidia-driver, nvidia-container-toolkit, docker-ce, docker.io]
    files: [/etc/modprobe.d/blacklist-nouveau.conf, /etc/apt/sources.list.d/nvidia-container-toolkit.list]
    units: [docker.service, nvidia-persistenced.service]
    users: [cog]
    groups: [docker]
  become: true

- name: Decide on the controller from what was read
  ansible.builtin.debug:
    msg: >-
      {{ ansible_facts.distribution }} {{ ansible_facts.distribution_version }},
      Secure Boot {{ ansible_facts.homelab_gpu_host.secure_boot }},
      docker.service {{ ansible_facts.homelab_gpu_host.units['docker.service'].active_state | default('absent') }},
      {{ ansible_facts.homelab_gpu_host.gpu.gpu_count }} GPU(s)

- name: Only the distribution and the GPUs
  homelab.gpu.gpu_host_facts:
    docker: false
    secure_boot: false
  become: true
  register: __host

- name: Show what nvidia-smi said
  ansible.builtin.debug:
    msg: "{{ __host.host.gpu.message }}"
"""

RETURN = r"""
host:
  description: The same dict as RV(ansible_facts.homelab_gpu_host), for a registered result.
  returned: always
  type: dict
  sample: {secure_boot: null, systemd: true}
ansible_facts:
  description: Facts added to the host.
  returned: always
  type: dict
  contains:
    ansible_distribution:
      description: As C(setup) returns it (C(ansible_facts.distribution)).
      type: str
      sample: Debian
    ansible_distribution_version:
      description: As C(setup) returns it.
      type: str
      sample: '12.11'
    ansible_distribution_major_version:
      description: As C(setup) returns it.
      type: str
      sample: '12'
    ansible_distribution_release:
      description: As C(setup) returns it.
      type: str
      sample: bookworm
    ansible_architecture:
      description: As C(setup) returns it.
      type: str
      sample: x86_64
    ansible_kernel:
      description: As C(setup) returns it.
      type: str
      sample: 6.1.0-37-amd64
    homelab_gpu_host:
      description: What was read of the host.
      type: dict
      contains:
        secure_boot:
          description:
            - V(true) when C(mokutil --sb-state) says C(SecureBoot enabled); V(false) when it says disabled, that
              the system does not support Secure Boot, or that it has no EFI variables (booted without EFI).
            - V(null) when mokutil is not installed, its answer is not understood, or O(secure_boot=false).
          type: bool
          sample: false
        secure_boot_detail:
          description: The first line mokutil printed, or why it was not asked; V(null) with O(secure_boot=false).
          type: str
          sample: SecureBoot disabled
        systemd:
          description: Whether systemd runs the host (C(/run/systemd/system) is a directory).
          type: bool
          sample: true
        nouveau_loaded:
          description: Whether the nouveau kernel module is loaded; V(null) without C(/proc/modules).
          type: bool
          sample: false
        packages:
          description:
            - The O(packages) that dpkg knows, by name; a package dpkg does not know is left out.
            - C(status) is dpkg's C(db:Status-Abbrev) (C(ii) installed, C(hi) installed and held, C(rc) removed
              with its configuration left), with a third letter C(R) when dpkg marks it reinst-required.
              C(selection) is the wanted state (C(install), C(hold), C(deinstall), C(purge), C(unknown)).
          type: dict
          sample: {docker.io: {status: ii, selection: install, version: 20.10.24+dfsg1-1+deb12u1}}
        dpkg_error:
          description: Why dpkg-query gave no answer (not installed, failed), V(null) when it answered or was not
            needed.
          type: str
          sample: null
        files:
          description:
            - The O(files), by path. A missing file has only C(exists) (V(false)); one that cannot be looked at
              has C(exists) (V(null)) and C(error).
            - Otherwise C(exists), C(type) (V(file), V(directory), V(link), V(other)), C(mode) (C(0644)), C(uid),
              C(gid), C(owner), C(group), C(size) and C(link_target) of the path itself (not followed), and
              C(sha256) and C(content) of the regular file it is or links to. C(content) is the text of a file of at
              most 64 KiB that is valid UTF-8, else V(null). C(error) says why a file could not be read.
          type: dict
          sample: {/etc/modprobe.d/blacklist-nouveau.conf: {exists: true, type: file, mode: '0644', uid: 0, gid: 0,
                   owner: root, group: root, size: 38, link_target: null,
                   sha256: 0d4ad1bbb1e7b2e9d8a6c1b2b7b0b1e8d7c2d1f8b9a0e7c6d5b4a3f2e1d0c9b8,
                   content: "blacklist nouveau\noptions nouveau modeset=0\n", error: null}}
        daemon_json:
          description: Docker's daemon.json, read and parsed, never written.
          type: dict
          contains:
            path:
              description: O(daemon_json_path).
              type: str
            exists:
              description: Whether something is at the path.
              type: bool
            config:
              description: The parsed configuration; V(null) when missing or unreadable.
              type: dict
            error:
              description: Why it could not be read or parsed (not JSON, a FIFO, not UTF-8); V(null) when fine.
              type: str
        docker:
          description: What the Docker engine says, as M(homelab.gpu.docker_gpu_info) reports it; V(null) with
            O(docker=false).
          type: dict
          contains:
            answers:
              description: Whether C(docker info) answered.
              type: bool
            message:
              description: Why it did not answer, empty otherwise.
              type: str
            docker_path:
              description: The docker CLI that was run, V(null) when there is none.
              type: str
            server_version:
              description: Docker Engine version.
              type: str
            root_dir:
              description: The engine's data root (C(DockerRootDir)).
              type: str
            default_runtime:
              description: The default runtime.
              type: str
            runtimes:
              description: The runtimes Docker knows.
              type: list
              elements: str
            cdi_support:
              description: V(builtin), V(feature_flag), V(none) or V(unknown), as for M(homelab.gpu.docker_gpu_info).
              type: str
            cdi_enabled:
              description: Whether Docker reads CDI specs now.
              type: bool
            cdi_spec_dirs:
              description: The CDI spec directories Docker reads.
              type: list
              elements: str
            nvidia_cdi_specs:
              description: The spec files of kind C(nvidia.com/gpu) (in the default directories when Docker does
                not answer).
              type: list
              elements: str
            nvidia_cdi_devices:
              description: The C(nvidia.com/gpu) device names those specs offer.
              type: list
              elements: str
            cdi_spec_errors:
              description: Spec files that could not be read or parsed.
              type: list
              elements: str
            gpu_access:
              description: Whether a container can be given a GPU (the C(nvidia) runtime, or CDI with a spec).
              type: bool
        docker_data_root:
          description: The engine's data root when it answers, else daemon.json's C(data-root), else
            O(docker_default_root).
          type: str
          sample: /var/lib/docker
        docker_data_root_source:
          description: Where RV(ansible_facts.homelab_gpu_host.docker_data_root) came from.
          type: str
          choices: [engine, daemon_json, default]
          sample: engine
        docker_data_root_free_mib:
          description: MiB free for an unprivileged writer on the file system that holds the data root (or its
            nearest existing parent); V(null) when unreadable.
          type: int
          sample: 51200
        docker_data_root_mount:
          description: The mount point of that file system.
          type: str
          sample: /
        gpu:
          description: What M(homelab.gpu.nvidia_smi_info) returns (C(state), C(message), C(reboot_required),
            C(nvidia_smi_path), C(nvidia_smi_rc), C(stderr), C(driver_version), C(cuda_version), C(gpu_count),
            C(gpus)); V(null) with O(gpu=false). Lines nvidia-smi printed before its XML come back as warnings.
          type: dict
          sample: {state: not_installed, gpu_count: 0, gpus: []}
        units:
          description:
            - The O(units), by the name given, with C(load_state) (C(loaded), C(not-found), C(masked)),
              C(active_state), C(sub_state), C(unit_file_state) (empty when systemd has none), C(main_pid) and
              C(exec_main_start_monotonic) (microseconds since boot, as a string; C(0) when it never ran).
            - Empty without systemd.
          type: dict
          sample: {docker.service: {load_state: loaded, active_state: active, sub_state: running,
                   unit_file_state: enabled, main_pid: 812, exec_main_start_monotonic: '8123456'}}
        systemctl_error:
          description: Why C(systemctl show) gave no answer, V(null) when it answered or was not needed.
          type: str
          sample: null
        users:
          description: The O(users), each with C(exists) and C(groups) (group names, the primary group first).
          type: dict
          sample: {cog: {exists: true, groups: [cog, docker]}}
        groups:
          description: The O(groups), each with whether it exists.
          type: dict
          sample: {docker: true}
        requested:
          description:
            - What this read was asked for - the O(packages), O(files), O(units), O(users) and O(groups) - so that a
              caller can tell whether the read covers what it needs, or must read again.
          type: dict
          sample: {packages: [docker.io], files: [/etc/apt/keyrings], units: [docker.service], users: [], groups: []}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.gpu.plugins.module_utils import _host_facts
from ansible_collections.homelab.gpu.plugins.module_utils._common import range_error


def main():
    module = AnsibleModule(
        argument_spec=dict(
            packages=dict(type='list', elements='str', default=[]),
            files=dict(type='list', elements='path', default=[]),
            units=dict(type='list', elements='str', default=[]),
            users=dict(type='list', elements='str', default=[]),
            groups=dict(type='list', elements='str', default=[]),
            daemon_json_path=dict(type='path', default='/etc/docker/daemon.json'),
            docker=dict(type='bool', default=True),
            docker_default_root=dict(type='path', default='/var/lib/docker'),
            gpu=dict(type='bool', default=True),
            nvidia_smi_path=dict(type='path'),
            nvidia_smi_timeout=dict(type='int', default=30),
            secure_boot=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    errors = _host_facts.name_errors(module.params)
    timeout_error = range_error('nvidia_smi_timeout', module.params['nvidia_smi_timeout'], 1, 3600,
                                'a positive number of seconds',
                                'how long nvidia-smi may take before it is stopped, at most an hour')
    if timeout_error:
        errors.append(timeout_error)
    if errors:
        module.fail_json(msg='; '.join(errors))
    host, facts, warnings = _host_facts.gather(module)
    for warning in warnings:
        module.warn(warning)
    module.exit_json(changed=False, host=host, ansible_facts=dict(facts, homelab_gpu_host=host))


if __name__ == '__main__':
    main()
