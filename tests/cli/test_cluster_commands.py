"""The cluster's commands against a real nats-server (started by the tests on free ports):
``sensord cluster-config`` writes a configuration nats-server runs on the ports it names,
and ``sensord simulate`` against the MQTT gateway says what to do about MQTT 5."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sensord.cli.broker import answers, free_port
from sensord.cli.engine import LocalEngine
from sensord.cli.main import EXIT_BAD_CONFIG, main
from sensord.config import load_settings
from tests.cluster.conftest import engine_for_test, need_engine

ROUTE = '[[routes]]\ntopic = "sensors/+/value"\nbundle = "/nonexistent/bundle"\n'


def settings_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sensord.toml"
    path.write_text(text + ROUTE)
    return path


def cluster_config(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["cluster-config", *argv]) == 0
    return capsys.readouterr().out


def wait_until_listening(ports: list[int], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(answers("127.0.0.1", port) for port in ports):
        assert time.monotonic() < deadline, f"not listening on all of {ports}"
        time.sleep(0.05)


def varz(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/varz", timeout=5) as answer:
        data: dict[str, Any] = json.loads(answer.read())
    return data


def test_the_ports_come_from_the_settings_and_the_flags_override_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = cluster_config(capsys, str(settings_file(tmp_path, '[cluster]\nurl = "nats://e"\n')))
    assert 'listen: "0.0.0.0:4222"' in plain and 'mqtt { listen: "0.0.0.0:1883" }' in plain
    assert 'store_dir: "/var/lib/nats/jetstream"' in plain and "http:" not in plain
    path = settings_file(
        tmp_path,
        '[mqtt]\nport = 11883\n[cluster]\nurl = "nats://u:hunter2@e:14222,nats://f:4333"\n',
    )
    given = cluster_config(capsys, str(path))
    assert 'listen: "0.0.0.0:14222"' in given and '{ listen: "0.0.0.0:11883" }' in given
    flags = ["--port", "5222", "--mqtt-port", "2883", "--http-port", "9222"]
    overridden = cluster_config(capsys, str(path), *flags, "--store-dir", "/srv/js")
    assert 'listen: "0.0.0.0:5222"' in overridden and '{ listen: "0.0.0.0:2883" }' in overridden
    assert 'http: "0.0.0.0:9222"' in overridden and 'store_dir: "/srv/js"' in overridden
    assert "hunter2" not in given + overridden


def test_ports_that_collide_or_do_not_exist_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = settings_file(tmp_path, '[cluster]\nurl = "nats://e:1883"\n')
    assert main(["cluster-config", str(path)]) == EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    assert "the client port (1883), the MQTT gateway's (1883)" in err and "must differ" in err
    with pytest.raises(SystemExit):
        main(["cluster-config", str(path), "--port", "70000"])
    assert "not a port number (1 to 65535): 70000" in capsys.readouterr().err


@pytest.mark.cluster
def test_nats_server_runs_the_printed_configuration_on_its_ports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need_engine()
    port, mqtt_port, http_port = free_port(), free_port(), free_port()
    path = settings_file(
        tmp_path, f'[mqtt]\nport = {mqtt_port}\n[cluster]\nurl = "nats://127.0.0.1:{port}"\n'
    )
    store = tmp_path / "js"
    text = cluster_config(
        capsys, str(path), "--http-port", str(http_port), "--store-dir", str(store)
    )
    engine = LocalEngine(tmp_path / "engine", port, mqtt_port)
    engine.folder.mkdir()
    engine.config.write_text(text)
    engine.start()  # waits for the client port; fails if nats-server refuses the file
    try:
        wait_until_listening([port, mqtt_port, http_port])
        server = varz(http_port)
        assert server["port"] == port and server["mqtt"]["port"] == mqtt_port
        assert server["jetstream"]["config"]["store_dir"].startswith(str(store))
    finally:
        engine.stop()


@pytest.mark.cluster
def test_simulate_against_the_gateway_says_to_pass_protocol_3_1_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = engine_for_test(mqtt=True)
    try:
        assert engine.mqtt_port is not None
        args = ["simulate", "--host", "127.0.0.1", "--port", str(engine.mqtt_port)]
        args += ["--streams", "2", "--rate", "40", "--duration", "0.5", "--anomalies", "0"]
        assert main(args) == 1
        err = capsys.readouterr().err
        assert err.strip() == (
            f"sensord: error: the broker at 127.0.0.1:{engine.mqtt_port} does not speak MQTT 5 "
            "(nats-server's MQTT gateway speaks only 3.1.1): pass --protocol 3.1.1"
        )
        # what a member's settings choose in cluster mode is what the gateway speaks
        member = settings_file(tmp_path, f'[cluster]\nurl = "{engine.url}"\n')
        protocol = load_settings(member).mqtt.protocol
        assert main([*args, "--protocol", protocol]) == 0
        assert "sent 20 messages" in capsys.readouterr().out
    finally:
        engine.remove()
