"""After playbooks/provision.yml on the lab host (stand-in repositories, see lab-apt.sh)."""

import json
import re

import pytest

TOOLKIT_VERSION = "1.17.8-1"
TOOLKIT_PACKAGES = (
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
)


def test_docker_service_active_and_enabled(host):
    docker = host.service("docker")
    assert docker.is_running
    assert docker.is_enabled


def test_engine_came_from_the_docker_repository_source(host):
    src = host.file("/etc/apt/sources.list.d/docker.sources")
    assert src.mode == 0o644
    assert "URIs: file:///srv/lab-apt/docker" in src.content_string
    assert "Suites: bookworm" in src.content_string
    assert "Components: stable" in src.content_string
    assert "Signed-By: /etc/apt/keyrings/docker.asc" in src.content_string
    assert host.file("/etc/apt/keyrings/docker.asc").contains("BEGIN PGP PUBLIC KEY BLOCK")
    assert host.package("docker.io").is_installed


def test_toolkit_source_is_flat_and_signed(host):
    src = host.file("/etc/apt/sources.list.d/nvidia-container-toolkit.sources").content_string
    assert "URIs: file:///srv/lab-apt/nvidia/$(ARCH)" in src
    assert "Suites: /" in src
    assert "Signed-By: /etc/apt/keyrings/nvidia-container-toolkit.asc" in src


@pytest.mark.parametrize("name", TOOLKIT_PACKAGES)
def test_toolkit_pinned_and_held(host, name):
    pkg = host.package(name)
    assert pkg.is_installed
    assert pkg.version == TOOLKIT_VERSION
    assert host.check_output("dpkg --get-selections %s" % name).split()[-1] == "hold"


def test_daemon_json_merged_not_overwritten(host):
    cfg = json.loads(host.file("/etc/docker/daemon.json").content_string)
    # Written by hand in prepare.yml, before any role ran.
    assert cfg["storage-driver"] == "vfs"
    assert cfg["log-driver"] == "json-file"
    assert cfg["log-opts"] == {"max-size": "100m", "max-file": "3"}
    assert cfg["runtimes"] == {"nvidia": {"path": "/usr/bin/nvidia-container-runtime"}}
    assert "default-runtime" not in cfg
    assert "experimental" not in cfg
    assert "data-root" not in cfg


def test_docker_info_shows_the_nvidia_runtime(host):
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert "nvidia" in info["Runtimes"]
    assert info["DefaultRuntime"] == "runc"
    assert info["Driver"] == "vfs"
    assert info["LoggingDriver"] == "json-file"


def test_only_the_listed_user_is_in_the_docker_group(host):
    assert "docker" in host.user("lab").groups
    members = host.check_output("getent group docker").split(":")[3]
    assert members.split(",") == ["lab"]


def test_lab_user_can_talk_to_docker(host):
    cmd = host.run("runuser -u lab -- docker version --format '{{.Server.Version}}'")
    assert cmd.rc == 0, cmd.stderr


def test_container_runs_with_the_nvidia_runtime(host):
    # No registry in the lab: a one-file image made of busybox-static.
    host.check_output("tar -C / -c bin/busybox | docker import - lab/busybox:provision")
    cmd = host.run(
        "docker run --rm --network none --runtime nvidia lab/busybox:provision /bin/busybox echo gpu-runtime-ok"
    )
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.strip() == "gpu-runtime-ok"


def test_rollback_left_no_stray_config(host):
    # The side effect's bad daemon.json was replaced by the backup of the good one.
    assert "no-such-driver" not in host.file("/etc/docker/daemon.json").content_string


def test_daemon_json_backups_are_bounded(host):
    # Three changes left a backup each (the docker role and the toolkit in converge, the refused
    # storage driver in side_effect); docker_daemon_json_backups is 1, so only the newest stays: the
    # one the rollback put back.
    names = host.check_output("ls -A /etc/docker").split()
    backups = [n for n in names if re.fullmatch(r"daemon\.json\.[0-9]+\.[0-9]{4}-[0-9]{2}-[0-9]{2}@[0-9:]{8}~", n)]
    assert len(backups) == 1, names
    assert host.file("/etc/docker/" + backups[0]).content == host.file("/etc/docker/daemon.json").content
    # No temporary file of a write is left either (dockerd 20.10 keeps its key.json here too).
    assert [n for n in names if n.startswith(".daemon.json.")] == []
