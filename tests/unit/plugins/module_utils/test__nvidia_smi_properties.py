# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property-based tests (Hypothesis) of the nvidia-smi reader: whatever the host prints, the reader returns one
of its states, or parse_xml its own ValueError, and never raises anything else.

Inputs: arbitrary bytes, the text AnsibleModule.run_command makes of them by default (undecodable bytes as
surrogates), the recorded outputs of tests/unit/fixtures/nvidia-smi/ mutated byte by byte, and those outputs with
the text of their number fields replaced (long runs of digits, words that float() reads, other scripts' digits).
"""

from __future__ import annotations

import contextlib
import io
import json
import pathlib
import re
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.gpu.plugins.module_utils import _nvidia_smi
from ansible_collections.homelab.gpu.plugins.module_utils._common import CommandResult
from ansible_collections.homelab.gpu.plugins.modules import nvidia_smi_info

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / 'fixtures' / 'nvidia-smi'
CAPTURES = {p.name: p.read_bytes() for p in sorted(FIXTURES.iterdir()) if p.name != 'README.md'}
REAL_XML = sorted(n for n in CAPTURES if n.startswith(('h100', 'h200')))

# No example database in the tree; no deadline, the runners are shared and slow.
PROPERTY = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
EXIT_STATUS = st.integers(min_value=-128, max_value=255)


def check_result(result):
    """What every answer of classify must be: a known state, a message, and data the module can return."""
    assert result['state'] in _nvidia_smi.STATES
    assert isinstance(result['message'], str) and result['message']
    assert isinstance(result['gpus'], list)
    assert result['gpu_count'] == len(result['gpus'])
    # exit_json serialises it; text with lone surrogates would not encode.
    json.dumps(result, ensure_ascii=False).encode('utf-8')


@PROPERTY
@given(stdout=st.binary(max_size=4096), stderr=st.binary(max_size=512), rc=EXIT_STATUS, timed_out=st.booleans())
def test_arbitrary_bytes(stdout, stderr, rc, timed_out):
    check_result(_nvidia_smi.classify(rc, stdout, stderr, timed_out=timed_out, timeout=15))


@PROPERTY
@given(stdout=st.binary(max_size=4096), rc=EXIT_STATUS)
def test_arbitrary_bytes_as_run_command_decodes_them_by_default(stdout, rc):
    text = stdout.decode('utf-8', 'surrogateescape')
    check_result(_nvidia_smi.classify(rc, text, '', timed_out=False, timeout=15))


@PROPERTY
@given(stdout=st.text(max_size=2048), rc=EXIT_STATUS)
def test_arbitrary_text(stdout, rc):
    check_result(_nvidia_smi.classify(rc, stdout, stdout[:100]))


# One mutation of a capture: (kind, position as a fraction of the length, bytes).
MUTATION = st.tuples(st.sampled_from(['insert', 'replace', 'delete', 'truncate']),
                     st.floats(min_value=0, max_value=1), st.binary(min_size=1, max_size=8))


def mutate(data, mutations):
    for kind, where, chunk in mutations:
        at = int(where * len(data))
        if kind == 'insert':
            data = data[:at] + chunk + data[at:]
        elif kind == 'replace':
            data = data[:at] + chunk + data[at + len(chunk):]
        elif kind == 'delete':
            data = data[:at] + data[at + len(chunk):]
        else:
            data = data[:at]
    return data


@PROPERTY
@given(name=st.sampled_from(sorted(CAPTURES)), mutations=st.lists(MUTATION, min_size=1, max_size=6),
       rc=st.sampled_from([0, 0, 0, 6, 9, 18, 255]))
def test_mutated_captures(name, mutations, rc):
    data = mutate(CAPTURES[name], mutations)
    check_result(_nvidia_smi.classify(rc, data, b''))
    try:
        parsed, notices = _nvidia_smi.parse_xml(data)
    except ValueError:
        return  # parse_xml's own error, which classify turns into state error
    assert parsed['gpu_count'] == len(parsed['gpus'])
    assert all(isinstance(n, str) for n in notices)


# A number field: an element whose whole text is a number, with or without a unit ("81559 MiB", "36 C", "0").
NUMBER_FIELD_RE = re.compile(rb'<([a-z_]+)>(-?[0-9]+(?:\.[0-9]+)? ?[A-Za-z%]*)</\1>')
# The fields the reader turns into numbers (memory, utilization, temperature, power, fan, pid, minor number).
PARSED_FIELDS = ['total', 'used', 'free', 'reserved', 'gpu_util', 'memory_util', 'gpu_temp', 'instant_power_draw',
                 'power_draw', 'average_power_draw', 'current_power_limit', 'power_limit', 'fan_speed',
                 'used_memory', 'pid', 'minor_number']
# Every number field of the captures, parsed or not.
ALL_NUMBER_FIELDS = sorted({m.group(1).decode() for data in CAPTURES.values() for m in NUMBER_FIELD_RE.finditer(data)})
# A run of digits, up to past the 308 that a float holds and the 4300 that int() reads from text.
DIGIT_RUN = st.tuples(st.sampled_from('0123456789'), st.integers(min_value=1, max_value=5000),
                      st.text('0123456789', max_size=4)).map(lambda t: t[0] * t[1] + t[2])
NUMBER_TEXT = st.one_of(
    st.tuples(st.sampled_from(['', '-']), DIGIT_RUN, st.sampled_from(['', '.']), st.sampled_from(['', '5']),
              st.sampled_from(['', ' ', ' MiB', ' GiB', ' KiB', ' %', ' C', ' W'])).map(''.join),
    st.tuples(DIGIT_RUN, st.just('.'), DIGIT_RUN, st.sampled_from([' GiB', ' W'])).map(''.join),
    st.sampled_from(['inf', 'nan', 'NaN %', '-Infinity C', '1e400 W', '1_000 MiB', '\u0661\u0662 MiB', '\u00b2 %',
                     '\uff11\uff12']),
)


@PROPERTY
@given(name=st.sampled_from(REAL_XML), field=st.one_of(st.sampled_from(PARSED_FIELDS), st.sampled_from(ALL_NUMBER_FIELDS)),
       text=NUMBER_TEXT)
def test_any_text_in_the_number_fields_of_a_real_capture_keeps_it_ok(name, field, text):
    """A number field holding 5000 digits (once inf, then OverflowError in int(round(...))), or inf, nan, '١٢':
    the GPUs are still read, the field is a number or None, and nothing raises."""
    capture = CAPTURES[name]
    data = re.sub(rb'<%s>[^<]*</%s>' % (field.encode(), field.encode()),
                  lambda m: b'<%s>%s</%s>' % (field.encode(), text.encode(), field.encode()), capture)
    before = _nvidia_smi.classify(0, capture, b'')
    after = _nvidia_smi.classify(0, data, b'')
    check_result(after)
    assert after['state'] == 'ok'
    assert [g['uuid'] for g in after['gpus']] == [g['uuid'] for g in before['gpus']]
    for gpu in after['gpus']:
        for key, value in gpu.items():
            if key.endswith(('_mib', '_percent', '_c', '_w')) or key == 'minor_number':
                assert value is None or isinstance(value, (int, float)), (key, value)


# Bytes that stay inside a text node: anything but the two that start markup.
TEXT_BYTES = st.binary(min_size=1, max_size=16).filter(lambda b: b'<' not in b and b'&' not in b)


@PROPERTY
@given(name=st.sampled_from(REAL_XML), junk=TEXT_BYTES,
       which=st.sampled_from(['process_name', 'product_name', 'serial', 'vbios_version']))
def test_any_bytes_inside_a_text_field_of_a_real_capture_keep_it_ok(name, junk, which):
    """One non-UTF-8 byte (or a control character) in a process name must not turn a working GPU into an error."""
    capture = CAPTURES[name]
    open_tag = b'<%s>' % which.encode()
    at = capture.find(open_tag)
    if at < 0:
        return
    at += len(open_tag)
    data = capture[:at] + junk + capture[at:]
    before = _nvidia_smi.classify(0, capture, b'')
    after = _nvidia_smi.classify(0, data, b'')
    check_result(after)
    assert after['state'] == 'ok'
    assert after['gpu_count'] == before['gpu_count']
    assert [g['uuid'] for g in after['gpus']] == [g['uuid'] for g in before['gpus']]


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(stdout=st.one_of(st.binary(max_size=2048), st.sampled_from(sorted(CAPTURES)).map(CAPTURES.get)),
       mutations=st.lists(MUTATION, max_size=3), rc=EXIT_STATUS, require=st.booleans())
def test_the_module_answers_with_a_state_or_its_own_failure(stdout, mutations, rc, require):
    """The whole module, nvidia-smi's output decoded as run_command decodes it: a state, or with require=true the
    module's own failure, and never a traceback."""
    answer = CommandResult(rc, mutate(stdout, mutations).decode('utf-8', 'replace'), '', False)
    printed = io.StringIO()
    with mock.patch.object(nvidia_smi_info, 'run_command', return_value=answer), \
            mock.patch.object(AnsibleModule, 'get_bin_path', return_value='/usr/bin/nvidia-smi'), \
            patch_module_args({'require': require}), contextlib.redirect_stdout(printed):
        with pytest.raises(SystemExit):
            nvidia_smi_info.main()
    result = json.loads(printed.getvalue())
    assert result['state'] in _nvidia_smi.STATES
    if result.get('failed'):
        assert require and result['state'] != 'ok'
        assert result['msg'].startswith('A working NVIDIA GPU is required (require=true) but state is ')
