"""deploy/: the example Mosquitto config and ACL do what they say; the unit file is sound."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from functools import reduce
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from sensord.cli.broker import free_port, mosquitto_binary
from sensord.cli.main import EXIT_BAD_BUNDLE, EXIT_BAD_CONFIG
from tests.integration.conftest import wait_for

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
USERS = {"sensord": "s3cret", "operator": "op-pass", "m1": "m1-pass", "m2": "m2-pass"}


@pytest.fixture
def secured_broker(tmp_path: Path) -> Iterator[int]:
    """Mosquitto with deploy/mosquitto/sensord.conf: loopback listener, auth, ACLs."""
    binary = mosquitto_binary()
    passwd_tool = shutil.which("mosquitto_passwd")
    if binary is None or passwd_tool is None:
        if os.environ.get("CI"):
            pytest.fail("CI requires mosquitto and mosquitto_passwd (apt-get install mosquitto)")
        pytest.skip("needs mosquitto and mosquitto_passwd")
    port = free_port()
    passwd = tmp_path / "passwd"
    passwd.touch()
    for user, password in USERS.items():
        subprocess.run([passwd_tool, "-b", str(passwd), user, password], check=True)
    local = {
        "listener 1883": f"listener {port}",
        "/etc/mosquitto/sensord.passwd": str(passwd),
        "/etc/mosquitto/sensord.acl": str(DEPLOY / "mosquitto" / "acl"),
        "/var/lib/mosquitto/": f"{tmp_path}/",
    }
    lines = []
    for original in (DEPLOY / "mosquitto" / "sensord.conf").read_text().splitlines():
        if original.startswith(("listener 8883", "certfile", "keyfile", "cafile")):
            continue  # the TLS listener needs certificates this test does not have
        lines.append(reduce(lambda text, pair: text.replace(*pair), local.items(), original))
    config = tmp_path / "mosquitto.conf"
    # Started as root, Mosquitto switches to user "mosquitto", who cannot read this test's
    # private temp files: stay the current user.
    lines.append(f"user {pwd.getpwuid(os.getuid()).pw_name}")
    config.write_text("\n".join(lines) + "\n")
    process = subprocess.Popen(
        [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert wait_for(lambda: _answers(port), 10)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def _answers(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def connect(port: int, user: str | None, received: list[str] | None = None) -> paho.Client:
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5
    )
    if user is not None:
        client.username_pw_set(user, USERS[user])
    if received is not None:
        client.on_message = lambda c, u, m: received.append(m.topic)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def test_mosquitto_example_config_enforces_auth_and_acls(secured_broker: int) -> None:
    port = secured_broker
    outcome: list[object] = []
    anonymous = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5
    )
    anonymous.on_connect = lambda c, u, f, rc, p: outcome.append(rc.is_failure)
    anonymous.connect("127.0.0.1", port)
    anonymous.loop_start()
    assert wait_for(lambda: bool(outcome), 5) and outcome[0] is True
    anonymous.loop_stop()

    seen_by_sensord: list[str] = []
    seen_by_operator: list[str] = []
    sensord = connect(port, "sensord", seen_by_sensord)
    operator = connect(port, "operator", seen_by_operator)
    sensord.subscribe("sensors/#", qos=1)
    operator.subscribe("sensord/#", qos=1)
    operator.subscribe("sensors/#", qos=1)  # not allowed: operators only read sensord/
    time.sleep(0.3)
    m1 = connect(port, "m1")
    m1.publish("sensors/m1/temp", b"20.5", qos=1).wait_for_publish(5)
    m1.publish("sensors/m2/temp", b"99", qos=1).wait_for_publish(5)  # not its own: dropped
    sensord.publish("sensord/status", b"online", qos=1).wait_for_publish(5)
    operator.publish("sensord/status", b"offline", qos=1).wait_for_publish(5)  # read-only
    assert wait_for(lambda: "sensord/status" in seen_by_operator, 5)
    time.sleep(0.5)
    assert seen_by_sensord == ["sensors/m1/temp"]
    assert seen_by_operator == ["sensord/status"]
    for client in (sensord, operator, m1):
        client.disconnect()
        client.loop_stop()


def test_systemd_unit_is_sound() -> None:
    unit = (DEPLOY / "sensord.service").read_text()
    for setting in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "DynamicUser=yes",
        "StateDirectory=sensord",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert setting in unit
    # The exit codes a restart cannot fix are the ones the command really uses.
    (prevent,) = [
        line for line in unit.splitlines() if line.startswith("RestartPreventExitStatus=")
    ]
    assert {int(code) for code in prevent.split("=", 1)[1].split()} == {
        EXIT_BAD_BUNDLE,
        EXIT_BAD_CONFIG,
    }
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return
    done = subprocess.run(
        [analyze, "verify", str(DEPLOY / "sensord.service")],
        capture_output=True,
        text=True,
        check=False,
    )
    problems = [
        line for line in done.stderr.splitlines() if "/opt/sensord/bin/sensord" not in line
    ]  # not installed on a test machine
    assert problems == []


def test_systemd_unit_exposure_is_ok() -> None:
    """systemd's own review of the unit's sandboxing: 2.5 or less is rated OK."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs systemd-analyze (scripts/bootstrap.sh installs systemd)")
        pytest.skip("systemd-analyze is not installed")
    done = subprocess.run(
        [analyze, "security", "--offline=yes", str(DEPLOY / "sensord.service")],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for sensord\.service: ([0-9.]+)", done.stdout)
    assert found, done.stdout[-2000:] + done.stderr
    assert float(found.group(1)) <= 2.5


def _setting(unit: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(f"{key}=")]


def test_retrain_service_and_timer_share_the_daemons_state_and_verify() -> None:
    daemon = (DEPLOY / "sensord.service").read_text()
    retrain = (DEPLOY / "sensord-retrain.service").read_text()
    timer = (DEPLOY / "sensord-retrain.timer").read_text()
    # The same dynamic user and state directory: it reads recordings and feedback there and
    # writes the versions and the `current` switch the daemon watches.
    for key in ("User", "StateDirectory", "DynamicUser"):
        assert _setting(retrain, key) == _setting(daemon, key) != []
    assert _setting(retrain, "Type") == ["oneshot"]
    assert "sensord retrain --config /etc/sensord/sensord.toml" in _setting(retrain, "ExecStart")[0]
    assert _setting(retrain, "IOSchedulingClass") == ["idle"]  # never starves the daemon
    assert _setting(timer, "Persistent") == ["true"] and _setting(timer, "OnCalendar")
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs systemd-analyze (scripts/bootstrap.sh installs systemd)")
        pytest.skip("systemd-analyze is not installed")
    units = [str(DEPLOY / name) for name in ("sensord-retrain.service", "sensord-retrain.timer")]
    done = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, check=False)
    problems = [line for line in done.stderr.splitlines() if "/opt/sensord/bin/sensord" not in line]
    assert problems == []
    done = subprocess.run(
        [analyze, "security", "--offline=yes", units[0]],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(
        r"Overall exposure level for sensord-retrain\.service: ([0-9.]+)", done.stdout
    )
    assert found, done.stdout[-2000:] + done.stderr
    assert float(found.group(1)) <= 2.5
