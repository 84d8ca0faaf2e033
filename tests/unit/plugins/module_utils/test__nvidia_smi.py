# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Table-driven tests of _nvidia_smi over every recorded output in tests/unit/fixtures/nvidia-smi/."""

from __future__ import annotations

import pathlib

import pytest

from ansible_collections.homelab.gpu.plugins.module_utils import _nvidia_smi

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / 'fixtures' / 'nvidia-smi'


def fixture(name):
    return (FIXTURES / name).read_text(encoding='utf-8')


def gpu(**values):
    """A GPU entry of the schema: every key present, None unless given."""
    entry = {
        'index': None, 'minor_number': None, 'name': None, 'uuid': None, 'pci_bus_id': None, 'architecture': None,
        'memory_total_mib': None, 'memory_reserved_mib': None, 'memory_used_mib': None, 'memory_free_mib': None,
        'utilization_gpu_percent': None, 'utilization_memory_percent': None, 'temperature_c': None,
        'power_draw_w': None, 'power_limit_w': None, 'fan_speed_percent': None, 'persistence_mode': None,
        'mig_mode': {'current': None, 'pending': None}, 'processes': [],
    }
    assert set(values) <= set(entry), set(values) - set(entry)
    entry.update(values)
    return entry


def hopper(**values):
    """What the H100/H200 machines of the device tool have in common (driver 580.159.04)."""
    base = dict(architecture='Hopper', persistence_mode=True, mig_mode={'current': False, 'pending': False},
                fan_speed_percent=None, power_limit_w=700.0, utilization_gpu_percent=0, utilization_memory_percent=0)
    base.update(values)
    return gpu(**base)


H100_UUID = 'GPU-25262101-abb9-d723-a8dc-5b0651c3887d'
H200_UUID_0 = 'GPU-69ecf20c-aeca-2493-0989-bae1893ddae2'
H200_UUID_1 = 'GPU-f76d8284-bf9f-109a-a4e8-f2c848174ddf'
H100 = dict(name='NVIDIA H100 80GB HBM3', uuid=H100_UUID, pci_bus_id='00000000:00:06.0', minor_number=0, index=0,
            memory_total_mib=81559, memory_reserved_mib=480)
H200_0 = dict(name='NVIDIA H200', uuid=H200_UUID_0, pci_bus_id='00000000:00:06.0', minor_number=0, index=0,
              memory_total_mib=143771, memory_reserved_mib=616)
H200_1 = dict(name='NVIDIA H200', uuid=H200_UUID_1, pci_bus_id='00000000:00:07.0', minor_number=1, index=1,
              memory_total_mib=143771, memory_reserved_mib=616)

# fixture -> (driver_version, cuda_version, [gpus], notices)
PARSE_CASES = {
    'h100x1-580.159.04-idle.xml': ('580.159.04', '13.0', [
        hopper(memory_used_mib=0, memory_free_mib=81079, temperature_c=35, power_draw_w=71.44, **H100),
    ], []),
    'h100x1-580.159.04-busy.xml': ('580.159.04', '13.0', [
        hopper(memory_used_mib=3599, memory_free_mib=77481, temperature_c=36, power_draw_w=119.44,
               processes=[{'pid': 444, 'type': 'C', 'name': 'python3', 'used_memory_mib': 3590}], **H100),
    ], []),
    'h200x2-580.159.04-idle.xml': ('580.159.04', '13.0', [
        hopper(memory_used_mib=0, memory_free_mib=143156, temperature_c=35, power_draw_w=78.69, **H200_0),
        hopper(memory_used_mib=0, memory_free_mib=143156, temperature_c=36, power_draw_w=81.4, **H200_1),
    ], []),
    'h200x2-580.159.04-busy.xml': ('580.159.04', '13.0', [
        hopper(memory_used_mib=3599, memory_free_mib=139558, temperature_c=36, power_draw_w=119.94,
               processes=[{'pid': 593, 'type': 'C', 'name': 'python3', 'used_memory_mib': 3590}], **H200_0),
        hopper(memory_used_mib=1551, memory_free_mib=141606, temperature_c=37, power_draw_w=123.82,
               processes=[{'pid': 593, 'type': 'C', 'name': 'python3', 'used_memory_mib': 1542}], **H200_1),
    ], []),
    'handmade-rtx3050-8gb-consumer.xml': ('550.163.01', '12.4', [
        gpu(index=0, minor_number=0, name='NVIDIA GeForce RTX 3050', uuid='GPU-5a0e2c1d-8b7f-4e3a-9c61-2f4d7b8e9a10',
            pci_bus_id='00000000:01:00.0', architecture='Ampere', memory_total_mib=8192, memory_reserved_mib=236,
            memory_used_mib=1337, memory_free_mib=6619, utilization_gpu_percent=3, utilization_memory_percent=11,
            temperature_c=41, power_draw_w=11.62, power_limit_w=130.0, fan_speed_percent=30, persistence_mode=False,
            # Xorg and gnome-shell (type G) are left out: only compute processes count.
            processes=[{'pid': 20817, 'type': 'C', 'name': '/usr/bin/python3.11', 'used_memory_mib': 1062}]),
    ], []),
    'handmade-inforom-warning.stdout.txt': ('550.163.01', '12.4', [
        gpu(index=0, minor_number=0, name='NVIDIA GeForce RTX 3050', uuid='GPU-5a0e2c1d-8b7f-4e3a-9c61-2f4d7b8e9a10',
            pci_bus_id='00000000:01:00.0', architecture='Ampere', memory_total_mib=8192, memory_reserved_mib=236,
            memory_used_mib=1337, memory_free_mib=6619, utilization_gpu_percent=3, utilization_memory_percent=11,
            temperature_c=41, power_draw_w=11.62, power_limit_w=130.0, fan_speed_percent=30, persistence_mode=False,
            processes=[{'pid': 20817, 'type': 'C', 'name': '/usr/bin/python3.11', 'used_memory_mib': 1062}]),
    ], ['WARNING: infoROM is corrupted at gpu 0000:01:00.0']),
    'handmade-na-fields.xml': ('470.256.02', None, [
        # pci_bus_id N/A: the id attribute of <gpu> stands in; power in the pre-530 <power_readings>.
        gpu(index=0, name='Tesla K80', pci_bus_id='00000000:3B:00.0', memory_total_mib=11441, power_limit_w=149.0,
            processes=[{'pid': 3177, 'type': 'C', 'name': None, 'used_memory_mib': None}]),
    ], []),
    'handmade-a100-mig-enabled.xml': ('570.172.08', '12.8', [
        gpu(index=0, minor_number=0, name='NVIDIA A100-SXM4-40GB', uuid='GPU-0c3c6a44-1f4e-4d0b-a3a9-7e0b3f1b2c55',
            pci_bus_id='00000000:07:00.0', architecture='Ampere', memory_total_mib=40960, memory_reserved_mib=571,
            memory_used_mib=4151, memory_free_mib=36238, temperature_c=44, power_draw_w=89.73, power_limit_w=400.0,
            persistence_mode=True, mig_mode={'current': True, 'pending': False},
            processes=[{'pid': 9021, 'type': 'M+C', 'name': 'python', 'used_memory_mib': 4074}]),
    ], []),
    'handmade-minor-number-order.xml': ('580.95.05', '13.0', [
        gpu(index=0, minor_number=1, name='NVIDIA GeForce RTX 3090', uuid='GPU-aaaaaaaa-1111-2222-3333-444444444444',
            pci_bus_id='00000000:01:00.0', architecture='Ampere', memory_total_mib=24576, memory_used_mib=1,
            memory_free_mib=24248, persistence_mode=True),
        gpu(index=1, minor_number=0, name='NVIDIA GeForce RTX 3060', uuid='GPU-bbbbbbbb-1111-2222-3333-444444444444',
            pci_bus_id='00000000:02:00.0', architecture='Ampere', memory_total_mib=12288, memory_used_mib=1,
            memory_free_mib=11999, persistence_mode=True),
    ], []),
    'handmade-no-gpu-elements.xml': ('580.95.05', '13.0', [], []),
}


@pytest.mark.parametrize('name', sorted(PARSE_CASES))
def test_parse_xml(name):
    driver, cuda, gpus, notices = PARSE_CASES[name]
    data, got_notices = _nvidia_smi.parse_xml(fixture(name))
    assert data == {'driver_version': driver, 'cuda_version': cuda, 'gpu_count': len(gpus), 'gpus': gpus}
    assert got_notices == notices


@pytest.mark.parametrize('name', sorted(n for n in PARSE_CASES if n.startswith(('h100', 'h200'))))
def test_real_memory_adds_up(name):
    """On the real captures, total = reserved + used + free, give or take nvidia-smi's rounding of each part."""
    data, dummy = _nvidia_smi.parse_xml(fixture(name))
    for entry in data['gpus']:
        parts = entry['memory_reserved_mib'] + entry['memory_used_mib'] + entry['memory_free_mib']
        assert abs(entry['memory_total_mib'] - parts) <= 2


NOT_LOADED_ADVICE = ('The NVIDIA kernel module is not loaded: check "lsmod | grep nvidia", that the module was built for '
                     'the running kernel (DKMS) and is signed if Secure Boot is on; re-run the homelab.gpu.nvidia_driver '
                     'role and reboot.')
NO_DEVICES_ADVICE = ('The NVIDIA driver is loaded but sees no GPU: check that the card is seated and powered and that '
                     '"lspci -d 10de:" lists it.')
ERROR_ADVICE = 'Run "nvidia-smi -q" on the host to see the error.'

# fixture (stdout) -> (rc, stderr, state, reboot_required, gpu_count, message)
CLASSIFY_CASES = {
    'h100x1-580.159.04-idle.xml': (0, '', 'ok', False, 1, '1 GPU, driver 580.159.04, CUDA 13.0'),
    'h100x1-580.159.04-busy.xml': (0, '', 'ok', False, 1, '1 GPU, driver 580.159.04, CUDA 13.0'),
    'h100x1-580.159.04-coglet-model.xml': (0, '', 'ok', False, 1, '1 GPU, driver 580.159.04, CUDA 13.0'),
    'h200x2-580.159.04-idle.xml': (0, '', 'ok', False, 2, '2 GPUs, driver 580.159.04, CUDA 13.0'),
    'h200x2-580.159.04-busy.xml': (0, '', 'ok', False, 2, '2 GPUs, driver 580.159.04, CUDA 13.0'),
    'handmade-rtx3050-8gb-consumer.xml': (0, '', 'ok', False, 1, '1 GPU, driver 550.163.01, CUDA 12.4'),
    'handmade-inforom-warning.stdout.txt': (0, '', 'ok', False, 1, '1 GPU, driver 550.163.01, CUDA 12.4'),
    'handmade-na-fields.xml': (0, '', 'ok', False, 1, '1 GPU, driver 470.256.02, CUDA unknown'),
    'handmade-a100-mig-enabled.xml': (0, '', 'ok', False, 1, '1 GPU, driver 570.172.08, CUDA 12.8'),
    'handmade-minor-number-order.xml': (0, '', 'ok', False, 2, '2 GPUs, driver 580.95.05, CUDA 13.0'),
    'handmade-no-gpu-elements.xml': (0, '', 'no_devices', False, 0, 'nvidia-smi lists no GPU. ' + NO_DEVICES_ADVICE),
    'handmade-truncated.stdout.txt': (
        0, '', 'error', False, 0,
        'the XML of nvidia-smi does not parse: unclosed token: line 34, column 2. ' + ERROR_ADVICE),
    'handmade-driver-library-mismatch.stdout.txt': (
        18, '', 'driver_library_mismatch', True, 0,
        'nvidia-smi: Failed to initialize NVML: Driver/library version mismatch. The loaded NVIDIA kernel module '
        'and the installed driver libraries differ, as after a driver upgrade without a reboot: reboot the host.'),
    'handmade-driver-not-loaded.stdout.txt': (
        9, '', 'driver_not_loaded', False, 0,
        "nvidia-smi: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that "
        'the latest NVIDIA driver is installed and running. ' + NOT_LOADED_ADVICE),
    'handmade-nvml-driver-not-loaded.stdout.txt': (
        9, '', 'driver_not_loaded', False, 0,
        'nvidia-smi: Failed to initialize NVML: Driver Not Loaded. ' + NOT_LOADED_ADVICE),
    'real-no-devices.stdout.txt': (
        6, '', 'no_devices', False, 0, 'nvidia-smi: No devices were found. ' + NO_DEVICES_ADVICE),
    'real-bogus-arg.stdout.txt': (
        255, '', 'error', False, 0,
        "nvidia-smi -q -x failed (rc=255): ERROR: Option --bogus-arg is not recognized. Please run 'nvidia-smi -h'. "
        'Run "nvidia-smi -q" on the host to see the error.'),
}


@pytest.mark.parametrize('name', sorted(CLASSIFY_CASES))
def test_classify_fixture(name):
    rc, stderr, state, reboot, count, message = CLASSIFY_CASES[name]
    result = _nvidia_smi.classify(rc, fixture(name), stderr)
    assert result['state'] == state
    assert result['reboot_required'] is reboot
    assert result['gpu_count'] == count
    assert len(result['gpus']) == count
    assert result['message'] == message
    if state != 'ok':
        assert result['gpus'] == []
        if not name.endswith('.xml'):
            assert result['driver_version'] is None


@pytest.mark.parametrize('rc, stdout, stderr, timed_out, state, reboot, message', [
    # the mismatch text on stderr (some wrappers redirect it) and without the NVML version line (older drivers)
    (18, '', 'Failed to initialize NVML: Driver/library version mismatch\n', False, 'driver_library_mismatch', True,
     'nvidia-smi: Failed to initialize NVML: Driver/library version mismatch. The loaded NVIDIA kernel module and '
     'the installed driver libraries differ, as after a driver upgrade without a reboot: reboot the host.'),
    # rc 9 (NVIDIA driver not loaded) with no recognised text
    (9, '', '', False, 'driver_not_loaded', False,
     'nvidia-smi exited with rc=9 and no output. The NVIDIA kernel module is not loaded: check "lsmod | grep nvidia", that the module was built '
     'for the running kernel (DKMS) and is signed if Secure Boot is on; re-run the homelab.gpu.nvidia_driver role '
     'and reboot.'),
    (124, '', '', True, 'error', False,
     'nvidia-smi timed out after 7 s (a hung GPU or driver?). Run "nvidia-smi -q" on the host to see the error.'),
    (137, '', '', True, 'error', False,
     'nvidia-smi timed out after 7 s (a hung GPU or driver?). Run "nvidia-smi -q" on the host to see the error.'),
    (15, 'Unable to determine the device handle for GPU0000:01:00.0: Unknown Error\n', '', False, 'error', False,
     'nvidia-smi -q -x failed (rc=15): Unable to determine the device handle for GPU0000:01:00.0: Unknown Error. '
     'Run "nvidia-smi -q" on the host to see the error.'),
    (1, '', '', False, 'error', False,
     'nvidia-smi -q -x failed (rc=1): (no output). Run "nvidia-smi -q" on the host to see the error.'),
    (0, '', '', False, 'error', False, 'no XML in the output of nvidia-smi. Run "nvidia-smi -q" on the host'
     ' to see the error.'),
    (0, '<?xml version="1.0" ?><other/>', '', False, 'error', False,
     'the XML of nvidia-smi has root element <other>, not <nvidia_smi_log>. Run "nvidia-smi -q" on the host to see'
     ' the error.'),
])
def test_classify_table(rc, stdout, stderr, timed_out, state, reboot, message):
    result = _nvidia_smi.classify(rc, stdout, stderr, timed_out=timed_out, timeout=7)
    assert result == {'state': state, 'reboot_required': reboot, 'message': message, 'notices': [],
                      'driver_version': None, 'cuda_version': None, 'gpu_count': 0, 'gpus': []}


@pytest.mark.parametrize('function, text, expected', [
    (_nvidia_smi.parse_mib, '81559 MiB', 81559),
    (_nvidia_smi.parse_mib, '2 GiB', 2048),
    (_nvidia_smi.parse_mib, '512 KiB', 0),
    (_nvidia_smi.parse_mib, '1536 KiB', 2),
    (_nvidia_smi.parse_mib, '12 MB', None),
    (_nvidia_smi.parse_mib, 'N/A', None),
    (_nvidia_smi.parse_mib, None, None),
    (_nvidia_smi.parse_percent, '30 %', 30),
    (_nvidia_smi.parse_percent, '[Not Supported]', None),
    (_nvidia_smi.parse_celsius, '36 C', 36),
    (_nvidia_smi.parse_celsius, '-8 C', -8),
    (_nvidia_smi.parse_celsius, '36 F', None),
    (_nvidia_smi.parse_watts, '119.94 W', 119.94),
    (_nvidia_smi.parse_watts, '700.00 W', 700.0),
    (_nvidia_smi.parse_watts, 'Unknown Error', None),
    (_nvidia_smi.parse_enabled, 'Enabled', True),
    (_nvidia_smi.parse_enabled, 'Disabled', False),
    (_nvidia_smi.parse_enabled, 'N/A', None),
    (_nvidia_smi.parse_enabled, 'Unknown', None),
])
def test_value_parsers(function, text, expected):
    got = function(text)
    assert got == expected
    assert type(got) is type(expected)


# Number fields that no real nvidia-smi prints, as a broken or hostile one could.
HOSTILE_NUMBERS = [
    # More digits than a float holds (309 and up) once became inf, and int(round(inf)) raised OverflowError.
    ('309 digits', _nvidia_smi.parse_number, '9' * 309, None),
    ('5000 digits', _nvidia_smi.parse_number, '1' * 5000 + ' MiB', None),
    ('400 digits and a fraction', _nvidia_smi.parse_number, '1' * 400 + '.5 W', None),
    ('MiB of 309 digits', _nvidia_smi.parse_mib, '9' * 309 + ' MiB', None),
    ('percent of 400 digits', _nvidia_smi.parse_percent, '9' * 400 + ' %', None),
    ('celsius of 400 digits', _nvidia_smi.parse_celsius, '-' + '9' * 400 + ' C', None),
    ('watts of 400 digits', _nvidia_smi.parse_watts, '9' * 400 + ' W', None),
    # Finite, but not once a factor is applied: 1e307 GiB (a fraction, so a float) is inf MiB.
    ('1e307 GiB as MiB', _nvidia_smi.parse_mib, '1' + '0' * 307 + '.5 GiB', None),
    ('1e300 MiB', _nvidia_smi.parse_mib, '1' + '0' * 300 + ' MiB', int(1e300)),
    ('1e300 GiB', _nvidia_smi.parse_mib, '1' + '0' * 300 + ' GiB', int(1e300) * 1024),
    # Words that float() reads as numbers; the pattern never lets them in.
    ('inf', _nvidia_smi.parse_number, 'inf', None),
    ('nan', _nvidia_smi.parse_number, 'nan', None),
    ('Infinity MiB', _nvidia_smi.parse_number, 'Infinity MiB', None),
    ('NaN percent', _nvidia_smi.parse_percent, 'NaN %', None),
    ('-inf celsius', _nvidia_smi.parse_celsius, '-inf C', None),
    # Only ASCII digits: int() reads '١٢' (Arabic-Indic) as 12, and refuses '²', which str.isdigit() accepts.
    ('Arabic-Indic digits', _nvidia_smi.parse_number, '\u0661\u0662 MiB', None),
    ('superscript two', _nvidia_smi.parse_percent, '\u00b2 %', None),
]


@pytest.mark.parametrize('function, text, expected', [c[1:] for c in HOSTILE_NUMBERS],
                         ids=[c[0] for c in HOSTILE_NUMBERS])
def test_value_parsers_on_hostile_numbers(function, text, expected):
    got = function(text)
    assert got == expected
    assert type(got) is type(expected)


def test_every_fixture_is_tested():
    """Each file of the fixture folder (but its README) is in a table above, and each table entry exists."""
    on_disk = {p.name for p in FIXTURES.iterdir() if p.name != 'README.md'}
    assert on_disk == set(PARSE_CASES) | set(CLASSIFY_CASES)
    assert set(PARSE_CASES) <= set(CLASSIFY_CASES)


def test_every_fixture_is_in_the_readme():
    readme = fixture('README.md')
    missing = [p.name for p in FIXTURES.iterdir() if p.name != 'README.md' and '`%s`' % p.name not in readme]
    assert missing == []
