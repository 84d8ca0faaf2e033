# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plain functions behind the cog_model_logs module. Private to this collection: no API promise.

``docker logs`` writes a container's stdout to its own stdout and the container's stderr to its own stderr, so
a caller that reads both pipes loses the order in which the lines were written. With ``--timestamps`` every line
carries the time Docker logged it; merge_streams() puts the two streams back in that order.
"""

from __future__ import annotations

import re

# Docker's rule for container names, as cog_model validates model names (_cog._NAME_RE), as a full match.
NAME_RE = re.compile(r'[a-zA-Z0-9][a-zA-Z0-9_.-]+')
MIN_LINES = 1
MAX_LINES = 10000
# Name under which cog_model keeps the previous container during a replacement (_cog.PREVIOUS_SUFFIX).
PREVIOUS_SUFFIX = '.previous'
# The time stamp that docker logs --timestamps puts first on each line (RFC 3339, nanoseconds, UTC).
_STAMP_RE = re.compile(r'(?P<stamp>(?P<second>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d{1,9}))?'
                       r'(?:Z|[+-]\d{2}:\d{2})) ?(?P<text>.*)', re.DOTALL)


def validate(names, lines):
    """Messages for model names that no Docker container could have and a line count out of range."""
    errors = []
    for i, name in enumerate(names or []):
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            errors.append('names[%d] %r is not a valid model (Docker container) name: a letter or digit, then '
                          'letters, digits, _ . -; at least 2 characters' % (i, name))
    if isinstance(lines, bool) or not isinstance(lines, int) or not MIN_LINES <= lines <= MAX_LINES:
        errors.append('lines %r must be a whole number from %d to %d' % (lines, MIN_LINES, MAX_LINES))
    return errors


def ps_argv(docker, label):
    """The names of the containers that carry ``label=true``, one per line."""
    return [docker, 'ps', '--all', '--filter', 'label=%s=true' % label, '--format', '{{.Names}}']


def logs_argv(docker, name, lines):
    return [docker, 'logs', '--timestamps', '--tail', str(lines), name]


def select_models(managed_text, names):
    """(names to read, error): the managed containers asked for, or all of them (without replacements' spares).

    managed_text: the output of ps_argv(). The error names the models that are not managed containers.
    """
    managed = sorted(set(line.strip() for line in (managed_text or '').splitlines() if line.strip()))
    if not names:
        return [name for name in managed if not name.endswith(PREVIOUS_SUFFIX)], None
    unknown = [name for name in names if name not in managed]
    if unknown:
        return None, ('%s %s no model container that homelab.gpu manages on this host (managed: %s)'
                      % (', '.join(unknown), 'is' if len(unknown) == 1 else 'are',
                         ', '.join(name for name in managed if not name.endswith(PREVIOUS_SUFFIX)) or 'none'))
    return list(dict.fromkeys(names)), None


def _entries(text, stream):
    """(sort key, stream, stamp, text) per logged line; a line without a stamp continues the one before."""
    entries = []
    for line in (text or '').splitlines():
        match = _STAMP_RE.fullmatch(line)
        if match:
            key = (match.group('second'), (match.group('fraction') or '').ljust(9, '0'))
            entries.append([key, stream, match.group('stamp'), match.group('text')])
        elif entries:
            entries[-1][3] += '\n' + line
        else:
            entries.append([('', ''), stream, None, line])
    return entries


def merge_streams(stdout, stderr, lines, timestamps=False):
    """The last ``lines`` log lines of both streams of ``docker logs --timestamps``, in the order they were logged.

    With ``timestamps`` each line keeps Docker's time stamp in front. Lines logged in the same nanosecond keep
    stdout before stderr. Docker's time stamps are UTC, so comparing them as text, digit by digit, is exact.
    """
    merged = sorted(_entries(stdout, 0) + _entries(stderr, 1), key=lambda entry: (entry[0], entry[1]))
    out = []
    for _key, _stream, stamp, text in merged:
        out.append('%s %s' % (stamp, text) if timestamps and stamp else text)
    return out[-lines:] if lines > 0 else []
