# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tables over the schema and the answers that coglet 0.23.1 gave for tests/unit/fixtures/cog/predict.py."""

from __future__ import annotations

import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ansible_collections.homelab.gpu.plugins.module_utils import _cog_schema

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'cog')


def fixture_text(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


SCHEMA_TEXT = fixture_text('openapi.json')
SCHEMA = json.loads(SCHEMA_TEXT)
FIELDS = _cog_schema.input_fields(SCHEMA)


def test_every_fixture_is_in_the_readme():
    readme = fixture_text('README.md')
    for name in os.listdir(FIXTURES):
        if name != 'README.md':
            assert '`%s`' % name in readme, name


# ---------------------------------------------------------------- reading the schema

def test_inputs_in_the_models_order():
    assert [f['name'] for f in FIELDS] == ['prompt', 'n', 'temperature', 'stream', 'voice', 'steps', 'seed']


DESCRIBED = [
    ('prompt', {'name': 'prompt', 'type': 'string', 'default': None, 'required': True, 'choices': None}),
    ('n', {'name': 'n', 'type': 'integer', 'default': 16, 'required': False, 'choices': None}),
    ('temperature', {'name': 'temperature', 'type': 'number', 'default': 0.7, 'required': False, 'choices': None}),
    ('stream', {'name': 'stream', 'type': 'boolean', 'default': False, 'required': False, 'choices': None}),
    ('voice, an enum by $ref', {'name': 'voice', 'type': 'string', 'default': 'alto', 'required': False,
                                'choices': ['alto', 'bass', 'tenor']}),
    ('steps, an integer enum by $ref', {'name': 'steps', 'type': 'integer', 'default': 4, 'required': False,
                                        'choices': [1, 2, 4, 8]}),
    ('seed, optional', {'name': 'seed', 'type': 'integer', 'default': None, 'required': False, 'choices': None}),
]


@pytest.mark.parametrize('expected', [c[1] for c in DESCRIBED], ids=[c[0] for c in DESCRIBED])
def test_describe(expected):
    described = dict((d['name'], d) for d in _cog_schema.describe(FIELDS))
    assert described[expected['name']] == expected


def test_field_details():
    by_name = dict((f['name'], f) for f in FIELDS)
    assert (by_name['n']['minimum'], by_name['n']['maximum']) == (1, 1024)
    assert by_name['seed']['nullable'] is True and by_name['seed']['has_default'] is True
    assert by_name['prompt']['has_default'] is False
    # The property's own description wins over the enum component's "An enumeration."
    assert by_name['voice']['description'] == 'Voice'


def test_summary_lists_every_input():
    assert _cog_schema.summary(FIELDS) == (
        'prompt (string, required), n (integer, default 16), temperature (number, default 0.7), '
        'stream (boolean, default false), voice (string, one of "alto", "bass", "tenor", default "alto"), '
        'steps (integer, one of 1, 2, 4, 8, default 4), seed (integer)')


PARSE = [
    ('coglet schema', SCHEMA_TEXT, 200, None),
    ('coglet without a schema', '{"error":"OpenAPI schema not available"}', 503, 'HTTP 503'),
    ('not JSON', '<html>', 200, 'the answer is not JSON'),
    ('no Input component', '{"components": {"schemas": {"Output": {}}}}', 200, 'has no components.schemas.Input'),
    ('a list', '[]', 200, 'has no components.schemas.Input'),
]


@pytest.mark.parametrize('body, code, note', [c[1:] for c in PARSE], ids=[c[0] for c in PARSE])
def test_parse_schema(body, code, note):
    schema, said = _cog_schema.parse_schema(body, 'http://x/openapi.json', code)
    if note is None:
        assert schema == SCHEMA and said is None
    else:
        assert schema is None and note in said


def test_unknown_ref_and_loop_do_not_break():
    schema = {'components': {'schemas': {
        'Input': {'properties': {'a': {'allOf': [{'$ref': '#/components/schemas/Nope'}]},
                                 'b': {'$ref': '#/components/schemas/Loop'},
                                 'c': {'$ref': 'http://elsewhere/x'}}},
        'Loop': {'$ref': '#/components/schemas/Loop', 'type': 'integer'}}}}
    fields = _cog_schema.input_fields(schema)
    assert [(f['name'], f['type']) for f in fields] == [('a', 'any'), ('b', 'integer'), ('c', 'any')]


# ---------------------------------------------------------------- fitting inputs

FIT = [
    # (id, mode, input, sent, converted)
    ('strings become the declared types', 'coerce',
     {'prompt': 'hi', 'n': '12', 'temperature': '0.5', 'stream': 'yes'},
     {'prompt': 'hi', 'n': 12, 'temperature': 0.5, 'stream': True},
     ['n: "12" -> 12', 'temperature: "0.5" -> 0.5', 'stream: "yes" -> true']),
    ('typed values pass as they are', 'coerce',
     {'prompt': 'hi', 'n': 12, 'temperature': 1, 'stream': False, 'voice': 'bass', 'steps': 8, 'seed': None},
     {'prompt': 'hi', 'n': 12, 'temperature': 1, 'stream': False, 'voice': 'bass', 'steps': 8, 'seed': None}, []),
    ('integer enum from a string', 'coerce', {'prompt': 'hi', 'steps': '2'}, {'prompt': 'hi', 'steps': 2},
     ['steps: "2" -> 2']),
    ('boolean words', 'coerce', {'prompt': 'x', 'stream': ' False '}, {'prompt': 'x', 'stream': False},
     ['stream: " False " -> false']),
    ('number with exponent and sign', 'coerce', {'prompt': 'x', 'temperature': '+1e-1'},
     {'prompt': 'x', 'temperature': 0.1}, ['temperature: "+1e-1" -> 0.1']),
    ('whole float for an integer', 'coerce', {'prompt': 'x', 'n': 64.0}, {'prompt': 'x', 'n': 64},
     ['n: 64.0 -> 64']),
    ('a number for a string input', 'coerce', {'prompt': 1800}, {'prompt': '1800'}, ['prompt: 1800 -> "1800"']),
    ('strict passes typed values', 'strict', {'prompt': 'hi', 'n': 3}, {'prompt': 'hi', 'n': 3}, []),
    ('raw sends anything', 'raw', {'n': 'x', 'max_tokens': 3}, {'n': 'x', 'max_tokens': 3}, []),
]


@pytest.mark.parametrize('mode, given, sent, converted', [c[1:] for c in FIT], ids=[c[0] for c in FIT])
def test_fit(mode, given, sent, converted):
    out, said, errors = _cog_schema.fit(FIELDS, given, mode)
    assert errors == []
    assert out == sent
    assert [type(v) for v in out.values()] == [type(v) for v in sent.values()]
    assert said == converted


FIT_REFUSED = [
    ('unknown name lists the inputs', 'coerce', {'prompt': 'x', 'max_tokens': '5'},
     ['the model has no input max_tokens; its inputs are: prompt (string, required), n (integer, default 16), '
      'temperature (number, default 0.7), stream (boolean, default false), '
      'voice (string, one of "alto", "bass", "tenor", default "alto"), '
      'steps (integer, one of 1, 2, 4, 8, default 4), seed (integer)']),
    ('not an integer', 'coerce', {'prompt': 'x', 'n': '12x'},
     ['input n: "12x" is not an integer (the model declares integer)']),
    ('fraction for an integer', 'coerce', {'prompt': 'x', 'n': '1.5'},
     ['input n: "1.5" is not an integer (the model declares integer)']),
    ('more digits than Python converts', 'coerce', {'prompt': 'x', 'n': '9' * 5000},
     ['input n: "%s... (5002 characters) is an integer of 5000 digits, too long to convert (the model declares '
      'integer)' % ('9' * 59)]),
    ('bool is no integer', 'coerce', {'prompt': 'x', 'n': True},
     ['input n: true is not an integer (the model declares integer)']),
    ('not a number', 'coerce', {'prompt': 'x', 'temperature': 'warm'},
     ['input temperature: "warm" is not a number (the model declares number)']),
    ('nan is no number', 'coerce', {'prompt': 'x', 'temperature': 'nan'},
     ['input temperature: "nan" is not a number (the model declares number)']),
    ('not a boolean', 'coerce', {'prompt': 'x', 'stream': 'maybe'},
     ['input stream: "maybe" is not a boolean (true or false) (the model declares boolean)']),
    ('not one of the choices', 'coerce', {'prompt': 'x', 'voice': 'soprano'},
     ['input voice: "soprano" is not one of "alto", "bass", "tenor"']),
    ('integer choice after conversion', 'coerce', {'prompt': 'x', 'steps': '3'},
     ['input steps: 3 is not one of 1, 2, 4, 8']),
    ('above the maximum', 'coerce', {'prompt': 'x', 'n': '2048'},
     ['input n: 2048 is greater than the maximum of 1024']),
    ('below the minimum', 'coerce', {'prompt': 'x', 'n': 0}, ['input n: 0 is less than the minimum of 1']),
    ('null where not nullable', 'coerce', {'prompt': 'x', 'n': None},
     ['input n is null, but the model does not accept null for it']),
    ('a list for a string', 'coerce', {'prompt': ['a']},
     ['input prompt: ["a"] is not a string (the model declares string)']),
    ('required input missing', 'coerce', {'n': 3}, ['required input prompt missing']),
    ('strict refuses a string number', 'strict', {'prompt': 'x', 'n': '12'},
     ['input n: "12" is not an integer (the model declares integer)']),
    ('strict refuses a number for a string', 'strict', {'prompt': 5},
     ['input prompt: 5 is not a string (the model declares string)']),
    ('every problem at once', 'coerce', {'typo': 1, 'n': 'x', 'stream': 'y'},
     ['the model has no input typo; its inputs are: ' + _cog_schema.summary(FIELDS),
      'input n: "x" is not an integer (the model declares integer)', 'required input prompt missing']),
]


@pytest.mark.parametrize('mode, given, errors', [c[1:] for c in FIT_REFUSED], ids=[c[0] for c in FIT_REFUSED])
def test_fit_refused(mode, given, errors):
    assert _cog_schema.fit(FIELDS, given, mode)[2] == errors


def test_bad_mode():
    with pytest.raises(ValueError, match="mode must be one of coerce, strict, raw, got 'loose'"):
        _cog_schema.fit(FIELDS, {}, 'loose')


def test_coerced_input_is_what_coglet_refused_and_then_accepted():
    """The inputs that coglet refused as strings are exactly the ones converted, and it took them converted."""
    given = {'prompt': 'hi', 'n': '12', 'temperature': '0.5', 'stream': 'yes'}
    refused = json.loads(fixture_text('predictions-422-strings.json'))['detail']
    out, converted, errors = _cog_schema.fit(FIELDS, given, 'coerce')
    assert errors == []
    assert sorted(c.split(':')[0] for c in converted) == sorted(d['loc'][-1] for d in refused)
    assert out == {'prompt': 'hi', 'n': 12, 'temperature': 0.5, 'stream': True}
    accepted = json.loads(fixture_text('predictions-200-coerced.json'))
    assert accepted['status'] == 'succeeded'
    assert accepted['output'].startswith('hi n=12 t=0.5 stream=True')


def test_refusal_names_the_fields_that_coglet_named():
    refused = json.loads(fixture_text('predictions-422-n-string.json'))['detail']
    errors = _cog_schema.fit(FIELDS, {'n': '2048'}, 'coerce')[2]
    assert errors == ['input n: 2048 is greater than the maximum of 1024', 'required input prompt missing']
    for entry in refused:
        assert any(entry['loc'][-1] in error for error in errors)


def test_unknown_name_is_what_coglet_ignores():
    ignored = json.loads(fixture_text('predictions-200-unknown-name-ignored.json'))
    # coglet ran with its default n=16 and said nothing about max_tokens.
    assert ignored['status'] == 'succeeded' and ' n=16 ' in ignored['output']
    assert 'the model has no input max_tokens' in _cog_schema.fit(FIELDS, {'prompt': 'hi', 'max_tokens': 5})[2][0]


# ---------------------------------------------------------------- over HTTP

class SchemaStandIn(BaseHTTPRequestHandler):
    """Stand-in cog server on the loopback: answers GET /openapi.json with a recorded coglet answer."""
    answer = (200, SCHEMA_TEXT)
    paths = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).paths.append(self.path)
        code, body = type(self).answer
        data = body.encode()
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server():
    SchemaStandIn.paths = []
    httpd = HTTPServer(('127.0.0.1', 0), SchemaStandIn)
    threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.02}, daemon=True).start()
    yield 'http://127.0.0.1:%d' % httpd.server_port
    httpd.shutdown()
    httpd.server_close()


def free_port():
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_fetch(server):
    SchemaStandIn.answer = (200, SCHEMA_TEXT)
    schema, note = _cog_schema.fetch(server + '/')
    assert schema == SCHEMA and note is None
    assert SchemaStandIn.paths == ['/openapi.json']


def test_fetch_without_schema(server):
    SchemaStandIn.answer = (503, '{"error":"OpenAPI schema not available"}')
    schema, note = _cog_schema.fetch(server)
    assert schema is None
    assert note == 'no schema at %s/openapi.json: HTTP 503 {"error":"OpenAPI schema not available"}' % server


def test_fetch_no_answer():
    url = 'http://127.0.0.1:%d' % free_port()
    schema, note = _cog_schema.fetch(url, timeout=2)
    assert schema is None and note.startswith('no schema at %s/openapi.json: ' % url)


PREPARE = [
    ('coerced', (200, SCHEMA_TEXT), 'coerce', {'prompt': 'a', 'n': '8'}, {'prompt': 'a', 'n': 8},
     {'mode': 'coerce', 'available': True, 'note': None, 'converted': ['n: "8" -> 8']}, None),
    ('refused', (200, SCHEMA_TEXT), 'coerce', {'prompt': 'a', 'max_tokens': 8}, {'prompt': 'a'},
     {'mode': 'coerce', 'available': True, 'note': None, 'converted': []},
     "the input does not fit the model's schema: the model has no input max_tokens; its inputs are: "),
    ('no schema: sent as given', (503, '{"error":"OpenAPI schema not available"}'), 'coerce', {'n': '8'},
     {'n': '8'}, {'mode': 'coerce', 'available': False, 'converted': [],
                  'note': 'no schema at URL/openapi.json: HTTP 503 {"error":"OpenAPI schema not available"}; '
                          'the input was sent as given'}, None),
    ('raw: not read', (200, SCHEMA_TEXT), 'raw', {'n': '8'}, {'n': '8'},
     {'mode': 'raw', 'available': None, 'note': 'the input was sent as given (schema: raw)', 'converted': []},
     None),
]


@pytest.mark.parametrize('answer, mode, given, sent, report, error', [c[1:] for c in PREPARE],
                         ids=[c[0] for c in PREPARE])
def test_prepare(server, answer, mode, given, sent, report, error):
    SchemaStandIn.answer = answer
    out, said, problem = _cog_schema.prepare(server, given, mode)
    assert out == sent
    if said['note']:
        said['note'] = said['note'].replace(server, 'URL')
    assert said == report
    if error is None:
        assert problem is None
    else:
        assert problem.startswith(error)
    assert SchemaStandIn.paths == ([] if mode == 'raw' else ['/openapi.json'])


def test_inputs_of(server):
    SchemaStandIn.answer = (200, SCHEMA_TEXT)
    described, note = _cog_schema.inputs_of(server)
    assert note is None and [d['name'] for d in described][:2] == ['prompt', 'n']
    SchemaStandIn.answer = (503, '{"error":"OpenAPI schema not available"}')
    assert _cog_schema.inputs_of(server)[0] is None
