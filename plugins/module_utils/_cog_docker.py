# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The docker CLI and the cog HTTP API as cog_model uses them. Private to this collection: no API promise.

Reads always run. Changes go through :meth:`DockerCLI.change`, which in a dry run (check mode) only records
the command and returns, as community.docker's compose layer does with ``dry_run``: the orchestration in
``_cog_deploy`` reads the same in both modes and never asks which one it is in. Waiting for READY and the smoke
prediction are part of this layer too, so that a dry run predicts them instead of polling a container that was
never started.
"""

from __future__ import annotations

import json
import os
import time

from ansible_collections.homelab.gpu.plugins.module_utils import _cog_api
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_inspect
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_http
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_schema
from ansible_collections.homelab.gpu.plugins.module_utils._common import command_error


class DeployFailed(Exception):
    """A docker command or a model failed; the message says what happened (rollback included)."""


class DockerCLI:
    """docker commands through ``run`` (homelab.gpu's run_command); changes only recorded when ``dry_run``."""

    def __init__(self, module, docker, run, dry_run=False):
        self.module = module
        self.docker = docker
        self.run = run
        self.dry_run = dry_run
        self.recorded = []
        self._images = {}

    # ------------------------------------------------------------------ reads

    def query(self, args, timeout=120, what=None):
        """Run a read; return stdout, raise DeployFailed on failure."""
        cmd = self.run(self.module, [self.docker] + args, timeout=timeout)
        if cmd.rc != 0:
            raise DeployFailed(self._failure(args, cmd, what))
        return cmd.stdout

    def containers(self):
        """Every container on the host, ``{name: summary}`` (see ``_cog_inspect.summarize_container``)."""
        ids = self.query(['ps', '--all', '--quiet', '--no-trunc'], what='ps').split()
        if not ids:
            return {}
        return _cog_inspect.parse_inspect(self.query(['container', 'inspect'] + ids, what='container inspect'))

    def container(self, name):
        """One container's summary, None when there is none of that name."""
        cmd = self.run(self.module, [self.docker, 'container', 'inspect', name], timeout=60)
        if cmd.rc != 0:
            return self._absent(['container', 'inspect', name], cmd)
        return _cog_inspect.parse_inspect(cmd.stdout).get(name)

    def image(self, ref):
        """``docker image inspect`` of a local image (a dict), None when it is not on the host.

        An image that is present is asked about once per run (pre-flight's image checks and the pull share the
        answer); an absent one is asked again, since a pull may have brought it since.
        """
        if ref in self._images:
            return self._images[ref]
        cmd = self.run(self.module, [self.docker, 'image', 'inspect', ref], timeout=60)
        if cmd.rc != 0:
            return self._absent(['image', 'inspect', ref], cmd)
        try:
            entry = json.loads(cmd.stdout)[0]
        except (ValueError, IndexError, TypeError):
            entry = None
        self._images[ref] = entry if isinstance(entry, dict) else {}
        return self._images[ref]

    def image_id(self, ref):
        entry = self.image(ref)
        return None if entry is None else entry.get('Id')

    def logs(self, name, lines):
        cmd = self.run(self.module, [self.docker, 'logs', '--tail', str(lines), name], timeout=60)
        return _cog_api.tail('%s%s' % (cmd.stdout, cmd.stderr), lines)

    # ------------------------------------------------------------------ changes

    def change(self, args, timeout=120, data=None, what=None):
        """Run a change, or in a dry run only record it. Raise DeployFailed when it fails."""
        self.recorded.append(list(args))
        if self.dry_run:
            return ''
        cmd = self.run(self.module, [self.docker] + args, timeout=timeout, data=data)
        if cmd.rc != 0:
            raise DeployFailed(self._failure(args, cmd, what))
        return cmd.stdout

    def login(self, registry, username, password):
        self.change(['login', '--username', username, '--password-stdin', registry], data=password,
                    what='login to %s' % registry)

    def pull(self, ref, timeout):
        self.change(['pull', '--quiet', ref], timeout=timeout, what='pull %s' % ref)

    def run_container(self, argv):
        """``docker run`` of a model (argv without the docker binary); returns the wall time it started at."""
        started_wall = time.time()
        self.change(argv, timeout=300, what='run %s' % argv[argv.index('--name') + 1])
        return started_wall

    def start(self, name):
        self.change(['start', name], what='start %s' % name)

    def stop(self, name, timeout):
        self.change(['stop', '--time', str(timeout), name], timeout=timeout + 60, what='stop %s' % name)

    def remove(self, name):
        self.change(['rm', '--force', name], what='rm %s' % name)

    def rename(self, old, new):
        self.change(['rename', old, new], what='rename %s' % old)

    def remove_image(self, ref):
        self.change(['image', 'rm', ref], what='image rm %s' % ref)

    def restrict_mode(self, path, mode=0o600):
        """Make the docker CLI's credential file ``mode``; True when it had another mode."""
        if not os.path.exists(path) or (os.stat(path).st_mode & 0o777) == mode:
            return False
        if not self.dry_run:
            os.chmod(path, mode)
        return True

    def _absent(self, args, cmd):
        """None for an inspect that found nothing; a time-out or a daemon error is no answer, and fails the run."""
        if not cmd.timed_out and 'no such' in ('%s%s' % (cmd.stderr, cmd.stdout)).lower():
            return None
        raise DeployFailed(self._failure(args, cmd, ' '.join(args[:2])))

    @staticmethod
    def _failure(args, cmd, what):
        return command_error('docker %s' % (what or ' '.join(args[:2])), cmd)


class CogAPI:
    """Readiness and the smoke prediction of a model container; predicted, not done, in a dry run."""

    def __init__(self, docker, params, sleep=time.sleep):
        self.docker = docker
        self.params = params
        self.sleep = sleep

    def wait_ready(self, name, url, timeout, started_wall):
        """Poll /health-check until READY (or BUSY); return the readiness info, or raise DeployFailed."""
        if self.docker.dry_run:
            return {'health': None, 'ready_seconds': None, 'ready_seen_after_s': None}
        interval = self.params['poll_interval']
        start = time.monotonic()
        last_inspect = 0.0
        last = None
        last_error = None
        while True:
            loop_start = time.monotonic()
            health, error = _cog_http.health(url, timeout=min(2.0, max(0.5, timeout)))
            if health is not None:
                last = health
                if _cog_api.is_ready(health):
                    seen = time.time()
                    done = _cog_api.parse_timestamp(health.get('setup_completed_at') or '')
                    return {'health': health['status'], 'ready_seconds': round(time.monotonic() - start, 3),
                            'ready_seen_after_s': (round(seen - done, 3)
                                                   if done is not None and started_wall is not None
                                                   and done >= started_wall - 1 else None)}
                if health['status'] in _cog_api.HEALTH_FATAL:
                    raise DeployFailed('cog reports %s. Setup logs:\n%s'
                                       % (health['status'], health['setup_logs'].strip()))
            else:
                last_error = error
            if loop_start - last_inspect >= 1.0:
                last_inspect = loop_start
                cont = self.docker.container(name)
                if cont is None:
                    raise DeployFailed('the container %s is gone' % name)
                if not cont['running'] or cont['restart_count'] > 0:
                    raise DeployFailed('the container exited (status %s, exit code %s, restarts %s)'
                                       % (cont['status'], cont['exit_code'], cont['restart_count']))
            if time.monotonic() - start >= timeout:
                if last is not None:
                    raise DeployFailed('not READY after %s s: cog still reports %s. Setup logs so far:\n%s'
                                       % (timeout, last['status'], last['setup_logs'].strip()))
                raise DeployFailed('not READY after %s s: %s does not answer (%s)' % (timeout, url, last_error))
            self.sleep(max(0.0, interval - (time.monotonic() - loop_start)))

    def smoke(self, url, smoke_input):
        """The smoke prediction, fitted to the model's schema; ``(result or None, schema report or None)``."""
        if self.docker.dry_run:
            return None, None
        # schema hook (homelab.gpu _cog_schema): fit smoke_input to the running model's schema.
        sent, schema, problem = _cog_schema.prepare(url, smoke_input, self.params['smoke_schema'])
        if problem:
            raise DeployFailed('the smoke prediction was not sent: %s' % problem)
        result, error = _cog_http.predict(url, sent, timeout=self.params['smoke_timeout'])
        if error:
            raise DeployFailed('the smoke prediction failed: %s' % error)
        return result, schema
