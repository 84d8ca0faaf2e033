# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cog's HTTP answers: the health check, a prediction, timestamps. Private to this collection: no API promise.

Plain functions over the bodies a cog server (the Python server of older images, coglet 0.23 in current ones)
sends; tested with recorded answers.
"""

from __future__ import annotations

import json
import re

# cog health-check states (coglet): only READY serves; BUSY also means "set up and serving".
HEALTH_READY = 'READY'
HEALTH_BUSY = 'BUSY'
HEALTH_FATAL = ('SETUP_FAILED', 'DEFUNCT')


def parse_health(body):
    """Read a cog ``/health-check`` body into ``{'status', 'setup_status', 'setup_logs'}``.

    Old cog (Python server) and coglet both answer 200 with a JSON body; anything else comes back as status
    ``UNKNOWN`` with the body in ``setup_logs``.
    """
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        data = None
    if not isinstance(data, dict):
        return {'status': 'UNKNOWN', 'setup_status': None, 'setup_logs': str(body or '')[-2000:],
                'setup_completed_at': None}
    setup = data.get('setup') or {}
    return {'status': str(data.get('status') or 'UNKNOWN').upper(),
            'setup_status': setup.get('status'),
            'setup_logs': setup.get('logs') or '',
            'setup_completed_at': setup.get('completed_at')}


def is_ready(health):
    return health['status'] in (HEALTH_READY, HEALTH_BUSY)


def parse_timestamp(text):
    """Seconds since the epoch of an RFC 3339 time as coglet writes it (nanoseconds, offset); None if not one."""
    match = re.fullmatch(r'([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?'
                         r'(Z|[+-][0-9]{2}:[0-9]{2})', text or '')
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = float('0.' + match.group(7)) if match.group(7) else 0.0
    offset = 0
    if match.group(8) != 'Z':
        sign = -1 if match.group(8)[0] == '-' else 1
        offset = sign * (int(match.group(8)[1:3]) * 3600 + int(match.group(8)[4:6]) * 60)
    # Days from 1970-01-01 to the date (proleptic Gregorian), without time zone tables.
    y, m = (year - 1, month + 12) if month <= 2 else (year, month)
    days = 365 * y + y // 4 - y // 100 + y // 400 + (153 * (m - 3) + 2) // 5 + day - 719469
    return days * 86400 + hour * 3600 + minute * 60 + second + fraction - offset


def tail(text, lines):
    parts = (text or '').rstrip('\n').splitlines()
    return '\n'.join(parts[-lines:]) if lines > 0 else ''


def prediction_outcome(code, body):
    """Judge one POST /predictions answer; return ``(result dict, error message or None)``."""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = None
    if not isinstance(data, dict):
        error = 'HTTP %s with a body that is not a JSON object: %s' % (code, str(body)[:500])
        return {'status': None, 'http_status': code}, error
    result = {'id': data.get('id'), 'status': data.get('status'), 'output': data.get('output'),
              'error': data.get('error'), 'logs': data.get('logs'), 'metrics': data.get('metrics') or {},
              'http_status': code}
    if code == 409:
        return result, 'the model is busy (HTTP 409: %s); it runs one prediction at a time, retry later' % (
            data.get('error') or 'at capacity')
    if code == 503:
        return result, 'the model is not ready (HTTP 503: %s)' % (data.get('error') or data.get('detail') or body)
    if code == 422:
        return result, 'the model rejected the input (HTTP 422: %s)' % (data.get('detail') or data.get('error')
                                                                        or body)
    if code != 200:
        return result, 'HTTP %s: %s' % (code, data.get('error') or data.get('detail') or str(body)[:500])
    if data.get('status') != 'succeeded':
        return result, 'prediction %s ended with status %s: %s' % (data.get('id'), data.get('status'),
                                                                   data.get('error') or 'no error given')
    return result, None


def output_text(output):
    """The output as one string, the way a Python client of a chat model joins a token list."""
    if output is None:
        return None
    if isinstance(output, list) and all(isinstance(o, str) for o in output):
        return ''.join(output).strip()
    if isinstance(output, str):
        return output.strip()
    return json.dumps(output, sort_keys=True)
