# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers shared by the modules of homelab.gpu. Private to this collection: no API promise."""

from __future__ import annotations

import os
import signal
import socket
import time
import typing as t

# How coreutils timeout(1) ends when the command ran out of time: 124 after SIGTERM; 137 (128 + 9) when the
# command had to be killed; and, since timeout sends that SIGKILL to its whole process group, itself included,
# killed by signal 9, which run_command reports as -9.
TIMEOUT_RCS = (124, 128 + signal.SIGKILL, -signal.SIGKILL)
# Seconds between the SIGTERM at the time-out and the SIGKILL for a command that ignores it.
KILL_AFTER = 5


class CommandResult(t.NamedTuple):
    rc: int
    stdout: str
    stderr: str
    timed_out: bool
    # The limit it ran under, in seconds (None: none), so that a message can say how long it waited.
    timeout: t.Optional[float] = None


def run_command(module, argv, timeout=None, data=None, kill_after=None):
    """Run ``argv`` (a list, never a shell string) through ``module.run_command``.

    With ``timeout`` (seconds), the command runs under coreutils ``timeout`` so that a hung
    binary (nvidia-smi on a wedged GPU, dockerd waiting on a lock) cannot hang the module:
    it gets SIGTERM at ``timeout`` and SIGKILL ``kill_after`` (default KILL_AFTER) seconds later. ``timed_out`` tells
    the caller, whichever of the two signals ended it: a time-out is a time-out, not a failure.

    Output that is not UTF-8 (a byte of another encoding in a process name, a container log) is
    decoded with U+FFFD in place of each bad byte, so it never stops a parser.
    """
    argv = [str(a) for a in argv]
    bounded = False
    if timeout:
        timeout_bin = module.get_bin_path('timeout')
        if timeout_bin:
            kill_after = KILL_AFTER if kill_after is None else kill_after
            argv = [timeout_bin, '-k', str(kill_after), str(timeout)] + argv
            bounded = True
    start = time.monotonic()
    rc, out, err = module.run_command(argv, data=data, check_rc=False, environ_update={'LC_ALL': 'C'},
                                      errors='replace')
    # The exit status alone cannot tell the command's own 124 (or a kill from elsewhere) from a time-out;
    # the time it ran can.
    timed_out = bounded and rc in TIMEOUT_RCS and time.monotonic() - start >= timeout
    return CommandResult(rc, out, err, timed_out, timeout if bounded else None)


def command_error(what, cmd, first_line=False, limit=500):
    """What a command that did not succeed did, for a message; ``what`` names the command (``docker info``).

    A time-out is named as one, whatever exit status it left (124, 137 or -9, see :data:`TIMEOUT_RCS`):
    ``docker info timed out after 30 s``. Anything else is ``docker info failed (rc=1): <what it said>``: its
    stderr, else its stdout (only the first line that is not blank with ``first_line``), cut at ``limit``
    characters, or ``(no output)``. Every caller of :func:`run_command` builds its failure text here; a time-out
    always leaves a non-zero rc, so ``if cmd.rc != 0: ... command_error(...)`` covers both.
    """
    if cmd.timed_out:
        return '%s timed out after %s s' % (what, _seconds(cmd.timeout)) if cmd.timeout else '%s timed out' % what
    said = first_nonblank_line(cmd.stderr, cmd.stdout) if first_line else \
        (cmd.stderr or '').strip() or (cmd.stdout or '').strip()
    if len(said) > limit:
        said = said[:limit].rstrip() + '...'
    return '%s failed (rc=%s): %s' % (what, cmd.rc, said or '(no output)')


def first_nonblank_line(*texts):
    """The first line that is not blank, stripped, of the first of ``texts`` that has one; ``''`` when none has."""
    for text in texts:
        for line in (text or '').splitlines():
            if line.strip():
                return line.strip()
    return ''


def cut(text, limit=60):
    """``text`` for a message, cut to ``limit`` characters with its length named: 5000 digits are named, not quoted."""
    return text if len(text) <= limit else '%s... (%d characters)' % (text[:limit], len(text))


def _seconds(value):
    """``30`` for 30 or 30.0, ``1.5`` for 1.5: a limit as the user gave it."""
    return int(value) if float(value).is_integer() else value


def range_error(name, value, low, high, what, meaning):
    """None when ``low <= value <= high``, else the message for a number option out of range.

    NaN and the infinities are never in range. The message names the option, what it must be, the value, what
    the option means and the range: ``timeout must be a positive number of seconds, got 0: ... (1 to 600)``.
    """
    try:
        if low <= value <= high:
            return None
    except TypeError:
        pass
    return '%s must be %s, got %s: %s (%s to %s)' % (name, what, value, meaning, low, high)


def bind_error(address):
    """None when a program on this host can listen on ``address`` (an IP literal), else the reason.

    Binds a TCP socket to port 0 of the address and closes it at once: what docker run needs to publish a port
    there. An address of another machine gives "Cannot assign requested address".
    """
    family = socket.AF_INET6 if ':' in address else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        return exc.strerror or str(exc)
    try:
        sock.bind((address, 0))
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        sock.close()
    return None


def free_bytes(path):
    """Bytes free for an unprivileged writer under ``path`` (Docker's data root, say), None when unreadable."""
    try:
        stat = os.statvfs(path)
    except (OSError, TypeError, ValueError):
        return None
    return stat.f_bavail * stat.f_frsize
