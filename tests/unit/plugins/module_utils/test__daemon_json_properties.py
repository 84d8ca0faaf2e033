# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property-based tests of the daemon.json merge (Hypothesis): for any JSON object already in the file and any
settings, the merge loses no key, writes valid JSON, and a second merge changes nothing. The table-driven cases
are in test__daemon_json.py."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.homelab.gpu.plugins.module_utils import _daemon_json as dj

# No example database: the unit tests run from the repository, which must stay clean. No deadline: the CI
# runner's two cores are shared, and a slow example is not a wrong one.
settings.register_profile('homelab', database=None, deadline=None, max_examples=100)
settings.load_profile('homelab')


def objects(text):
    """JSON objects whose keys and strings come from ``text(max_size)``."""
    # Keys as daemon.json has them (runtimes.nvidia.path, log-opts.max-size) and any text at all, dots included.
    keys = st.one_of(st.sampled_from(['runtimes', 'nvidia', 'path', 'log-opts', 'max-size', 'dns', 'a', 'a.b', '']),
                     text(8))
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), text(12),
                        st.floats(allow_nan=False, allow_infinity=False))
    values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                           st.dictionaries(keys, inner, max_size=4)),
                          max_leaves=20)
    return keys, values, st.dictionaries(keys, values, max_size=6)


def text_with_surrogates(max_size):
    """Any text, and in about half of the draws one lone surrogate in it: JSON's "\\ud800" escape (or a file
    read with surrogateescape) gives Python such text, and no UTF-8 file can hold it."""
    return st.one_of(st.text(max_size=max_size),
                     st.tuples(st.text(max_size=max_size // 2), st.characters(categories=['Cs']),
                               st.text(max_size=max_size // 2)).map(''.join))


# Text that can be written as UTF-8, and text that may not be.
KEYS, JSON, OBJECTS = objects(lambda size: st.text(max_size=size))
HOSTILE_JSON, HOSTILE_OBJECTS = objects(text_with_surrogates)[1:]
MODES = st.sampled_from(dj.LIST_MERGE_MODES)


def writable(text):
    """What stage_file writes: the text as UTF-8 bytes (raises UnicodeEncodeError on a lone surrogate)."""
    return text.encode('utf-8')


def through_the_checks(old, overlay):
    """``(old as parse() reads the file, overlay)`` as the module gets them, or None when parse() or
    check_settings() refuses one: then with the lone surrogate named, the only thing these objects hold that is
    refused."""
    try:
        old = dj.parse(json.dumps(old), dj.DEFAULT_PATH)
        dj.check_settings(overlay)
    except dj.DaemonJsonError as exc:
        assert 'half of a UTF-16 surrogate pair' in str(exc), exc
        return None
    return old, overlay


def key_paths(data, prefix=()):
    """Every key path in ``data``, objects on the way included."""
    paths = []
    for key, value in data.items():
        paths.append(prefix + (key, ))
        if isinstance(value, dict):
            paths.extend(key_paths(value, prefix + (key, )))
    return paths


def get(data, path):
    for key in path:
        data = data[key]
    return data


def has(data, path):
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return False
        data = data[key]
    return True


def replaced_by_settings(path, overlay):
    """Whether the settings put a value that is not an object on a proper prefix of ``path``."""
    node = overlay
    for key in path[:-1]:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
        if not isinstance(node, dict):
            return True
    return False


@given(old=HOSTILE_OBJECTS, overlay=HOSTILE_OBJECTS, mode=MODES)
def test_merge_loses_no_key(old, overlay, mode):
    before = json.dumps(old)
    merged, _actions = dj.deep_merge(old, overlay, mode)
    for path in key_paths(old):
        assert has(merged, path) or replaced_by_settings(path, overlay), path
    # The file's keys keep their order, the new ones come after them.
    assert list(merged)[:len(old)] == list(old)
    assert json.dumps(old) == before, 'the old config was changed in place'


@given(old=HOSTILE_OBJECTS, overlay=HOSTILE_OBJECTS, mode=MODES)
def test_merge_puts_every_setting_in_place(old, overlay, mode):
    merged, _actions = dj.deep_merge(old, overlay, mode)
    for path in dj.leaf_paths(overlay):
        want, got = get(overlay, path), get(merged, path)
        if isinstance(want, dict):  # an empty object: the key is there and is an object
            assert isinstance(got, dict)
        elif isinstance(want, list) and mode == 'append_unique':
            assert all(any(dj.same(item, x) for x in got) for item in want)
            if has(old, path) and isinstance(get(old, path), list):
                assert dj.same(got[:len(get(old, path))], get(old, path))
        else:
            assert dj.same(got, want)


@given(old=HOSTILE_OBJECTS, overlay=HOSTILE_OBJECTS, mode=MODES)
def test_merge_writes_valid_json_and_a_second_merge_is_a_no_op(old, overlay, mode):
    checked = through_the_checks(old, overlay)
    if checked is None:
        return
    old, overlay = checked
    merged, actions = dj.deep_merge(old, overlay, mode)
    text = dj.serialize(merged)
    assert json.loads(writable(text).decode('utf-8')) is not None
    assert dj.same(json.loads(text), merged)
    assert dj.same(dj.parse(text, dj.DEFAULT_PATH), merged)
    again, more = dj.deep_merge(dj.parse(text, dj.DEFAULT_PATH), overlay, mode)
    assert more == []
    assert dj.serialize(again) == text
    # An action is reported exactly when something changed.
    assert (actions == []) == dj.same(old, merged)


@given(old=OBJECTS, overlay=OBJECTS, data=st.data(), mode=MODES)
def test_plan_removes_what_it_is_asked_to_and_is_idempotent(old, overlay, data, mode):
    # Paths to remove: some that exist, some that do not. Keys with a backslash are left out: join_path
    # escapes only dots, so "a\" followed by "b" cannot be told from "a.b" (not a key dockerd has).
    existing = [p for p in key_paths(old) if not any('\\' in k or k == '' for k in p)]
    remove = data.draw(st.lists(st.sampled_from(existing), max_size=3)) if existing else []
    remove = [dj.join_path(p) for p in remove] + ['not.there']
    removed = [tuple(dj.split_path(r)) for r in remove]
    overlay = dict((k, v) for k, v in overlay.items() if not any(r[0] == k for r in removed))
    new, _actions = dj.plan(old, settings=overlay, remove=remove, list_merge=mode)
    for dotted in remove:
        assert not has(new, tuple(dj.split_path(dotted)))
    for path in key_paths(old):
        gone = any(path[:len(r)] == r for r in removed)
        assert gone or has(new, path) or replaced_by_settings(path, overlay), path
    again, more = dj.plan(new, settings=overlay, remove=remove, list_merge=mode)
    assert more == []
    assert dj.same(again, new)


@given(config=HOSTILE_OBJECTS)
def test_serialize_parse_round_trip(config):
    text = dj.serialize(config)
    try:
        writable(text)
    except UnicodeEncodeError:
        # Text no file can hold: parse() refuses it, naming the escape, before anything is written.
        with pytest.raises(dj.DaemonJsonError, match='half of a UTF-16 surrogate pair'):
            dj.parse(text, dj.DEFAULT_PATH)
        return
    assert dj.same(dj.parse(text, dj.DEFAULT_PATH), config)


@given(text=st.one_of(text_with_surrogates(60), st.builds(json.dumps, HOSTILE_JSON),
                      st.builds(lambda v, cut: json.dumps(v)[:cut], HOSTILE_OBJECTS, st.integers(0, 40))))
def test_parse_returns_an_object_or_its_own_error(text):
    try:
        data = dj.parse(text, '/etc/docker/daemon.json')
    except dj.DaemonJsonError as exc:
        assert str(exc).startswith('/etc/docker/daemon.json ')
        return
    assert isinstance(data, dict)
    writable(dj.serialize(data))  # anything parse() lets through can be written back, as UTF-8 JSON


NON_FINITE = st.sampled_from([float('nan'), float('inf'), float('-inf')])


@given(config=OBJECTS, path=st.lists(KEYS, min_size=1, max_size=4), bad=NON_FINITE)
def test_non_finite_numbers_never_reach_the_file(config, path, bad):
    node = config
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = bad
    text = json.dumps(config)  # Python writes NaN / Infinity, as a hostile file would have them
    try:
        dj.parse(text, '/etc/docker/daemon.json')
        raise AssertionError('parse let %s through' % text)
    except dj.DaemonJsonError as exc:
        assert 'is not a finite number' in str(exc)
    try:
        dj.check_settings(config)
        raise AssertionError('check_settings let %r through' % config)
    except dj.DaemonJsonError as exc:
        assert str(exc).startswith('settings.')


@given(value=JSON)
def test_log_opt_value_is_a_string_or_a_clear_refusal(value):
    try:
        text = dj.log_opt_value('max-size', value)
    except dj.DaemonJsonError as exc:
        assert str(exc).startswith('log_opts.max-size is ')
        assert value is None or isinstance(value, (list, dict)) or (
            isinstance(value, float) and not math.isfinite(value))
        return
    assert isinstance(text, str)
    assert isinstance(value, (str, int, float))
