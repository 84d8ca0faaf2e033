# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole-module tests of cog_predict against a stand-in cog server on the loopback.

The stand-in answers with bodies recorded from coglet 0.23.1 (the server of current Replicate images).
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.gpu.plugins.module_utils import _cog_http
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_schema
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
    authorizations = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers['Content-Length']))
        type(self).seen.append({'path': self.path, 'content_type': self.headers['Content-Type'],
                                'body': json.loads(body)})
        type(self).authorizations.append(self.headers['Authorization'])
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
    CogStandIn.authorizations = []
    port = serve_loopback(CogStandIn)
    return type('Cog', (), {'url': 'http://127.0.0.1:%d' % port, 'port': port, 'answers': CogStandIn.answers,
                            'seen': CogStandIn.seen, 'authorizations': CogStandIn.authorizations})


def run_module(capsys, args, check_mode=False):
    with patch_module_args(dict(args, _ansible_check_mode=check_mode)):
        with pytest.raises(SystemExit) as exc:
            cog_predict.main()
    result = json.loads(capsys.readouterr().out)
    assert (exc.value.code != 0) == bool(result.get('failed')), result
    return result


def test_prediction(capsys, cog):
    cog.answers.append((200, SUCCEEDED))
    result = run_module(capsys, {'url': cog.url + '/', 'input': {'text': 'bob'}})
    assert result['changed'] is False
    assert result['request'] == {'method': 'POST', 'url': cog.url + '/predictions', 'input': {'text': 'bob'},
                                 'sent': True}
    assert result['status'] == 'succeeded'
    assert result['output'] == 'hello bob'
    assert result['output_text'] == 'hello bob'
    assert result['metrics'] == {'predict_time': 0.00126422}
    assert result['id'] == 'pred_18ebdd107f7fc2aa'
    assert result['http_status'] == 200
    assert result['prompt'] is None
    assert cog.seen == [{'path': '/predictions', 'content_type': 'application/json', 'body': {'input': {'text': 'bob'}}}]


def test_chat_messages_inst_lines_by_default(capsys, cog):
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


@pytest.mark.parametrize('timeout', [0, -1, 86401])
def test_bad_timeout(capsys, cog, timeout):
    result = run_module(capsys, {'url': cog.url, 'timeout': timeout})
    assert result['msg'] == ('timeout must be a positive number of seconds, got %s: how long to wait for the whole '
                             'answer, at most a day (1 to 86400)' % timeout)
    assert cog.seen == []


def test_health_reads_a_real_answer(cog):
    # GET is not served by the stand-in: the error comes back as a value, never as an exception.
    health, error = _cog_http.health(cog.url, timeout=2)
    assert health is None
    assert error.startswith('HTTP 501')


# ---------------------------------------------------------------- check mode

def test_check_mode_sends_nothing_and_says_what_it_would_send(capsys, cog):
    result = run_module(capsys, {'url': 'http://lab:s3cr%40t-Pw@127.0.0.1:' + str(cog.port) + '/',
                                 'input': {'max_new_tokens': 8},
                                 'messages': [{'role': 'user', 'content': 'Hi'}]}, check_mode=True)
    assert cog.seen == []
    assert result['changed'] is False
    assert result['request'] == {'method': 'POST', 'url': 'http://********@127.0.0.1:%d/predictions' % cog.port,
                                 'input': {'max_new_tokens': 8, 'prompt': '[INST]Hi[/INST]'}, 'sent': False}
    assert result['prompt'] == '[INST]Hi[/INST]'
    assert (result['status'], result['output'], result['http_status'], result['id']) == (None, None, None, None)
    assert 's3cr' not in json.dumps(result)


# ---------------------------------------------------------------- chat_format names

@pytest.fixture
def deprecations(monkeypatch):
    """The deprecations that the module asks AnsibleModule to report, as (msg, version, collection).

    Recorded only: AnsibleModule keeps deprecations in a list of the process, where they would reach the results
    of the modules that later tests run.
    """
    seen = []

    def deprecate(self, msg, version=None, date=None, collection_name=None):
        seen.append((msg, version, collection_name))

    monkeypatch.setattr(AnsibleModule, 'deprecate', deprecate)
    return seen


def test_seed_is_a_deprecated_alias_of_inst_lines(capsys, cog, deprecations):
    cog.answers.append((200, TOKENS))
    result = run_module(capsys, {'url': cog.url, 'chat_format': 'seed',
                                 'messages': [{'role': 'system', 'content': 'Be brief.'},
                                              {'role': 'user', 'content': 'Hi'}]})
    assert cog.seen[0]['body'] == {'input': {'prompt': 'Be brief.\n[INST]Hi[/INST]'}}
    assert result['prompt'] == 'Be brief.\n[INST]Hi[/INST]'
    assert deprecations == [
        ('chat_format=seed is the old name of chat_format=inst_lines, which makes the same prompt: use inst_lines',
         '1.0.0', 'homelab.gpu')]


def test_inst_lines_gives_no_deprecation(capsys, cog, deprecations):
    cog.answers.append((200, TOKENS))
    result = run_module(capsys, {'url': cog.url, 'chat_format': 'inst_lines',
                                 'messages': [{'role': 'user', 'content': 'Hi'}]})
    assert result['status'] == 'succeeded'
    assert deprecations == []


def test_empty_messages_refused(capsys, cog):
    result = run_module(capsys, {'url': cog.url, 'messages': []})
    assert result['msg'] == 'messages is empty: give at least one {role: user, content: text}'
    assert cog.seen == []


# ---------------------------------------------------------------- URLs: only http(s), no query, no fragment

BAD_URLS = [
    ('file', 'file:///etc/passwd', "url file:///etc/passwd has scheme 'file'; only http and https reach a cog server"),
    ('ftp', 'ftp://127.0.0.1:21', "url ftp://127.0.0.1:21 has scheme 'ftp'; only http and https"),
    ('gopher', 'gopher://127.0.0.1:70/', "has scheme 'gopher'"),
    ('data', 'data:text/plain,hi', "has scheme 'data'"),
    ('no scheme', '127.0.0.1:5000', "url 127.0.0.1:5000 has scheme '(none)'"),
    ('host only', 'localhost', "url localhost has scheme '(none)'"),
    ('query', 'http://127.0.0.1:5000/?x=1', 'url http://127.0.0.1:5000/?x=1 has a query string or fragment'),
    ('empty query', 'http://127.0.0.1:5000?', 'has a query string or fragment'),
    ('fragment', 'http://127.0.0.1:5000/#top', 'has a query string or fragment'),
    ('trailing newline', 'http://127.0.0.1:5000\n', 'has white space or a control character in it'),
    ('space', 'http://127.0.0.1:5000/a b', 'has white space or a control character in it'),
    ('NUL', 'http://127.0.0.1:5000/\x00', 'has white space or a control character in it'),
    ('no host', 'http:///predictions', 'url http:///predictions has no host or an invalid port'),
    ('port 0', 'http://127.0.0.1:0', 'has no host or an invalid port'),
    ('empty port', 'http://127.0.0.1:/', 'has no host or an invalid port'),
    ('port too big', 'http://127.0.0.1:70000', 'url http://127.0.0.1:70000 has an invalid port'),
    ('port not a number', 'http://127.0.0.1:http', 'has an invalid port'),
    ('empty', '', 'url is empty'),
]


@pytest.mark.parametrize('url, message', [c[1:] for c in BAD_URLS], ids=[c[0] for c in BAD_URLS])
def test_bad_urls_refused_before_sending(capsys, cog, url, message):
    result = run_module(capsys, {'url': url, 'input': {'text': 'x'}})
    assert result['failed'] is True
    assert message in result['msg']
    assert cog.seen == []


def test_file_url_quotes_no_file(capsys, tmp_path):
    secret = tmp_path / 'secret.txt'
    secret.write_text('root-only-content-7f3a\n')
    result = run_module(capsys, {'url': 'file://%s' % secret})
    assert 'root-only-content-7f3a' not in json.dumps(result)


def test_https_and_a_path_prefix_are_kept(capsys):
    # Nothing listens on port 9 (discard) of the loopback: the request fails, naming the URL it used.
    result = run_module(capsys, {'url': 'HTTPS://127.0.0.1:9/llama/', 'timeout': 5})
    assert result['msg'].startswith('Prediction at https://127.0.0.1:9/llama/predictions failed: no answer from '
                                    'https://127.0.0.1:9/llama/predictions: ')
    assert result['request']['url'] == 'https://127.0.0.1:9/llama/predictions'


# ---------------------------------------------------------------- credentials

PASSWORD = 'Pw-9c1e!x:y@z'


def run_raw(capsys, monkeypatch, args, check_mode=False):
    """Run the module at -vvv, as ansible-playbook -vvv does, and return (result, everything it printed or logged).

    AnsibleModule.log (syslog or the journal, where the module logs its invocation) is captured too.
    """
    logged = []
    monkeypatch.setattr(AnsibleModule, 'log', lambda self, msg, log_args=None: logged.append((msg, log_args)))
    args = dict(args, _ansible_verbosity=3, _ansible_debug=True)
    with patch_module_args(dict(args, _ansible_check_mode=check_mode)):
        with pytest.raises(SystemExit):
            cog_predict.main()
    out, err = capsys.readouterr()
    return json.loads(out), '%s\n%s\n%r' % (out, err, logged)


def assert_absent(text, *secrets):
    for secret in secrets:
        assert secret not in text
        assert quote(secret, safe='') not in text
        assert json.dumps(secret)[1:-1] not in text


def test_username_and_password_options_send_basic_auth(capsys, monkeypatch, cog):
    cog.answers.append((200, SUCCEEDED))
    result, printed = run_raw(capsys, monkeypatch, {'url': cog.url, 'username': 'lab', 'password': PASSWORD})
    assert result['status'] == 'succeeded'
    assert cog.authorizations == ['Basic ' + base64.b64encode(('lab:' + PASSWORD).encode()).decode()]
    assert result['invocation']['module_args']['password'] == 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'
    assert_absent(printed, PASSWORD)


def test_url_credentials_are_sent_and_masked_everywhere(capsys, monkeypatch, cog):
    cog.answers.append((401, {'detail': 'bad credentials'}))
    url = 'http://lab:%s@127.0.0.1:%d' % (quote(PASSWORD, safe=''), cog.port)
    result, printed = run_raw(capsys, monkeypatch, {'url': url, 'input': {'text': 'x'}})
    # Percent-decoded before use, as a browser or curl does.
    assert cog.authorizations == ['Basic ' + base64.b64encode(('lab:' + PASSWORD).encode()).decode()]
    assert result['msg'] == ('Prediction at http://********@127.0.0.1:%d/predictions failed: HTTP 401: bad '
                             'credentials' % cog.port)
    assert result['invocation']['module_args']['url'] == 'http://********@127.0.0.1:%d' % cog.port
    assert_absent(printed, PASSWORD)
    assert 'Invoked with' in printed  # the invocation was logged, masked


def test_an_error_page_that_echoes_the_authorization_header_shows_no_credentials(capsys, monkeypatch, cog):
    credentials = base64.b64encode(('lab:' + PASSWORD).encode()).decode()
    cog.answers.append((401, 'Unauthorized. You sent: Authorization: Basic %s' % credentials))
    result, printed = run_raw(capsys, monkeypatch, {'url': cog.url, 'username': 'lab', 'password': PASSWORD})
    assert cog.authorizations == ['Basic ' + credentials]
    assert result['msg'].startswith('Prediction at %s/predictions failed: HTTP 401 with a body that is not a JSON '
                                    'object: Unauthorized. You sent: Authorization: Basic ********' % cog.url)
    assert_absent(printed, PASSWORD, credentials)


def test_token_as_url_user_is_masked(capsys, monkeypatch):
    token = 'r8_tok3n5ecret'
    result, printed = run_raw(capsys, monkeypatch, {'url': 'http://%s@127.0.0.1:9' % token, 'timeout': 5})
    assert result['msg'].startswith('Prediction at http://********@127.0.0.1:9/predictions failed: no answer from '
                                    'http://********@127.0.0.1:9/predictions: ')
    assert_absent(printed, token)


OTHER_PASSWORD = 'other-9d'
# {pw}: PASSWORD, percent-encoded as a URL needs it; {port}: the stand-in's port.
SECRET_REFUSALS = [
    ('scheme', 'ftp://lab:{pw}@127.0.0.1/', {}, "url ftp://********@127.0.0.1/ has scheme 'ftp'"),
    ('query', 'http://lab:{pw}@127.0.0.1:{port}/?a=1', {}, 'url http://********@127.0.0.1:{port}/?a=1 has a query'),
    ('no scheme', 'lab:{pw}@127.0.0.1:{port}', {}, 'url ********@127.0.0.1:{port} has scheme'),
    ('slash in password', 'http://lab:pa/{pw}@127.0.0.1:{port}', {}, 'has a / in its user name or password'),
    ('credentials twice', 'http://lab:{pw}@127.0.0.1:{port}', {'username': 'lab', 'password': OTHER_PASSWORD},
     'url http://********@127.0.0.1:{port} has a user name, and username or password is set too'),
    ('argument error in the constructor', 'http://lab:{pw}@127.0.0.1:{port}', {'timeout': 'soon'},
     "argument 'timeout' is of type str"),
    ('password without username', 'http://127.0.0.1:{port}', {'password': OTHER_PASSWORD},
     "missing parameter(s) required by 'password': username"),
]


@pytest.mark.parametrize('url, extra, message', [c[1:] for c in SECRET_REFUSALS], ids=[c[0] for c in SECRET_REFUSALS])
def test_refusals_never_show_the_password(capsys, monkeypatch, cog, url, extra, message):
    url = url.format(pw=quote(PASSWORD, safe=''), port=cog.port)
    result, printed = run_raw(capsys, monkeypatch, dict(extra, url=url))
    assert result['failed'] is True
    assert message.format(port=cog.port) in result['msg']
    assert_absent(printed, PASSWORD, OTHER_PASSWORD)
    assert cog.seen == []


# ---------------------------------------------------------------- the whole request is bounded

class Trickle(BaseHTTPRequestHandler):
    """A server that answers one byte a second, for ever: each read gets data, so only a total bound trips."""

    stop = None

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers['Content-Length']))
        self.trickle()

    def do_GET(self):
        self.trickle()

    def trickle(self):
        head = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"x": "'
        for byte in head + b'y' * 100000:
            if type(self).stop.wait(1.0):
                return
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:
                return


@pytest.fixture
def trickle():
    Trickle.stop = threading.Event()
    server = ThreadingHTTPServer(('127.0.0.1', 0), Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True).start()
    yield 'http://127.0.0.1:%d' % server.server_port
    Trickle.stop.set()
    server.shutdown()
    server.server_close()


def test_one_byte_a_second_trips_the_total_timeout(capsys, trickle):
    start = time.monotonic()
    # schema: raw, so that only the prediction's own request is timed (the schema read is bounded below).
    result = run_module(capsys, {'url': trickle, 'timeout': 2, 'schema': 'raw'})
    took = time.monotonic() - start
    assert 2 <= took < 3.5
    assert result['msg'] == ('Prediction at %s/predictions failed: no answer from %s/predictions: timed out after '
                             '2 s: no complete answer in that time' % (trickle, trickle))
    assert result['http_status'] is None


def test_schema_reads_are_bounded_as_a_whole_too(trickle):
    start = time.monotonic()
    schema, note = _cog_schema.fetch(trickle, timeout=1.5)
    assert time.monotonic() - start < 2.5
    assert schema is None
    assert note == 'no schema at %s/openapi.json: timed out after 1.5 s: no complete answer in that time' % trickle


def test_health_checks_are_bounded_as_a_whole_too(trickle):
    start = time.monotonic()
    health, error = _cog_http.health(trickle, timeout=1.5)
    assert time.monotonic() - start < 2.5
    assert health is None
    assert error == 'timed out after 1.5 s: no complete answer in that time'
