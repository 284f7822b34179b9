"""Integration fixtures: a real Mosquitto started on a free port, the daemon, MQTT clients.

In CI (CI=true) Mosquitto is required: a missing binary fails the run rather than skipping
these tests. Elsewhere, without Mosquitto, the embedded amqtt broker (MQTT 3.1.1) stands in.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from sensord.cli.broker import LocalBroker, mosquitto_binary, start_amqtt, start_mosquitto
from sensord.config import Settings
from sensord.core.bundle import Bundle
from sensord.daemon.loop import Daemon


def start_broker(port: int | None = None) -> LocalBroker:
    if mosquitto_binary() is not None:
        return start_mosquitto(port)
    if os.environ.get("CI"):
        pytest.fail("CI requires Mosquitto: install it (apt-get install mosquitto)")
    return start_amqtt(port)


@pytest.fixture(scope="module")
def broker() -> Iterator[LocalBroker]:
    b = start_broker()
    yield b
    b.stop()


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float


@dataclass
class Client:
    """A test-side MQTT client that records what it receives."""

    client: paho.Client
    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(
                Received(msg.topic, bytes(msg.payload), bool(msg.retain), time.time())
            )

    def on(self, prefix: str) -> list[Received]:
        with self.lock:
            return [m for m in self.messages if m.topic.startswith(prefix)]

    def json_on(self, prefix: str) -> list[dict[str, object]]:
        return [orjson.loads(m.payload) for m in self.on(prefix)]

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos)

    def publish_json(self, topic: str, obj: object, qos: int = 1) -> paho.MQTTMessageInfo:
        return self.client.publish(
            topic, orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY), qos=qos
        )


@contextmanager
def mqtt_client(broker: LocalBroker, subscribe: str | None = None) -> Iterator[Client]:
    v5 = broker.protocol == "5"
    raw = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
    )
    raw.max_inflight_messages_set(200)
    client = Client(raw)
    raw.on_message = client.on_message
    raw.connect(broker.host, broker.port)
    raw.loop_start()
    if subscribe is not None:
        raw.subscribe(subscribe, qos=1)
        time.sleep(0.2)
    try:
        yield client
    finally:
        raw.disconnect()
        raw.loop_stop()


def settings_for(broker: LocalBroker, bundle: Bundle, state: Path, **overrides: object) -> Settings:
    """Daemon settings for a test: the test broker, one route, the test's state dir."""
    data: dict[str, object] = {
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "protocol": broker.protocol,
            "client_id": f"sensord-test-{time.monotonic_ns()}",
            "reconnect_min_s": 0.5,
            "reconnect_max_s": 2,
        },
        "routes": [{"topic": "sensors/+/value", "bundle": str(bundle.path)}],
        "alerts": {"prefix": "sensord"},
        "state": {"dir": str(state)},
        "batching": {"max_delay_ms": 2},
        "limits": {"log_interval_s": 0},
        "metrics": {"port": 0},
    }
    for key, value in overrides.items():
        section = data.setdefault(key, {})
        if isinstance(section, dict) and isinstance(value, dict):
            section.update(value)
        else:
            data[key] = value
    return Settings.model_validate(data)


@contextmanager
def running(settings: Settings, config: Path | None = None) -> Iterator[Daemon]:
    """The daemon in a background thread of this process, stopped cleanly on exit
    (``config``: the file it was read from, as ``sensord run --config`` gives it)."""
    daemon = Daemon(settings, config=config)
    thread = threading.Thread(target=daemon.run, name="daemon", daemon=True)
    thread.start()
    try:
        assert wait_for(daemon.ready.is_set, 15), "daemon did not connect"
        yield daemon
    finally:
        daemon.request_stop()
        thread.join(timeout=30)
        assert not thread.is_alive(), "daemon did not stop"


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def scored(daemon: Daemon) -> int:
    return int(daemon.stats()["scored"]) + int(daemon.stats()["first"])
