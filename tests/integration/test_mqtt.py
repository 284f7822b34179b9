"""The MQTT edge on a real broker: the buffered packet reader, driven by poll."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import structlog

from sensord.cli.broker import (
    LOCAL_BROKER_CONFIG,
    LocalBroker,
    free_port,
    mosquitto_binary,
    start_mosquitto,
)
from sensord.config import MqttSettings
from sensord.daemon.mqtt import MqttAdapter
from sensord.daemon.mqttbuffer import READ_CHUNK
from sensord.daemon.transport import TransportOptions

from .conftest import mqtt_client, wait_for

EDGE = TransportOptions("sensord-mqtt-test", ["edge/+/value"])  # what the adapters take


def adapter_for(broker: LocalBroker, client_id: str) -> MqttAdapter:
    settings = MqttSettings(
        host=broker.host, port=broker.port, protocol=broker.protocol, client_id=client_id
    )
    adapter = MqttAdapter(settings, EDGE)
    adapter.start()
    return adapter


def test_packets_across_read_boundaries_arrive_whole_and_in_order(broker: LocalBroker) -> None:
    adapter = adapter_for(broker, f"edge-{time.monotonic_ns()}")
    try:
        assert wait_for(lambda: (adapter.poll(0.05), adapter.link.connected.is_set())[1], 10)
        rng = random.Random(3)
        # Sizes from tiny to several KiB: over ~3 MB, many packets straddle a 64 KiB read.
        payloads = [
            bytes(rng.randrange(256) for _ in range(rng.choice((1, 40, 700, 5000))))
            for _ in range(1500)
        ]
        with mqtt_client(broker) as publisher:
            for i, payload in enumerate(payloads):
                publisher.publish(f"edge/s{i % 7}/value", payload)
            got: list[bytes] = []
            largest_poll = 0
            deadline = time.monotonic() + 60
            while len(got) < len(payloads) and time.monotonic() < deadline:
                adapter.poll(0.05)
                taken = adapter.take(1 << 30)
                adapter.ack(taken)
                largest_poll = max(largest_poll, sum(len(m.payload) for m in taken))
                got.extend(m.payload for m in taken)
        assert got == payloads
        assert adapter.counters.received == len(payloads)
        # One poll takes at most one read off the socket (plus what was left of the last).
        assert largest_poll <= 2 * READ_CHUNK + max(len(p) for p in payloads)
    finally:
        adapter.stop()
        assert adapter.client.socket() is None


def test_a_clean_stop_sends_disconnect_so_the_will_stays_unsent(broker: LocalBroker) -> None:
    with mqtt_client(broker, subscribe="sensord-mqtt-test/status") as watcher:
        adapter = adapter_for(broker, f"edge-{time.monotonic_ns()}")
        assert wait_for(lambda: (adapter.poll(0.05), adapter.link.connected.is_set())[1], 10)
        for i in range(50):  # queued by paho, written by poll in one send
            adapter.publish(f"sensord-mqtt-test/out/{i}", b"x")
        adapter.stop()
        assert adapter.client.socket() is None
        time.sleep(1.0)  # a Will would be published as soon as the broker saw the socket go
        statuses = [m.payload for m in watcher.on("sensord-mqtt-test/status") if not m.retain]
        assert statuses == [b"online", b"offline"]  # the stop's own offline, and no Will


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, by the openssl command.

    Readable by all: Mosquitto started as root drops to its own user before it reads them.
    """
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    ca_key, ca, key, csr, cert = (
        folder / n for n in ("ca.key", "ca.crt", "s.key", "s.csr", "s.crt")
    )
    san = folder / "san.cnf"
    san.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for args in (
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            ca_key,
            "-out",
            ca,
            "-days",
            "1",
            "-subj",
            "/CN=sensord-test-ca",
        ],
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            csr,
            "-subj",
            "/CN=127.0.0.1",
        ],
        [
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-out",
            cert,
            "-days",
            "1",
            "-extfile",
            san,
        ],
    ):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
    for path in (ca, cert, key):
        path.chmod(0o644)
    return ca, cert, key


def test_tls_packets_arrive_whole_and_a_wrong_ca_is_refused() -> None:
    if shutil.which("openssl") is None or mosquitto_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("CI requires openssl and Mosquitto for the TLS test")
        pytest.skip("needs openssl and Mosquitto")
    tmp_path = Path(tempfile.mkdtemp(prefix="sensord-tls-"))  # not pytest's: that is 0700
    tmp_path.chmod(0o755)
    ca, cert, key = make_certificates(tmp_path / "ok")
    tls_port = free_port()
    broker = start_mosquitto(
        extra_config=f"{LOCAL_BROKER_CONFIG}listener {tls_port} 127.0.0.1\n"
        f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
    )
    try:
        settings = MqttSettings(
            host="127.0.0.1",
            port=tls_port,
            client_id=f"edge-tls-{time.monotonic_ns()}",
            tls={"enabled": True, "ca_file": ca},
        )
        adapter = MqttAdapter(settings, EDGE)
        adapter.start()
        assert wait_for(lambda: (adapter.poll(0.05), adapter.link.connected.is_set())[1], 10)
        payloads = [bytes([i % 251]) * (1 + (i * 7919) % 6000) for i in range(800)]
        with mqtt_client(broker) as publisher:  # plain listener in, TLS listener out
            for i, payload in enumerate(payloads):
                publisher.publish(f"edge/s{i % 5}/value", payload)
            got: list[bytes] = []
            deadline = time.monotonic() + 60
            while len(got) < len(payloads) and time.monotonic() < deadline:
                adapter.poll(0.05)
                taken = adapter.take(1 << 30)
                adapter.ack(taken)
                got.extend(m.payload for m in taken)
        assert got == payloads
        adapter.stop()
        assert adapter.client.socket() is None

        other_ca, _, _ = make_certificates(tmp_path / "other")
        wrong = MqttAdapter(
            settings.model_copy(
                update={"tls": settings.tls.model_copy(update={"ca_file": other_ca})}
            ),
            EDGE,
        )
        with structlog.testing.capture_logs() as logs:
            wrong.start()
            for _ in range(3):
                wrong.poll(0.05)
        assert wrong.counters.connect_failures >= 1 and not wrong.link.connected.is_set()
        refused = [e for e in logs if e["event"].startswith("TLS with the broker failed")]
        assert refused and "CERTIFICATE_VERIFY_FAILED" in refused[0]["error"]
    finally:
        broker.stop()
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_the_client_refuses_per_filter_callbacks_it_would_never_call() -> None:
    """BufferedClient hands every message to on_message (paho's per-filter lookup cost 11 %
    of a drain), so a per-filter callback would be silently skipped: it is refused."""
    from paho.mqtt.enums import CallbackAPIVersion

    from sensord.daemon.mqttbuffer import BufferedClient

    client = BufferedClient(CallbackAPIVersion.VERSION2)
    with pytest.raises(NotImplementedError):
        client.message_callback_add("a/#", lambda client, userdata, message: None)


def test_a_request_filter_outside_the_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="not under the prefix"):
        MqttAdapter(
            MqttSettings(),
            TransportOptions("sensord", ["sensors/#"], requests="elsewhere/feedback/+"),
        )
