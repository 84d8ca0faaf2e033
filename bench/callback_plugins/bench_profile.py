# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark profile of a playbook run, written as JSON (bench/run.sh enables it; not part of the collection)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: bench_profile
type: aggregate
short_description: Write a per-task, per-host timing profile of the run as JSON
description:
  - For every task result, the host, the task, the action, its status, whether it changed and its duration
    (from the moment the host started the task to its result), plus the few result keys that the benchmark
    judges (C(cache_updated) of apt, C(actions) and per-model readiness of homelab.gpu.cog_model).
  - Written at the end of the run to the file named by the environment variable E(BENCH_PROFILE_OUT).
options: {}
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase

# Actions that run on the controller only: no connection, no module on the host.
CONTROLLER_ACTIONS = frozenset(
    'ansible.builtin.' + a for a in (
        'set_fact', 'debug', 'assert', 'fail', 'meta', 'include_tasks', 'include_role', 'import_tasks',
        'import_role', 'include_vars', 'add_host', 'group_by', 'set_stats', 'pause', 'validate_argument_spec',
    )
) | frozenset(('set_fact', 'debug', 'assert', 'fail', 'meta', 'include_tasks', 'include_role',
               'import_tasks', 'import_role', 'include_vars', 'validate_argument_spec'))


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'bench_profile'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.t0 = time.monotonic()
        self.started = {}
        self.records = []
        self.task_count = 0

    def v2_playbook_on_start(self, playbook):
        self.t0 = time.monotonic()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.task_count += 1

    def v2_playbook_on_handler_task_start(self, task):
        self.task_count += 1

    def v2_runner_on_start(self, host, task):
        self.started[(host.get_name(), task._uuid)] = time.monotonic()

    def _record(self, result, status):
        now = time.monotonic()
        host = result._host.get_name()
        task = result._task
        start = self.started.pop((host, task._uuid), None)
        res = result._result if isinstance(result._result, dict) else {}
        delegated = task.delegate_to is not None and str(task.delegate_to) not in ('', host)
        action = task.action or ''
        rec = {
            'host': host,
            'task': task.get_name(),
            'action': action,
            'status': status,
            'changed': bool(res.get('changed')) and status == 'ok',
            'duration': round(now - start, 4) if start is not None else None,
            'end': round(now - self.t0, 4),
            'controller_only': (action in CONTROLLER_ACTIONS or task.connection == 'local'
                                or (delegated and str(task.delegate_to) == 'localhost')),
        }
        if 'cache_updated' in res:
            rec['cache_updated'] = bool(res.get('cache_updated'))
        if action.endswith('cog_model'):
            rec['actions'] = res.get('actions') or []
            keys = ('name', 'action', 'health', 'ready_seconds', 'ready_seen_after_s')
            rec['models'] = [dict((k, m.get(k)) for k in keys) for m in res.get('models') or [] if isinstance(m, dict)]
        if status in ('failed', 'unreachable'):
            # The error text itself: bench/summarize.py quotes it (a Mitogen run that fails, for one).
            rec['msg'] = str(res.get('msg', ''))[:500]
        self.records.append(rec)

    def v2_runner_on_ok(self, result):
        self._record(result, 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, 'ignored' if ignore_errors else 'failed')

    def v2_runner_on_skipped(self, result):
        self._record(result, 'skipped')

    def v2_runner_on_unreachable(self, result):
        self._record(result, 'unreachable')

    def v2_playbook_on_stats(self, stats):
        out = os.environ.get('BENCH_PROFILE_OUT')
        if not out:
            return
        hosts = sorted(stats.processed.keys())
        summary = dict((h, stats.summarize(h)) for h in hosts)
        with open(out, 'w') as handle:
            json.dump({'wall': round(time.monotonic() - self.t0, 3), 'tasks_started': self.task_count,
                       'stats': summary, 'records': self.records}, handle, indent=1)
