# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole-module tests of cog_firewall: check, apply, check again, apply again, against a stand-in iptables."""

from __future__ import annotations

import json
import pathlib
import sys

import pytest

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.gpu.plugins.module_utils import _firewall as fw
from ansible_collections.homelab.gpu.plugins.modules import cog_firewall

FIXTURES = pathlib.Path(__file__).parents[3] / 'unit' / 'fixtures' / 'iptables'

# STAND-IN for iptables, iptables-save and iptables-restore (the real ones need a kernel and root; the molecule
# scenario `firewall` runs the real ones). It keeps the filter table as iptables-save text in state.save next
# to itself, does what the module asks of each tool on that text, and logs each call to calls.log.
STANDIN = r'''#!PYTHON
import os, shlex, sys
here = os.path.dirname(os.path.abspath(__file__))
state, log = os.path.join(here, 'state.save'), os.path.join(here, 'calls.log')
tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(log, 'a') as f:
    f.write(' '.join([tool] + args) + '\n')
lines = open(state).read().splitlines()

def decl(chain):
    return any(l.split()[0] == ':' + chain for l in lines if l.startswith(':'))

def save():
    open(state, 'w').write('\n'.join(lines) + '\n')

def rules_of(chain):
    return [i for i, l in enumerate(lines) if l.startswith('-A %s ' % chain)]

def declare(chain):
    lines.insert(max(i for i, l in enumerate(lines) if l.startswith(':')) + 1, ':%s - [0:0]' % chain)

if tool == 'iptables-save' and os.path.exists(os.path.join(here, 'no-permission')):
    # What iptables-nft 1.8.9 says without CAP_NET_ADMIN (a container without it, or not root).
    sys.exit('iptables-save v1.8.9 (nf_tables): Could not fetch rule set generation id: '
             'Permission denied (you must be root)')
elif tool == 'iptables-save':
    sys.stdout.write(open(state).read())
elif tool == 'iptables-restore':
    assert args == ['-w', '10', '--noflush'], args
    for line in sys.stdin.read().splitlines():
        if line.startswith(':'):
            chain = line[1:].split()[0]
            if decl(chain):
                for i in reversed(rules_of(chain)):
                    del lines[i]
            else:
                declare(chain)
        elif line.startswith('-A '):
            chain = line.split()[1]
            at = (rules_of(chain) or [i for i, l in enumerate(lines) if l == 'COMMIT'])[-1]
            lines.insert(at + 1 if rules_of(chain) else at, line)
    save()
elif args == ['--version']:
    print('iptables v1.8.9 (nf_tables)')
else:
    assert args[0] == '-w', args
    op, chain, rest = args[1], args[2], args[3:]
    if not decl(chain):
        sys.exit("iptables: No chain/target/match by that name.")
    if op == '-I':
        rule = '-A %s %s' % (chain, ' '.join(rest[1:]))
        at = rules_of(chain) or [i for i, l in enumerate(lines) if l == 'COMMIT']
        lines.insert(at[0], rule)
    elif op == '-D':
        rule = '-A %s %s' % (chain, ' '.join(rest))
        if rule not in lines:
            sys.exit('iptables: Bad rule (does a matching rule exist in that chain?).')
        lines.remove(rule)
    elif op == '-F':
        for i in reversed(rules_of(chain)):
            del lines[i]
    elif op == '-X':
        if rules_of(chain) or any(l.endswith('-j ' + chain) for l in lines):
            sys.exit('iptables: Directory not empty.')
        lines.remove(next(l for l in lines if l.split()[0] == ':' + chain))
    save()
'''.replace('PYTHON', sys.executable)

LAN = '192.168.1.0/24'
VPN = '10.8.0.0/24'
MODELS = [dict(name='llama_tiny', port=5001), dict(name='sdxl', port=5002, allowed_networks=[LAN])]


def our_lines(text):
    return [line for line in text.splitlines() if 'HOMELAB-GPU-MODELS' in line]


@pytest.fixture
def iptables(tmp_path, monkeypatch):
    """Install the stand-in tools, starting from a fixture; ``iptables.missing = True`` hides them."""
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    script = bindir / 'xtables-standin'
    script.write_text(STANDIN)
    script.chmod(0o755)
    for tool in ('iptables', 'iptables-save', 'iptables-restore'):
        (bindir / tool).symlink_to(script)

    class Tools:
        missing = False
        state = bindir / 'state.save'
        log = bindir / 'calls.log'
        no_permission = bindir / 'no-permission'
        warned = []

        def start(self, name):
            self.state.write_text((FIXTURES / name).read_text())

        def calls(self):
            text = self.log.read_text() if self.log.exists() else ''
            self.log.write_text('')
            return text.splitlines()

    tools = Tools()
    real_get_bin_path = AnsibleModule.get_bin_path

    def get_bin_path(self, arg, *args, **kwargs):
        if arg in ('iptables', 'iptables-save', 'iptables-restore'):
            return None if tools.missing else str(bindir / arg)
        return real_get_bin_path(self, arg, *args, **kwargs)

    monkeypatch.setattr(AnsibleModule, 'get_bin_path', get_bin_path)
    # ansible-core keeps warnings process-wide and shows each text once, so tests read them here.
    real_warn = AnsibleModule.warn

    def warn(self, warning):
        tools.warned.append(warning)
        real_warn(self, warning)

    monkeypatch.setattr(AnsibleModule, 'warn', warn)
    return tools


def run_module(capsys, tmp_path, args, check_mode=False, diff=True):
    args = dict(args, rules_file=str(tmp_path / 'etc' / 'homelab-gpu' / 'model-firewall.rules'),
                _ansible_check_mode=check_mode, _ansible_diff=diff)
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            cog_firewall.main()
    result = json.loads(capsys.readouterr().out)
    assert (exc.value.code != 0) == bool(result.get('failed')), result
    return result


def test_restrict_four_ways(capsys, tmp_path, iptables):
    iptables.start('docker-20.10-nft-fresh.save')
    args = dict(models=MODELS, allowed_networks=[LAN, VPN])
    rules_file = tmp_path / 'etc' / 'homelab-gpu' / 'model-firewall.rules'
    fresh = iptables.state.read_text()

    result = run_module(capsys, tmp_path, args, check_mode=True)
    assert result['changed'] is True
    assert result['restricted'] is True
    assert result['commands'] == ['iptables-restore -w 10 --noflush',
                                  'iptables -w -I DOCKER-USER 1 -j HOMELAB-GPU-MODELS']
    assert result['actions'][0] == 'created the chain HOMELAB-GPU-MODELS'
    assert result['actions'][-1] == 'wrote %s' % rules_file
    assert iptables.state.read_text() == fresh
    assert not rules_file.exists()
    assert [c for c in iptables.calls() if not c.startswith(('iptables-save', 'iptables --version'))] == []
    # The diff shows the jump and the chain to come, and the rules file to come.
    assert result['diff'][0]['before'] == ''
    assert result['diff'][0]['after'].splitlines()[:2] == ['-A DOCKER-USER -j HOMELAB-GPU-MODELS',
                                                           '-N HOMELAB-GPU-MODELS']
    assert result['diff'][1]['before'] == ''
    assert result['diff'][1]['after'].startswith('# Managed by Ansible')

    result = run_module(capsys, tmp_path, args)
    assert result['changed'] is True
    assert iptables.calls()[-2:] == ['iptables-restore -w 10 --noflush',
                                     'iptables -w -I DOCKER-USER 1 -j HOMELAB-GPU-MODELS']
    # The stand-in now holds what the real iptables held in the restricted capture.
    assert our_lines(iptables.state.read_text()) == our_lines(
        (FIXTURES / 'docker-20.10-nft-restricted.save').read_text())
    assert rules_file.read_text() == result['diff'][1]['after']
    assert oct(rules_file.stat().st_mode & 0o777) == '0o644'
    assert result['models'] == [{'name': 'llama_tiny', 'port': 5001, 'allowed_networks': [VPN, LAN]},
                                {'name': 'sdxl', 'port': 5002, 'allowed_networks': [LAN]}]
    assert result['rules'][2:] == our_lines((FIXTURES / 'docker-20.10-nft-restricted.save').read_text())[2:]

    for check_mode in (True, False):
        result = run_module(capsys, tmp_path, args, check_mode=check_mode)
        assert result['changed'] is False, result
        assert result['actions'] == result['commands'] == result['diff'] == []
        assert iptables.calls() == ['iptables --version', 'iptables-save -t filter']


def test_empty_removes_everything_four_ways(capsys, tmp_path, iptables):
    iptables.start('docker-20.10-nft-drifted.save')
    rules_file = tmp_path / 'etc' / 'homelab-gpu' / 'model-firewall.rules'
    rules_file.parent.mkdir(parents=True)
    rules_file.write_text('old rules\n')
    args = dict(models=MODELS[:1], allowed_networks=[])

    result = run_module(capsys, tmp_path, args, check_mode=True)
    assert result['changed'] is True
    assert result['restricted'] is False
    assert result['commands'] == ['iptables -w -D DOCKER-USER -j HOMELAB-GPU-MODELS'] * 2 + [
        'iptables -w -F HOMELAB-GPU-MODELS', 'iptables -w -X HOMELAB-GPU-MODELS']
    assert result['actions'][-1] == 'removed %s' % rules_file
    assert result['diff'][1] == dict(before_header=str(rules_file), after_header=str(rules_file),
                                     before='old rules\n', after='')
    assert rules_file.exists()

    result = run_module(capsys, tmp_path, args)
    assert result['changed'] is True
    assert our_lines(iptables.state.read_text()) == []
    # The user's own rule in DOCKER-USER stays.
    assert '-A DOCKER-USER -s 198.51.100.7/32 -m conntrack --ctstate NEW -j DROP' in iptables.state.read_text()
    assert not rules_file.exists()

    for check_mode in (True, False):
        assert run_module(capsys, tmp_path, args, check_mode=check_mode)['changed'] is False


def test_per_model_empty_list_opens_that_model(capsys, tmp_path, iptables):
    iptables.start('docker-20.10-nft-restricted.save')
    models = [dict(MODELS[0], allowed_networks=[]), MODELS[1]]
    result = run_module(capsys, tmp_path, dict(models=models, allowed_networks=[LAN, VPN]))
    assert result['changed'] is True
    assert result['models'] == [{'name': 'sdxl', 'port': 5002, 'allowed_networks': [LAN]}]
    assert [line for line in our_lines(iptables.state.read_text()) if '5001' in line] == []
    assert len([line for line in our_lines(iptables.state.read_text()) if '5002' in line]) == 2


def test_no_iptables_refuses_a_restriction(capsys, tmp_path, iptables):
    iptables.missing = True
    result = run_module(capsys, tmp_path, dict(models=MODELS, allowed_networks=[LAN]))
    assert result['failed'] is True
    assert result['msg'] == fw.NO_IPTABLES % 'iptables and iptables-save and iptables-restore'
    assert 'apt install iptables' in result['msg']
    assert 'nftables' in result['msg']


def test_no_iptables_and_nothing_restricted_is_fine(capsys, tmp_path, iptables):
    iptables.missing = True
    result = run_module(capsys, tmp_path, dict(models=MODELS[:1]))
    assert result['changed'] is False
    assert result['iptables_version'] is None
    assert result['restricted'] is False


PERMISSION_DENIED = ('iptables-save -t filter failed (rc=1): iptables-save v1.8.9 (nf_tables): Could not fetch rule '
                     'set generation id: Permission denied (you must be root)')


def test_unreadable_iptables_refuses_a_restriction(capsys, tmp_path, iptables):
    iptables.start('docker-20.10-nft-fresh.save')
    iptables.no_permission.write_text('')
    result = run_module(capsys, tmp_path, dict(models=MODELS, allowed_networks=[LAN]))
    assert result['failed'] is True
    assert result['msg'] == PERMISSION_DENIED


@pytest.mark.parametrize('had_rules', [False, True], ids=['never restricted', 'rules file left'])
def test_unreadable_iptables_is_no_failure_when_nothing_is_restricted(capsys, tmp_path, iptables, had_rules):
    iptables.start('docker-20.10-nft-fresh.save')
    iptables.no_permission.write_text('')
    rules_file = tmp_path / 'etc' / 'homelab-gpu' / 'model-firewall.rules'
    if had_rules:
        rules_file.parent.mkdir(parents=True)
        rules_file.write_text('old rules\n')
    result = run_module(capsys, tmp_path, dict(models=MODELS[:1]))
    assert 'failed' not in result
    assert result['changed'] is had_rules
    assert result['commands'] == []
    if had_rules:
        assert iptables.warned == [
            PERMISSION_DENIED + '; the rules of HOMELAB-GPU-MODELS, if any are left, could not be checked']
        assert not rules_file.exists()
    else:
        assert iptables.warned == []


def test_docker_without_iptables_is_refused(capsys, tmp_path, iptables):
    iptables.start('no-docker-chains.save')
    result = run_module(capsys, tmp_path, dict(models=MODELS, allowed_networks=[LAN]))
    assert result['failed'] is True
    assert result['msg'].startswith('Docker does not filter through iptables on this host')
    assert iptables.calls() == ['iptables --version', 'iptables-save -t filter']
    assert not (tmp_path / 'etc').exists()


@pytest.mark.parametrize('args, message', [
    (dict(models=MODELS, allowed_networks=['192.168.1.1/24']),
     "allowed_networks[0] '192.168.1.1/24' has host bits set; write the network address, 192.168.1.0/24"),
    (dict(models=MODELS, chain='DOCKER-USER'),
     "chain 'DOCKER-USER' is not a chain name this collection may own (a letter, then up to 27 letters, digits, "
     "- or _; not DOCKER...)"),
    (dict(models=MODELS, chain='x' * 29),
     "chain '%s' is not a chain name this collection may own (a letter, then up to 27 letters, digits, "
     "- or _; not DOCKER...)" % ('x' * 29)),
], ids=['host bits', 'Docker chain', 'too long'])
def test_bad_values_change_nothing(capsys, tmp_path, iptables, args, message):
    iptables.start('docker-20.10-nft-fresh.save')
    result = run_module(capsys, tmp_path, args)
    assert result['failed'] is True
    assert result['msg'] == message
    assert iptables.calls() == []
