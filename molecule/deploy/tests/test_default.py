"""What the deploy scenario leaves on the lab host: the demo models serving, managed the way the role says."""

import json

import pytest


def inspect(host, name):
    cmd = host.run("docker container inspect %s" % name)
    assert cmd.rc == 0, cmd.stderr
    return json.loads(cmd.stdout)[0]


@pytest.mark.parametrize("name, port", [("demo_a", 5001), ("demo_b", 5002)])
def test_model_container_runs_as_the_role_says(host, name, port):
    data = inspect(host, name)
    assert data["State"]["Running"]
    labels = data["Config"]["Labels"]
    assert labels["homelab.gpu.managed"] == "true"
    assert len(labels["homelab.gpu.config-hash"]) == 64
    assert data["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert data["HostConfig"]["Privileged"] is False
    assert data["HostConfig"]["ShmSize"] == 6 * 1024 ** 3
    assert data["HostConfig"]["PortBindings"] == {"5000/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
    # The lab has no NVIDIA runtime: cog_models_gpu_requests=false keeps device requests away.
    assert not data["HostConfig"]["DeviceRequests"]
    assert data["Config"]["Image"].startswith("127.0.0.1:5000/cog-demo@sha256:")


@pytest.mark.parametrize("port", [5001, 5002])
def test_model_answers_ready(host, port):
    assert host.socket("tcp://0.0.0.0:%d" % port).is_listening
    body = json.loads(host.check_output("curl -fsS http://127.0.0.1:%d/health-check" % port))
    assert body["status"] == "READY"


def test_only_the_listed_models_are_left(host):
    names = host.check_output("docker ps --all --format '{{.Names}}'").split()
    assert sorted(names) == ["demo_a", "demo_b"]


def test_registry_credentials_are_root_only(host):
    config = host.file("/root/.docker/config.json")
    assert config.exists
    assert config.user == "root"
    assert config.mode == 0o600
    assert "127.0.0.1:5000" in json.loads(config.content_string)["auths"]


def test_lab_registry_listens_on_the_loopback_only(host):
    assert host.socket("tcp://127.0.0.1:5000").is_listening
    assert not host.socket("tcp://0.0.0.0:5000").is_listening


def test_nvidia_smi_is_the_labelled_stand_in(host):
    lines = host.file("/usr/local/bin/nvidia-smi").content_string.splitlines()
    assert lines[1].startswith("# STAND-IN for nvidia-smi (no GPU in CI)")
