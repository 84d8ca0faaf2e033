"""Fleet report: status records from real probe output, and the three renderings."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ansible_collections.homelab.gpu.plugins.module_utils import _nvidia_smi, _report

FIXTURES = Path(__file__).resolve().parents[2] / 'fixtures' / 'nvidia-smi'


def probe(name, rc=0):
    text = (FIXTURES / name).read_text()
    return _nvidia_smi.classify(rc, text, '')


RUNNING_READY = {'name': 'llama_tiny', 'state': 'running', 'health': 'READY', 'port': 5000,
                 'image_digest': 'r8.im/meta/llama-2-7b-chat@sha256:8e6975e5ed6174911a6ff3d60540dfd4844201974602551e10e9e87ab143d81e',
                 'uptime_s': 3725}
RUNNING_FAILED = {'name': 'sdxl', 'state': 'running', 'health': 'SETUP_FAILED', 'port': 5001,
                  'image': 'r8.im/stability-ai/sdxl:latest', 'uptime_s': 42}
STOPPED = {'name': 'whisper', 'state': 'exited', 'health': None, 'port': 5002}
STOPPED_UNWANTED = {'name': 'flux', 'state': 'exited', 'health': None, 'port': 5003}
RUNTIME = {'runtimes': {'nvidia': {'path': '/usr/bin/nvidia-container-runtime'}}}


@pytest.mark.parametrize('fixture, rc, daemon, models, gpus, problems', [
    ('h200x2-580.159.04-busy.xml', 0, RUNTIME, [RUNNING_READY], 2, []),
    ('h100x1-580.159.04-idle.xml', 0, {}, [], 1,
     ['the nvidia runtime is not registered in daemon.json: run the nvidia_container_toolkit role']),
    ('h100x1-580.159.04-idle.xml', 0, None, [], 1, []),
    ('handmade-rtx3050-8gb-consumer.xml', 0, RUNTIME, [RUNNING_READY, RUNNING_FAILED, STOPPED, STOPPED_UNWANTED], 1,
     ['model sdxl is SETUP_FAILED', 'model whisper is not running (exited)', 'model flux is not running (exited)']),
    ('handmade-driver-library-mismatch.stdout.txt', 18, RUNTIME, [], 0,
     ['reboot required: nvidia-smi: Failed to initialize NVML: Driver/library version mismatch']),
])
def test_host_status(fixture, rc, daemon, models, gpus, problems):
    status = _report.host_status('gpubox', probe(fixture, rc), daemon, models)
    assert len(status['gpus']) == gpus
    # Problems are compared by prefix: the probe's advice text follows the first sentence.
    assert len(status['problems']) == len(problems), status['problems']
    for got, want in zip(status['problems'], problems):
        assert got.startswith(want), (got, want)
    assert status['reboot_required'] == fixture.startswith('handmade-driver-library')


def test_memory_numbers_come_from_the_probe():
    status = _report.host_status('h200', probe('h200x2-580.159.04-busy.xml'))
    raw = probe('h200x2-580.159.04-busy.xml')['gpus']
    for gpu, want in zip(status['gpus'], raw):
        assert (gpu['memory_used_mib'], gpu['memory_free_mib'], gpu['memory_total_mib']) == (
            want['memory_used_mib'], want['memory_free_mib'], want['memory_total_mib'])
        assert gpu['memory_used_mib'] > 0


@pytest.mark.parametrize('image, text', [
    (None, '-'), ('r8.im/x@sha256:' + 'ab' * 32, 'sha256:' + 'ab' * 6), ('sha256:' + 'cd' * 32, 'sha256:' + 'cd' * 6),
    ('r8.im/x:latest', 'r8.im/x:latest'),
])
def test_short_digest(image, text):
    assert _report._short_digest(image) == text  # pylint: disable=protected-access


@pytest.mark.parametrize('seconds, text', [(None, '-'), (5, '5s'), (65, '1m05s'), (3725, '1h02m'), (90061, '1d01h')])
def test_uptime(seconds, text):
    assert _report._uptime(seconds) == text  # pylint: disable=protected-access


GPU_MEMORY = [{'gpu_index': 0, 'gpu_uuid': 'GPU-5a0e2c1d-8b7f-4e3a-9c61-2f4d7b8e9a10', 'used_mib': 4616,
               'pids': [5638]}]
MODELS_INFO = {
    'models': [dict(RUNNING_READY, gpu_memory=GPU_MEMORY, gpu_memory_mib=4616), RUNNING_FAILED],
    'other_gpu_processes': [{'gpu_index': 0, 'gpu_uuid': 'GPU-5a0e2c1d-8b7f-4e3a-9c61-2f4d7b8e9a10', 'pid': 2211,
                             'name': '/usr/lib/xorg/Xorg', 'used_mib': 120, 'container_id': None}],
    'docker': {'server_version': '26.1.5', 'data_root': '/var/lib/docker', 'data_root_free_mib': 412300,
               'cdi_enabled': True, 'cdi_spec_dirs': ['/etc/cdi'], 'nvidia_cdi_devices': ['0', 'all'],
               'nvidia_cdi_specs': ['/etc/cdi/nvidia.yaml'], 'runtimes': ['runc'], 'gpu_access': True},
}


# Two GPUs under load, as nvidia-smi reported them on a real machine (see the fixtures' README).
SENSORS_FIXTURE = 'h200x2-580.159.04-busy.xml'
DISK = '/var/lib/docker: %.1f GiB free' % (MODELS_INFO['docker']['data_root_free_mib'] / 1024.0)


def _statuses():
    return [
        _report.host_status('gpubox', probe('handmade-rtx3050-8gb-consumer.xml'), models_info=MODELS_INFO),
        _report.host_status('cpubox', {'state': 'not_installed', 'message': 'nvidia-smi is not installed.'}, None, []),
        _report.host_status('h200box', probe(SENSORS_FIXTURE), RUNTIME,
                            models_info=dict(MODELS_INFO, models=[], other_gpu_processes=[])),
    ]


def _sensors(fixture=SENSORS_FIXTURE):
    """Per GPU of a fixture, read back by the probe: its index, UUID, and utilisation, temperature, power draw and
    limit as text (whole numbers, as the report shows them)."""
    gpus = probe(fixture)['gpus']
    assert len(gpus) > 1 and all(g['temperature_c'] is not None and g['power_draw_w'] is not None for g in gpus)
    return [{'index': g['index'], 'uuid': g['uuid'], 'name': g['name'], 'util': '%d %%' % g['utilization_gpu_percent'],
             'temp': '%d' % g['temperature_c'], 'draw': '%.0f W' % g['power_draw_w'],
             'limit': '%.0f W' % g['power_limit_w'],
             'memory': '%d / %d / %d' % (g['memory_used_mib'], g['memory_free_mib'], g['memory_total_mib'])}
            for g in gpus]


def _html_sensors(gpu, middot='&middot;'):
    """The sensor line of one GPU's card in the HTML page (``middot`` as the browser's DOM writes it)."""
    return re.compile(r'data-gpu="%s">.*?<div class="sensors">utilisation %s %s %s °C %s power %s of %s</div>' % (
        re.escape(gpu['uuid']), re.escape(gpu['util']), middot, gpu['temp'], middot, re.escape(gpu['draw']),
        re.escape(gpu['limit'])))


def test_text_report():
    text = _report.render_text(_statuses())
    gpu = probe('handmade-rtx3050-8gb-consumer.xml')['gpus'][0]
    assert re.search(r'gpubox\s+0\s+%s\s+%d / %d / %d' % (re.escape(gpu['name']), gpu['memory_used_mib'],
                                                          gpu['memory_free_mib'], gpu['memory_total_mib']), text)
    assert re.search(r'llama_tiny\s+READY\s+5000\s+4616 MiB on GPU 0\s+sha256:8e6975e5ed61\s+1h02m', text)
    assert re.search(r'gpubox\s+0\s+2211\s+/usr/lib/xorg/Xorg\s+120 MiB\s+not in a container', text)
    assert re.search(r'gpubox\s+[0-9.]+ / [0-9.]+\s+26.1.5\s+cdi\s+/var/lib/docker: 402.6 GiB free', text)
    assert 'gpubox: model sdxl is SETUP_FAILED' in text
    assert 'cpubox: GPU probe state not_installed' in text


def test_markdown_report():
    md = _report.render_markdown(_statuses(), generated_at='2026-11-27 10:00')
    assert md.startswith('# GPU fleet status\n')
    assert '| gpubox | llama_tiny | READY | 5000 | 4616 MiB on GPU 0 | sha256:8e6975e5ed61 | 1h02m |' in md
    assert '## GPU processes of no managed model' in md
    assert '- **gpubox**: model sdxl is SETUP_FAILED' in md
    # Per GPU: memory, utilisation, temperature, power draw and limit; per host: the free disk under Docker's data
    # root.
    for gpu in _sensors():
        assert '| h200box | %d | %s | %s | %s | %s C | %s / %s | 580.159.04 |' % (
            gpu['index'], gpu['name'], gpu['memory'], gpu['util'], gpu['temp'], gpu['draw'], gpu['limit']) in md
    assert '| h200box | 580.159.04 / 13.0 | 26.1.5 | cdi | %s |' % DISK in md
    assert '| cpubox | - / - | - | - | - |' in md


def test_html_shows_sensors_and_disk():
    page = _report.render_html(_statuses())
    for gpu in _sensors():
        assert _html_sensors(gpu).search(page), gpu
    assert re.search(r'data-host="h200box">.*\n<div class="meta">Docker 26\.1\.5 &middot; GPU access: cdi &middot; '
                     r'%s</div>' % re.escape(DISK), page)


def test_html_escapes_and_bars():
    statuses = _statuses()
    statuses[0]['models'].append({'name': '<script>x</script>', 'state': 'running', 'health': 'READY', 'port': 1})
    page = _report.render_html(statuses)
    assert '<script>x</script>' not in page
    assert '&lt;script&gt;x&lt;/script&gt;' in page
    gpu = statuses[0]['gpus'][0]
    pct = 100.0 * gpu['memory_used_mib'] / gpu['memory_total_mib']
    assert 'style="width:%.1f%%"' % pct in page
    assert 'http://' not in page and 'https://' not in page  # self-contained


def _chromium():
    for name in ('chromium', 'chromium-browser', 'google-chrome'):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_html_renders_in_headless_chromium(tmp_path):
    """Render the page in a real browser and read back the DOM it built."""
    browser = _chromium()
    assert browser, 'chromium is not installed: tests/run.sh installs Debian chromium for this test'
    page = tmp_path / 'status.html'
    page.write_text(_report.render_html(_statuses(), generated_at='now'))
    shot = tmp_path / 'status.png'
    common = [browser, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
              '--disable-background-networking', '--disable-component-update', '--disable-sync',
              '--user-data-dir=%s' % (tmp_path / 'profile')]
    dom = subprocess.run(common + ['--dump-dom', page.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
    gpu = _statuses()[0]['gpus'][0]
    assert 'GPU fleet status' in dom
    assert gpu['name'] in dom
    assert '%d MiB used' % gpu['memory_used_mib'] in dom
    assert 'llama_tiny' in dom and 'SETUP_FAILED' in dom
    assert 'class="fill' in dom
    # What the browser built shows each GPU's sensors and the host's free disk, in the GPU's own card.
    for sensors in _sensors():
        assert _html_sensors(sensors, middot='\u00b7').search(dom), sensors
    assert '26.1.5 \u00b7 GPU access: cdi \u00b7 %s' % DISK in dom
    subprocess.run(common + ['--screenshot=%s' % shot, '--window-size=1000,800', page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 10000  # a real rendering, not a blank page


def test_expected_model_missing():
    status = _report.host_status('gpubox', probe('h100x1-580.159.04-idle.xml'), RUNTIME, [RUNNING_READY],
                                 expected_models=['llama_tiny', 'sdxl'])
    assert status['problems'] == ['model sdxl is in the inventory but not deployed']


def test_expected_models_from_inventory_entries():
    inventory = [{'name': 'llama_tiny'}, {'name': 'sdxl', 'state': 'started'}, {'name': 'old', 'state': 'absent'},
                 {'name': 'paused', 'state': 'stopped'}]
    status = _report.host_status('gpubox', probe('h100x1-580.159.04-idle.xml'), RUNTIME, [RUNNING_READY],
                                 expected_models=inventory)
    assert status['problems'] == ['model sdxl is in the inventory but not deployed']


def test_cdi_only_host_is_not_a_problem():
    """A host whose containers get the GPU through CDI has no nvidia runtime in daemon.json, and needs none."""
    ready_only = dict(MODELS_INFO, models=MODELS_INFO['models'][:1])
    status = _report.host_status('gpubox', probe('h100x1-580.159.04-idle.xml'), {}, models_info=ready_only)
    assert status['problems'] == []
    assert status['gpu_request_method'] == 'cdi'
    no_access = dict(ready_only, docker=dict(MODELS_INFO['docker'], gpu_access=False, cdi_enabled=False))
    status = _report.host_status('gpubox', probe('h100x1-580.159.04-idle.xml'), {}, models_info=no_access)
    assert status['problems'] == ['Docker cannot give a container a GPU: the nvidia runtime is not registered and no '
                                  'CDI spec of kind nvidia.com/gpu is in use: run the nvidia_container_toolkit role']
    # Registered in daemon.json although docker info lists no runtime yet (Docker not restarted): not a problem.
    status = _report.host_status('gpubox', probe('h100x1-580.159.04-idle.xml'), RUNTIME, models_info=no_access)
    assert status['problems'] == []


def test_stopped_on_purpose_is_not_a_problem():
    uuid = 'GPU-5a0e2c1d-8b7f-4e3a-9c61-2f4d7b8e9a10'
    models = [dict(RUNNING_READY, name='sdxl', gpu_uuids=[uuid]),
              dict(STOPPED, name='llama_tiny', gpu_uuids=[uuid]),
              dict(STOPPED, name='whisper', gpu_uuids=[uuid]),
              dict(STOPPED, name='flux', gpu_uuids=['GPU-other']),
              dict(STOPPED, name='retired', gpu_uuids=[uuid])]
    inventory = [{'name': 'sdxl', 'exclusive': True}, {'name': 'llama_tiny'}, {'name': 'whisper', 'state': 'stopped'},
                 {'name': 'flux'}]
    status = _report.host_status('gpubox', probe('h100x1-580.159.04-idle.xml'), RUNTIME, models, inventory)
    texts = dict((m['name'], m['status_text']) for m in status['models'])
    assert texts == {'sdxl': 'READY', 'llama_tiny': 'stopped (as asked: exclusive sdxl)',
                     'whisper': 'stopped (as asked)', 'flux': 'stopped', 'retired': 'stopped (not in the inventory)'}
    # flux shares no GPU with the exclusive model: nobody asked for it to stop.
    assert status['problems'] == ['model flux is not running (exited)']
    text = _report.render_text([status])
    assert re.search(r'llama_tiny\s+stopped \(as asked: exclusive sdxl\)', text)


def test_busy_is_healthy():
    status = _report.host_status('gpubox', probe('h100x1-580.159.04-idle.xml'), RUNTIME,
                                 [dict(RUNNING_READY, health='BUSY')])
    assert status['problems'] == []


def test_gpu_sensors_in_every_rendering():
    status = _report.host_status('h200box', probe(SENSORS_FIXTURE), RUNTIME, [])
    renderings = {'text': _report.render_text([status]), 'markdown': _report.render_markdown([status]),
                  'html': _report.render_html([status])}
    for gpu in _sensors():
        for name in ('text', 'markdown'):
            cells = [gpu['util'], gpu['temp'] + ' C', '%s / %s' % (gpu['draw'], gpu['limit'])]
            row = re.escape(' | '.join(cells)) if name == 'markdown' else r'\s+'.join(re.escape(c) for c in cells)
            assert re.search(r'h200box\s+(\| )?%d\s.*%s' % (gpu['index'], row), renderings[name]), (name, gpu)
        assert _html_sensors(gpu).search(renderings['html']), gpu
