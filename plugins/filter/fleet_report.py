# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn the probes of the status playbook into a fleet report."""

from __future__ import annotations

# Each filter is documented in the YAML file of its name beside this one.

from ansible_collections.homelab.gpu.plugins.module_utils import _report


def host_status(probe, host, daemon_config=None, models=None, expected_models=None, models_info=None):
    return _report.host_status(host, probe, daemon_config, models, expected_models, models_info)


def report_text(statuses):
    return _report.render_text(statuses)


def report_markdown(statuses, generated_at=''):
    return _report.render_markdown(statuses, generated_at)


def report_html(statuses, generated_at=''):
    return _report.render_html(statuses, generated_at)


class FilterModule:
    def filters(self):
        return {
            'host_status': host_status,
            'report_text': report_text,
            'report_markdown': report_markdown,
            'report_html': report_html,
        }
