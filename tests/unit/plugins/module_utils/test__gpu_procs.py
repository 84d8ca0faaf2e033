# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GPU processes to containers, over a real capture of an H100 with a torch process."""

from __future__ import annotations

import os

import pytest

from ansible_collections.homelab.gpu.plugins.module_utils import _gpu_procs
from ansible_collections.homelab.gpu.plugins.module_utils import _nvidia_smi
from ansible_collections.homelab.gpu.plugins.module_utils import _report

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'nvidia-smi')
CGROUPS = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'cgroup')
CID_A = 'a' * 12 + '0123456789abcdef' * 3 + 'b' * 4
CID_B = 'c' * 64


def gpus(name='h100x1-580.159.04-busy.xml'):
    with open(os.path.join(FIXTURES, name)) as handle:
        return _nvidia_smi.classify(0, handle.read(), '')['gpus']


def test_attribute_real_capture_to_a_container():
    found = gpus()
    procs = found[0]['processes']
    assert procs, 'the busy capture has a compute process'
    pid = procs[0]['pid']
    cgroups = {pid: '0::/docker/%s\n' % CID_A}
    by_container, others = _gpu_procs.attribute(found, cgroups, {CID_A: 'llama_tiny'})
    assert by_container == {'llama_tiny': [{'gpu_index': 0, 'gpu_uuid': found[0]['uuid'],
                                            'used_mib': sum(p['used_memory_mib'] for p in procs), 'pids': [pid]}]}
    assert others == []
    assert _report.gpu_memory_text({'gpu_memory': by_container['llama_tiny']}) == '%d MiB on GPU 0' % procs[0]['used_memory_mib']


def test_attribute_unmanaged_and_host_processes():
    found = [{'index': 0, 'uuid': 'GPU-0', 'processes': [
        {'pid': 10, 'name': 'python', 'used_memory_mib': 4616},
        {'pid': 11, 'name': 'Xorg', 'used_memory_mib': 120},
        {'pid': 12, 'name': 'python3', 'used_memory_mib': 900},
        {'pid': 13, 'name': 'gone', 'used_memory_mib': 5}]},
        {'index': 1, 'uuid': 'GPU-1', 'processes': [{'pid': 10, 'name': 'python', 'used_memory_mib': 100}]}]
    cgroups = {10: '0::/system.slice/docker-%s.scope\n' % CID_A, 11: '0::/user.slice/session-2.scope\n',
               12: '0::/docker/%s\n' % CID_B}
    by_container, others = _gpu_procs.attribute(found, cgroups, {CID_A: 'llama_tiny'})
    assert by_container == {'llama_tiny': [
        {'gpu_index': 0, 'gpu_uuid': 'GPU-0', 'used_mib': 4616, 'pids': [10]},
        {'gpu_index': 1, 'gpu_uuid': 'GPU-1', 'used_mib': 100, 'pids': [10]}]}
    assert others == [
        {'gpu_index': 0, 'gpu_uuid': 'GPU-0', 'pid': 11, 'name': 'Xorg', 'used_mib': 120, 'container_id': None},
        {'gpu_index': 0, 'gpu_uuid': 'GPU-0', 'pid': 12, 'name': 'python3', 'used_mib': 900, 'container_id': CID_B},
        {'gpu_index': 0, 'gpu_uuid': 'GPU-0', 'pid': 13, 'name': 'gone', 'used_mib': 5, 'container_id': None}]
    assert _report.gpu_memory_text({'gpu_memory': by_container['llama_tiny']}) == '4616 MiB on GPU 0, 100 MiB on GPU 1'


def test_container_id_needs_exactly_64_hex():
    assert _gpu_procs.container_id_from_cgroup('0::/docker/%s' % ('a' * 65)) is None
    assert _gpu_procs.container_id_from_cgroup('12:memory:/docker/%s\n0::/\n' % CID_B) == CID_B


def test_read_cgroups(tmp_path):
    (tmp_path / '42').mkdir()
    (tmp_path / '42' / 'cgroup').write_text('0::/docker/%s\n' % CID_B)
    assert _gpu_procs.read_cgroups([42, 43, None], proc_root=str(tmp_path)) == {42: '0::/docker/%s\n' % CID_B}
    assert _gpu_procs.gpu_pids([{'processes': [{'pid': 3}, {'pid': 1}, {'pid': None}]}, {}]) == [1, 3]


def test_real_coglet_worker_maps_to_its_container():
    """Recorded together on a lent H100: nvidia-smi during a model's life, and its GPU process's cgroup file."""
    found = gpus('h100x1-580.159.04-coglet-model.xml')
    with open(os.path.join(CGROUPS, 'h100-coglet-worker.cgroup')) as handle:
        cgroup = handle.read()
    container_id = '3733f8e79d495657e4ec340ebe8136d9d5129a355f23251b3fc673dc9efd3907'
    assert _gpu_procs.container_id_from_cgroup(cgroup) == container_id
    by_container, others = _gpu_procs.attribute(found, {1617: cgroup}, {container_id: 'model_a'})
    assert _report.gpu_memory_text({'gpu_memory': by_container['model_a']}) == '6214 MiB on GPU 0'
    assert others == []


CID = '3f1e' + '0' * 56 + 'beef'
CGROUP_CASES = [
    ('cgroup v2 systemd driver', '0::/system.slice/docker-%s.scope\n' % CID, CID),
    ('cgroup v2 cgroupfs driver', '0::/docker/%s\n' % CID, CID),
    ('cgroup v1', '12:memory:/docker/%s\n11:cpu,cpuacct:/docker/%s\n' % (CID, CID), CID),
    ('host process', '0::/user.slice/user-1000.slice/session-2.scope\n', None),
    ('empty', '', None),
]


@pytest.mark.parametrize('text, cid', [c[1:] for c in CGROUP_CASES], ids=[c[0] for c in CGROUP_CASES])
def test_container_id_from_cgroup(text, cid):
    assert _gpu_procs.container_id_from_cgroup(text) == cid
