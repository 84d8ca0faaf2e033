# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Base URLs of cog servers: what is accepted, what is refused, and what is never shown.

The requests themselves (basic auth, the bound on the whole answer) are tested against loopback servers in
tests/unit/plugins/modules/test_cog_predict.py.
"""

from __future__ import annotations

import pytest

from ansible_collections.homelab.gpu.plugins.module_utils import _cog_http

GOOD = [
    ('plain', 'http://127.0.0.1:5000', ('http://127.0.0.1:5000', 'http://127.0.0.1:5000', None, None)),
    ('trailing slash', 'http://127.0.0.1:5000/', ('http://127.0.0.1:5000', 'http://127.0.0.1:5000', None, None)),
    ('no port', 'https://models.lan', ('https://models.lan', 'https://models.lan', None, None)),
    ('upper-case scheme', 'HTTP://gpu-box:5000', ('http://gpu-box:5000', 'http://gpu-box:5000', None, None)),
    ('path prefix', 'https://proxy.lan/llama/', ('https://proxy.lan/llama', 'https://proxy.lan/llama', None, None)),
    ('IPv6', 'http://[::1]:5000', ('http://[::1]:5000', 'http://[::1]:5000', None, None)),
    ('user and password', 'http://lab:pw@127.0.0.1:5000',
     ('http://127.0.0.1:5000', 'http://********@127.0.0.1:5000', 'lab', 'pw')),
    ('percent-encoded password', 'http://lab:p%40ss%3Aw%2Fd@127.0.0.1:5000',
     ('http://127.0.0.1:5000', 'http://********@127.0.0.1:5000', 'lab', 'p@ss:w/d')),
    ('token as user', 'https://r8_tok@models.lan', ('https://models.lan', 'https://********@models.lan', 'r8_tok', None)),
    ('empty password', 'http://lab:@h:1', ('http://h:1', 'http://********@h:1', 'lab', '')),
]


@pytest.mark.parametrize('url, expected', [c[1:] for c in GOOD], ids=[c[0] for c in GOOD])
def test_split_url(url, expected):
    got = _cog_http.split_url(url)
    assert (got['url'], got['display'], got['username'], got['password']) == expected


BAD = [
    ('file', 'file:///etc/shadow', "url file:///etc/shadow has scheme 'file'; only http and https reach a cog server"),
    ('javascript', 'javascript:alert(1)', "has scheme 'javascript'"),
    ('unix socket', 'http+unix://%2Frun%2Fcog.sock', "has scheme 'http+unix'"),
    ('query', 'http://h:5000/?stream=true', 'url http://h:5000/?stream=true has a query string or fragment'),
    ('fragment', 'http://h:5000#x', 'has a query string or fragment'),
    ('question mark in the password', 'http://lab:a?b@h:5000', 'url http://********@h:5000 has a query string'),
    ('tab', 'http://h:5000\t', 'has white space or a control character in it'),
    ('carriage return', 'http://h:5000\r\nX-Injected: 1', 'has white space or a control character in it'),
    ('DEL', 'http://h:5000/\x7f', 'has white space or a control character in it'),
    ('not a string', 5000, 'url is empty'),
    ('no host', 'https://:5000', 'has no host or an invalid port'),
    ('unclosed IPv6 bracket', 'http://[::1:5000', 'url http://[::1:5000 is not a URL (Invalid IPv6 URL)'),
    ('slash in the password', 'http://lab:a/b@h:5000', 'url http://********@h:5000 has a / in its user name'),
]


@pytest.mark.parametrize('url, message', [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_split_url_refuses(url, message):
    with pytest.raises(ValueError) as exc:
        _cog_http.split_url(url)
    assert message in str(exc.value)
    for secret in ('a?b', 'a/b'):
        assert secret not in str(exc.value)


@pytest.mark.parametrize('url, secrets', [
    ('http://127.0.0.1:5000', set()),
    ('http://lab:pw@h', {'lab:pw', 'pw'}),
    ('http://lab:p%40ss@h', {'lab:p%40ss', 'lab:p@ss', 'p%40ss', 'p@ss'}),
    ('http://tok3n@h', {'tok3n'}),
    ('lab:pw@h:5000', {'lab:pw', 'pw'}),
    ('http://lab:a/b@h', {'lab:a/b', 'a/b'}),
    ('http://lab:pw@h/x@y', {'lab:pw@h/x', 'pw@h/x'}),
    (None, set()),
])
def test_url_secrets(url, secrets):
    assert _cog_http.url_secrets(url) == secrets
