# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleet status: one dict per host from the probes, and its text, Markdown and HTML renderings.

Private to homelab.gpu. Plain functions over plain data, so they are tested without Ansible.
"""

from __future__ import annotations

import html

READY = 'READY'
BUSY = 'BUSY'


def _mib(value):
    return None if value is None else int(value)


def _model_states(models, expected_models):
    """Per model name: ``(text, problem or None)`` for the models that are not running.

    A model stopped on purpose is no problem: its inventory entry says ``state: stopped``, an exclusive model of the
    inventory runs on its GPU (an exclusive swap stopped it), or the inventory no longer lists it.
    """
    entries = {}
    for wanted in expected_models or []:
        if isinstance(wanted, dict):
            entries[wanted.get('name')] = wanted
        else:
            entries[wanted] = {'name': wanted}
    running = dict((m.get('name'), m) for m in models if m.get('state') == 'running')
    out = {}
    for model in models:
        name = model.get('name')
        if model.get('state') in ('running', None):
            continue
        entry = entries.get(name)
        if entry is None:
            if expected_models is not None:
                out[name] = ('stopped (not in the inventory)', None)
            else:
                out[name] = ('stopped', 'model %s is not running (%s)' % (name, model.get('state')))
            continue
        if (entry.get('state') or 'started') == 'stopped':
            out[name] = ('stopped (as asked)', None)
            continue
        mine = set(model.get('gpu_uuids') or [])
        swapped = sorted(other for other, e in entries.items()
                         if other != name and e.get('exclusive') and (e.get('state') or 'started') == 'started'
                         and other in running and mine & set(running[other].get('gpu_uuids') or []))
        if swapped:
            out[name] = ('stopped (as asked: exclusive %s)' % ', '.join(swapped), None)
        else:
            out[name] = ('stopped', 'model %s is not running (%s)' % (name, model.get('state')))
    return out


def host_status(host, probe, daemon_config=None, models=None, expected_models=None, models_info=None):
    """Combine one host's probes into the status record that the reports show.

    ``probe`` is the result of homelab.gpu.nvidia_smi_info, ``daemon_config`` the ``config`` that
    homelab.gpu.docker_daemon_config read (None when it was not read), ``models`` the managed model containers as
    homelab.gpu.cog_models_info reports them, or ``models_info`` that module's whole result (models, the GPU
    processes of no managed model, and the Docker engine), ``expected_models`` the names the inventory wants
    running, or its ``cog_models`` entries (a missing one is a problem; a stopped one is fine when asked for).
    """
    probe = probe or {}
    info = models_info or {}
    models = [dict(m) for m in (info.get('models') if models_info else models) or []]
    docker = info.get('docker')
    others = list(info.get('other_gpu_processes') or [])
    gpus = []
    for gpu in probe.get('gpus') or []:
        gpus.append({
            'index': gpu.get('index'),
            'name': gpu.get('name'),
            'uuid': gpu.get('uuid'),
            'memory_total_mib': _mib(gpu.get('memory_total_mib')),
            'memory_used_mib': _mib(gpu.get('memory_used_mib')),
            'memory_free_mib': _mib(gpu.get('memory_free_mib')),
            'utilization_gpu_percent': gpu.get('utilization_gpu_percent'),
            'temperature_c': gpu.get('temperature_c'),
            'power_draw_w': gpu.get('power_draw_w'),
            'power_limit_w': gpu.get('power_limit_w'),
        })
    problems = []
    state = probe.get('state', 'unknown')
    if probe.get('reboot_required'):
        problems.append('reboot required: %s' % (probe.get('message') or 'the NVIDIA driver and library versions differ'))
    elif state != 'ok':
        problems.append('GPU probe state %s: %s' % (state, probe.get('message') or 'no details'))
    runtime_registered = None
    if daemon_config is not None:
        runtime_registered = 'nvidia' in ((daemon_config or {}).get('runtimes') or {})
    gpu_access = None
    if docker is not None:
        gpu_access = bool(docker.get('gpu_access') or runtime_registered)
        if gpus and not gpu_access:
            problems.append('Docker cannot give a container a GPU: the nvidia runtime is not registered and no CDI '
                            'spec of kind nvidia.com/gpu is in use: run the nvidia_container_toolkit role')
    elif gpus and runtime_registered is False:
        problems.append('the nvidia runtime is not registered in daemon.json: run the nvidia_container_toolkit role')
    stopped = _model_states(models, expected_models)
    for model in models:
        health = model.get('health') or 'UNKNOWN'
        if model.get('state') == 'running':
            model['status_text'] = health
            if health not in (READY, BUSY):
                problems.append('model %s is %s' % (model.get('name'), health))
        elif model.get('name') in stopped:
            model['status_text'], problem = stopped[model.get('name')]
            if problem:
                problems.append(problem)
    present = set(m.get('name') for m in models)
    for wanted in expected_models or []:
        # Names, or the inventory's model entries (only those to be started count).
        if isinstance(wanted, dict):
            if (wanted.get('state') or 'started') != 'started':
                continue
            wanted = wanted.get('name')
        name = wanted
        if name not in present:
            problems.append('model %s is in the inventory but not deployed' % name)
    return {
        'host': host,
        'probe_state': state,
        'driver_version': probe.get('driver_version'),
        'cuda_version': probe.get('cuda_version'),
        'runtime_registered': runtime_registered,
        'gpu_access': gpu_access,
        'docker_version': (docker or {}).get('server_version'),
        'gpu_request_method': ('cdi' if (docker or {}).get('cdi_enabled') and (docker or {}).get('nvidia_cdi_devices')
                               else ('nvidia runtime' if runtime_registered or 'nvidia' in ((docker or {}).get('runtimes') or [])
                                     else None)),
        'data_root': (docker or {}).get('data_root'),
        'data_root_free_mib': (docker or {}).get('data_root_free_mib'),
        'reboot_required': bool(probe.get('reboot_required')),
        'gpus': gpus,
        'models': models,
        'other_gpu_processes': others,
        'problems': problems,
    }


def _pct(used, total):
    if not total or used is None:
        return 0.0
    return max(0.0, min(100.0, 100.0 * used / total))


def _uptime(seconds):
    if seconds is None:
        return '-'
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return '%dd%02dh' % (days, hours)
    if hours:
        return '%dh%02dm' % (hours, minutes)
    if minutes:
        return '%dm%02ds' % (minutes, secs)
    return '%ds' % secs


def _short_digest(image):
    if not image:
        return '-'
    if '@sha256:' in image:
        return 'sha256:' + image.split('@sha256:', 1)[1][:12]
    if image.startswith('sha256:'):
        return image[:19]
    return image


def _num(value, unit, fmt='%d'):
    return '-' if value is None else (fmt % value) + unit


def _gpu_rows(status):
    for gpu in status['gpus']:
        yield [
            status['host'], str(gpu['index']), gpu['name'] or '-',
            '%s / %s / %s' % tuple('-' if v is None else str(v) for v in
                                   (gpu['memory_used_mib'], gpu['memory_free_mib'], gpu['memory_total_mib'])),
            _num(gpu.get('utilization_gpu_percent'), ' %'), _num(gpu.get('temperature_c'), ' C'),
            '%s / %s' % (_num(gpu.get('power_draw_w'), ' W', '%.0f'), _num(gpu.get('power_limit_w'), ' W', '%.0f')),
            status['driver_version'] or '-',
        ]
    if not status['gpus']:
        yield [status['host'], '-', 'no GPU (%s)' % status['probe_state'], '-', '-', '-', '-',
               status['driver_version'] or '-']


def gpu_memory_text(model):
    """``'4616 MiB on GPU 0'`` for a model's GPU memory as cog_models_info maps it, ``'-'`` when it holds none."""
    entries = model.get('gpu_memory') or []
    if not entries:
        return '-'
    return ', '.join('%d MiB on GPU %s' % (e.get('used_mib') or 0, e.get('gpu_index')) for e in entries)


def _model_rows(status):
    for model in status['models']:
        yield [
            status['host'], model.get('name') or '-',
            model.get('status_text') or model.get('health') or model.get('state') or '-',
            str(model.get('port') or '-'), gpu_memory_text(model),
            _short_digest(model.get('image_digest') or model.get('image')),
            _uptime(model.get('uptime_s')),
        ]


def _other_rows(status):
    for proc in status.get('other_gpu_processes') or []:
        where = ('container %s, not managed by homelab.gpu' % proc['container_id'][:12]
                 if proc.get('container_id') else 'not in a container')
        yield [status['host'], str(proc.get('gpu_index')), str(proc.get('pid')), proc.get('name') or '-',
               '%d MiB' % (proc.get('used_mib') or 0), where]


def _host_rows(status):
    free = status.get('data_root_free_mib')
    yield [status['host'], '%s / %s' % (status['driver_version'] or '-', status['cuda_version'] or '-'),
           status.get('docker_version') or '-', status.get('gpu_request_method') or '-',
           ('%s: %.1f GiB free' % (status.get('data_root'), free / 1024.0)) if free is not None else '-']


GPU_HEADER = ['host', 'gpu', 'name', 'memory used / free / total MiB', 'util', 'temp', 'power draw / limit', 'driver']
MODEL_HEADER = ['host', 'model', 'health', 'port', 'GPU memory', 'image', 'uptime']
OTHER_HEADER = ['host', 'gpu', 'pid', 'process', 'GPU memory', 'where']
HOST_HEADER = ['host', 'driver / CUDA', 'docker', 'GPU access', 'disk (Docker data root)']


def _table(header, rows):
    rows = [header] + list(rows)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]

    def line(row):
        return '  '.join(c.ljust(w) for c, w in zip(row, widths)).rstrip()

    out = [line(rows[0]), '  '.join('-' * w for w in widths)]
    out.extend(line(r) for r in rows[1:])
    return out


def render_text(statuses):
    """A plain-text table for the end of a playbook run."""
    out = ['Hosts']
    out.extend(_table(HOST_HEADER, [r for s in statuses for r in _host_rows(s)]))
    out.append('')
    out.append('GPUs')
    out.extend(_table(GPU_HEADER, [r for s in statuses for r in _gpu_rows(s)]))
    model_rows = [r for s in statuses for r in _model_rows(s)]
    out.append('')
    out.append('Models')
    out.extend(_table(MODEL_HEADER, model_rows) if model_rows else ['(no managed models)'])
    other_rows = [r for s in statuses for r in _other_rows(s)]
    if other_rows:
        out.append('')
        out.append('GPU processes of no managed model')
        out.extend(_table(OTHER_HEADER, other_rows))
    problems = [(s['host'], p) for s in statuses for p in s['problems']]
    out.append('')
    out.append('Problems')
    out.extend('%s: %s' % hp for hp in problems) if problems else out.append('none')
    return '\n'.join(out) + '\n'


def _md_table(header, rows):
    out = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    out.extend('| ' + ' | '.join(c.replace('|', '\\|') for c in r) + ' |' for r in rows)
    return out


def render_markdown(statuses, generated_at=''):
    out = ['# GPU fleet status', '']
    if generated_at:
        out.extend(['Generated %s.' % generated_at, ''])
    out.extend(['## Hosts', ''])
    out.extend(_md_table(HOST_HEADER, [r for s in statuses for r in _host_rows(s)]))
    out.extend(['', '## GPUs', ''])
    out.extend(_md_table(GPU_HEADER, [r for s in statuses for r in _gpu_rows(s)]))
    out.extend(['', '## Models', ''])
    model_rows = [r for s in statuses for r in _model_rows(s)]
    out.extend(_md_table(MODEL_HEADER, model_rows) if model_rows else ['No managed models.'])
    other_rows = [r for s in statuses for r in _other_rows(s)]
    if other_rows:
        out.extend(['', '## GPU processes of no managed model', ''])
        out.extend(_md_table(OTHER_HEADER, other_rows))
    out.extend(['', '## Problems', ''])
    problems = ['- **%s**: %s' % (s['host'], p) for s in statuses for p in s['problems']]
    out.extend(problems or ['None.'])
    return '\n'.join(out) + '\n'


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2330;background:#f6f7f9}
h1{font-size:1.5rem;margin:0 0 .25rem}
.meta{color:#5b6475;margin-bottom:1.5rem}
.host{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:1rem 1.25rem;margin-bottom:1rem}
.host h2{font-size:1.15rem;margin:0 0 .5rem}
.driver{color:#5b6475;font-weight:normal;font-size:.9rem}
.gpu{margin:.5rem 0 .9rem}
.gpu-name{display:flex;justify-content:space-between;font-size:.92rem}
.bar{height:14px;background:#e6e9ef;border-radius:7px;overflow:hidden;margin-top:.25rem}
.fill{height:100%;background:#3b82f6}
.fill.warn{background:#f59e0b}.fill.full{background:#dc2626}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #eceff4}
.READY{color:#15803d;font-weight:600}.bad{color:#b91c1c;font-weight:600}
.problems li{color:#b91c1c}
.ok{color:#15803d}
.stopped{color:#5b6475}
.sensors{color:#5b6475;font-size:.8rem;margin-top:.2rem}
h3{font-size:.95rem;margin:.9rem 0 .3rem}
"""


def render_html(statuses, generated_at=''):
    """A self-contained page (no external CSS, fonts or scripts) with a memory bar per GPU."""
    e = html.escape
    parts = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             '<title>GPU fleet status</title><style>%s</style></head><body>' % _CSS,
             '<h1>GPU fleet status</h1>']
    total_problems = sum(len(s['problems']) for s in statuses)
    parts.append('<div class="meta">%d host(s), %d GPU(s), %d model(s), %s%s</div>' % (
        len(statuses), sum(len(s['gpus']) for s in statuses), sum(len(s['models']) for s in statuses),
        ('<span class="bad">%d problem(s)</span>' % total_problems) if total_problems else '<span class="ok">no problems</span>',
        (' &middot; generated %s' % e(generated_at)) if generated_at else ''))
    for status in statuses:
        host_row = next(_host_rows(status))
        parts.append('<section class="host" data-host="%s"><h2>%s <span class="driver">driver %s, CUDA %s</span></h2>' % (
            e(status['host']), e(status['host']), e(status['driver_version'] or '-'), e(status['cuda_version'] or '-')))
        parts.append('<div class="meta">Docker %s &middot; GPU access: %s &middot; %s</div>' % (
            e(host_row[2]), e(host_row[3]), e(host_row[4])))
        if not status['gpus']:
            parts.append('<p>No GPU (%s).</p>' % e(status['probe_state']))
        for gpu in status['gpus']:
            pct = _pct(gpu['memory_used_mib'], gpu['memory_total_mib'])
            cls = 'full' if pct >= 90 else ('warn' if pct >= 70 else '')
            parts.append(
                '<div class="gpu" data-gpu="%s"><div class="gpu-name"><span>GPU %s &middot; %s</span>'
                '<span>%s MiB used &middot; %s MiB free &middot; %s MiB total</span></div>'
                '<div class="bar" role="meter" aria-valuemin="0" aria-valuemax="%s" aria-valuenow="%s" '
                'title="%.0f%% used"><div class="fill %s" style="width:%.1f%%"></div></div>'
                '<div class="sensors">utilisation %s &middot; %s &middot; power %s of %s</div></div>' % (
                    e(str(gpu['uuid'] or gpu['index'])), e(str(gpu['index'])), e(gpu['name'] or '-'),
                    gpu['memory_used_mib'], gpu['memory_free_mib'], gpu['memory_total_mib'],
                    gpu['memory_total_mib'] or 0, gpu['memory_used_mib'] or 0, pct, cls, pct,
                    e(_num(gpu.get('utilization_gpu_percent'), ' %')), e(_num(gpu.get('temperature_c'), ' \u00b0C')),
                    e(_num(gpu.get('power_draw_w'), ' W', '%.0f')), e(_num(gpu.get('power_limit_w'), ' W', '%.0f'))))
        if status['models']:
            parts.append('<table><thead><tr>%s</tr></thead><tbody>' % ''.join('<th>%s</th>' % h for h in MODEL_HEADER[1:]))
            for row in _model_rows(status):
                health = row[2]
                cls = 'READY' if health in (READY, BUSY) else ('stopped' if health.startswith('stopped (') else 'bad')
                parts.append('<tr><td>%s</td><td class="%s">%s</td><td>%s</td><td>%s</td><td><code>%s</code></td>'
                             '<td>%s</td></tr>' % (e(row[1]), cls, e(health), e(row[3]), e(row[4]), e(row[5]),
                                                   e(row[6])))
            parts.append('</tbody></table>')
        else:
            parts.append('<p>No managed models.</p>')
        others = list(_other_rows(status))
        if others:
            parts.append('<h3>GPU processes of no managed model</h3><table class="others"><thead><tr>%s</tr></thead>'
                         '<tbody>%s</tbody></table>' % (
                             ''.join('<th>%s</th>' % h for h in OTHER_HEADER[1:]),
                             ''.join('<tr>%s</tr>' % ''.join('<td>%s</td>' % e(c) for c in r[1:]) for r in others)))
        if status['problems']:
            parts.append('<ul class="problems">%s</ul>' % ''.join('<li>%s</li>' % e(p) for p in status['problems']))
        parts.append('</section>')
    parts.append('</body></html>')
    return '\n'.join(parts) + '\n'
