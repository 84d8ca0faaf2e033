# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP calls to a cog server (GET /health-check, POST /predictions) through ansible's open_url.

Private to this collection: no API promise. No proxy and no ~/.netrc are used: the servers are on the host
or the LAN, and credentials come only from the caller. Every request is bounded as a whole: ``timeout`` is
the time until the complete answer, not the time of each socket read, so a server that sends one byte a
second cannot hold a module for ever.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urlsplit, urlunsplit

from ansible.module_utils.urls import basic_auth_header, open_url

from ansible_collections.homelab.gpu.plugins.module_utils import _cog_api

# What a URL shows in place of its user name and password.
MASK = '********'
SCHEMES = ('http', 'https')


def split_url(url):
    """Check a cog server's base URL and take the credentials out of it.

    Returns ``{'url', 'display', 'username', 'password'}``: ``url`` without user name and password (and without
    a trailing slash), ``display`` the same with ``********@`` where credentials were, for messages, and the
    credentials (percent-decoded) or None. Raises ValueError with a reason that never quotes the credentials.

    Only http and https. A query string or fragment is refused: cog serves ``<base>/predictions``, and
    ``?a=b`` in the base would end up in the middle of that path.
    """
    if not isinstance(url, str) or not url:
        raise ValueError('url is empty')
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValueError('url %s has white space or a control character in it' % _display_raw(url))
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed [ of an IPv6 address
        raise ValueError('url %s is not a URL (%s)' % (_display_raw(url), exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError('url %s has scheme %r; only http and https reach a cog server'
                         % (_display_raw(url), parts.scheme or '(none)'))
    if '?' in url or '#' in url:
        raise ValueError('url %s has a query string or fragment (? or #), which has no place in the base URL of a '
                         'cog server: give scheme://host:port, with a path prefix if a proxy adds one (percent-'
                         'encode a ? or # in a password, or use the password option)' % _display_raw(url))
    if _split_userinfo(url)[1] is not None and '@' not in parts.netloc:
        raise ValueError('url %s has a / in its user name or password: percent-encode it as %%2F, or use the '
                         'username and password options' % _display_raw(url))
    userinfo, _sep, hostport = parts.netloc.rpartition('@')
    try:
        port = parts.port
    except ValueError:
        raise ValueError('url %s has an invalid port' % _display_raw(url)) from None
    if not parts.hostname or port == 0 or hostport.endswith(':'):
        raise ValueError('url %s has no host or an invalid port' % _display_raw(url))
    username = password = None
    if _sep:
        name, colon, secret = userinfo.partition(':')
        username = unquote(name)
        password = unquote(secret) if colon else None
    clean = urlunsplit((scheme, hostport, parts.path.rstrip('/'), '', ''))
    display = urlunsplit((scheme, '%s@%s' % (MASK, hostport) if _sep else hostport, parts.path.rstrip('/'), '', ''))
    return {'url': clean, 'display': display, 'username': username, 'password': password}


def _split_userinfo(url):
    """``(scheme and ://, user info or None, the rest)`` of any text; the user info is all before the last @.

    Deliberately wider than a URL parser: in a URL that does not parse (a / in a password, no scheme), whatever
    stands before the last @ is still taken for credentials, so that it is never shown.
    """
    head, sep, rest = url.partition('://')
    if not sep:
        head, rest = '', url
    userinfo, at, tail = rest.rpartition('@')
    if not at:
        return head + sep, None, rest
    return head + sep, userinfo, tail


def _display_raw(url):
    """A URL for a message, with its user info (if any) masked."""
    prefix, userinfo, tail = _split_userinfo(url)
    return '%s%s%s' % (prefix, '' if userinfo is None else MASK + '@', tail)


def url_secrets(url):
    """The parts of ``url`` that must never be shown: its user info, and the password in it (as written and
    percent-decoded), or the user name alone when there is no password (a token). Never raises."""
    if not isinstance(url, str):
        return set()
    userinfo = _split_userinfo(url)[1]
    if not userinfo:
        return set()
    secrets = {userinfo, unquote(userinfo)}
    name, colon, password = userinfo.partition(':')
    if colon:
        secrets.update((password, unquote(password)))
    secrets.discard('')
    return secrets


def basic_credentials(username, password):
    """The base64 text of an HTTP basic Authorization header (``Basic <this>``), a secret as much as the password."""
    return basic_auth_header(username, password).decode('ascii').split(' ', 1)[1]


def _request_once(url, timeout, data, headers, validate_certs, username, password):
    headers = dict(headers or {})
    if username is not None:
        headers['Authorization'] = 'Basic ' + basic_credentials(username, password)
    try:
        resp = open_url(url, data=data, headers=headers, method='POST' if data is not None else 'GET',
                        timeout=timeout, use_proxy=False, follow_redirects='none', validate_certs=validate_certs,
                        use_netrc=False)
        return resp.getcode(), resp.read().decode('utf-8', 'replace'), None
    except HTTPError as exc:
        try:
            body = exc.read().decode('utf-8', 'replace')
        except Exception:  # pylint: disable=broad-except
            body = ''
        return exc.code, body, None
    except (socket.timeout, TimeoutError):
        return None, '', 'timed out after %s s' % timeout
    except (URLError, socket.error, OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, 'reason', exc)
        if isinstance(reason, (socket.timeout, TimeoutError)):
            return None, '', 'timed out after %s s' % timeout
        return None, '', str(reason) or exc.__class__.__name__


def _request(url, timeout, data=None, headers=None, validate_certs=True, username=None, password=None):
    """Return ``(HTTP status or None, body text, error text or None)``; never raises for network errors.

    The request runs in a daemon thread that gets ``timeout`` seconds for the whole answer (connection,
    headers and body). A server that trickles its answer is left behind, and the error says it timed out.
    """
    answer = []

    def work():
        try:
            answer.append(_request_once(url, timeout, data, headers, validate_certs, username, password))
        except Exception as exc:  # pylint: disable=broad-except
            answer.append((None, '', '%s: %s' % (exc.__class__.__name__, exc)))

    worker = threading.Thread(target=work, name='cog-http', daemon=True)
    worker.start()
    worker.join(timeout)
    if not answer:
        return None, '', 'timed out after %s s: no complete answer in that time' % timeout
    return answer[0]


def get(url, timeout, headers=None, validate_certs=True, username=None, password=None):
    """GET ``url`` within ``timeout`` seconds in all; ``(HTTP status or None, body text, error text or None)``."""
    return _request(url, timeout, headers=headers, validate_certs=validate_certs, username=username,
                    password=password)


def health(base_url, timeout=2.0, validate_certs=True):
    """GET /health-check; return ``(parsed health or None, error text or None)``."""
    code, body, error = _request(base_url.rstrip('/') + '/health-check', timeout, validate_certs=validate_certs)
    if error is not None:
        return None, error
    parsed = _cog_api.parse_health(body)
    if code != 200 and parsed['status'] == 'UNKNOWN':
        return None, 'HTTP %s from /health-check: %s' % (code, body[:300])
    return parsed, None


def predict(base_url, inputs, timeout, validate_certs=True, username=None, password=None):
    """POST /predictions with ``{"input": inputs}``; return ``(result dict, error message or None)``.

    ``base_url`` carries no credentials (see :func:`split_url`); ``username`` and ``password`` go in a basic
    authorization header.
    """
    data = json.dumps({'input': inputs})
    code, body, error = _request(base_url.rstrip('/') + '/predictions', timeout, data=data,
                                 headers={'Content-Type': 'application/json'}, validate_certs=validate_certs,
                                 username=username, password=password)
    if error is not None:
        return {'status': None, 'http_status': None}, 'no answer from %s/predictions: %s' % (
            base_url.rstrip('/'), error)
    return _cog_api.prediction_outcome(code, body)
