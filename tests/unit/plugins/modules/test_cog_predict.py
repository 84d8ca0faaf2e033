# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole-module tests of cog_predict against a stand-in cog server on the loopback.

The stand-in answers with bodies recorded from coglet 0.23.1 (the server of current Replicate images).
"""

from __future__ import annotations

import json
import socket
from http.server import BaseHTTPRequestHandler

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.gpu.plugins.module_utils import _cog_http
from ansible_collections.homelab.gpu.plugins.modules import cog_predict

SUCCEEDED = {"id": "pred_18ebdd107f7fc2aa", "logs": "", "metrics": {"predict_time": 0.00126422},
             "output": "hello bob", "status": "succeeded"}
TOKENS = dict(SUCCEEDED, output=[" Hello", " there", "!"])
FAILED = {"error": "Prediction failed: Prediction failed: ValueError: demo prediction failed on purpose (text=fail)",
          "id": "pred_18ebdd108015f55a", "logs": "", "metrics": {"predict_time": 0.000886928}, "status": "failed"}
BUSY = {"error": "At capacity - all prediction slots busy", "status": "failed"}
NOT_READY = {"error": "Setup has not finished yet. Wait until it has finished, or GET /health-check for status.",
             "status": "failed"}


class CogStandIn(BaseHTTPRequestHandler):
    answers = []
    seen = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers['Content-Length']))
        type(self).seen.append({'path': self.path, 'content_type': self.headers['Content-Type'],
                                'body': json.loads(body)})
        code, payload = type(self).answers.pop(0)
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def cog(serve_loopback):
    CogStandIn.answers = []
    CogStandIn.seen = []
    port = serve_loopback(CogStandIn)
    return type('Cog', (), {'url': 'http://127.0.0.1:%d' % port, 'answers': CogStandIn.answers,
                            'seen': CogStandIn.seen})


def run_module(capsys, args, check_mode=False):
    with patch_module_args(dict(args, _ansible_check_mode=check_mode)):
        with pytest.raises(SystemExit) as exc:
            cog_predict.main()
    result = json.loads(capsys.readouterr().out)
    assert (exc.value.code != 0) == bool(result.get('failed')), result
    return result


@pytest.mark.parametrize('check_mode', [False, True])
def test_prediction(capsys, cog, check_mode):
    cog.answers.append((200, SUCCEEDED))
    result = run_module(capsys, {'url': cog.url + '/', 'input': {'text': 'bob'}}, check_mode=check_mode)
    assert result['changed'] is False
    assert result['status'] == 'succeeded'
    assert result['output'] == 'hello bob'
    assert result['output_text'] == 'hello bob'
    assert result['metrics'] == {'predict_time': 0.00126422}
    assert result['id'] == 'pred_18ebdd107f7fc2aa'
    assert result['http_status'] == 200
    assert result['prompt'] is None
    assert cog.seen == [{'path': '/predictions', 'content_type': 'application/json', 'body': {'input': {'text': 'bob'}}}]


def test_chat_messages_like_the_seed(capsys, cog):
    cog.answers.append((200, TOKENS))
    result = run_module(capsys, {'url': cog.url, 'input': {'max_new_tokens': '1800'},
                                 'messages': [{'role': 'user', 'content': 'Hello there, Llama'}]})
    assert cog.seen[0]['body'] == {'input': {'prompt': '[INST]Hello there, Llama[/INST]', 'max_new_tokens': '1800'}}
    assert result['prompt'] == '[INST]Hello there, Llama[/INST]'
    assert result['output'] == [' Hello', ' there', '!']
    assert result['output_text'] == 'Hello there!'


def test_chat_llama2_format_and_prompt_key(capsys, cog):
    cog.answers.append((200, SUCCEEDED))
    run_module(capsys, {'url': cog.url, 'prompt_key': 'text', 'chat_format': 'llama2',
                        'messages': [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]})
    assert cog.seen[0]['body'] == {'input': {'text': '<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]'}}


def test_bad_messages_fail_before_sending(capsys, cog):
    result = run_module(capsys, {'url': cog.url, 'messages': [{'role': 'robot', 'content': 'x'}]})
    assert result['msg'].startswith('messages[0] must be {role: system|user|assistant, content: text}')
    assert cog.seen == []


FAILURES = [
    ('status failed with HTTP 200', 200, FAILED,
     'prediction pred_18ebdd108015f55a ended with status failed: Prediction failed: Prediction failed: ValueError: '
     'demo prediction failed on purpose (text=fail)'),
    ('busy', 409, BUSY, 'the model is busy (HTTP 409: At capacity - all prediction slots busy); it runs one '
                        'prediction at a time, retry later'),
    ('not ready', 503, NOT_READY, 'the model is not ready (HTTP 503: Setup has not finished yet.'),
    ('server error', 500, 'Internal Server Error', 'HTTP 500 with a body that is not a JSON object: Internal Server'),
]


@pytest.mark.parametrize('code, body, message', [c[1:] for c in FAILURES], ids=[c[0] for c in FAILURES])
def test_failures_are_clear(capsys, cog, code, body, message):
    cog.answers.append((code, body))
    result = run_module(capsys, {'url': cog.url, 'input': {'text': 'fail'}})
    assert result['failed'] is True
    assert result['msg'].startswith('Prediction at %s/predictions failed: %s' % (cog.url, message))
    assert result['http_status'] == code


def test_nothing_listens(capsys):
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    result = run_module(capsys, {'url': 'http://127.0.0.1:%d' % port, 'input': {}})
    assert result['msg'].startswith('Prediction at http://127.0.0.1:%d/predictions failed: no answer from '
                                    'http://127.0.0.1:%d/predictions: ' % (port, port))
    assert result['http_status'] is None


def test_bad_timeout(capsys):
    result = run_module(capsys, {'timeout': 0})
    assert result['msg'] == 'timeout must be a positive number of seconds, got 0'


def test_health_reads_a_real_answer(cog):
    # GET is not served by the stand-in: the error comes back as a value, never as an exception.
    health, error = _cog_http.health(cog.url, timeout=2)
    assert health is None
    assert error.startswith('HTTP 501')
