# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run_command wrapper with real commands (time-outs, undecodable output), and the range and bind checks."""

from __future__ import annotations

import shutil
import time

import pytest

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.gpu.plugins.module_utils import _common

needs_timeout = pytest.mark.skipif(shutil.which('timeout') is None, reason='needs coreutils timeout')


@pytest.fixture
def module():
    with patch_module_args({}):
        yield AnsibleModule(argument_spec={})


@needs_timeout
def test_a_command_that_ignores_sigterm_is_killed_and_reported_as_a_time_out(module):
    start = time.monotonic()
    cmd = _common.run_command(module, ['sh', '-c', "trap '' TERM; sleep 30"], timeout=1, kill_after=1)
    took = time.monotonic() - start
    assert cmd.timed_out is True
    # timeout(1) sends its SIGKILL to its whole process group, itself included.
    assert cmd.rc in (-9, 137)
    assert 2 <= took < 10


@needs_timeout
def test_a_command_that_stops_at_sigterm_is_a_time_out(module):
    cmd = _common.run_command(module, ['sleep', '30'], timeout=1)
    assert (cmd.rc, cmd.timed_out) == (124, True)


@needs_timeout
@pytest.mark.parametrize('status', [124, 137])
def test_a_command_that_exits_124_or_137_by_itself_did_not_time_out(module, status):
    cmd = _common.run_command(module, ['sh', '-c', 'exit %d' % status], timeout=30)
    assert (cmd.rc, cmd.timed_out) == (status, False)


def test_a_command_killed_without_a_time_limit_did_not_time_out(module):
    cmd = _common.run_command(module, ['sh', '-c', 'kill -9 $$'])
    assert (cmd.rc, cmd.timed_out) == (-9, False)


@pytest.mark.parametrize('timeout', [None, 30])
def test_output_that_is_not_utf8_is_decoded_with_replacement_characters(module, timeout):
    cmd = _common.run_command(module, ['printf', 'caf\\351 \\377\\n'], timeout=timeout)
    assert cmd.stdout == 'caf\ufffd \ufffd\n'
    assert cmd.stdout.encode('utf-8')  # no lone surrogates: JSON and XML take it


COMMAND_ERRORS = [
    # A time-out is named as one, whichever status timeout(1) left: 124 (SIGTERM), 137 or -9 (SIGKILL).
    ('SIGTERM', _common.CommandResult(124, '', '', True, 30), {}, 'docker info timed out after 30 s'),
    ('SIGKILL', _common.CommandResult(137, 'partial', 'half a line', True, 30), {}, 'docker info timed out after 30 s'),
    ('SIGKILL of timeout itself', _common.CommandResult(-9, '', '', True, 1.5), {},
     'docker info timed out after 1.5 s'),
    ('time-out of a stand-in result without its limit', _common.CommandResult(-9, '', '', True), {},
     'docker info timed out'),
    # rc -9 or 124 without a time-out (killed from elsewhere, or the command's own status) is a failure.
    ('killed from elsewhere', _common.CommandResult(-9, '', '', False, 30), {}, 'docker info failed (rc=-9): (no output)'),
    ('its own 124', _common.CommandResult(124, '', 'boom\n', False, 30), {}, 'docker info failed (rc=124): boom'),
    ('stderr first', _common.CommandResult(1, 'out', ' Cannot connect \n', False, 30), {},
     'docker info failed (rc=1): Cannot connect'),
    ('stdout when stderr is blank', _common.CommandResult(1, 'said on stdout\n', ' \n', False, 30), {},
     'docker info failed (rc=1): said on stdout'),
    ('first line only', _common.CommandResult(2, '', '\nline one\nline two\n', False, 30), {'first_line': True},
     'docker info failed (rc=2): line one'),
    ('cut at the limit', _common.CommandResult(1, '', 'x' * 600, False, 30), {},
     'docker info failed (rc=1): ' + 'x' * 500 + '...'),
]


@pytest.mark.parametrize('cmd, kwargs, message', [c[1:] for c in COMMAND_ERRORS], ids=[c[0] for c in COMMAND_ERRORS])
def test_command_error(cmd, kwargs, message):
    assert _common.command_error('docker info', cmd, **kwargs) == message


@needs_timeout
def test_a_killed_time_out_reads_as_a_time_out(module):
    cmd = _common.run_command(module, ['sh', '-c', "trap '' TERM; sleep 30"], timeout=1, kill_after=0.2)
    assert (cmd.timed_out, cmd.timeout) == (True, 1)
    assert _common.command_error('docker info', cmd) == 'docker info timed out after 1 s'


RANGES = [
    (5, None),
    (1, None),
    (10, None),
    (0, 't must be a positive number of seconds, got 0: how long to wait (1 to 10)'),
    (11, 't must be a positive number of seconds, got 11: how long to wait (1 to 10)'),
    (-1, 't must be a positive number of seconds, got -1: how long to wait (1 to 10)'),
    (float('nan'), 't must be a positive number of seconds, got nan: how long to wait (1 to 10)'),
    (float('inf'), 't must be a positive number of seconds, got inf: how long to wait (1 to 10)'),
    (None, 't must be a positive number of seconds, got None: how long to wait (1 to 10)'),
    ('5', "t must be a positive number of seconds, got 5: how long to wait (1 to 10)"),
]


@pytest.mark.parametrize('value, message', RANGES)
def test_range_error(value, message):
    assert _common.range_error('t', value, 1, 10, 'a positive number of seconds', 'how long to wait') == message


@pytest.mark.parametrize('address', ['127.0.0.1', '0.0.0.0'])
def test_bind_error_local(address):
    assert _common.bind_error(address) is None


def test_bind_error_address_of_another_machine():
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): no host has it.
    assert _common.bind_error('192.0.2.1') == 'Cannot assign requested address'
