"""`sensord run` as a process: signals, Last Will, broker outages, MQTT 3.1.1, the demo."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from sensord.cli.broker import LocalBroker, free_port, start_amqtt
from sensord.cli.main import EXIT_BAD_BUNDLE
from sensord.core.bundle import Bundle
from sensord.daemon.loop import Daemon
from tests.integration.conftest import (
    mqtt_client,
    running,
    scored,
    settings_for,
    start_broker,
    wait_for,
)

T0 = 1_700_000_000.0


def write_config(
    tmp_path: Path, broker_host: str, port: int, protocol: str, bundle: Bundle
) -> Path:
    config = tmp_path / "sensord.toml"
    config.write_text(
        f'[mqtt]\nhost = "{broker_host}"\nport = {port}\nprotocol = "{protocol}"\n'
        f'client_id = "proc-{time.monotonic_ns()}"\nreconnect_min_s = 0.5\n'
        f'reconnect_max_s = 2\n[state]\ndir = "{tmp_path / "state"}"\n[metrics]\nport = 0\n'
        f'[[routes]]\ntopic = "sensors/+/value"\nbundle = "{bundle.path}"\n'
    )
    return config


@contextmanager
def daemon_process(config: Path) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "sensord", "--log-format", "json", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def status_seen(broker: LocalBroker) -> str | None:
    """What a new subscriber sees retained on sensord/status."""
    with mqtt_client(broker, subscribe="sensord/status") as client:
        wait_for(lambda: bool(client.on("sensord/status")), 3)
        seen = client.on("sensord/status")
        return seen[-1].payload.decode() if seen else None


def test_sigterm_says_offline_and_exits_cleanly(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    config = write_config(tmp_path, broker.host, broker.port, broker.protocol, bundle)
    with (
        daemon_process(config) as process,
        mqtt_client(broker, subscribe="sensord/status") as watcher,
    ):
        assert wait_for(
            lambda: any(
                m.payload == b"online" and not m.retain for m in watcher.on("sensord/status")
            ),
            20,
        )
        with mqtt_client(broker) as client:
            for k in range(20):
                client.publish_json("sensors/t/value", {"value": 20.0 + k % 3, "ts": T0 + k})
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 0, out
    assert status_seen(broker) == "offline"
    lines = [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]
    stopped = next(line for line in lines if line["event"] == "stopped")
    assert stopped["scored"] + stopped["first"] == 20
    assert any(p.suffix == ".npz" for p in (tmp_path / "state").iterdir())


def test_last_will_says_offline_when_the_process_dies(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    config = write_config(tmp_path, broker.host, broker.port, broker.protocol, bundle)
    with (
        daemon_process(config) as process,
        mqtt_client(broker, subscribe="sensord/status") as watcher,
    ):
        assert wait_for(lambda: any(m.payload == b"online" for m in watcher.on("sensord/")), 20)
        process.kill()
        process.wait()
        assert wait_for(lambda: watcher.on("sensord/status")[-1].payload == b"offline", 10)


def test_sighup_reloads_bundles_and_keeps_running(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle.path, copy)
    config = write_config(
        tmp_path,
        broker.host,
        broker.port,
        broker.protocol,
        Bundle(copy, bundle.manifest, bundle.graph_bytes),
    )
    with (
        daemon_process(config) as process,
        mqtt_client(broker, subscribe="sensord/status") as watcher,
    ):
        assert wait_for(lambda: any(m.payload == b"online" for m in watcher.on("sensord/")), 20)
        process.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        (copy / "model.onnx").write_bytes(b"tampered")  # a bad reload must not stop anything
        process.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    events = [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]
    reloaded = [e for e in events if e["event"] == "bundle reloaded"]
    failed = [e for e in events if e["event"] == "reload failed; keeping the loaded bundle"]
    assert len(reloaded) == 1 and reloaded[0]["state_kept"] is True
    assert len(failed) == 1 and "sha256" in failed[0]["error"]


def test_broker_restart_reconnects_and_continues(bundle: Bundle, tmp_path: Path) -> None:
    port = free_port()
    broker = start_broker(port)
    try:
        with running(settings_for(broker, bundle, tmp_path)) as daemon:
            with mqtt_client(broker) as client:
                client.publish_json("sensors/r/value", {"value": 20.0, "ts": T0})
                assert wait_for(lambda: scored(daemon) == 1)
            broker.stop()
            assert wait_for(lambda: not daemon.source.link.connected.is_set(), 10)
            broker = start_broker(port)
            assert wait_for(lambda: daemon.source.link.counters.connects == 2, 20)
            assert status_seen(broker) == "online"  # re-published on reconnect
            with mqtt_client(broker) as client:
                client.publish_json("sensors/r/value", {"value": 20.1, "ts": T0 + 1})
                assert wait_for(lambda: scored(daemon) == 2)
    finally:
        broker.stop()


def test_unreachable_broker_at_start_is_retried(bundle: Bundle, tmp_path: Path) -> None:
    port = free_port()
    placeholder = LocalBroker("127.0.0.1", port, "5", "none", lambda: None)
    settings = settings_for(placeholder, bundle, tmp_path)
    daemon = Daemon(settings)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: daemon.source.link.counters.connect_failures >= 1, 10)
        assert not daemon.ready.is_set()
        broker = start_broker(port)
        try:
            assert wait_for(daemon.ready.is_set, 20)
        finally:
            daemon.request_stop()
            thread.join(30)
            broker.stop()
    finally:
        daemon.request_stop()


def test_mqtt_3_1_1_on_the_embedded_broker(bundle: Bundle, tmp_path: Path) -> None:
    # A thread that ran asyncio.run() before has no current loop: the broker must not need
    # one (amqtt made its futures on the caller's loop, and failed here in CI once the
    # cluster tests ran first).
    asyncio.run(asyncio.sleep(0))
    broker = start_amqtt()
    try:
        with (
            running(settings_for(broker, bundle, tmp_path)) as daemon,
            mqtt_client(broker) as client,
        ):
            for k in range(15):
                client.publish_json("sensors/old/value", {"value": 20.0 + k % 2, "ts": T0 + k})
            assert wait_for(lambda: scored(daemon) == 15, 20)
    finally:
        broker.stop()


@pytest.mark.timeout(180)
def test_live_demo_catches_its_anomalies(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    shutil.copytree(bundle.path, tmp_path / "bundle")  # the demo reuses a bundle it finds
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sensord",
            "demo",
            "--out",
            str(tmp_path),
            "--host",
            broker.host,
            "--port",
            str(broker.port),
            "--streams",
            "6",
            "--rate",
            "60",
            "--duration",
            "16",  # 160 samples per stream: anomalies come after the detector's warm-up
            "--anomalies",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2/4 bundle: reusing" in done.stdout
    assert done.stdout.count("ALERT raised") >= 2 and "demo ok" in done.stdout
    with mqtt_client(broker, subscribe="sensord-demo/#") as late:
        time.sleep(1.0)
        assert late.on("sensord-demo/") == []  # the demo cleared what it left retained


def test_systemd_notifications(broker: LocalBroker, bundle: Bundle, tmp_path: Path) -> None:
    import socket

    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(20)
        config = write_config(tmp_path, broker.host, broker.port, broker.protocol, bundle)
        env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"}
        process = subprocess.Popen(
            [sys.executable, "-m", "sensord", "run", "--config", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            seen: list[str] = []
            while not any("READY=1" in m for m in seen) or "WATCHDOG=1" not in seen:
                seen.append(sock.recv(4096).decode())
            process.send_signal(signal.SIGTERM)
            while "STOPPING=1" not in seen:
                seen.append(sock.recv(4096).decode())
            assert process.wait(30) == 0
        finally:
            if process.poll() is None:
                process.kill()
    ready = next(m for m in seen if "READY=1" in m)
    assert "STATUS=connected; 1 routes" in ready


def test_bad_bundle_fails_before_connecting(tmp_path: Path, bundle: Bundle) -> None:
    port = free_port()  # nothing listens there: a connection attempt would hang and retry
    copy = tmp_path / "bundle"
    shutil.copytree(bundle.path, copy)
    (copy / "model.onnx").write_bytes(b"changed")
    config = write_config(
        tmp_path, "127.0.0.1", port, "5", Bundle(copy, bundle.manifest, bundle.graph_bytes)
    )
    done = subprocess.run(
        [sys.executable, "-m", "sensord", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == EXIT_BAD_BUNDLE  # RestartPreventExitStatus= in the unit
    assert "sensord: error:" in done.stderr and "model.onnx: sha256" in done.stderr
    assert "connecting" not in done.stderr
