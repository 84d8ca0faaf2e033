# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tables for plugins/module_utils/_cog_logs.py: validation, model choice and the merge of docker logs' two streams."""

from __future__ import annotations

import pytest

from ansible_collections.homelab.gpu.plugins.module_utils import _cog_logs as cl

# The shape of `docker logs --timestamps` of a cog container (Docker 26, json-file driver): the predictor's prints
# on stdout, coglet's log on stderr, each line with Docker's RFC 3339 time stamp (nanoseconds, UTC).
STDOUT = """2026-11-28T04:20:01.100000000Z demo setup: loading for 1 s
2026-11-28T04:20:02.150000000Z demo setup: done
"""
STDERR = """2026-11-28T04:20:01.000000000Z INFO coglet starting
2026-11-28T04:20:02.150000000Z INFO setup completed
2026-11-28T04:20:02.2Z INFO serving on :5000
"""


@pytest.mark.parametrize('names, lines, errors', [
    ([], 100, []),
    (['llama_tiny', 'sd.xl-2'], 1, []),
    ([], 10000, []),
    (['x'], 100, ["names[0] 'x' is not a valid model (Docker container) name: a letter or digit, then letters, "
                  "digits, _ . -; at least 2 characters"]),
    (['llama_tiny\n'], 100, ["names[0] 'llama_tiny\\n' is not a valid model (Docker container) name: a letter or "
                             "digit, then letters, digits, _ . -; at least 2 characters"]),
    (['-v'], 100, ["names[0] '-v' is not a valid model (Docker container) name: a letter or digit, then letters, "
                   "digits, _ . -; at least 2 characters"]),
    ([], 0, ['lines 0 must be a whole number from 1 to 10000']),
    ([], 10001, ['lines 10001 must be a whole number from 1 to 10000']),
    ([], True, ['lines True must be a whole number from 1 to 10000']),
])
def test_validate(names, lines, errors):
    assert cl.validate(names, lines) == errors


@pytest.mark.parametrize('ps, names, chosen, error', [
    ('demo_b\ndemo_a\ndemo_a.previous\n', [], ['demo_a', 'demo_b'], None),
    ('demo_b\ndemo_a\n', ['demo_b'], ['demo_b'], None),
    ('demo_b\ndemo_a\n', ['demo_b', 'demo_b'], ['demo_b'], None),
    ('demo_b\ndemo_a.previous\n', ['demo_c'], None,
     'demo_c is no model container that homelab.gpu manages on this host (managed: demo_b)'),
    ('', ['demo_c', 'demo_d'], None,
     'demo_c, demo_d are no model container that homelab.gpu manages on this host (managed: none)'),
    ('', [], [], None),
])
def test_select_models(ps, names, chosen, error):
    assert cl.select_models(ps, names) == (chosen, error)


@pytest.mark.parametrize('lines, timestamps, out', [
    (100, False, ['INFO coglet starting', 'demo setup: loading for 1 s', 'demo setup: done', 'INFO setup completed',
                  'INFO serving on :5000']),
    (2, False, ['INFO setup completed', 'INFO serving on :5000']),
    (1, True, ['2026-11-28T04:20:02.2Z INFO serving on :5000']),
    (0, False, []),
])
def test_merge_streams(lines, timestamps, out):
    assert cl.merge_streams(STDOUT, STDERR, lines, timestamps) == out


def test_merge_streams_keeps_lines_without_a_stamp():
    assert cl.merge_streams('no stamp\n2026-11-28T04:20:01Z a\ncontinued\n', '', 10) == ['no stamp', 'a\ncontinued']


def test_argv():
    assert cl.logs_argv('/usr/bin/docker', 'llama_tiny', 100) == [
        '/usr/bin/docker', 'logs', '--timestamps', '--tail', '100', 'llama_tiny']
    assert cl.ps_argv('docker', 'homelab.gpu.managed') == [
        'docker', 'ps', '--all', '--filter', 'label=homelab.gpu.managed=true', '--format', '{{.Names}}']
