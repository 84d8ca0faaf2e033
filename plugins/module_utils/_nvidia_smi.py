# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse ``nvidia-smi -q -x`` and classify its failures. Private to this collection: no API promise.

Plain functions that take text and return data; no AnsibleModule in here, so that the unit
tests can feed them recorded output (tests/unit/fixtures/nvidia-smi/).
"""

from __future__ import annotations

import math
import re

# nvidia-smi's XML is produced by a local, root-installed binary on the managed host and is
# trusted input; defusedxml is not available on the targets, so the standard library parser
# is used. ElementTree does not fetch the external DTD that the DOCTYPE names.
from xml.etree import ElementTree

from ansible_collections.homelab.gpu.plugins.module_utils._common import CommandResult, command_error, first_nonblank_line

STATE_OK = 'ok'
STATE_NOT_INSTALLED = 'not_installed'
STATE_NO_DEVICES = 'no_devices'
STATE_DRIVER_NOT_LOADED = 'driver_not_loaded'
STATE_DRIVER_LIBRARY_MISMATCH = 'driver_library_mismatch'
STATE_ERROR = 'error'

STATES = (
    STATE_OK,
    STATE_NOT_INSTALLED,
    STATE_NO_DEVICES,
    STATE_DRIVER_NOT_LOADED,
    STATE_DRIVER_LIBRARY_MISMATCH,
    STATE_ERROR,
)

# The texts nvidia-smi prints (on stdout, not stderr) when NVML cannot start. Matched in lower case.
_MISMATCH_TEXTS = ('driver/library version mismatch',)
_DRIVER_NOT_LOADED_TEXTS = (
    "couldn't communicate with the nvidia driver",
    'driver not loaded',
)
_NO_DEVICES_TEXTS = ('no devices were found',)

# What the module tells the user to do, by state (used in `message`, and in the failure with require=true).
ADVICE = {
    STATE_NOT_INSTALLED: 'Install the NVIDIA driver (for example with the homelab.gpu.nvidia_driver role), '
                         'or point nvidia_smi_path at the binary.',
    STATE_NO_DEVICES: 'The NVIDIA driver is loaded but sees no GPU: check that the card is seated and powered '
                      'and that "lspci -d 10de:" lists it.',
    STATE_DRIVER_NOT_LOADED: 'The NVIDIA kernel module is not loaded: check "lsmod | grep nvidia", that the module '
                             'was built for the running kernel (DKMS) and is signed if Secure Boot is on; '
                             're-run the homelab.gpu.nvidia_driver role and reboot.',
    STATE_DRIVER_LIBRARY_MISMATCH: 'The loaded NVIDIA kernel module and the installed driver libraries differ, '
                                   'as after a driver upgrade without a reboot: reboot the host.',
    STATE_ERROR: 'Run "nvidia-smi -q" on the host to see the error.',
}

# Values nvidia-smi writes where it has none; they all come back as None.
_NOT_AVAILABLE = ('', 'n/a', '[n/a]', 'none', 'not supported', '[not supported]', 'unknown error',
                  '[unknown error]', 'requested functionality has been deprecated', 'insufficient permissions',
                  '[insufficient permissions]', 'gpu requires reset', '[gpu requires reset]', 'unknown', 'not available')

_NUMBER_RE = re.compile(r'\s*(-?[0-9]+(?:\.[0-9]+)?)\s*([A-Za-z%]*)\s*')
# Characters that XML 1.0 does not allow, even escaped. nvidia-smi copies a process name as the kernel has it,
# and a name can hold any byte but NUL.
_XML_ILLEGAL_RE = re.compile('[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]')
_MIB_FACTOR = {'': 1, 'mib': 1, 'kib': 1.0 / 1024, 'gib': 1024}


def decode(data):
    """Text of what nvidia-smi printed, whatever its bytes: each byte that is not UTF-8 becomes U+FFFD.

    Takes bytes, or text from a reader that kept undecodable bytes as surrogates (Python's surrogateescape, as
    AnsibleModule.run_command does by default), so that one byte of another encoding in a process name cannot
    stop the XML parser.
    """
    if data is None:
        return ''
    if isinstance(data, bytes):
        return data.decode('utf-8', 'replace')
    if not isinstance(data, str):
        data = str(data)
    try:
        data.encode('utf-8')
        return data
    except UnicodeEncodeError:
        pass
    try:
        raw = data.encode('utf-8', 'surrogateescape')
    except UnicodeEncodeError:
        # A lone surrogate that surrogateescape did not make, so it stands for no byte.
        raw = data.encode('utf-8', 'replace')
    return raw.decode('utf-8', 'replace')


def empty_result():
    """The keys that every answer carries, whatever the state."""
    return {
        'driver_version': None,
        'cuda_version': None,
        'gpu_count': 0,
        'gpus': [],
    }


def _text(elem, path):
    """The stripped text at ``path`` below ``elem``, or None when missing or not available."""
    if elem is None:
        return None
    node = elem.find(path)
    if node is None or node.text is None:
        return None
    value = node.text.strip()
    if value.lower() in _NOT_AVAILABLE:
        return None
    return value


def _first_text(elem, paths):
    for path in paths:
        value = _text(elem, path)
        if value is not None:
            return value
    return None


def parse_number(value, units=None):
    """Turn ``"81559 MiB"``, ``"35 C"``, ``"69.92 W"``, ``"0 %"`` into a number (int when whole).

    ``units`` is the set of unit spellings accepted (lower case); anything else, every N/A-like text, and a
    number too large for a float (a run of 309 digits or more, which float() turns into infinity) give None.
    """
    if value is None:
        return None
    match = _NUMBER_RE.fullmatch(value)
    if not match:
        return None
    unit = match.group(2).lower()
    if units is not None and unit not in units:
        return None
    number = float(match.group(1))
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() and '.' not in match.group(1) else number


def _whole(number):
    """``number`` rounded to an int; None for None, and for a float that is not finite (a huge amount times a
    factor). An int is whole already (and math.isfinite would overflow on one of more than 308 digits)."""
    if number is None or isinstance(number, int):
        return number
    return int(round(number)) if math.isfinite(number) else None


def parse_mib(value):
    """A memory amount in whole MiB (nvidia-smi writes "1234 MiB")."""
    number = parse_number(value, units=_MIB_FACTOR)
    if number is None:
        return None
    unit = _NUMBER_RE.fullmatch(value).group(2).lower()
    return _whole(number * _MIB_FACTOR[unit])


def parse_percent(value):
    return _whole(parse_number(value, units=('%', '')))


def parse_celsius(value):
    return _whole(parse_number(value, units=('c', '')))


def parse_watts(value):
    number = parse_number(value, units=('w', ''))
    return None if number is None else round(float(number), 2)


def parse_enabled(value):
    """``Enabled`` / ``Disabled`` as a boolean, None for N/A."""
    if value is None:
        return None
    lowered = value.lower()
    if lowered == 'enabled':
        return True
    if lowered == 'disabled':
        return False
    return None


def _int_or_none(value):
    # ASCII digits only: int() also reads other scripts' digits ('١٢').
    if value is None or not re.fullmatch('-?[0-9]{1,18}', value):
        return None
    return int(value)


def _parse_process(proc):
    used = _text(proc, 'used_memory')
    return {
        'pid': _int_or_none(_text(proc, 'pid')),
        'type': _text(proc, 'type'),
        'name': _text(proc, 'process_name'),
        'used_memory_mib': parse_mib(used),
    }


def _is_compute(process):
    # C (compute), C+G, M+C (MPS compute); G alone is a graphics client such as Xorg.
    return process['type'] is None or 'C' in process['type'].upper().split('+')


def _parse_gpu(index, gpu):
    power = gpu.find('gpu_power_readings')
    if power is None:
        power = gpu.find('power_readings')  # drivers before 530
    processes = [_parse_process(p) for p in gpu.findall('processes/process_info')]
    return {
        # nvidia-smi numbers GPUs (--query-gpu=index, -i N) in the order of this XML, which is
        # PCI bus order; minor_number (/dev/nvidiaN) can differ from it, so it is kept apart.
        'index': index,
        'minor_number': _int_or_none(_text(gpu, 'minor_number')),
        'name': _text(gpu, 'product_name'),
        'uuid': _text(gpu, 'uuid'),
        'pci_bus_id': _text(gpu, 'pci/pci_bus_id') or gpu.get('id'),
        'architecture': _text(gpu, 'product_architecture'),
        'memory_total_mib': parse_mib(_text(gpu, 'fb_memory_usage/total')),
        'memory_reserved_mib': parse_mib(_text(gpu, 'fb_memory_usage/reserved')),
        'memory_used_mib': parse_mib(_text(gpu, 'fb_memory_usage/used')),
        'memory_free_mib': parse_mib(_text(gpu, 'fb_memory_usage/free')),
        'utilization_gpu_percent': parse_percent(_text(gpu, 'utilization/gpu_util')),
        'utilization_memory_percent': parse_percent(_text(gpu, 'utilization/memory_util')),
        'temperature_c': parse_celsius(_text(gpu, 'temperature/gpu_temp')),
        'power_draw_w': parse_watts(_first_text(power, ('instant_power_draw', 'power_draw', 'average_power_draw'))),
        'power_limit_w': parse_watts(_first_text(power, ('current_power_limit', 'power_limit', 'enforced_power_limit'))),
        'fan_speed_percent': parse_percent(_text(gpu, 'fan_speed')),
        'persistence_mode': parse_enabled(_text(gpu, 'persistence_mode')),
        'mig_mode': {
            'current': parse_enabled(_text(gpu, 'mig_mode/current_mig')),
            'pending': parse_enabled(_text(gpu, 'mig_mode/pending_mig')),
        },
        'processes': [p for p in processes if _is_compute(p)],
    }


def split_preamble(text):
    """Split what nvidia-smi printed before the XML (warnings such as a corrupt infoROM) from the XML."""
    text = text or ''
    start = text.find('<?xml')
    if start < 0:
        start = text.find('<nvidia_smi_log')
    if start < 0:
        return [line.strip() for line in text.splitlines() if line.strip()], ''
    preamble = [line.strip() for line in text[:start].splitlines() if line.strip()]
    return preamble, text[start:]


def parse_xml(text):
    """Parse the output of ``nvidia-smi -q -x`` into the module's schema.

    Returns ``(data, notices)``: ``data`` holds driver_version, cuda_version, gpu_count and gpus;
    ``notices`` lists lines printed before the XML. Raises ValueError when there is no usable XML.
    """
    notices, xml_text = split_preamble(decode(text))
    if not xml_text:
        raise ValueError('no XML in the output of nvidia-smi')
    try:
        root = ElementTree.fromstring(_XML_ILLEGAL_RE.sub('\ufffd', xml_text))
    except (ElementTree.ParseError, ValueError) as exc:
        raise ValueError('the XML of nvidia-smi does not parse: %s' % exc) from exc
    if root.tag != 'nvidia_smi_log':
        raise ValueError('the XML of nvidia-smi has root element <%s>, not <nvidia_smi_log>' % root.tag)
    data = empty_result()
    data['driver_version'] = _text(root, 'driver_version')
    data['cuda_version'] = _text(root, 'cuda_version')
    data['gpus'] = [_parse_gpu(index, gpu) for index, gpu in enumerate(root.findall('gpu'))]
    data['gpu_count'] = len(data['gpus'])
    return data, notices


def classify(rc, stdout, stderr, timed_out=False, timeout=None):
    """Turn one run of ``nvidia-smi -q -x`` into a result.

    Returns a dict with ``state``, ``message``, ``reboot_required``, ``notices`` and the keys of
    :func:`empty_result`. nvidia-smi prints its NVML errors on stdout, so both streams are read.
    """
    result = empty_result()
    result.update({'state': STATE_ERROR, 'message': '', 'reboot_required': False, 'notices': []})
    stdout, stderr = decode(stdout), decode(stderr)
    cmd = CommandResult(rc, stdout, stderr, timed_out, timeout)
    if timed_out:
        result['message'] = '%s (a hung GPU or driver?). %s' % (command_error('nvidia-smi', cmd), ADVICE[STATE_ERROR])
        return result

    both = '%s\n%s' % (stdout or '', stderr or '')
    lowered = both.lower()
    said = first_nonblank_line(stdout, stderr).rstrip('.')
    said = 'nvidia-smi: %s' % said if said else 'nvidia-smi exited with rc=%s and no output' % rc
    if any(t in lowered for t in _MISMATCH_TEXTS):
        result.update(state=STATE_DRIVER_LIBRARY_MISMATCH, reboot_required=True,
                      message='%s. %s' % (said, ADVICE[STATE_DRIVER_LIBRARY_MISMATCH]))
        return result
    if any(t in lowered for t in _DRIVER_NOT_LOADED_TEXTS) or (rc == 9 and '<nvidia_smi_log' not in both):
        result.update(state=STATE_DRIVER_NOT_LOADED, message='%s. %s' % (said, ADVICE[STATE_DRIVER_NOT_LOADED]))
        return result
    if any(t in lowered for t in _NO_DEVICES_TEXTS) and '<gpu ' not in both:
        result.update(state=STATE_NO_DEVICES, message='%s. %s' % (said, ADVICE[STATE_NO_DEVICES]))
        return result

    if rc != 0:
        said = command_error('nvidia-smi -q -x', cmd, first_line=True).rstrip('.')
        result['message'] = '%s. %s' % (said, ADVICE[STATE_ERROR])
        return result

    try:
        data, notices = parse_xml(stdout)
    except ValueError as exc:
        result['message'] = '%s. %s' % (exc, ADVICE[STATE_ERROR])
        return result

    result.update(data)
    result['notices'] = notices
    if data['gpu_count'] == 0:
        result.update(state=STATE_NO_DEVICES, message='nvidia-smi lists no GPU. %s' % ADVICE[STATE_NO_DEVICES])
        return result
    result['state'] = STATE_OK
    result['message'] = '%d GPU%s, driver %s, CUDA %s' % (
        data['gpu_count'], '' if data['gpu_count'] == 1 else 's', data['driver_version'] or 'unknown',
        data['cuda_version'] or 'unknown')
    return result


def probe(module, run, given=None, path=None, timeout=30):
    """nvidia_smi_info's result for modules that need the GPUs: ``given`` when the caller has one, else one
    ``nvidia-smi -q -x`` through ``run`` (homelab.gpu's run_command), classified. Never raises."""
    if given:
        return given
    path = path or module.get_bin_path('nvidia-smi')
    if not path:
        return {'state': STATE_NOT_INSTALLED, 'gpus': [], 'message': 'nvidia-smi was not found on PATH'}
    cmd = run(module, [path, '-q', '-x'], timeout=timeout)
    result = classify(cmd.rc, cmd.stdout, cmd.stderr, timed_out=cmd.timed_out, timeout=timeout)
    result.pop('notices', None)
    return result
