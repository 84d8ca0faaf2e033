#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_smi_info
short_description: Report NVIDIA GPUs, driver and GPU processes as seen by nvidia-smi
version_added: 0.1.0
author:
  - homelab.gpu contributors (@homelab-gpu)
description:
  - Runs C(nvidia-smi -q -x) once and returns the driver and CUDA versions and, for each GPU, its identity, memory,
    utilization, temperature, power, persistence and MIG modes and compute processes, in a stable schema.
  - Never fails on a host without a working GPU unless O(require=true). Instead RV(state) says what is wrong
    (V(not_installed), V(no_devices), V(driver_not_loaded), V(driver_library_mismatch) or V(error)), and
    RV(message) says what to do.
  - Values that nvidia-smi reports as N/A (or C([Not Supported]) and the like) come back as V(null).
  - Bytes that are not UTF-8, or not allowed in XML, in what nvidia-smi prints (a process name in another
    encoding, say) come back as U+FFFD; they never change RV(state).
extends_documentation_fragment:
  - homelab.gpu.attributes
  - homelab.gpu.attributes.info_module
options:
  nvidia_smi_path:
    description:
      - Path of the C(nvidia-smi) binary.
      - When not set, C(nvidia-smi) is searched on E(PATH) (and in the C(sbin) directories).
    type: path
  timeout:
    description:
      - Seconds after which C(nvidia-smi) is stopped. It can hang on a wedged GPU; the module then returns
        RV(state=error) with a message saying that it timed out.
      - Needs C(timeout) from GNU coreutils on the host; without it there is no time limit.
      - From V(1) to V(3600). A C(nvidia-smi) that ignores the stop signal is killed 5 seconds later, and that
        counts as a time-out too.
    type: int
    default: 15
  require:
    description:
      - Fail unless RV(state) is V(ok), that is unless nvidia-smi works and lists at least one GPU.
      - The failure message says what to do, for example to reboot after a driver upgrade.
    type: bool
    default: false
requirements:
  - C(nvidia-smi), which comes with the NVIDIA driver, on the managed host.
notes:
  - RV(gpus[].index) is the GPU's position in the output of nvidia-smi, which is the index that
    C(nvidia-smi --query-gpu=index), C(nvidia-smi -i) and C(CUDA_VISIBLE_DEVICES) with C(CUDA_DEVICE_ORDER=PCI_BUS_ID)
    use. It can differ from RV(gpus[].minor_number) (the N of C(/dev/nvidiaN)).
  - Inside a container, nvidia-smi often lists no processes, because it cannot see the PIDs of other namespaces.
seealso:
  - name: nvidia-smi documentation
    description: The NVIDIA System Management Interface and the meaning of its fields.
    link: https://docs.nvidia.com/deploy/nvidia-smi/index.html
"""

EXAMPLES = r"""
- name: Read the GPUs
  homelab.gpu.nvidia_smi_info:
  register: __gpu

- name: Show the free memory of each GPU
  ansible.builtin.debug:
    msg: "GPU {{ item.index }} {{ item.name }}: {{ item.memory_free_mib }} MiB free"
  loop: "{{ __gpu.gpus }}"
  loop_control:
    label: "{{ item.index }}"

- name: Reboot when the driver was upgraded under a running kernel module
  ansible.builtin.reboot:
  become: true
  when: __gpu.reboot_required

- name: Fail with advice unless a GPU works
  homelab.gpu.nvidia_smi_info:
    require: true
    timeout: 30

- name: Use a binary outside PATH
  homelab.gpu.nvidia_smi_info:
    nvidia_smi_path: /usr/local/nvidia/bin/nvidia-smi
"""

RETURN = r"""
state:
  description:
    - V(ok) when nvidia-smi ran and listed at least one GPU.
    - V(not_installed) when no nvidia-smi binary was found.
    - V(no_devices) when the driver runs but sees no GPU.
    - V(driver_not_loaded) when nvidia-smi cannot talk to the driver (kernel module not loaded).
    - V(driver_library_mismatch) when the kernel module and the driver libraries differ (after a driver upgrade
      without a reboot); RV(reboot_required) is then V(true).
    - V(error) for anything else, a time-out included; see RV(message), RV(nvidia_smi_rc) and RV(stderr).
  returned: always
  type: str
  choices: [ok, not_installed, no_devices, driver_not_loaded, driver_library_mismatch, error]
  sample: ok
message:
  description: A sentence for humans that sums up the result and, when RV(state) is not V(ok), says what to do.
  returned: always
  type: str
  sample: 2 GPUs, driver 580.159.04, CUDA 13.0
reboot_required:
  description: Whether the host must reboot for the GPU to work (V(true) for V(driver_library_mismatch)).
  returned: always
  type: bool
  sample: false
nvidia_smi_path:
  description: The nvidia-smi binary that was run, V(null) when none was found.
  returned: always
  type: str
  sample: /usr/bin/nvidia-smi
nvidia_smi_rc:
  description:
    - Exit status of nvidia-smi, V(null) when it was not run.
    - Not named C(rc), because Ansible would count a non-zero C(rc) as a failed task, and a host without a working
      GPU is a result here, not a failure.
  returned: always
  type: int
  sample: 0
stderr:
  description: What nvidia-smi wrote on standard error (nvidia-smi writes most of its errors on standard output,
    which RV(message) quotes).
  returned: always
  type: str
  sample: ''
driver_version:
  description: Version of the NVIDIA driver; V(null) unless nvidia-smi answered with its XML report.
  returned: always
  type: str
  sample: 580.159.04
cuda_version:
  description: Highest CUDA version that the driver supports; V(null) unless nvidia-smi answered with its XML report.
  returned: always
  type: str
  sample: '13.0'
gpu_count:
  description: Number of GPUs listed (the length of RV(gpus)).
  returned: always
  type: int
  sample: 2
gpus:
  description: One entry per GPU, in the order of nvidia-smi; empty unless RV(state=ok). Fields that nvidia-smi
    reports as N/A are V(null).
  returned: always
  type: list
  elements: dict
  contains:
    index:
      description: Index of the GPU as nvidia-smi numbers it (C(--query-gpu=index)), its position in the output.
      type: int
      sample: 0
    minor_number:
      description: Minor number of the device file C(/dev/nvidiaN); may differ from RV(gpus[].index).
      type: int
      sample: 0
    name:
      description: Product name.
      type: str
      sample: NVIDIA H100 80GB HBM3
    uuid:
      description: UUID of the GPU.
      type: str
      sample: GPU-3f1ad9c8-7d27-0f3b-6c0a-52b1d87b0d1e
    pci_bus_id:
      description: PCI bus id (domain:bus:device.function).
      type: str
      sample: 00000000:18:00.0
    architecture:
      description: Product architecture, for example V(Hopper) or V(Ampere).
      type: str
      sample: Hopper
    memory_total_mib:
      description: Total frame-buffer memory in MiB.
      type: int
      sample: 81559
    memory_reserved_mib:
      description: Memory reserved by the driver in MiB (total = reserved + used + free); V(null) on drivers
        that do not report it.
      type: int
      sample: 525
    memory_used_mib:
      description: Memory in use in MiB.
      type: int
      sample: 3592
    memory_free_mib:
      description: Free memory in MiB.
      type: int
      sample: 77442
    utilization_gpu_percent:
      description: Percentage of time a kernel ran on the GPU over the last sample period.
      type: int
      sample: 0
    utilization_memory_percent:
      description: Percentage of time memory was read or written over the last sample period.
      type: int
      sample: 0
    temperature_c:
      description: Core temperature in degrees Celsius.
      type: int
      sample: 33
    power_draw_w:
      description: Power draw in watts (instantaneous where the driver reports it, else the average).
      type: float
      sample: 70.42
    power_limit_w:
      description: Power limit in force, in watts.
      type: float
      sample: 700.0
    fan_speed_percent:
      description: Fan speed in percent of its maximum; V(null) for passively cooled cards.
      type: int
      sample: 30
    persistence_mode:
      description: Whether persistence mode is on.
      type: bool
      sample: true
    mig_mode:
      description: Multi-Instance GPU mode; both values are V(null) on GPUs without MIG.
      type: dict
      contains:
        current:
          description: Whether MIG is enabled now.
          type: bool
          sample: false
        pending:
          description: Whether MIG will be enabled after the next GPU reset.
          type: bool
          sample: false
    processes:
      description: Compute processes on the GPU (graphics-only clients such as Xorg are left out).
      type: list
      elements: dict
      contains:
        pid:
          description: Process id.
          type: int
          sample: 4242
        type:
          description: Process type as nvidia-smi gives it (V(C), V(C+G), V(M+C)).
          type: str
          sample: C
        name:
          description: Process name where nvidia-smi gives one, else V(null).
          type: str
          sample: python3
        used_memory_mib:
          description: GPU memory used by the process in MiB, V(null) where not available.
          type: int
          sample: 3072
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.gpu.plugins.module_utils._common import range_error, run_command
from ansible_collections.homelab.gpu.plugins.module_utils import _nvidia_smi


class NvidiaSmiInfo:
    """Run nvidia-smi once and turn what it says into the module's result."""

    def __init__(self, module):
        self.module = module
        self.path = module.params['nvidia_smi_path']
        self.timeout = module.params['timeout']
        self.require = module.params['require']

    def find_binary(self):
        if self.path:
            if os.path.isfile(self.path) and os.access(self.path, os.X_OK):
                return self.path
            return None
        return self.module.get_bin_path('nvidia-smi')

    def probe(self):
        binary = self.find_binary()
        if binary is None:
            result = _nvidia_smi.empty_result()
            where = ('nvidia_smi_path %s does not exist or is not executable' % self.path if self.path
                     else 'nvidia-smi was not found on PATH')
            result.update(state=_nvidia_smi.STATE_NOT_INSTALLED, reboot_required=False, nvidia_smi_path=None,
                          nvidia_smi_rc=None, stderr='',
                          message='%s. %s' % (where, _nvidia_smi.ADVICE[_nvidia_smi.STATE_NOT_INSTALLED]))
            return result
        cmd = run_command(self.module, [binary, '-q', '-x'], timeout=self.timeout)
        result = _nvidia_smi.classify(cmd.rc, cmd.stdout, cmd.stderr, timed_out=cmd.timed_out, timeout=self.timeout)
        for notice in result.pop('notices'):
            self.module.warn('nvidia-smi: %s' % notice)
        result.update(nvidia_smi_path=binary, nvidia_smi_rc=cmd.rc, stderr=_nvidia_smi.decode(cmd.stderr))
        return result

    def run(self):
        result = self.probe()
        if self.require and result['state'] != _nvidia_smi.STATE_OK:
            self.module.fail_json(msg='A working NVIDIA GPU is required (require=true) but state is %s: %s'
                                      % (result['state'], result['message']),
                                  changed=False, **result)
        self.module.exit_json(changed=False, **result)


def main():
    argument_spec = dict(
        nvidia_smi_path=dict(type='path'),
        timeout=dict(type='int', default=15),
        require=dict(type='bool', default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    error = range_error('timeout', module.params['timeout'], 1, 3600, 'a positive number of seconds',
                        'how long nvidia-smi may take before it is stopped, at most an hour')
    if error:
        module.fail_json(msg=error)
    NvidiaSmiInfo(module).run()


if __name__ == '__main__':
    main()
