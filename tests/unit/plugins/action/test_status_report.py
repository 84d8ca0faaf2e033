# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""homelab.gpu.status_report: the report files, written atomically on the controller, or only named in check mode."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.homelab.gpu.plugins.action import status_report as action
from ansible_collections.homelab.gpu.plugins.module_utils import _report

# A host as the status playbook puts it together (homelab.gpu.host_status), here one whose nvidia-smi is missing.
STATUS = _report.host_status('gpu-1', {'state': 'not_installed', 'message': 'nvidia-smi was not found on PATH',
                                       'gpus': [], 'driver_version': None, 'cuda_version': None})


def test_writes_both_files_into_a_new_directory(tmp_path):
    dest = tmp_path / 'a' / 'gpu-status'
    reports, text = action.render([STATUS], '2026-11-28 07:00 UTC')
    paths = action.write_reports(str(dest), reports)
    assert paths == [str(dest / 'status.md'), str(dest / 'status.html')]
    assert (dest / 'status.md').read_text(encoding='utf-8') == reports['status.md']
    assert '2026-11-28 07:00 UTC' in reports['status.md'] and 'gpu-1' in text
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o755 & ~_umask()
    assert stat.S_IMODE(os.stat(dest / 'status.html').st_mode) == 0o644
    # No temporary file is left behind.
    assert sorted(os.listdir(dest)) == ['status.html', 'status.md']


def test_check_mode_writes_nothing(tmp_path):
    dest = tmp_path / 'gpu-status'
    paths = action.write_reports(str(dest), {'status.md': 'x'}, check=True)
    assert paths == [str(dest / 'status.md')] and not dest.exists()


def test_a_failed_write_leaves_the_old_report_and_no_temporary_file(tmp_path, monkeypatch):
    (tmp_path / 'status.md').write_text('old report\n', encoding='utf-8')

    def broken_rename(src, dst):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(action._daemon_json.os, 'rename', broken_rename)
    with pytest.raises(OSError, match='No space left'):
        action.write_reports(str(tmp_path), {'status.md': 'new report\n'})
    assert (tmp_path / 'status.md').read_text(encoding='utf-8') == 'old report\n'
    assert os.listdir(tmp_path) == ['status.md']


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
