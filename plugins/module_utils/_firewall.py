# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Source-network restrictions of the cog model ports, in Docker's DOCKER-USER chain.

Private to this collection: no API promise.

Docker publishes a port with a DNAT rule in the nat table, so a connection to a model port never passes
the INPUT chain that ufw or firewalld filter: it is forwarded to the container. Docker's place for the
user's own filtering is the DOCKER-USER chain, which FORWARD jumps to first and which Docker never
changes. By then the destination port is the container's (5000 for every cog model), so the rules match
the port the client asked for, from conntrack: ``-m conntrack --ctstate DNAT --ctorigdstport <port>
--ctdir ORIGINAL``. ``--ctstate DNAT`` keeps the rules to connections that Docker redirected to a
container: a container's own outgoing connection to some other host's port 5001 is not touched.

All rules live in one chain of their own (HOMELAB-GPU-MODELS), which DOCKER-USER jumps to once:

    -A DOCKER-USER -j HOMELAB-GPU-MODELS
    -A HOMELAB-GPU-MODELS -s 127.0.0.0/8 -j RETURN                   (loopback, always allowed)
    -A HOMELAB-GPU-MODELS -s 192.168.1.0/24 -p tcp <port 5001> -j RETURN
    -A HOMELAB-GPU-MODELS -p tcp <port 5001> -j DROP

RETURN hands an allowed connection back to DOCKER-USER, so the user's own rules there still apply.
Traffic to any other port runs through the chain untouched.

The planner (:func:`plan`) is pure: it takes the text of ``iptables-save -t filter`` and the wanted
rules and returns the commands that make the host match, so that check mode and the real run take the
same path. :class:`Runner` runs them, or only records them in check mode.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import tempfile
import typing as t

from ansible_collections.homelab.gpu.plugins.module_utils._common import command_error, run_command

DEFAULT_CHAIN = 'HOMELAB-GPU-MODELS'
DOCKER_USER = 'DOCKER-USER'
DEFAULT_RULES_FILE = '/etc/homelab-gpu/model-firewall.rules'
LOOPBACK = '127.0.0.0/8'
COMMENT_PREFIX = 'homelab.gpu: '
LOOPBACK_COMMENT = COMMENT_PREFIX + 'loopback always allowed'

# iptables takes chain names of up to 28 characters; ours is also a plain word.
CHAIN_RE = re.compile(r'[A-Za-z][A-Za-z0-9_-]{0,27}')
# A Docker container name, as homelab.gpu.cog_model accepts it; it goes into the rule comments.
NAME_RE = re.compile(r'[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}')
WAIT_SECONDS = '10'
COMMAND_TIMEOUT = 60


class FirewallError(Exception):
    """A value or a host that the rules cannot be made for; the message says which and what to do."""


class Rule(t.NamedTuple):
    """One rule of our chain. ``port`` is None for the loopback rule, ``source`` None for a DROP."""
    source: t.Optional[str]
    port: t.Optional[int]
    target: str
    comment: str

    def args(self) -> list:
        """The rule's arguments in the order iptables -S prints them (after ``-A <chain>``)."""
        out = []
        if self.source:
            out += ['-s', self.source]
        if self.port is not None:
            out += ['-p', 'tcp', '-m', 'conntrack', '--ctstate', 'DNAT', '--ctorigdstport', str(self.port),
                    '--ctdir', 'ORIGINAL']
        out += ['-m', 'comment', '--comment', self.comment, '-j', self.target]
        return out

    def describe(self) -> str:
        if self.port is None:
            return 'loopback (%s) may reach every model port' % self.source
        name = self.comment[len(COMMENT_PREFIX):] if self.comment.startswith(COMMENT_PREFIX) else self.comment
        if self.target == 'RETURN':
            return '%s may reach port %d (%s)' % (self.source, self.port, name)
        return 'other sources are dropped at port %d (%s)' % (self.port, name)


class Command(t.NamedTuple):
    """``tool`` is ``iptables`` or ``iptables-restore``; ``data`` goes to its standard input."""
    tool: str
    args: list
    data: t.Optional[str] = None


class Plan(t.NamedTuple):
    commands: list
    actions: list
    before: list  # iptables -S lines of the jump and of our chain, now
    after: list   # the same lines once the commands ran


# ---------------------------------------------------------------------------------------- wanted rules

def parse_network(value, where) -> ipaddress.IPv4Network:
    """An IPv4 network in CIDR form (a bare address is a /32), strictly: no host bits, no IPv6."""
    text = value if isinstance(value, str) else str(value)
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise FirewallError('%s %r is not an IPv4 network in CIDR form (for example 192.168.1.0/24)'
                            % (where, value)) from exc
    if net.version != 4:
        raise FirewallError(
            '%s %r is an IPv6 network. Only IPv4 is filtered: the model ports are published on IPv4 addresses '
            '(bind_address), so IPv6 clients cannot reach them at all. List IPv4 networks only' % (where, value))
    if net.network_address != ipaddress.ip_interface(text).ip:
        raise FirewallError('%s %r has host bits set; write the network address, %s' % (where, value, net))
    return net


def wanted(models, default_networks, default_bind_address='0.0.0.0') -> list:
    """The restricted models, sorted by port: ``[{name, port, allowed_networks}]``.

    ``models`` are dicts with ``name``, ``port``, ``state``, ``bind_address`` and ``allowed_networks``
    (None: use ``default_networks``; a list, even empty, replaces it for that model). Models that are
    absent publish nothing and get no rules; an empty list leaves a model open as Docker publishes it.
    """
    for index, net in enumerate(default_networks or []):
        parse_network(net, 'allowed_networks[%d]' % index)
    out = []
    ports = {}
    for index, model in enumerate(models):
        name = model.get('name')
        label = 'models[%d] (%s)' % (index, name)
        state = model.get('state') or 'started'
        port = model.get('port')
        if state == 'absent' or (port is None and state == 'stopped'):
            continue
        own = model.get('allowed_networks')
        if own is None:
            where, networks = 'allowed_networks', default_networks or []
        else:
            where, networks = '%s.allowed_networks' % label, own
        nets = sorted(set(parse_network(net, '%s[%d]' % (where, i)) for i, net in enumerate(networks)))
        if not nets:
            # An open model gets no rule: its name and port are cog_model's pre-flight's to judge.
            continue
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise FirewallError('models[%d].name %r is not a Docker container name' % (index, name))
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise FirewallError('%s.port %r is not a TCP port (1-65535)' % (label, port))
        if port in ports:
            raise FirewallError('%s.port %d is already used by %s' % (label, port, ports[port]))
        ports[port] = label
        bind = model.get('bind_address') or default_bind_address or '0.0.0.0'
        if ':' in bind:
            raise FirewallError(
                '%s.bind_address %s publishes the port on IPv6, which these rules do not filter (they restrict '
                'IPv4 in Docker\'s DOCKER-USER chain). Publish it on 0.0.0.0 or an IPv4 address of the host, or '
                'give this model allowed_networks: [] to leave it unrestricted' % (label, bind))
        out.append({'name': name, 'port': port, 'allowed_networks': [str(n) for n in nets]})
    return sorted(out, key=lambda m: m['port'])


def rules_for(restricted) -> list:
    """Our chain's rules for the restricted models of :func:`wanted`; [] when none is restricted."""
    if not restricted:
        return []
    rules = [Rule(LOOPBACK, None, 'RETURN', LOOPBACK_COMMENT)]
    for model in restricted:
        comment = COMMENT_PREFIX + model['name']
        rules += [Rule(net, model['port'], 'RETURN', comment) for net in model['allowed_networks']]
        rules.append(Rule(None, model['port'], 'DROP', comment))
    return rules


def restore_text(chain, rules) -> str:
    """``iptables-restore --noflush`` input that creates our chain, or empties and refills it, at once."""
    lines = [
        '# Managed by Ansible (homelab.gpu.cog_models). The cog model ports and the networks allowed to reach',
        '# them. Loaded with `iptables-restore --noflush` by homelab-gpu-model-firewall.service, before Docker.',
        '*filter',
        ':%s - [0:0]' % chain,
    ]
    lines += [show(chain, rule.args()) for rule in rules]
    lines.append('COMMIT')
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------- parsing

def parse_save(text) -> dict:
    """The filter table of ``iptables-save`` output: ``{chain: [rule argument lists]}``, in order.

    Every declared chain is a key, also when it holds no rule. Other tables and comments are skipped.
    """
    chains = {}
    table = None
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        if line.startswith('*'):
            table = line[1:]
            continue
        if table != 'filter' or line == 'COMMIT':
            continue
        if line.startswith(':'):
            chains.setdefault(line[1:].split()[0], [])
            continue
        try:
            args = shlex.split(line)
        except ValueError as exc:
            raise FirewallError('iptables-save line %d cannot be read (%s): %s' % (lineno, exc, line)) from exc
        if len(args) < 2 or args[0] != '-A':
            raise FirewallError('iptables-save line %d is not a rule: %s' % (lineno, line))
        chains.setdefault(args[1], []).append(args[2:])
    return chains


def rule_key(args):
    """A rule's options as a set, so that the order iptables prints them in does not matter.

    ``-m <match>`` only loads a match; the options that follow carry the meaning. A negation (``!``) is
    kept with its option, so that ``! -s x`` and ``-s x`` differ.
    """
    items = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == '-m' and i + 1 < len(args):
            i += 2
            continue
        neg = arg == '!'
        if neg:
            i += 1
            arg = args[i] if i < len(args) else ''
        value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith('-') else None
        if arg == '-s' and value:
            try:
                value = str(ipaddress.ip_network(value, strict=False))
            except ValueError:
                pass
        items.append(('!' if neg else '', arg, value))
        i += 2 if value is not None else 1
    return frozenset(items)


def show(chain, args) -> str:
    """A rule as iptables-save prints it (and iptables-restore reads it): arguments with a space in double quotes.

    Our own arguments never hold a quote or a backslash (names are Docker names); others are shown as read.
    """
    return ' '.join(['-A', chain] + ['"%s"' % a if (' ' in a or not a) else a for a in args])


# ---------------------------------------------------------------------------------------- planning

def docker_problem(chains, legacy_hint=False) -> t.Optional[str]:
    """Why Docker's chains cannot carry the rules here, or None when FORWARD jumps to DOCKER-USER."""
    forward = chains.get('FORWARD', [])
    if any(args[-2:] == ['-j', DOCKER_USER] for args in forward):
        return None
    msg = ('Docker does not filter through iptables on this host: the FORWARD chain of `iptables-save -t filter` '
           'has no jump to DOCKER-USER. allowed_networks needs Docker to manage iptables (the default; check that '
           '/etc/docker/daemon.json does not set "iptables": false or "firewall-backend": "nftables", and that '
           'Docker is running).')
    if legacy_hint:
        msg += (' iptables reports iptables-legacy tables: Docker may use the other backend. Make `iptables` the '
                'one Docker uses (update-alternatives --config iptables), restart Docker, and run again.')
    return msg


def plan(save_text, chain, rules, legacy_hint=False) -> Plan:
    """Commands that make the filter table hold exactly ``rules`` in ``chain``, jumped to once from
    DOCKER-USER; with ``rules`` empty, commands that remove the jump and the chain.

    Raises :class:`FirewallError` when rules are wanted but Docker does not jump to DOCKER-USER.
    """
    chains = parse_save(save_text)
    current = chains.get(chain)
    jumps = [args for args in chains.get(DOCKER_USER, []) if args == ['-j', chain]]
    before = [show(DOCKER_USER, args) for args in jumps]
    if current is not None:
        before += ['-N %s' % chain] + [show(chain, args) for args in current]
    commands, actions, after = [], [], []

    if rules:
        problem = docker_problem(chains, legacy_hint)
        if problem:
            raise FirewallError(problem)
        after = [show(DOCKER_USER, ['-j', chain]), '-N %s' % chain] + [show(chain, r.args()) for r in rules]
        have = [rule_key(args) for args in (current or [])]
        want = [rule_key(r.args()) for r in rules]
        if current is None:
            actions.append('created the chain %s' % chain)
        if have != want:
            commands.append(Command('iptables-restore', ['-w', WAIT_SECONDS, '--noflush'], restore_text(chain, rules)))
            wanted_keys = set(want)
            for args, key in zip(current or [], have):
                if key not in wanted_keys:
                    actions.append('removed %s' % describe_current(chain, args))
            have_keys = set(have)
            for rule, key in zip(rules, want):
                if key not in have_keys:
                    actions.append('added: %s' % rule.describe())
            if have_keys == wanted_keys:
                actions.append('put the rules of %s back in order' % chain)
        if not jumps:
            commands.append(Command('iptables', ['-w', '-I', DOCKER_USER, '1', '-j', chain]))
            actions.append('DOCKER-USER now jumps to %s' % chain)
        extra = len(jumps) - 1
        commands += [Command('iptables', ['-w', '-D', DOCKER_USER, '-j', chain])] * max(extra, 0)
        actions += ['removed a second jump from DOCKER-USER to %s' % chain] * max(extra, 0)
    else:
        commands += [Command('iptables', ['-w', '-D', DOCKER_USER, '-j', chain])] * len(jumps)
        if jumps:
            actions.append('DOCKER-USER no longer jumps to %s' % chain)
        if current is not None:
            commands.append(Command('iptables', ['-w', '-F', chain]))
            commands.append(Command('iptables', ['-w', '-X', chain]))
            actions.append('removed the chain %s and its %d rule(s): the model ports are open to every network '
                           'again, as Docker publishes them' % (chain, len(current)))
    return Plan(commands, actions, before, after)


def describe_current(chain, args) -> str:
    """Text for a rule found in our chain: our own wording when it is one of ours."""
    key = rule_key(args)
    port = _value_after(args, '--ctorigdstport')
    comment = _value_after(args, '--comment')
    candidates = [Rule(LOOPBACK, None, 'RETURN', LOOPBACK_COMMENT)]
    # ASCII digits only (str.isdigit() also takes '²', which int() refuses) and at most a port's five.
    if port and re.fullmatch('[0-9]{1,5}', port) and comment is not None:
        candidates += [Rule(_value_after(args, '-s'), int(port), 'RETURN', comment),
                       Rule(None, int(port), 'DROP', comment)]
    for rule in candidates:
        if rule_key(rule.args()) == key:
            return 'rule: ' + rule.describe()
    return 'rule not made by this collection: %s' % show(chain, args)


def _value_after(args, option):
    if option in args:
        i = args.index(option)
        if i + 1 < len(args):
            return args[i + 1]
    return None


# ---------------------------------------------------------------------------------------- I/O

class Runner:
    """Finds the iptables tools and runs a plan's commands; in check mode (``dry_run``) only records them."""

    def __init__(self, module, dry_run):
        self.module = module
        self.dry_run = dry_run
        self.ran = []
        tools = ('iptables', 'iptables-save', 'iptables-restore')
        self.bins = dict((tool, module.get_bin_path(tool)) for tool in tools)

    def missing(self):
        return [tool for tool, path in self.bins.items() if not path]

    def version(self):
        res = run_command(self.module, [self.bins['iptables'], '--version'], timeout=COMMAND_TIMEOUT)
        return res.stdout.strip() if res.rc == 0 else None

    def save(self):
        """``(text, legacy_hint)`` of ``iptables-save -t filter``."""
        res = run_command(self.module, [self.bins['iptables-save'], '-t', 'filter'], timeout=COMMAND_TIMEOUT)
        if res.rc != 0:
            raise FirewallError(command_error('iptables-save -t filter', res))
        return res.stdout, 'iptables-legacy tables present' in res.stderr

    def run(self, command):
        argv = [self.bins[command.tool]] + command.args
        self.ran.append(' '.join([command.tool] + command.args))
        if self.dry_run:
            return
        res = run_command(self.module, argv, timeout=COMMAND_TIMEOUT, data=command.data)
        if res.rc != 0:
            raise FirewallError(command_error(' '.join([command.tool] + command.args), res))


def read_file(path):
    try:
        with open(path, encoding='utf-8') as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_file(path, text):
    """Write ``text`` to ``path`` atomically (temp file in the same directory, renamed), mode 0644."""
    directory = os.path.dirname(path) or '.'
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.%s.' % os.path.basename(path))
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


NO_IPTABLES = (
    'allowed_networks needs the iptables command on this host, and %s is missing. Docker\'s published ports '
    'bypass the INPUT chain that ufw and firewalld filter; the place to restrict them is Docker\'s DOCKER-USER '
    'chain, which iptables manages. On an nftables host install the iptables package (Debian: apt install '
    'iptables; its default iptables-nft backend writes nftables rules) so that Docker and these rules share '
    'it, then restart Docker. Or leave allowed_networks empty and filter the model ports in your own nftables '
    'table (a forward hook that matches "ct original proto-dst <port>").')


def apply(module, params) -> dict:
    """The whole module run: validate, plan, run (or record in check mode), keep the rules file in step."""
    chain = params['chain']
    if not CHAIN_RE.fullmatch(chain) or chain.startswith('DOCKER'):
        raise FirewallError('chain %r is not a chain name this collection may own (a letter, then up to 27 '
                            'letters, digits, - or _; not DOCKER...)' % chain)
    restricted = wanted(params['models'], params['allowed_networks'], params['bind_address'])
    rules = rules_for(restricted)
    runner = Runner(module, module.check_mode)
    result = dict(changed=False, actions=[], chain=chain, restricted=bool(restricted), models=restricted,
                  rules=[], commands=[], rules_file=params['rules_file'], iptables_version=None)
    diffs = []

    missing = runner.missing()
    if missing and rules:
        raise FirewallError(NO_IPTABLES % ' and '.join(missing))
    path = params['rules_file']
    old = read_file(path)
    if not missing:
        result['iptables_version'] = runner.version()
        try:
            save_text, legacy_hint = runner.save()
        except FirewallError as exc:
            if rules:
                raise
            # Nothing is restricted: a host where iptables cannot be read (a container without NET_ADMIN)
            # is no reason to fail. Only a host that had rules (the file says so) hears about it.
            if old is not None:
                module.warn('%s; the rules of %s, if any are left, could not be checked' % (exc, chain))
            save_text, legacy_hint = '', False
        the_plan = plan(save_text, chain, rules, legacy_hint)
        for command in the_plan.commands:
            runner.run(command)
        result['actions'] += the_plan.actions
        result['rules'] = the_plan.after
        result['commands'] = runner.ran
        if the_plan.commands:
            result['changed'] = True
            diffs.append(dict(before_header='iptables -S (%s jump and chain %s)' % (DOCKER_USER, chain),
                              after_header='iptables -S (%s jump and chain %s)' % (DOCKER_USER, chain),
                              before=_lines(the_plan.before), after=_lines(the_plan.after)))

    new = restore_text(chain, rules) if rules else None
    if old != new:
        result['changed'] = True
        result['actions'].append(('wrote %s' % path) if new is not None else ('removed %s' % path))
        diffs.append(dict(before_header=path, after_header=path, before=old or '', after=new or ''))
        if not module.check_mode:
            if new is None:
                os.unlink(path)
            else:
                write_file(path, new)
    if module._diff:
        result['diff'] = diffs
    return result


def _lines(lines):
    return ''.join(line + '\n' for line in lines)
