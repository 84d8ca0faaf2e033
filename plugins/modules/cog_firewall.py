#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cog_firewall
short_description: Let only the allowed networks reach the cog model ports, in Docker's DOCKER-USER chain
version_added: 0.2.0
author:
  - homelab.gpu contributors (@homelab-gpu)
description:
  - Restricts who can connect to the host ports that the cog models are published on. Loopback is always
    allowed. Connections to a restricted port from any other source are dropped.
  - Docker publishes a port with a DNAT rule, so these connections never pass the INPUT chain that ufw or
    firewalld filter. The rules go where Docker wants such rules, the C(DOCKER-USER) chain. At that point the
    destination port is already the container's (5000 for every cog model), so each rule matches the port that
    the client asked for, with conntrack (C(-m conntrack --ctstate DNAT --ctorigdstport <port> --ctdir ORIGINAL)).
    Connections that Docker did not redirect to a container are not touched, for example a container's own
    outgoing connection to port 5001 of another machine.
  - All rules live in a chain of their own (O(chain)). C(DOCKER-USER) jumps to it once, at the top. An allowed
    connection returns to C(DOCKER-USER), so rules that you keep there still apply. Nothing else in iptables is
    changed.
  - The chain is written in one step with C(iptables-restore --noflush), so there is no moment with half the
    rules. The same content goes to O(rules_file), for the C(homelab-gpu-model-firewall.service) unit that the
    homelab.gpu.cog_models role installs to load it at boot, before Docker starts.
  - With no model restricted (every O(models[].allowed_networks) and O(allowed_networks) empty), the jump, the
    chain and O(rules_file) are removed, and the ports are open as Docker publishes them.
  - Only IPv4 is filtered. An IPv6 network in a list is refused, and so is a restricted model whose bind
    address is IPv6.
extends_documentation_fragment:
  - homelab.gpu.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads the rules with C(iptables-save) and returns the commands it would run in RV(commands), without
        running them.
  diff_mode:
    support: full
    details:
      - Two diffs, the C(iptables -S) lines of the jump and of the chain, and the text of O(rules_file).
  idempotent:
    support: full
options:
  models:
    description:
      - The host's cog models, as given to M(homelab.gpu.cog_model). Only the keys below are used.
      - A model with O(models[].state=absent) gets no rules.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Container name. It goes into the rule comments.
        type: str
        required: true
      port:
        description: Host port of the model. Required unless the model is absent or stopped.
        type: int
      state:
        description: The model's state. Absent models get no rules.
        type: str
        choices: [started, stopped, absent]
        default: started
      bind_address:
        description: Address the port is published on. Defaults to O(bind_address). IPv6 is refused when restricted.
        type: str
      allowed_networks:
        description:
          - Networks allowed to reach this model, replacing O(allowed_networks) for it. V([]) leaves this model
            open to every network. Not set (V(null)) means O(allowed_networks).
        type: list
        elements: str
  allowed_networks:
    description:
      - IPv4 networks in CIDR form (V(192.168.1.0/24)) allowed to reach the model ports. A bare address is a
        V(/32). Host bits must be zero. Loopback is always allowed.
      - V([]) restricts nothing, except models that set their own O(models[].allowed_networks).
    type: list
    elements: str
    default: []
  bind_address:
    description: Default bind address of the models, as for M(homelab.gpu.cog_model).
    type: str
    default: 0.0.0.0
  chain:
    description: Name of the chain that holds the rules. It must not start with C(DOCKER).
    type: str
    default: HOMELAB-GPU-MODELS
  rules_file:
    description:
      - File that keeps the rules in C(iptables-restore) form, for reloading them at boot. Removed when nothing
        is restricted.
    type: path
    default: /etc/homelab-gpu/model-firewall.rules
requirements:
  - iptables, iptables-save and iptables-restore (the iptables-nft backend on nftables hosts works), and Docker
    managing iptables (its default). Without the iptables command, restricting is refused with what to do.
notes:
  - Clients on the host itself always get through. Their connections do not pass the FORWARD chain, and
    127.0.0.0/8 is allowed in the chain too.
  - Containers on the same host that call a model through its published port come from their bridge network,
    for example V(172.17.0.0/16). List that network if they should get through.
  - This restricts who can connect. It adds no authentication and no TLS. See the Security section of
    docs/RELIABILITY.md for a reverse proxy in front of the models.
seealso:
  - module: homelab.gpu.cog_model
  - name: Docker and iptables (DOCKER-USER)
    description: Docker's guide to adding rules that apply to published ports.
    link: https://docs.docker.com/engine/network/packet-filtering-firewalls/
"""

EXAMPLES = r"""
- name: Let only the LAN and the VPN reach the models; sdxl only from the LAN
  homelab.gpu.cog_firewall:
    allowed_networks: [192.168.1.0/24, 10.8.0.0/24]
    models:
      - name: llama_tiny
        port: 5000
      - name: sdxl
        port: 5001
        allowed_networks: [192.168.1.0/24]
  become: true

- name: Open the ports again (removes the chain, the jump and the rules file)
  homelab.gpu.cog_firewall:
    allowed_networks: []
    models:
      - name: llama_tiny
        port: 5000
  become: true
"""

RETURN = r"""
actions:
  description: What changed (or in check mode, what would change), in words.
  returned: always
  type: list
  elements: str
  sample:
    - created the chain HOMELAB-GPU-MODELS
    - "added: 192.168.1.0/24 may reach port 5000 (llama_tiny)"
    - "added: other sources are dropped at port 5000 (llama_tiny)"
    - DOCKER-USER now jumps to HOMELAB-GPU-MODELS
    - wrote /etc/homelab-gpu/model-firewall.rules
commands:
  description: The iptables commands run (in check mode, the ones that would run), without their input.
  returned: always
  type: list
  elements: str
  sample:
    - iptables-restore -w 10 --noflush
    - iptables -w -I DOCKER-USER 1 -j HOMELAB-GPU-MODELS
restricted:
  description: Whether any model port is restricted (and the boot unit is needed).
  returned: always
  type: bool
models:
  description: The restricted models, by port, with their allowed networks in order.
  returned: always
  type: list
  elements: dict
  sample:
    - name: llama_tiny
      port: 5000
      allowed_networks: [10.8.0.0/24, 192.168.1.0/24]
rules:
  description: The jump and the chain as C(iptables -S) shows them once the run is done; V([]) when none.
  returned: always
  type: list
  elements: str
chain:
  description: Name of the chain.
  returned: always
  type: str
  sample: HOMELAB-GPU-MODELS
rules_file:
  description: Path of the rules file.
  returned: always
  type: str
iptables_version:
  description: What C(iptables --version) says (its backend in brackets), V(null) without iptables.
  returned: always
  type: str
  sample: iptables v1.8.9 (nf_tables)
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.gpu.plugins.module_utils import _firewall


def main():
    argument_spec = dict(
        models=dict(type='list', elements='dict', required=True, options=dict(
            name=dict(type='str', required=True),
            port=dict(type='int'),
            state=dict(type='str', choices=['started', 'stopped', 'absent'], default='started'),
            bind_address=dict(type='str'),
            allowed_networks=dict(type='list', elements='str'),
        )),
        allowed_networks=dict(type='list', elements='str', default=[]),
        bind_address=dict(type='str', default='0.0.0.0'),
        chain=dict(type='str', default=_firewall.DEFAULT_CHAIN),
        rules_file=dict(type='path', default=_firewall.DEFAULT_RULES_FILE),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        result = _firewall.apply(module, module.params)
    except _firewall.FirewallError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
