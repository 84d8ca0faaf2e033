#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: status_report
short_description: Write the fleet report of the GPU hosts on the controller, as Markdown and HTML
version_added: 0.2.0
author:
  - homelab.gpu contributors (@homelab-gpu)
description:
  - Writes C(status.md) and C(status.html) (a self-contained page with a memory bar per GPU) into O(dest) on the
    machine that runs C(ansible-playbook), from the C(homelab_gpu_status) facts that the playbook homelab.gpu.status
    puts together, and returns the report as a text table.
  - Runs in the controller's own process (an action plugin), whatever host the task runs for, so writing the
    report costs no module run. Each file is written to a temporary file and renamed, so a reader never sees half
    a report.
  - The report holds uptimes and a time stamp, so it differs on every run; writing it is not counted as a change.
extends_documentation_fragment:
  - homelab.gpu.attributes
attributes:
  check_mode:
    support: full
    details: In check mode nothing is written; RV(files) lists what a real run writes.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: The files are written on every run (the report changes with time), and never reported as a change.
options:
  dest:
    description: The directory on the controller; made (mode 0755) when missing.
    type: path
    required: true
  statuses:
    description: The C(homelab_gpu_status) fact of each host (the filter homelab.gpu.host_status makes it).
    type: list
    elements: dict
    required: true
  generated_at:
    description: The time stamp printed in the report.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Write the Markdown and HTML reports
  homelab.gpu.status_report:
    dest: "{{ playbook_dir }}/gpu-status"
    statuses: "{{ groups['gpu_hosts'] | map('extract', hostvars) | map(attribute='homelab_gpu_status') | list }}"
    generated_at: "{{ now(utc=true, fmt='%Y-%m-%d %H:%M UTC') }}"
  register: __report

- name: Print it
  ansible.builtin.debug:
    msg: "{{ __report.text.splitlines() }}"
"""

RETURN = r"""
files:
  description: The files written (or, in check mode, that a real run writes).
  returned: always
  type: list
  elements: str
  sample: [/home/me/lab/gpu-status/status.md, /home/me/lab/gpu-status/status.html]
written:
  description: Whether the files were written (V(false) in check mode).
  returned: always
  type: bool
text:
  description: The report as the text table printed at the end of homelab.gpu.status.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    # The work is done by the action plugin of the same name, on the controller; this runs only when the module is
    # called without it.
    module = AnsibleModule(argument_spec=dict(dest=dict(type='path', required=True),
                                              statuses=dict(type='list', elements='dict', required=True),
                                              generated_at=dict(type='str', default='')),
                           supports_check_mode=True)
    module.fail_json(msg='homelab.gpu.status_report runs on the controller as an action plugin; call it as '
                         'homelab.gpu.status_report in a task, not through ansible -m with another module path.')


if __name__ == '__main__':
    main()
