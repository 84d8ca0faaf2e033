# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers shared by the modules of homelab.gpu. Private to this collection: no API promise."""

from __future__ import annotations

import typing as t

# Exit status of coreutils timeout(1) when the command ran out of time (and 137 with -k / KILL).
TIMEOUT_RCS = (124, 137)


class CommandResult(t.NamedTuple):
    rc: int
    stdout: str
    stderr: str
    timed_out: bool


def run_command(module, argv, timeout=None, data=None):
    """Run ``argv`` (a list, never a shell string) through ``module.run_command``.

    With ``timeout`` (seconds), the command runs under coreutils ``timeout`` so that a hung
    binary (nvidia-smi on a wedged GPU, dockerd waiting on a lock) cannot hang the module:
    it gets SIGTERM at ``timeout`` and SIGKILL 5 seconds later. ``timed_out`` tells the caller.
    """
    argv = [str(a) for a in argv]
    if timeout:
        timeout_bin = module.get_bin_path('timeout')
        if timeout_bin:
            argv = [timeout_bin, '-k', '5', str(timeout)] + argv
    rc, out, err = module.run_command(argv, data=data, check_rc=False, environ_update={'LC_ALL': 'C'})
    timed_out = bool(timeout) and rc in TIMEOUT_RCS
    return CommandResult(rc, out, err, timed_out)
