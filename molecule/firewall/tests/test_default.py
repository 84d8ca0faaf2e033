"""What the firewall scenario leaves on the lab host: the option emptied, so nothing of the firewall is left,
and the model serves on every interface as Docker publishes it."""

import json

import pytest


def test_no_chain_and_no_jump_left(host):
    rules = host.check_output("iptables-save -t filter")
    assert "HOMELAB-GPU-MODELS" not in rules
    # Docker's own chains are still there, untouched.
    assert "-A FORWARD -j DOCKER-USER" in rules


@pytest.mark.parametrize("path", [
    "/etc/homelab-gpu/model-firewall.rules",
    "/etc/systemd/system/homelab-gpu-model-firewall.service",
    "/etc/systemd/system/docker.service.wants/homelab-gpu-model-firewall.service",
    "/usr/local/sbin/homelab-gpu-model-firewall",
])
def test_loader_removed(host, path):
    assert not host.file(path).exists


def test_unit_unknown_to_systemd(host):
    out = host.run("systemctl show --property=LoadState homelab-gpu-model-firewall.service").stdout
    assert out.strip() == "LoadState=not-found"


def test_model_serves_on_every_interface(host):
    assert host.socket("tcp://0.0.0.0:5001").is_listening
    body = json.loads(host.check_output("curl -fsS http://127.0.0.1:5001/health-check"))
    assert body["status"] == "READY"
