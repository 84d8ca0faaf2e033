#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cog_predict
short_description: Ask a cog model for one prediction
version_added: 0.1.0
author:
  - homelab.gpu contributors (@homelab-gpu)
description:
  - Sends C(POST /predictions) to a cog model server and returns its output, status and metrics.
  - Runs wherever the task runs. Use C(delegate_to=localhost) to ask from the controller, or run it on the GPU host
    against C(127.0.0.1).
  - Chat O(messages) become one prompt string in the Llama-2 chat format (C([INST]...[/INST])), put in the input
    under O(prompt_key).
  - Fails with a clear message on an HTTP error, when the model is busy (HTTP 409, cog runs one prediction at a
    time), and when the prediction ends with C(status) other than C(succeeded), which cog answers with HTTP 200.
  - O(timeout) bounds the whole request. A server that sends its answer one byte at a time still fails at
    O(timeout), with a message that says it timed out.
extends_documentation_fragment:
  - homelab.gpu.attributes
attributes:
  check_mode:
    support: full
    details:
      - In check mode nothing is sent. RV(request) shows what would be sent, and the prediction's return values
        are V(null).
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Never reports a change. The output of a model may differ between two calls.
options:
  url:
    description:
      - Base URL of the model server, without C(/predictions), for example V(http://192.168.0.16:5000).
      - Only V(http) and V(https). A path prefix is kept (V(https://proxy.lan/llama) asks
        C(https://proxy.lan/llama/predictions)); a query string or fragment is refused, because cog's path
        comes after the base URL.
      - User name and password in the URL (C(http://user:password@host:5000)) work, and are masked in every
        message and in the module's arguments in the output. Prefer O(username) and O(password), which are
        never logged at all.
    type: str
    default: http://127.0.0.1:5000
  username:
    description:
      - User name for HTTP basic authentication, as a reverse proxy in front of the model asks for.
      - Not together with a user name in O(url).
    type: str
  password:
    description:
      - Password for HTTP basic authentication, with O(username). Never logged.
    type: str
  input:
    description: Input of the prediction, as the model's schema names it.
    type: dict
    default: {}
  messages:
    description:
      - Chat messages, each C({role, content}) with role V(system), V(user) or V(assistant), turned into the
        prompt string and added to O(input) as O(prompt_key).
    type: list
    elements: dict
  chat_format:
    description:
      - How O(messages) become a prompt.
      - V(inst_lines) puts each user message in C([INST]content[/INST]) and leaves other messages as they are,
        one message per line, as a simple hand-written Llama-2 client does.
      - V(llama2) is Meta's reference format, with a system message in C(<<SYS>>) markers and
        C(<s>[INST] ... [/INST] ... </s>) turns.
      - V(seed) is the old name of V(inst_lines). It makes the same prompt, with a deprecation warning, and will
        be removed in version 1.0.0.
    type: str
    choices: [inst_lines, llama2, seed]
    default: inst_lines
  prompt_key:
    description: Input key that receives the prompt made from O(messages).
    type: str
    default: prompt
  timeout:
    description:
      - Seconds to wait for the whole answer, from V(1) to V(86400) (a day). Large models take a while per
        prediction.
    type: int
    default: 600
  validate_certs:
    description: Verify TLS certificates for an C(https) O(url).
    type: bool
    default: true
  schema:
    description:
      - How the input is fitted to the model's schema (C(GET /openapi.json), served by the cog server of
        current images) before it is sent.
      - V(coerce) converts strings to the declared C(integer), C(number) or C(boolean) (also for choices of
        those), and a number to a string for a string input, then checks the input.
        A current cog server answers HTTP 422 to C(max_new_tokens) given as the string C("1800").
      - V(strict) only checks, and refuses a value of the wrong type instead of converting it.
      - Both refuse, before anything is sent, an input name that the model does not have (the server would
        ignore it silently), a value that cannot be converted, a value outside the declared choices or
        bounds, and a missing required input. The message names each input, and lists the model's inputs
        for an unknown name.
      - V(raw) sends the input untouched and does not read the schema.
      - When the server serves no schema (older images), the input is sent as given and RV(schema.note)
        says why.
    type: str
    choices: [coerce, strict, raw]
    default: coerce
seealso:
  - module: homelab.gpu.cog_model
"""

EXAMPLES = r"""
- name: Ask the model on the GPU host, from the controller
  homelab.gpu.cog_predict:
    url: "http://{{ ansible_host }}:5000"
    messages:
      - role: user
        content: Hello there, Llama
    input:
      max_new_tokens: 1800
  delegate_to: localhost
  register: __answer

- name: Show the answer
  ansible.builtin.debug:
    msg: "{{ __answer.output_text }}"

- name: Plain input, on the host itself
  homelab.gpu.cog_predict:
    url: http://127.0.0.1:5001
    input:
      prompt: an astronaut riding a horse
    timeout: 120

- name: Through a reverse proxy with basic authentication
  homelab.gpu.cog_predict:
    url: https://models.lan/llama
    username: lab
    password: "{{ vault_models_password }}"
    input:
      prompt: "[INST]Say hello[/INST]"
  delegate_to: localhost
"""

RETURN = r"""
request:
  description:
    - What was sent, or in check mode what would be sent. C(url) has any user name and password masked.
  returned: always
  type: dict
  contains:
    method:
      description: The HTTP method.
      type: str
      sample: POST
    url:
      description: The URL of the request.
      type: str
      sample: http://127.0.0.1:5000/predictions
    input:
      description: The input of the prediction, with the prompt made from O(messages).
      type: dict
      sample: {prompt: "[INST]Hello there, Llama[/INST]", max_new_tokens: 1800}
    sent:
      description: Whether the request was sent (V(false) in check mode).
      type: bool
      sample: true
status:
  description: Status of the prediction (V(succeeded) when the module does not fail), V(null) in check mode.
  returned: always
  type: str
  sample: succeeded
output:
  description: Output of the prediction as the model returns it (a string, a list of tokens, a URL, ...).
  returned: always
  type: raw
  sample: [" Hello", " there", "!"]
output_text:
  description: The output as one string, a token list joined and stripped of surrounding white space.
  returned: always
  type: str
  sample: Hello there!
metrics:
  description: Metrics that cog reports, such as C(predict_time) in seconds.
  returned: always
  type: dict
  sample: {predict_time: 1.52}
id:
  description: Id of the prediction.
  returned: always
  type: str
  sample: pred_18ebdd107f7fc2aa
logs:
  description: What the model printed during the prediction.
  returned: always
  type: str
http_status:
  description: HTTP status of the answer, V(null) when there was none.
  returned: always
  type: int
  sample: 200
input:
  description: The input as it was sent, after O(schema) fitted it to the model's schema.
  returned: always
  type: dict
  sample: {prompt: "[INST]Hello there, Llama[/INST]", max_new_tokens: 1800}
schema:
  description: How the input was fitted to the model's schema (see O(schema)).
  returned: always
  type: dict
  contains:
    mode:
      description: The O(schema) mode.
      type: str
      sample: coerce
    available:
      description: Whether the model served its schema. V(null) with O(schema=raw).
      type: bool
      sample: true
    note:
      description: Why the input was sent as given, V(null) when it was fitted to the schema.
      type: str
      sample: "no schema at http://127.0.0.1:5000/openapi.json: HTTP 503; the input was sent as given"
    converted:
      description: Each conversion made, one string per input, with the value before and after.
      type: list
      elements: str
      sample: ['max_new_tokens: "1800" -> 1800']
prompt:
  description: The prompt string made from O(messages), V(null) without messages.
  returned: always
  type: str
  sample: "[INST]Hello there, Llama[/INST]"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.gpu.plugins.module_utils import _cog_api
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_chat
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_http
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_schema
from ansible_collections.homelab.gpu.plugins.module_utils._common import range_error

# The old name of chat_format inst_lines, kept as a deprecated alias.
_CHAT_FORMAT_ALIASES = {'seed': 'inst_lines'}


class CogPredict:
    """Build the input, send one prediction (none in check mode) and judge the answer."""

    def __init__(self, module, target):
        self.module = module
        self.params = module.params
        self.target = target

    def build_input(self):
        inputs = dict(self.params['input'] or {})
        prompt = None
        if self.params['messages'] is not None:
            if not self.params['messages']:
                self.module.fail_json(msg='messages is empty: give at least one {role: user, content: text}')
            style = self.params['chat_format']
            if style in _CHAT_FORMAT_ALIASES:
                self.module.deprecate('chat_format=%s is the old name of chat_format=%s, which makes the same '
                                      'prompt: use %s' % (style, _CHAT_FORMAT_ALIASES[style],
                                                          _CHAT_FORMAT_ALIASES[style]),
                                      version='1.0.0', collection_name='homelab.gpu')
                style = _CHAT_FORMAT_ALIASES[style]
            try:
                prompt = _cog_chat.chat_prompt(self.params['messages'], style)
            except ValueError as exc:
                self.module.fail_json(msg=str(exc))
            inputs[self.params['prompt_key']] = prompt
        return inputs, prompt

    def run(self):
        inputs, prompt = self.build_input()
        # schema hook (homelab.gpu _cog_schema): fit the input to the model's schema before it is sent (a read,
        # so check mode does it too and shows the input as it would be sent).
        inputs, schema, problem = _cog_schema.prepare(self.target['url'], inputs, self.params['schema'],
                                                      self.params['validate_certs'],
                                                      username=self.target['username'],
                                                      password=self.target['password'])
        request = {'method': 'POST', 'url': self.target['display'] + '/predictions', 'input': inputs,
                   'sent': not self.module.check_mode and not problem}
        out = {'request': request, 'status': None, 'output': None, 'output_text': None, 'metrics': {}, 'id': None,
               'logs': None, 'http_status': None, 'prompt': prompt, 'input': inputs, 'schema': schema}
        if problem:
            self.module.fail_json(msg='Prediction at %s/predictions not sent: %s' % (self.target['display'], problem),
                                  changed=False, **out)
        if self.module.check_mode:
            self.module.exit_json(changed=False, msg='check mode: nothing was sent; request shows what would be',
                                  **out)
        result, error = _cog_http.predict(self.target['url'], inputs, timeout=self.params['timeout'],
                                          validate_certs=self.params['validate_certs'],
                                          username=self.target['username'], password=self.target['password'])
        out.update(status=result.get('status'), output=result.get('output'),
                   output_text=_cog_api.output_text(result.get('output')), metrics=result.get('metrics') or {},
                   id=result.get('id'), logs=result.get('logs'), http_status=result.get('http_status'))
        if error:
            error = error.replace(self.target['url'], self.target['display'])
            self.module.fail_json(msg='Prediction at %s/predictions failed: %s' % (self.target['display'], error),
                                  changed=False, error=result.get('error'), **out)
        self.module.exit_json(changed=False, **out)


def target_of(module):
    """Where to send: the checked URL and the credentials of the url, username and password options."""
    params = module.params
    try:
        target = _cog_http.split_url(params['url'])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    if target['username'] is not None and (params['username'] is not None or params['password'] is not None):
        module.fail_json(msg='url %s has a user name, and username or password is set too: give the credentials '
                             'once, best as username and password' % target['display'])
    if params['username'] is not None:
        target.update(username=params['username'], password=params['password'])
    if target['username'] is not None:
        # A server that echoes the request headers in an error page must not show them either.
        module.no_log_values.add(_cog_http.basic_credentials(target['username'], target['password']))
    return target


class _PredictModule(AnsibleModule):
    """AnsibleModule that masks the credentials of the url option from the moment it reads its arguments.

    An argument error found while the arguments are checked (a wrong type, password without username) fails
    inside the constructor, and its result carries the arguments: the masking must already be in place then.
    """

    def _load_params(self):
        super()._load_params()
        self.no_log_values.update(_cog_http.url_secrets((self.params or {}).get('url')))


def main():
    argument_spec = dict(
        url=dict(type='str', default='http://127.0.0.1:5000'),
        username=dict(type='str'),
        password=dict(type='str', no_log=True),
        input=dict(type='dict', default={}),
        messages=dict(type='list', elements='dict'),
        chat_format=dict(type='str', choices=['inst_lines', 'llama2', 'seed'], default='inst_lines'),
        prompt_key=dict(type='str', default='prompt', no_log=False),
        timeout=dict(type='int', default=600),
        validate_certs=dict(type='bool', default=True),
        schema=dict(type='str', choices=list(_cog_schema.MODES), default='coerce'),
    )
    module = _PredictModule(argument_spec=argument_spec, supports_check_mode=True,
                            required_by={'password': 'username'})
    error = range_error('timeout', module.params['timeout'], 1, 86400, 'a positive number of seconds',
                        'how long to wait for the whole answer, at most a day')
    if error:
        module.fail_json(msg=error)
    CogPredict(module, target_of(module)).run()


if __name__ == '__main__':
    main()
