# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pathlib

import pytest

from ansible_collections.homelab.gpu.plugins.module_utils import _firewall as fw

FIXTURES = pathlib.Path(__file__).parents[3] / 'unit' / 'fixtures' / 'iptables'
CHAIN = fw.DEFAULT_CHAIN


def fixture(name):
    return (FIXTURES / name).read_text()


def models(*entries):
    return [dict(name=n, port=p, state='started', bind_address=None, allowed_networks=a) for n, p, a in entries]


# The restricted state of the captured fixtures: llama_tiny on 5001 from the LAN and the VPN, sdxl on 5002
# from the LAN only (its own list).
LAN = '192.168.1.0/24'
VPN = '10.8.0.0/24'
RESTRICTED = fw.rules_for(fw.wanted(
    models(('llama_tiny', 5001, None), ('sdxl', 5002, [LAN])), [LAN, VPN]))


# ---------------------------------------------------------------- wanted

WANTED_OK = [
    ('nothing restricted by default', models(('a', 5001, None)), [], []),
    ('role-wide list', models(('a', 5001, None)), [LAN],
     [{'name': 'a', 'port': 5001, 'allowed_networks': [LAN]}]),
    ('per-model list replaces the role-wide one', models(('a', 5001, None), ('b', 5002, [VPN])), [LAN],
     [{'name': 'a', 'port': 5001, 'allowed_networks': [LAN]},
      {'name': 'b', 'port': 5002, 'allowed_networks': [VPN]}]),
    ('per-model [] leaves that model open', models(('a', 5001, None), ('b', 5002, [])), [LAN],
     [{'name': 'a', 'port': 5001, 'allowed_networks': [LAN]}]),
    ('per-model list without a role-wide one', models(('a', 5001, None), ('b', 5002, [LAN])), [],
     [{'name': 'b', 'port': 5002, 'allowed_networks': [LAN]}]),
    ('sorted by port, networks sorted and unique, a bare address is a /32',
     models(('b', 5002, None), ('a', 5001, None)), [LAN, '10.0.0.5', VPN, '192.168.1.0/24'],
     [{'name': 'a', 'port': 5001, 'allowed_networks': ['10.0.0.5/32', VPN, LAN]},
      {'name': 'b', 'port': 5002, 'allowed_networks': ['10.0.0.5/32', VPN, LAN]}]),
    ('absent models and stopped ones without a port get no rules',
     [dict(name='gone', state='absent'), dict(name='off', state='stopped'),
      dict(name='paused', state='stopped', port=5003)], [LAN],
     [{'name': 'paused', 'port': 5003, 'allowed_networks': [LAN]}]),
    ('an absent model frees its port', [dict(name='old', port=5001, state='absent'), dict(name='new', port=5001)],
     [LAN], [{'name': 'new', 'port': 5001, 'allowed_networks': [LAN]}]),
    ('IPv6 bind address is fine when the model is open',
     [dict(name='a', port=5001, bind_address='::', allowed_networks=[])], [LAN], []),
    ('a specific IPv4 bind address is filtered', [dict(name='a', port=5001, bind_address='192.168.1.10')], [LAN],
     [{'name': 'a', 'port': 5001, 'allowed_networks': [LAN]}]),
]


@pytest.mark.parametrize('given, default, expected', [c[1:] for c in WANTED_OK], ids=[c[0] for c in WANTED_OK])
def test_wanted(given, default, expected):
    assert fw.wanted(given, default) == expected


WANTED_BAD = [
    ('host bits set', models(('a', 5001, None)), ['192.168.1.7/24'],
     "allowed_networks[0] '192.168.1.7/24' has host bits set; write the network address, 192.168.1.0/24"),
    ('not a network', models(('a', 5001, ['lan'])), [],
     "models[0] (a).allowed_networks[0] 'lan' is not an IPv4 network in CIDR form (for example 192.168.1.0/24)"),
    ('prefix too long', models(('a', 5001, None)), [LAN, '10.0.0.0/33'],
     "allowed_networks[1] '10.0.0.0/33' is not an IPv4 network in CIDR form (for example 192.168.1.0/24)"),
    ('space inside', models(('a', 5001, None)), [' 10.0.0.0/8'],
     "allowed_networks[0] ' 10.0.0.0/8' is not an IPv4 network in CIDR form (for example 192.168.1.0/24)"),
    ('role-wide list checked even when every model overrides it', models(('a', 5001, [LAN])), ['nope'],
     "allowed_networks[0] 'nope' is not an IPv4 network in CIDR form (for example 192.168.1.0/24)"),
    ('IPv6 network', models(('a', 5001, None), ('b', 5002, [LAN, 'fd00::/64'])), [],
     "models[1] (b).allowed_networks[1] 'fd00::/64' is an IPv6 network. Only IPv4 is filtered: the model ports "
     "are published on IPv4 addresses (bind_address), so IPv6 clients cannot reach them at all. "
     "List IPv4 networks only"),
    ('IPv6 network with host bits', models(('a', 5001, ['fd00::1/64'])), [],
     "models[0] (a).allowed_networks[0] 'fd00::1/64' is an IPv6 network. Only IPv4 is filtered: the model ports "
     "are published on IPv4 addresses (bind_address), so IPv6 clients cannot reach them at all. "
     "List IPv4 networks only"),
    ('/0 with host bits', models(('a', 5001, ['10.0.0.0/0'])), [],
     "models[0] (a).allowed_networks[0] '10.0.0.0/0' has host bits set; write the network address, 0.0.0.0/0"),
    ('IPv6 bind address', [dict(name='a', port=5001, bind_address='::')], [LAN],
     "models[0] (a).bind_address :: publishes the port on IPv6, which these rules do not filter (they restrict "
     "IPv4 in Docker's DOCKER-USER chain). Publish it on 0.0.0.0 or an IPv4 address of the host, or give this "
     "model allowed_networks: [] to leave it unrestricted"),
    ('port out of range', models(('a', 70000, None)), [LAN], 'models[0] (a).port 70000 is not a TCP port (1-65535)'),
    ('started without port', [dict(name='a')], [LAN], 'models[0] (a).port None is not a TCP port (1-65535)'),
    ('port used twice', models(('a', 5001, None), ('b', 5001, None)), [LAN],
     'models[1] (b).port 5001 is already used by models[0] (a)'),
    ('name that cannot be a container name', models(('a b', 5001, None)), [LAN],
     "models[0].name 'a b' is not a Docker container name"),
]


@pytest.mark.parametrize('given, default, message', [c[1:] for c in WANTED_BAD], ids=[c[0] for c in WANTED_BAD])
def test_wanted_refuses(given, default, message):
    with pytest.raises(fw.FirewallError) as exc:
        fw.wanted(given, default)
    assert str(exc.value) == message


# ---------------------------------------------------------------- rules and their text

def test_rules_print_as_iptables_prints_them():
    """The lines that the planner predicts are the lines iptables-save printed for the same rules."""
    captured = [line for line in fixture('docker-20.10-nft-restricted.save').splitlines()
                if line.startswith('-A %s ' % CHAIN)]
    assert [fw.show(CHAIN, rule.args()) for rule in RESTRICTED] == captured


def test_restore_text():
    assert fw.restore_text(CHAIN, RESTRICTED[:3]) == (
        '# Managed by Ansible (homelab.gpu.cog_models). The cog model ports and the networks allowed to reach\n'
        '# them. Loaded with `iptables-restore --noflush` by homelab-gpu-model-firewall.service, before Docker.\n'
        '*filter\n'
        ':HOMELAB-GPU-MODELS - [0:0]\n'
        '-A HOMELAB-GPU-MODELS -s 127.0.0.0/8 -m comment --comment "homelab.gpu: loopback always allowed" -j RETURN\n'
        '-A HOMELAB-GPU-MODELS -s 10.8.0.0/24 -p tcp -m conntrack --ctstate DNAT --ctorigdstport 5001 '
        '--ctdir ORIGINAL -m comment --comment "homelab.gpu: llama_tiny" -j RETURN\n'
        '-A HOMELAB-GPU-MODELS -s 192.168.1.0/24 -p tcp -m conntrack --ctstate DNAT --ctorigdstport 5001 '
        '--ctdir ORIGINAL -m comment --comment "homelab.gpu: llama_tiny" -j RETURN\n'
        'COMMIT\n')


def test_describe():
    assert [r.describe() for r in RESTRICTED] == [
        'loopback (127.0.0.0/8) may reach every model port',
        '10.8.0.0/24 may reach port 5001 (llama_tiny)',
        '192.168.1.0/24 may reach port 5001 (llama_tiny)',
        'other sources are dropped at port 5001 (llama_tiny)',
        '192.168.1.0/24 may reach port 5002 (sdxl)',
        'other sources are dropped at port 5002 (sdxl)',
    ]


# ---------------------------------------------------------------- parse

def test_parse_save_reads_only_the_filter_table():
    chains = fw.parse_save(fixture('handmade-docker28-published.save'))
    assert 'PREROUTING' not in chains
    assert chains['DOCKER-USER'] == []
    assert chains['FORWARD'] == [['-j', 'DOCKER-USER'], ['-j', 'DOCKER-FORWARD']]
    assert chains['DOCKER'][0] == ['-d', '172.17.0.2/32', '!', '-i', 'docker0', '-o', 'docker0', '-p', 'tcp',
                                   '-m', 'tcp', '--dport', '5000', '-j', 'ACCEPT']


def test_parse_save_keeps_quoted_comments():
    chains = fw.parse_save(fixture('docker-20.10-nft-restricted.save'))
    assert chains[CHAIN][0] == ['-s', '127.0.0.0/8', '-m', 'comment', '--comment',
                                'homelab.gpu: loopback always allowed', '-j', 'RETURN']


@pytest.mark.parametrize('text, message', [
    ('*filter\n-A FORWARD -m comment --comment "open\nCOMMIT\n',
     'iptables-save line 2 cannot be read (No closing quotation): -A FORWARD -m comment --comment "open'),
    ('*filter\n-I FORWARD -j DROP\nCOMMIT\n', 'iptables-save line 2 is not a rule: -I FORWARD -j DROP'),
], ids=['open quote', 'not an append'])
def test_parse_save_refuses(text, message):
    with pytest.raises(fw.FirewallError) as exc:
        fw.parse_save(text)
    assert str(exc.value) == message


RULE_KEYS = [
    ('option order does not matter', '-s 10.0.0.0/8 -i eth0 -j DROP', '-i eth0 -s 10.0.0.0/8 -j DROP', True),
    ('negation counts', '! -s 10.0.0.0/8 -j DROP', '-s 10.0.0.0/8 -j DROP', False),
    ('a /32 written either way', '-s 10.0.0.5 -j DROP', '-s 10.0.0.5/32 -j DROP', True),
    ('the comment counts', '-m comment --comment a -j RETURN', '-m comment --comment b -j RETURN', False),
    ('the target counts', '-p tcp -j RETURN', '-p tcp -j DROP', False),
]


@pytest.mark.parametrize('one, other, same', [c[1:] for c in RULE_KEYS], ids=[c[0] for c in RULE_KEYS])
def test_rule_key(one, other, same):
    assert (fw.rule_key(one.split()) == fw.rule_key(other.split())) is same


# ---------------------------------------------------------------- plan

RESTORE = fw.Command('iptables-restore', ['-w', '10', '--noflush'], fw.restore_text(CHAIN, RESTRICTED))
INSERT_JUMP = fw.Command('iptables', ['-w', '-I', 'DOCKER-USER', '1', '-j', CHAIN])
DELETE_JUMP = fw.Command('iptables', ['-w', '-D', 'DOCKER-USER', '-j', CHAIN])
FLUSH = fw.Command('iptables', ['-w', '-F', CHAIN])
DELETE_CHAIN = fw.Command('iptables', ['-w', '-X', CHAIN])
ADDED = ['added: ' + r.describe() for r in RESTRICTED]
REMOVE_ACTION = ('removed the chain HOMELAB-GPU-MODELS and its %d rule(s): the model ports are open to every '
                 'network again, as Docker publishes them')

PLANS = [
    ('fresh Docker 20.10, restrict', 'docker-20.10-nft-fresh.save', RESTRICTED, [RESTORE, INSERT_JUMP],
     ['created the chain HOMELAB-GPU-MODELS'] + ADDED + ['DOCKER-USER now jumps to HOMELAB-GPU-MODELS']),
    ('Docker 28 layout, restrict', 'handmade-docker28-published.save', RESTRICTED, [RESTORE, INSERT_JUMP],
     ['created the chain HOMELAB-GPU-MODELS'] + ADDED + ['DOCKER-USER now jumps to HOMELAB-GPU-MODELS']),
    ('already restricted: nothing to do', 'docker-20.10-nft-restricted.save', RESTRICTED, [], []),
    ('legacy, user rule in DOCKER-USER: nothing to do', 'legacy-restricted-user-rules.save', RESTRICTED, [], []),
    ('a model dropped from the list', 'docker-20.10-nft-restricted.save', RESTRICTED[:4],
     [fw.Command('iptables-restore', ['-w', '10', '--noflush'], fw.restore_text(CHAIN, RESTRICTED[:4]))],
     ['removed rule: 192.168.1.0/24 may reach port 5002 (sdxl)',
      'removed rule: other sources are dropped at port 5002 (sdxl)']),
    ('drifted by hand: foreign rule out, second jump out', 'docker-20.10-nft-drifted.save', RESTRICTED,
     [RESTORE, DELETE_JUMP],
     ['removed rule not made by this collection: -A HOMELAB-GPU-MODELS -p tcp -m tcp --dport 22 -j ACCEPT',
      'removed a second jump from DOCKER-USER to HOMELAB-GPU-MODELS']),
    ('rules out of order', None, list(reversed(RESTRICTED)),
     [fw.Command('iptables-restore', ['-w', '10', '--noflush'], fw.restore_text(CHAIN, list(reversed(RESTRICTED))))],
     ['put the rules of HOMELAB-GPU-MODELS back in order']),
    ('emptied: jump and chain removed', 'docker-20.10-nft-restricted.save', [], [DELETE_JUMP, FLUSH, DELETE_CHAIN],
     ['DOCKER-USER no longer jumps to HOMELAB-GPU-MODELS', REMOVE_ACTION % 6]),
    ('emptied, drifted: both jumps removed', 'docker-20.10-nft-drifted.save', [],
     [DELETE_JUMP, DELETE_JUMP, FLUSH, DELETE_CHAIN],
     ['DOCKER-USER no longer jumps to HOMELAB-GPU-MODELS', REMOVE_ACTION % 7]),
    ('emptied on a fresh host: nothing to do', 'docker-20.10-nft-fresh.save', [], [], []),
    ('emptied without Docker chains: nothing to do', 'no-docker-chains.save', [], [], []),
    ('emptied with the Docker 28 layout: nothing to do', 'handmade-docker28-published.save', [], [], []),
]


@pytest.mark.parametrize('name, rules, commands, actions', [c[1:] for c in PLANS], ids=[c[0] for c in PLANS])
def test_plan(name, rules, commands, actions):
    # 'rules out of order' starts from the restricted capture too.
    the_plan = fw.plan(fixture(name or 'docker-20.10-nft-restricted.save'), CHAIN, rules)
    assert the_plan.commands == commands
    assert the_plan.actions == actions
    if rules:
        assert the_plan.after == (['-A DOCKER-USER -j HOMELAB-GPU-MODELS', '-N HOMELAB-GPU-MODELS']
                                  + [fw.show(CHAIN, r.args()) for r in rules])
    else:
        assert the_plan.after == []


def test_plan_before_is_what_iptables_shows():
    the_plan = fw.plan(fixture('docker-20.10-nft-drifted.save'), CHAIN, RESTRICTED)
    assert the_plan.before[:3] == ['-A DOCKER-USER -j HOMELAB-GPU-MODELS', '-A DOCKER-USER -j HOMELAB-GPU-MODELS',
                                   '-N HOMELAB-GPU-MODELS']
    assert the_plan.before[-1] == '-A HOMELAB-GPU-MODELS -p tcp -m tcp --dport 22 -j ACCEPT'
    assert len(the_plan.before) == 3 + 7


@pytest.mark.parametrize('legacy_hint', [False, True], ids=['nft only', 'legacy tables present'])
def test_plan_refuses_without_docker_chains(legacy_hint):
    with pytest.raises(fw.FirewallError) as exc:
        fw.plan(fixture('no-docker-chains.save'), CHAIN, RESTRICTED, legacy_hint=legacy_hint)
    msg = str(exc.value)
    assert msg.startswith('Docker does not filter through iptables on this host: the FORWARD chain of '
                          '`iptables-save -t filter` has no jump to DOCKER-USER.')
    assert '"iptables": false' in msg
    assert ('update-alternatives --config iptables' in msg) is legacy_hint


def test_plan_leaves_other_chains_alone():
    """Every command names our chain; DOCKER-USER is only touched to add or remove the jump to it."""
    for name in sorted(p.name for p in FIXTURES.glob('*.save')):
        for rules in (RESTRICTED, []):
            try:
                the_plan = fw.plan(fixture(name), CHAIN, rules)
            except fw.FirewallError:
                continue
            for command in the_plan.commands:
                if command.tool == 'iptables':
                    assert command.args[-1] == CHAIN
                    assert command.args[1] in ('-I', '-D', '-F', '-X')
                else:
                    assert [line for line in command.data.splitlines()
                            if line[:1] in ('-', ':')] == [':' + CHAIN + ' - [0:0]'] + [
                        line for line in command.data.splitlines() if line.startswith('-A %s ' % CHAIN)]


def test_every_fixture_is_tested_and_listed():
    used = {c[1] for c in PLANS if c[1]} | {'docker-20.10-nft-restricted.save'}
    files = {p.name for p in FIXTURES.glob('*.save')}
    assert files == used
    readme = (FIXTURES / 'README.md').read_text()
    assert [f for f in sorted(files) if '`%s`' % f not in readme] == []


def test_an_open_model_is_left_to_cog_models_pre_flight():
    """The firewall runs before the deploy: a bad name or port of a model it does not restrict is not its to refuse
    (cog_model's pre-flight says it in its own words)."""
    models = [{'name': 'demo b!', 'port': 5000}, {'name': 'ok', 'port': 0}]
    assert fw.wanted(models, []) == []
    with pytest.raises(fw.FirewallError, match=r"models\[0\]\.name 'demo b!' is not a Docker container name"):
        fw.wanted(models, ['192.168.1.0/24'])
