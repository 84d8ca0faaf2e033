# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What differs between a host, as homelab.gpu.gpu_host_facts read it once, and what a role wants (pure).

The roles of the collection read the host once per run (homelab.gpu.gpu_host_facts, through
homelab.gpu.preflight) and decide on the controller, with the filter homelab.gpu.host_todo, whether
anything of theirs differs. Only then do they run their remote tasks. So every rule here is on the
safe side: whatever the read does not cover, or cannot tell, counts as a difference, and the role's
own tasks (which find out for themselves) run.
"""

from __future__ import annotations

from ansible_collections.homelab.gpu.plugins.module_utils import _daemon_json

# systemctl is-enabled answers 0 (what systemd_service takes as enabled) for these unit file states.
ENABLED_STATES = frozenset(('enabled', 'enabled-runtime', 'alias', 'static', 'indirect', 'generated', 'transient'))
WANT_KEYS = frozenset(('packages', 'files', 'daemon_json', 'units', 'group_members'))
DAEMON_JSON_OPTIONS = ('nvidia_runtime', 'default_runtime', 'experimental', 'log_driver', 'log_opts', 'data_root',
                       'insecure_registries')


class PlanError(ValueError):
    """A want that is not shaped as documented (a bug of the caller, not a host difference)."""


def _requested(host, kind):
    return set((host.get('requested') or {}).get(kind) or [])


def _found(host, kind, name):
    """What the read found for ``name`` among its ``kind`` (files, units, users); None when it was not asked."""
    found = host.get(kind) or {}
    if name not in _requested(host, kind) or name not in found:
        return None
    return found[name] or {}


def installed(entry):
    """Whether a dpkg entry ({status: 'ii', ...}) is an installed package (ii, or hi when held)."""
    status = (entry or {}).get('status') or ''
    return len(status) >= 2 and status[0] in 'ih' and status[1] == 'i'


def _packages(host, want):
    names = list(want.get('names') or [])
    version = want.get('version') or ''
    hold = want.get('hold')
    if host.get('dpkg_error'):
        return ['packages: dpkg-query failed (%s)' % host['dpkg_error']]
    unread = [n for n in names if n not in _requested(host, 'packages')]
    if unread:
        return ['packages %s: not read' % ', '.join(unread)]
    found = host.get('packages') or {}
    out = []
    missing = [n for n in names if not installed(found.get(n))]
    if missing:
        out.append('packages %s: not installed' % ', '.join(missing))
    if version:
        other = ['%s %s' % (n, found[n].get('version')) for n in names
                 if installed(found.get(n)) and found[n].get('version') != version]
        if other:
            out.append('packages %s: not version %s' % (', '.join(other), version))
    if hold is not None:
        letter = 'h' if hold else 'i'
        wrong = [n for n in names if installed(found.get(n)) and found[n]['status'][0] != letter]
        if wrong:
            out.append('packages %s: %s' % (', '.join(wrong), 'not held' if hold else 'held'))
    return out


def _files(host, wants):
    out = []
    for want in wants:
        path = want['path']
        have = _found(host, 'files', path)
        if have is None:
            out.append('%s: not read' % path)
            continue
        state = want.get('state', 'file')
        if not have.get('exists'):
            out.append('%s: missing' % path)
            continue
        if have.get('type') != state:
            out.append('%s: is a %s, not a %s' % (path, have.get('type'), state))
            continue
        for key in ('mode', 'owner', 'group'):
            if want.get(key) is not None and str(have.get(key)) != str(want[key]):
                out.append('%s: %s %s, not %s' % (path, key, have.get(key), want[key]))
        if 'content' in want and have.get('content') != want['content']:
            out.append('%s: content differs' % path)
    return out


def daemon_json_config(config, want):
    """The daemon.json that homelab.gpu.docker_daemon_config would write over ``config`` for ``want``.

    ``want`` holds the module's options: the convenience options, ``settings``, ``remove`` and
    ``remove_if`` (``{top-level key: value}``: removed only while it holds that value, as
    homelab.gpu._common does). Raises
    _daemon_json.DaemonJsonError where the module would refuse.
    """
    unknown = sorted(set(want) - set(DAEMON_JSON_OPTIONS) - {'settings', 'remove', 'remove_if', 'path', 'list_merge'})
    if unknown:
        raise PlanError('daemon_json: unknown keys %s' % ', '.join(unknown))
    extra = _daemon_json.convenience_settings(**dict((k, want.get(k)) for k in DAEMON_JSON_OPTIONS))
    remove = list(want.get('remove') or []) + [key for key, value in (want.get('remove_if') or {}).items()
                                               if key in config and _daemon_json.same(config[key], value)]
    return _daemon_json.apply_request(config, want.get('settings'), extra, remove,
                                      want.get('list_merge') or 'replace')[0]


def _daemon(host, want):
    read = host.get('daemon_json')
    if not isinstance(read, dict):
        return ['daemon.json: not read']
    if want.get('path') and read.get('path') != want['path']:
        return ['%s: not read' % want['path']]
    if read.get('error'):
        return ['daemon.json: %s' % read['error']]
    old = read.get('config') if read.get('exists') else {}
    try:
        new = daemon_json_config(old or {}, want)
    except _daemon_json.DaemonJsonError as exc:
        return ['daemon.json: %s' % exc]
    if not read.get('exists'):
        return ['daemon.json: missing'] if new else []
    return [] if _daemon_json.same(new, old) else ['daemon.json: the settings differ']


def _units(host, wants):
    out = []
    for want in wants:
        name = want['name']
        have = _found(host, 'units', name)
        if have is None:
            out.append('%s: not read' % name)
            continue
        if have.get('load_state') != 'loaded':
            out.append('%s: not loaded (%s)' % (name, have.get('load_state')))
            continue
        if want.get('active') and have.get('active_state') != 'active':
            out.append('%s: %s, not active' % (name, have.get('active_state')))
        if want.get('enabled') and have.get('unit_file_state') not in ENABLED_STATES:
            out.append('%s: %s, not enabled' % (name, have.get('unit_file_state')))
    return out


def _members(host, want):
    group = want['group']
    out = []
    for user in want.get('users') or []:
        have = _found(host, 'users', user)
        if have is None:
            out.append('user %s: not read' % user)
        elif not have.get('exists'):
            out.append('user %s: does not exist' % user)
        elif group not in (have.get('groups') or []):
            out.append('user %s: not in group %s' % (user, group))
    return out


def todo(host, wants):
    """The differences between ``host`` (gpu_host_facts' ``homelab_gpu_host``) and ``wants``, as short texts.

    An empty list means the role has nothing to do. ``wants`` may hold:

    - ``packages``: ``{names, version ('' = any), hold (None = leave alone, True, False)}``
    - ``files``: a list of ``{path, state (file, directory), content, mode, owner, group}`` (all but path
      optional)
    - ``daemon_json``: homelab.gpu.docker_daemon_config's options (see daemon_json_config)
    - ``units``: a list of ``{name, active, enabled}``
    - ``group_members``: ``{group, users}``
    """
    if not isinstance(host, dict) or not host:
        return ['the host was not read']
    if not isinstance(wants, dict):
        raise PlanError('wants must be a dict, got %s' % type(wants).__name__)
    unknown = sorted(set(wants) - WANT_KEYS)
    if unknown:
        raise PlanError('unknown wants %s (known: %s)' % (', '.join(unknown), ', '.join(sorted(WANT_KEYS))))
    out = []
    if wants.get('packages'):
        out += _packages(host, wants['packages'])
    if wants.get('files'):
        out += _files(host, wants['files'])
    if wants.get('daemon_json') is not None:
        out += _daemon(host, wants['daemon_json'])
    if wants.get('units'):
        out += _units(host, wants['units'])
    if wants.get('group_members'):
        out += _members(host, wants['group_members'])
    return out
