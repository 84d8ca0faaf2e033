# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The action of homelab.gpu.status_report: write the fleet report on the controller, in the controller's process.

Its documentation is in plugins/modules/status_report.py. Writing two local files this way costs no module run
(each copy task to localhost starts a Python interpreter for the copy module), and the files are written
atomically, with the collection's own staged write: a reader never sees half a report.
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.homelab.gpu.plugins.module_utils import _daemon_json, _report

ARGUMENT_SPEC = dict(
    dest=dict(type='path', required=True),
    statuses=dict(type='list', elements='dict', required=True),
    generated_at=dict(type='str', default=''),
)
FILES = ('status.md', 'status.html')


def write_reports(dest, reports, check=False):
    """Write ``{file name: text}`` into ``dest`` (made, mode 0755, when missing); return the paths.

    In check mode nothing is written and the paths that a real run would write are returned.
    """
    paths = [os.path.join(dest, name) for name in reports]
    if check:
        return paths
    for path, text in zip(paths, reports.values()):
        # The collection's atomic write (a synced temporary file beside the target, then a rename).
        tmp = _daemon_json.stage_file(path, text)
        try:
            _daemon_json.commit_file(tmp, path)
        except BaseException:
            _daemon_json.discard(tmp)
            raise
    return paths


def render(statuses, generated_at):
    """The report files and the text table, from the homelab_gpu_status facts of the hosts."""
    return ({'status.md': _report.render_markdown(statuses, generated_at),
             'status.html': _report.render_html(statuses, generated_at)},
            _report.render_text(statuses))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        dest = os.path.abspath(os.path.expanduser(args['dest']))
        reports, text = render(args['statuses'], args['generated_at'])
        try:
            paths = write_reports(dest, reports, check=self._task.check_mode)
        except (OSError, _daemon_json.DaemonJsonError) as exc:
            raise AnsibleActionFail('Cannot write the fleet report into %s on the controller: %s. Set '
                                    'status_report_dir to a directory you can write to.'
                                    % (dest, getattr(exc, 'strerror', None) or exc))
        # A report is output, not state: it holds uptimes and a time stamp, so it differs on every run although
        # nothing on the hosts changed. Writing it is not counted as a change.
        result.update(changed=False, files=paths, text=text, written=not self._task.check_mode)
        return result
