# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The schema step of cog_predict, cog_model (smoke_input) and cog_models_info, whole-module.

The model is a stand-in cog server on the loopback that answers GET /openapi.json with the schema that
coglet 0.23.1 served for tests/unit/fixtures/cog/predict.py (or its 503 without a schema), and records what
POST /predictions receives. cog_model runs on the in-memory Docker engine of test_cog_model.py.
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.gpu.plugins.module_utils import _cog_http
from ansible_collections.homelab.gpu.plugins.module_utils._common import CommandResult
from ansible_collections.homelab.gpu.plugins.modules import cog_models_info
from ansible_collections.homelab.gpu.plugins.modules import cog_predict

from test_cog_model import docker  # noqa: F401  pylint: disable=unused-import,import-error
from test_cog_model import demo, run_module as run_cog_model  # pylint: disable=import-error

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'cog')


def fixture_text(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


SCHEMA = fixture_text('openapi.json')
NO_SCHEMA = (503, '{"error":"OpenAPI schema not available"}')
SUCCEEDED = json.loads(fixture_text('predictions-200-coerced.json'))
INPUTS = ('prompt (string, required), n (integer, default 16), temperature (number, default 0.7), '
          'stream (boolean, default false), voice (string, one of "alto", "bass", "tenor", default "alto"), '
          'steps (integer, one of 1, 2, 4, 8, default 4), seed (integer)')


class CogStandIn(BaseHTTPRequestHandler):
    """Stand-in cog server: the recorded schema on GET /openapi.json, a recorded success on POST."""
    schema = (200, SCHEMA)
    seen = []

    def log_message(self, *args):
        pass

    def answer(self, code, body):
        data = body.encode()
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        type(self).seen.append(('GET', self.path, None))
        if self.path == '/openapi.json':
            self.answer(*type(self).schema)
        else:
            self.answer(200, json.dumps({'status': 'READY', 'setup': {'status': 'succeeded', 'logs': ''}}))

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
        type(self).seen.append(('POST', self.path, body))
        self.answer(200, json.dumps(SUCCEEDED))


@pytest.fixture
def cog(serve_loopback):
    CogStandIn.schema = (200, SCHEMA)
    CogStandIn.seen = []
    return serve_loopback(CogStandIn)


def predict(capsys, args, check_mode=False):
    with patch_module_args(dict(args, _ansible_check_mode=check_mode)):
        with pytest.raises(SystemExit) as exc:
            cog_predict.main()
    result = json.loads(capsys.readouterr().out)
    assert (exc.value.code != 0) == bool(result.get('failed')), result
    return result


# ---------------------------------------------------------------- cog_predict

@pytest.mark.parametrize('check_mode', [False, True])
def test_predict_coerces_strings(capsys, cog, check_mode):
    result = predict(capsys, {'url': 'http://127.0.0.1:%d' % cog,
                              'input': {'prompt': 'hi', 'n': '12', 'temperature': '0.5', 'stream': 'yes'}},
                     check_mode)
    sent = {'prompt': 'hi', 'n': 12, 'temperature': 0.5, 'stream': True}
    assert result['input'] == sent
    assert result['schema'] == {'mode': 'coerce', 'available': True, 'note': None,
                                'converted': ['n: "12" -> 12', 'temperature: "0.5" -> 0.5', 'stream: "yes" -> true']}
    assert result['changed'] is False
    if check_mode:
        # The schema is read (a read changes nothing); the prediction is only described.
        assert CogStandIn.seen == [('GET', '/openapi.json', None)]
        assert result['request']['input'] == sent and result['request']['sent'] is False
        assert result['status'] is None
    else:
        assert CogStandIn.seen == [('GET', '/openapi.json', None), ('POST', '/predictions', {'input': sent})]
        assert result['status'] == 'succeeded'


def test_predict_prompt_from_messages_is_checked_too(capsys, cog):
    result = predict(capsys, {'url': 'http://127.0.0.1:%d' % cog, 'input': {'n': '4'},
                              'messages': [{'role': 'user', 'content': 'Hello'}]})
    assert CogStandIn.seen[-1] == ('POST', '/predictions', {'input': {'n': 4, 'prompt': '[INST]Hello[/INST]'}})
    assert result['prompt'] == '[INST]Hello[/INST]'


REFUSED = [
    ('unknown name', 'coerce', {'prompt': 'hi', 'max_tokens': 5},
     "the input does not fit the model's schema: the model has no input max_tokens; its inputs are: " + INPUTS),
    ('cannot convert', 'coerce', {'prompt': 'hi', 'n': 'many'},
     'the input does not fit the model\'s schema: input n: "many" is not an integer (the model declares integer)'),
    ('strict', 'strict', {'prompt': 'hi', 'n': '12'},
     'the input does not fit the model\'s schema: input n: "12" is not an integer (the model declares integer)'),
]


@pytest.mark.parametrize('mode, given, why', [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_predict_refuses_before_sending(capsys, cog, mode, given, why):
    url = 'http://127.0.0.1:%d' % cog
    result = predict(capsys, {'url': url, 'input': given, 'schema': mode})
    assert result['failed'] is True and result['changed'] is False
    assert result['msg'] == 'Prediction at %s/predictions not sent: %s' % (url, why)
    assert result['schema']['available'] is True
    assert [s[0] for s in CogStandIn.seen] == ['GET']


def test_predict_schema_off_sends_untouched(capsys, cog):
    result = predict(capsys, {'url': 'http://127.0.0.1:%d' % cog, 'input': {'prompt': 'hi', 'n': '12'},
                              'schema': 'raw'})
    assert CogStandIn.seen == [('POST', '/predictions', {'input': {'prompt': 'hi', 'n': '12'}})]
    assert result['schema'] == {'mode': 'raw', 'available': None, 'converted': [],
                                'note': 'the input was sent as given (schema: raw)'}


def test_predict_without_schema_sends_as_given_with_a_note(capsys, cog):
    CogStandIn.schema = NO_SCHEMA
    url = 'http://127.0.0.1:%d' % cog
    result = predict(capsys, {'url': url, 'input': {'prompt': 'hi', 'n': '12'}})
    assert CogStandIn.seen[-1] == ('POST', '/predictions', {'input': {'prompt': 'hi', 'n': '12'}})
    assert result['schema']['available'] is False
    assert result['schema']['note'] == ('no schema at %s/openapi.json: HTTP 503 {"error":"OpenAPI schema not '
                                        'available"}; the input was sent as given' % url)


# ---------------------------------------------------------------- cog_model smoke_input

@pytest.fixture
def smoke_seen(docker, monkeypatch):  # noqa: F811  pylint: disable=redefined-outer-name
    """Record the smoke input that reaches the (in-memory) model."""
    seen = []

    def record(url, inputs, timeout, validate_certs=True):
        seen.append((url, inputs))
        return {'status': 'succeeded', 'output': 'ok', 'metrics': {}, 'http_status': 200}, None

    monkeypatch.setattr(_cog_http, 'predict', record)
    return seen


def test_smoke_input_is_coerced(capsys, docker, smoke_seen, cog):  # noqa: F811  pylint: disable=redefined-outer-name
    result = run_cog_model(capsys, {'models': [demo(port=cog, smoke_input={'prompt': 'hi', 'steps': '8'})]})
    assert result['changed'] is True, result
    assert smoke_seen == [('http://127.0.0.1:%d' % cog, {'prompt': 'hi', 'steps': 8})]
    assert result['models'][0]['smoke_schema'] == {'mode': 'coerce', 'available': True, 'note': None,
                                                   'converted': ['steps: "8" -> 8']}
    assert CogStandIn.seen == [('GET', '/openapi.json', None)]


def test_bad_smoke_input_is_a_failed_start(capsys, docker, smoke_seen, cog):  # noqa: F811  pylint: disable=redefined-outer-name
    result = run_cog_model(capsys, {'models': [demo(port=cog, smoke_input={'text': 'hi'})]})
    assert result['failed'] is True
    assert ("the smoke prediction was not sent: the input does not fit the model's schema: the model has no "
            "input text; its inputs are: " + INPUTS + '; required input prompt missing') in result['msg']
    assert 'demo_a: the new container failed and was removed' in result['msg']
    assert smoke_seen == [] and docker.containers == {}


def test_smoke_schema_raw(capsys, docker, smoke_seen, cog):  # noqa: F811  pylint: disable=redefined-outer-name
    result = run_cog_model(capsys, {'models': [demo(port=cog, smoke_input={'text': 'hi'})], 'smoke_schema': 'raw'})
    assert result['changed'] is True
    assert smoke_seen == [('http://127.0.0.1:%d' % cog, {'text': 'hi'})]
    assert CogStandIn.seen == []


def test_smoke_without_schema(capsys, docker, smoke_seen, cog):  # noqa: F811  pylint: disable=redefined-outer-name
    CogStandIn.schema = NO_SCHEMA
    result = run_cog_model(capsys, {'models': [demo(port=cog, smoke_input={'text': 'hi'})]})
    assert smoke_seen == [('http://127.0.0.1:%d' % cog, {'text': 'hi'})]
    assert result['models'][0]['smoke_schema']['available'] is False
    assert result['models'][0]['smoke_schema']['note'].endswith('; the input was sent as given')


# ---------------------------------------------------------------- cog_models_info

def inspect_entry(name, port, running=True):
    return {
        'Id': name * 4, 'Name': '/' + name, 'Image': 'sha256:' + 'b' * 64, 'RestartCount': 0,
        'State': {'Status': 'running' if running else 'exited', 'Running': running, 'ExitCode': 0, 'Pid': 42,
                  'StartedAt': '2026-11-28T04:00:00.000000000Z'},
        'HostConfig': {'PortBindings': {'5000/tcp': [{'HostIp': '127.0.0.1', 'HostPort': str(port)}]}},
        'Config': {'Image': '127.0.0.1:5000/cog-demo:1', 'Labels': {'homelab.gpu.managed': 'true'}},
    }


def models_info(monkeypatch, capsys, entries):
    answers = {'ps': CommandResult(0, '\n'.join(e['Id'] for e in entries), '', False),
               'container': CommandResult(0, json.dumps(entries), '', False),
               'info': CommandResult(0, json.dumps({'ServerVersion': '26.1.5'}), '', False)}
    monkeypatch.setattr(cog_models_info, 'run_command', lambda module, argv, timeout=None, data=None: answers[argv[1]])
    monkeypatch.setattr(cog_models_info.AnsibleModule, 'get_bin_path', lambda self, name, *a, **k: '/usr/bin/docker')
    with patch_module_args({'gpu_info': {'state': 'not_installed', 'gpus': []}}):
        with pytest.raises(SystemExit):
            cog_models_info.main()
    return dict((m['name'], m) for m in json.loads(capsys.readouterr().out)['models'])


def test_models_info_lists_inputs(monkeypatch, capsys, cog):
    models = models_info(monkeypatch, capsys, [inspect_entry('llm', cog), inspect_entry('off', cog, running=False)])
    assert models['llm']['health'] == 'READY' and models['llm']['inputs_note'] is None
    assert models['llm']['inputs'][:2] == [
        {'name': 'prompt', 'type': 'string', 'default': None, 'required': True, 'choices': None},
        {'name': 'n', 'type': 'integer', 'default': 16, 'required': False, 'choices': None}]
    assert models['llm']['inputs'][4]['choices'] == ['alto', 'bass', 'tenor']
    assert models['off']['inputs'] is None and models['off']['inputs_note'] is None


def test_models_info_without_schema(monkeypatch, capsys, cog):
    CogStandIn.schema = NO_SCHEMA
    models = models_info(monkeypatch, capsys, [inspect_entry('llm', cog)])
    assert models['llm']['inputs'] is None
    assert models['llm']['inputs_note'].startswith('no schema at http://127.0.0.1:%d/openapi.json: HTTP 503' % cog)
