# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The action of homelab.gpu.status_report: write the fleet report on the controller, in the controller's process.

Its documentation is in plugins/modules/status_report.py. Writing two local files this way costs no module run
(each copy task to localhost starts a Python interpreter for the copy module), and the files are written
atomically: a reader never sees half a report.
"""

from __future__ import annotations

import os
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.homelab.gpu.plugins.module_utils import _report

ARGUMENT_SPEC = dict(
    dest=dict(type='path', required=True),
    statuses=dict(type='list', elements='dict', required=True),
    generated_at=dict(type='str', default=''),
)
FILES = ('status.md', 'status.html')


def write_atomic(path, text, mode=0o644):
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename."""
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), dir=os.path.dirname(path) or '.')
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def write_reports(dest, reports, check=False):
    """Write ``{file name: text}`` into ``dest`` (made, mode 0755, when missing); return the paths.

    In check mode nothing is written and the paths that a real run would write are returned.
    """
    paths = [os.path.join(dest, name) for name in reports]
    if check:
        return paths
    os.makedirs(dest, mode=0o755, exist_ok=True)
    for name, text in reports.items():
        write_atomic(os.path.join(dest, name), text)
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
        except OSError as exc:
            raise AnsibleActionFail('Cannot write the fleet report into %s on the controller: %s. Set '
                                    'status_report_dir to a directory you can write to.'
                                    % (dest, exc.strerror or exc))
        # A report is output, not state: it holds uptimes and a time stamp, so it differs on every run although
        # nothing on the hosts changed. Writing it is not counted as a change.
        result.update(changed=False, files=paths, text=text, written=not self._task.check_mode)
        return result
