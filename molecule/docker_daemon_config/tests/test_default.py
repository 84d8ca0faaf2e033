"""After the integration target: the real dockerd runs with the merged daemon.json."""

import json


def test_docker_runs(host):
    assert host.service("docker").is_running


def test_daemon_json_kept_user_key_and_gained_ours(host):
    cfg = json.loads(host.file("/etc/docker/daemon.json").content_string)
    # The key that was there before any module call (written into the lab image) survives.
    assert cfg["storage-driver"] == "vfs"
    assert cfg["experimental"] is True
    assert "nvidia" in cfg["runtimes"]


def test_docker_info_shows_runtime_and_experimental(host):
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert "nvidia" in info["Runtimes"]
    assert info["ExperimentalBuild"] is True
    assert info["Driver"] == "vfs"


def test_daemon_json_mode(host):
    f = host.file("/etc/docker/daemon.json")
    assert f.user == "root"
    assert f.mode == 0o644
