# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP calls to a cog server (GET /health-check, POST /predictions) through ansible's open_url.

Private to this collection: no API promise. No proxy is used: the servers are on the host or the LAN.
"""

from __future__ import annotations

import http.client
import json
import socket
from urllib.error import HTTPError, URLError

from ansible.module_utils.urls import open_url

from ansible_collections.homelab.gpu.plugins.module_utils import _cog


def _request(url, timeout, data=None, headers=None, validate_certs=True):
    """Return ``(HTTP status or None, body text, error text or None)``; never raises for network errors."""
    try:
        resp = open_url(url, data=data, headers=headers, method='POST' if data is not None else 'GET',
                        timeout=timeout, use_proxy=False, follow_redirects='none',
                        validate_certs=validate_certs)
        return resp.getcode(), resp.read().decode('utf-8', 'replace'), None
    except HTTPError as exc:
        try:
            body = exc.read().decode('utf-8', 'replace')
        except Exception:  # pylint: disable=broad-except
            body = ''
        return exc.code, body, None
    except (URLError, socket.error, OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, 'reason', exc)
        return None, '', str(reason) or exc.__class__.__name__


def health(base_url, timeout=2.0, validate_certs=True):
    """GET /health-check; return ``(parsed health or None, error text or None)``."""
    code, body, error = _request(base_url.rstrip('/') + '/health-check', timeout, validate_certs=validate_certs)
    if error is not None:
        return None, error
    parsed = _cog.parse_health(body)
    if code != 200 and parsed['status'] == 'UNKNOWN':
        return None, 'HTTP %s from /health-check: %s' % (code, body[:300])
    return parsed, None


def predict(base_url, inputs, timeout, validate_certs=True):
    """POST /predictions with ``{"input": inputs}``; return ``(result dict, error message or None)``."""
    data = json.dumps({'input': inputs})
    code, body, error = _request(base_url.rstrip('/') + '/predictions', timeout, data=data,
                                 headers={'Content-Type': 'application/json'}, validate_certs=validate_certs)
    if error is not None:
        return {'status': None, 'http_status': None}, 'no answer from %s/predictions: %s' % (
            base_url.rstrip('/'), error)
    return _cog.prediction_outcome(code, body)
