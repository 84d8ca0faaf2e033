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
extends_documentation_fragment:
  - homelab.gpu.attributes
attributes:
  check_mode:
    support: full
    details:
      - The prediction is sent in check mode too. It changes nothing on the host, so the module never reports
        a change.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Never reports a change. The output of a model may differ between two calls.
options:
  url:
    description: Base URL of the model server, without C(/predictions).
    type: str
    default: http://127.0.0.1:5000
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
      - V(seed) is what the seed's llama client does. Each user message becomes C([INST]content[/INST]), and other
        messages stay as they are, one per line.
      - V(llama2) is Meta's reference format, with a system message in C(<<SYS>>) markers and
        C(<s>[INST] ... [/INST] ... </s>) turns.
    type: str
    choices: [seed, llama2]
    default: seed
  prompt_key:
    description: Input key that receives the prompt made from O(messages).
    type: str
    default: prompt
  timeout:
    description: Seconds to wait for the answer. Large models take a while per prediction.
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
"""

RETURN = r"""
status:
  description: Status of the prediction (V(succeeded) when the module does not fail).
  returned: always
  type: str
  sample: succeeded
output:
  description: Output of the prediction as the model returns it (a string, a list of tokens, a URL, ...).
  returned: always
  type: raw
  sample: [" Hello", " there", "!"]
output_text:
  description: The output as one string, with a token list joined and stripped like the seed's client does.
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

from ansible_collections.homelab.gpu.plugins.module_utils import _cog
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_http
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_schema


class CogPredict:
    """Build the input, send one prediction and judge the answer."""

    def __init__(self, module):
        self.module = module
        self.params = module.params

    def build_input(self):
        inputs = dict(self.params['input'] or {})
        prompt = None
        if self.params['messages'] is not None:
            try:
                prompt = _cog.chat_prompt(self.params['messages'], self.params['chat_format'])
            except ValueError as exc:
                self.module.fail_json(msg=str(exc))
            inputs[self.params['prompt_key']] = prompt
        return inputs, prompt

    def run(self):
        inputs, prompt = self.build_input()
        url = self.params['url'].rstrip('/')
        # schema hook (homelab.gpu _cog_schema): fit the input to the model's schema before it is sent.
        inputs, schema, problem = _cog_schema.prepare(url, inputs, self.params['schema'], self.params['validate_certs'])
        if problem:
            self.module.fail_json(msg='Prediction at %s/predictions not sent: %s' % (url, problem), changed=False,
                                  input=inputs, schema=schema, prompt=prompt)
        result, error = _cog_http.predict(url, inputs, timeout=self.params['timeout'],
                                          validate_certs=self.params['validate_certs'])
        out = {'status': result.get('status'), 'output': result.get('output'),
               'output_text': _cog.output_text(result.get('output')), 'metrics': result.get('metrics') or {},
               'id': result.get('id'), 'logs': result.get('logs'), 'http_status': result.get('http_status'),
               'prompt': prompt, 'input': inputs, 'schema': schema}
        if error:
            self.module.fail_json(msg='Prediction at %s/predictions failed: %s' % (url, error), changed=False,
                                  error=result.get('error'), **out)
        self.module.exit_json(changed=False, **out)


def main():
    argument_spec = dict(
        url=dict(type='str', default='http://127.0.0.1:5000'),
        input=dict(type='dict', default={}),
        messages=dict(type='list', elements='dict'),
        chat_format=dict(type='str', choices=['seed', 'llama2'], default='seed'),
        prompt_key=dict(type='str', default='prompt', no_log=False),
        timeout=dict(type='int', default=600),
        validate_certs=dict(type='bool', default=True),
        schema=dict(type='str', choices=list(_cog_schema.MODES), default='coerce'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if module.params['timeout'] <= 0:
        module.fail_json(msg='timeout must be a positive number of seconds, got %s' % module.params['timeout'])
    CogPredict(module).run()


if __name__ == '__main__':
    main()
