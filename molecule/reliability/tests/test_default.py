"""What the reliability scenario leaves on the lab host after every fault: the models serve, nothing privileged,
nothing left over, demo_b only on the loopback, the hand-edited daemon.json key kept with a backup."""

import json

import pytest


LAN_IP = ("python3 -c \"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
          "s.connect(('192.0.2.1', 9)); print(s.getsockname()[0])\"")


def lan_ip(host):
    """The address of the default route's interface (eth0), as side_effect_nested.yml reads it."""
    return host.check_output(LAN_IP).strip()


def containers(host):
    ids = host.check_output("docker ps --all --quiet --no-trunc").split()
    return json.loads(host.check_output("docker container inspect %s" % " ".join(ids)))


def test_exactly_the_models_are_left_and_run(host):
    states = sorted((c["Name"].lstrip("/"), c["State"]["Status"]) for c in containers(host))
    assert states == [("demo_a", "running"), ("demo_b", "running"), ("demo_c", "running"), ("demo_p", "running")]


def test_no_container_is_privileged_or_holds_the_docker_socket(host):
    for data in containers(host):
        hc = data["HostConfig"]
        assert hc["Privileged"] is False, data["Name"]
        assert not hc["CapAdd"], data["Name"]
        assert hc["NetworkMode"] != "host", data["Name"]
        assert hc["PidMode"] != "host", data["Name"]
        assert not any("docker.sock" in (m.get("Source") or "") for m in data["Mounts"]), data["Name"]


@pytest.mark.parametrize("name, address, port", [
    ("demo_a", "0.0.0.0", "5001"), ("demo_b", "127.0.0.1", "5002"),
    ("demo_c", "LAN", "5003"), ("demo_p", "0.0.0.0", "5021"),
])
def test_published_on_the_configured_address(host, name, address, port):
    if address == "LAN":
        address = lan_ip(host)
    data = [c for c in containers(host) if c["Name"] == "/" + name][0]
    assert data["HostConfig"]["PortBindings"] == {"5000/tcp": [{"HostIp": address, "HostPort": port}]}


@pytest.mark.parametrize("port, on_lan, on_loopback", [
    (5001, True, True),    # demo_a, 0.0.0.0: every interface
    (5002, False, True),   # demo_b, 127.0.0.1: the host only
    (5003, True, False),   # demo_c, the host's LAN address: the LAN only, not even the loopback
])
def test_reachable_only_where_published(host, port, on_lan, on_loopback):
    lan = lan_ip(host)
    for address, reachable in ((lan, on_lan), ("127.0.0.1", on_loopback)):
        cmd = host.run("curl -fsS --max-time 5 http://%s:%d/health-check" % (address, port))
        # curl exit 7: connection refused.
        assert cmd.rc == (0 if reachable else 7), (address, port, cmd.rc, cmd.stderr)


def test_hand_edited_daemon_json_key_kept_with_backup(host):
    config = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert config["max-concurrent-uploads"] == 3
    assert config["storage-driver"] == "vfs"
    backups = host.check_output("ls /etc/docker/").split()
    assert any(b.startswith("daemon.json.") and b.endswith("~") for b in backups), backups
