"""After the nvidia_driver scenario: the stand-ins are in place and the role installed and wrote nothing."""

import pytest

NVIDIA_PACKAGES = [
    "nvidia-driver", "nvidia-kernel-dkms", "firmware-misc-nonfree", "linux-headers-amd64", "dkms",
]


def test_no_driver_package_is_installed(host):
    for name in NVIDIA_PACKAGES:
        assert not host.package(name).is_installed, name
    listed = host.run("dpkg-query -W -f '${db:Status-Abbrev} ${Package}\\n' '*nvidia*'")
    assert not [line for line in listed.stdout.splitlines() if line.startswith("ii ")], listed.stdout


def test_nvidia_smi_stand_in_is_the_working_one(host):
    script = host.file("/usr/local/bin/nvidia-smi")
    assert script.is_file
    assert script.mode == 0o755
    lines = script.content_string.splitlines()
    assert lines[0] == "#!/bin/sh"
    assert lines[1].startswith("# STAND-IN for nvidia-smi (no GPU in CI)")
    out = host.run("/usr/local/bin/nvidia-smi -q -x")
    assert out.rc == 0
    assert "<driver_version>580.159.04</driver_version>" in out.stdout
    assert "<product_name>NVIDIA H100 80GB HBM3</product_name>" in out.stdout


def test_mokutil_stand_in_was_removed(host):
    assert not host.file("/usr/local/bin/mokutil").exists


@pytest.mark.parametrize("path", [
    "/etc/modprobe.d/blacklist-nouveau.conf",
    "/etc/apt/sources.list.d/homelab-gpu-debian-non-free.sources",
    "/etc/apt/sources.list.d/homelab-gpu-debian-security-non-free.sources",
])
def test_nothing_was_written(host, path):
    # No install happened, so no nouveau blacklist and no non-free APT source.
    assert not host.file(path).exists


def test_the_host_was_not_rebooted(host):
    # The side effect's mark in /run (a tmpfs) survives only if the opt-out kept the role from rebooting.
    assert host.file("/run/nvidia-driver-molecule-not-rebooted").exists
