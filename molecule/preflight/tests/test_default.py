"""The lab host is what every later scenario relies on: a real systemd Debian 12 server."""


def test_os_is_debian_12(host):
    assert host.system_info.distribution == "debian"
    assert host.system_info.release.startswith("12")
    assert host.system_info.arch == "x86_64"


def test_systemd_is_pid_1_and_running(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in ("running", "degraded"), state
    assert not host.run("systemctl --failed --no-legend --plain").stdout.strip()


def test_sshd_listens(host):
    assert host.service("ssh").is_running
    assert host.service("ssh").is_enabled
    assert host.socket("tcp://0.0.0.0:22").is_listening


def test_lab_user_has_passwordless_sudo(host):
    cmd = host.run("runuser -u lab -- sudo -n true")
    assert cmd.rc == 0, cmd.stderr


def test_python3_present(host):
    assert host.exists("python3")


def test_preflight_changed_nothing(host):
    # The side effect removed its mokutil stand-in and preflight writes nothing.
    assert not host.file("/usr/local/bin/mokutil").exists
    assert not host.file("/var/lib/docker").exists
