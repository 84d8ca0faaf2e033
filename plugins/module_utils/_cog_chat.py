# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Chat messages as one Llama-2 prompt. Private to this collection: no API promise."""

from __future__ import annotations


def chat_prompt(messages, style='inst_lines'):
    """Turn ``[{role, content}]`` into one prompt string for a Llama-2 chat model.

    ``inst_lines``: each user turn as ``[INST]content[/INST]``, other turns as they are, one per line, as a
    hand-written llama client sends them. ``llama2``: Meta's reference format, a system message folded into the
    first user turn between ``<<SYS>>`` markers and each exchange as ``<s>[INST] user [/INST] answer </s>``.
    """
    if style not in ('inst_lines', 'llama2'):
        raise ValueError('chat format %r is not one of inst_lines, llama2' % (style,))
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get('role') not in ('system', 'user', 'assistant') \
                or not isinstance(msg.get('content'), str):
            raise ValueError('messages[%d] must be {role: system|user|assistant, content: text}, got %r' % (i, msg))
    if style == 'inst_lines':
        return '\n'.join('[INST]%s[/INST]' % m['content'] if m['role'] == 'user' else m['content']
                         for m in messages)
    system = None
    turns = list(messages)
    if turns and turns[0]['role'] == 'system':
        system = turns.pop(0)['content']
    out = []
    pending_user = None
    for i, msg in enumerate(turns):
        if msg['role'] == 'system':
            raise ValueError('messages: a system message is only allowed first (llama2 format)')
        if msg['role'] == 'user':
            if pending_user is not None:
                raise ValueError('messages: two user messages in a row (llama2 format alternates user/assistant)')
            pending_user = msg['content'].strip()
            if system is not None and not out:
                pending_user = '<<SYS>>\n%s\n<</SYS>>\n\n%s' % (system.strip(), pending_user)
        else:
            if pending_user is None:
                raise ValueError('messages: an assistant message must follow a user message (llama2 format)')
            out.append('<s>[INST] %s [/INST] %s </s>' % (pending_user, msg['content'].strip()))
            pending_user = None
    if pending_user is None:
        raise ValueError('messages: the last message must come from the user')
    out.append('<s>[INST] %s [/INST]' % pending_user)
    return ''.join(out)
