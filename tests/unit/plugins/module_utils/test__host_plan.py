# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The converged check of the roles: what differs between one read of a host and what a role wants."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.homelab.gpu.plugins.module_utils import _host_plan

SOURCE = ('# Managed by homelab.gpu.docker\nTypes: deb\nURIs: https://download.docker.com/linux/debian\n'
          'Suites: bookworm\nComponents: stable\nArchitectures: amd64\nSigned-By: /etc/apt/keyrings/docker.asc\n')
CONFIG = {'log-driver': 'json-file', 'log-opts': {'max-size': '100m', 'max-file': '3'}, 'storage-driver': 'vfs',
          'runtimes': {'nvidia': {'path': '/usr/bin/nvidia-container-runtime'}}}

# A converged lab host as homelab.gpu.gpu_host_facts reads it.
HOST = {
    'requested': {'packages': ['docker.io', 'nvidia-container-toolkit', 'libnvidia-container1', 'criu'],
                  'files': ['/etc/apt/keyrings', '/etc/apt/keyrings/docker.asc', '/etc/apt/sources.list.d/docker.sources'],
                  'units': ['docker.service'], 'users': ['lab'], 'groups': ['docker']},
    'packages': {'docker.io': {'status': 'ii', 'version': '20.10.24+dfsg1-1+deb12u1'},
                 'nvidia-container-toolkit': {'status': 'hi', 'version': '1.17.8-1'},
                 'libnvidia-container1': {'status': 'hi', 'version': '1.17.8-1'}},
    'files': {'/etc/apt/keyrings': {'exists': True, 'type': 'directory', 'mode': '0755', 'owner': 'root', 'group': 'root'},
              '/etc/apt/keyrings/docker.asc': {'exists': True, 'type': 'file', 'mode': '0644', 'owner': 'root',
                                               'group': 'root', 'content': '-----BEGIN PGP PUBLIC KEY BLOCK-----\n'},
              '/etc/apt/sources.list.d/docker.sources': {'exists': True, 'type': 'file', 'mode': '0644',
                                                         'owner': 'root', 'group': 'root', 'content': SOURCE}},
    'daemon_json': {'path': '/etc/docker/daemon.json', 'exists': True, 'config': CONFIG, 'error': None},
    'units': {'docker.service': {'load_state': 'loaded', 'active_state': 'active', 'unit_file_state': 'enabled'}},
    'users': {'lab': {'exists': True, 'groups': ['lab', 'sudo', 'docker']}},
}
DOCKER_JSON = {'log_driver': 'json-file', 'log_opts': {'max-size': '100m', 'max-file': 3},
               'settings': {'storage-driver': 'vfs'}}
TOOLKIT_JSON = {'nvidia_runtime': {'path': '/usr/bin/nvidia-container-runtime'},
                'remove_if': {'default-runtime': 'nvidia'}}
KEYRING = {'path': '/etc/apt/keyrings/docker.asc', 'mode': '0644', 'owner': 'root', 'group': 'root'}
SOURCE_FILE = {'path': '/etc/apt/sources.list.d/docker.sources', 'content': SOURCE, 'mode': '0644'}


def host(**changes):
    """HOST with dotted-path changes: host(**{'units.docker.service.active_state': 'failed'})."""
    out = copy.deepcopy(HOST)
    for dotted, value in changes.items():
        keys = dotted.split('|')
        node = out
        for key in keys[:-1]:
            node = node[key]
        if value is KeyError:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return out


CASES = [
    # (id, host, wants, expected differences)
    ('converged docker role', HOST,
     {'packages': {'names': ['docker.io']}, 'files': [{'path': '/etc/apt/keyrings', 'state': 'directory'}, KEYRING,
                                                      SOURCE_FILE],
      'daemon_json': DOCKER_JSON, 'units': [{'name': 'docker.service', 'active': True, 'enabled': True}],
      'group_members': {'group': 'docker', 'users': ['lab']}}, []),
    ('converged toolkit, pinned and held', HOST,
     {'packages': {'names': ['nvidia-container-toolkit', 'libnvidia-container1'], 'version': '1.17.8-1', 'hold': True},
      'daemon_json': TOOLKIT_JSON}, []),
    ('a package not installed', host(**{'packages|docker.io': KeyError}),
     {'packages': {'names': ['docker.io']}}, ['packages docker.io: not installed']),
    ('removed but configured (rc) is not installed', host(**{'packages|docker.io|status': 'rc'}),
     {'packages': {'names': ['docker.io']}}, ['packages docker.io: not installed']),
    ('a package the read was not asked for', HOST,
     {'packages': {'names': ['docker-ce']}}, ['packages docker-ce: not read']),
    ('dpkg-query failed', host(dpkg_error='dpkg-query not found'),
     {'packages': {'names': ['docker.io']}}, ['packages: dpkg-query failed (dpkg-query not found)']),
    ('another pinned version', HOST,
     {'packages': {'names': ['nvidia-container-toolkit'], 'version': '1.17.9-1'}},
     ['packages nvidia-container-toolkit 1.17.8-1: not version 1.17.9-1']),
    ('held but no pin any more', HOST,
     {'packages': {'names': ['nvidia-container-toolkit'], 'hold': False}},
     ['packages nvidia-container-toolkit: held']),
    ('pinned but not held', host(**{'packages|libnvidia-container1|status': 'ii'}),
     {'packages': {'names': ['libnvidia-container1'], 'hold': True}}, ['packages libnvidia-container1: not held']),
    ('hold None leaves the selection alone', HOST,
     {'packages': {'names': ['nvidia-container-toolkit'], 'hold': None}}, []),
    ('source content differs', HOST,
     {'files': [dict(SOURCE_FILE, content=SOURCE.replace('stable', 'test'))]},
     ['/etc/apt/sources.list.d/docker.sources: content differs']),
    ('key missing', host(**{'files|/etc/apt/keyrings/docker.asc': {'exists': False}}),
     {'files': [KEYRING]}, ['/etc/apt/keyrings/docker.asc: missing']),
    ('key mode', host(**{'files|/etc/apt/keyrings/docker.asc|mode': '0600'}),
     {'files': [KEYRING]}, ['/etc/apt/keyrings/docker.asc: mode 0600, not 0644']),
    ('a directory where a file belongs', host(**{'files|/etc/apt/keyrings/docker.asc|type': 'directory'}),
     {'files': [KEYRING]}, ['/etc/apt/keyrings/docker.asc: is a directory, not a file']),
    ('a file not read', HOST, {'files': [{'path': '/etc/cdi/.nvidia.yaml.homelab-gpu'}]},
     ['/etc/cdi/.nvidia.yaml.homelab-gpu: not read']),
    ('a daemon.json setting differs', host(**{'daemon_json|config|log-opts|max-file': '5'}),
     {'daemon_json': DOCKER_JSON}, ['daemon.json: the settings differ']),
    ('log_opts numbers are written as strings, so 3 matches "3"', HOST,
     {'daemon_json': dict(DOCKER_JSON, log_opts={'max-size': '100m', 'max-file': 3})}, []),
    ('no daemon.json yet', host(**{'daemon_json|exists': False, 'daemon_json|config': None}),
     {'daemon_json': DOCKER_JSON}, ['daemon.json: missing']),
    ('no daemon.json and nothing to set', host(**{'daemon_json|exists': False, 'daemon_json|config': None}),
     {'daemon_json': {}}, []),
    ('an unreadable daemon.json', host(**{'daemon_json|error': '/etc/docker/daemon.json is not JSON'}),
     {'daemon_json': DOCKER_JSON}, ['daemon.json: /etc/docker/daemon.json is not JSON']),
    ('the nvidia default runtime is removed when asked to be off',
     host(**{'daemon_json|config|default-runtime': 'nvidia'}), {'daemon_json': TOOLKIT_JSON},
     ['daemon.json: the settings differ']),
    ('another default runtime stays', host(**{'daemon_json|config|default-runtime': 'crun'}),
     {'daemon_json': TOOLKIT_JSON}, []),
    ('experimental is wanted for docker checkpoint', HOST,
     {'daemon_json': dict(TOOLKIT_JSON, experimental=True)}, ['daemon.json: the settings differ']),
    ('features.cdi merged into existing features', host(**{'daemon_json|config|features': {'buildkit': True}}),
     {'daemon_json': dict(TOOLKIT_JSON, settings={'features': {'cdi': True}})}, ['daemon.json: the settings differ']),
    ('a daemon.json the module would refuse', HOST,
     {'daemon_json': {'log_opts': {'max-size': None}}}, None),
    ('docker stopped', host(**{'units|docker.service|active_state': 'failed'}),
     {'units': [{'name': 'docker.service', 'active': True, 'enabled': True}]}, ['docker.service: failed, not active']),
    ('docker disabled', host(**{'units|docker.service|unit_file_state': 'disabled'}),
     {'units': [{'name': 'docker.service', 'active': True, 'enabled': True}]}, ['docker.service: disabled, not enabled']),
    ('static counts as enabled', host(**{'units|docker.service|unit_file_state': 'static'}),
     {'units': [{'name': 'docker.service', 'active': True, 'enabled': True}]}, []),
    ('no docker unit yet', host(**{'units|docker.service|load_state': 'not-found'}),
     {'units': [{'name': 'docker.service', 'active': True, 'enabled': True}]}, ['docker.service: not loaded (not-found)']),
    ('a user not in the group', host(**{'users|lab|groups': ['lab']}),
     {'group_members': {'group': 'docker', 'users': ['lab']}}, ['user lab: not in group docker']),
    ('a user that does not exist', host(**{'users|lab': {'exists': False}}),
     {'group_members': {'group': 'docker', 'users': ['lab']}}, ['user lab: does not exist']),
    ('a user not read', HOST, {'group_members': {'group': 'docker', 'users': ['alice']}}, ['user alice: not read']),
    ('nothing read at all', {}, {'packages': {'names': ['docker.io']}}, ['the host was not read']),
]


@pytest.mark.parametrize('name, read, wants, expected', CASES, ids=[c[0] for c in CASES])
def test_todo(name, read, wants, expected):
    if expected is None:
        # The module refuses it; the converged check says so rather than calling it converged.
        result = _host_plan.todo(read, wants)
        assert len(result) == 1 and result[0].startswith('daemon.json: log_opts.max-size is null')
    else:
        assert _host_plan.todo(read, wants) == expected


def test_unknown_wants_are_a_caller_error():
    with pytest.raises(_host_plan.PlanError, match='unknown wants pakages'):
        _host_plan.todo(HOST, {'pakages': {}})
    with pytest.raises(_host_plan.PlanError, match='daemon_json: unknown keys log_driverr'):
        _host_plan.daemon_json_config({}, {'log_driverr': 'local'})


def test_daemon_json_config_matches_the_module_order():
    # Settings first, then the convenience options; remove before both.
    new = _host_plan.daemon_json_config({'default-runtime': 'nvidia', 'debug': True},
                                        {'settings': {'debug': False}, 'log_driver': 'local',
                                         'remove_if': {'default-runtime': 'nvidia'}})
    assert new == {'debug': False, 'log-driver': 'local'}
    assert list(new) == ['debug', 'log-driver']


def test_deb822_writes_the_sources_the_roles_always_wrote():
    from ansible_collections.homelab.gpu.plugins.filter import host_todo as flt
    fields = {'URIs': 'https://download.docker.com/linux/debian', 'Suites': 'bookworm', 'Components': 'stable',
              'Architectures': 'amd64', 'Signed-By': '/etc/apt/keyrings/docker.asc'}
    assert flt.deb822(fields, 'Managed by homelab.gpu.docker') == SOURCE
    assert flt.deb822({'Types': 'deb-src', 'URIs': 'file:///srv', 'Suites': '/'}) == 'Types: deb-src\nURIs: file:///srv\nSuites: /\n'
    for bad in ({}, {'URIs': 'a\nSuites: evil'}, {'Bad Key': 'x'}, {'URIs': ''}):
        with pytest.raises(Exception, match='deb822'):
            flt.deb822(bad)


def test_the_filter_names_a_caller_error():
    from ansible.errors import AnsibleFilterError
    from ansible_collections.homelab.gpu.plugins.filter import host_todo as flt
    assert set(flt.FilterModule().filters()) == {'host_todo', 'deb822', 'cdi_spec_todo'}
    assert flt.host_todo(HOST, {'units': [{'name': 'docker.service', 'active': True, 'enabled': True}]}) == []
    with pytest.raises(AnsibleFilterError, match='host_todo: unknown wants pakages'):
        flt.host_todo(HOST, {'pakages': {}})
