"""What the loop needs of its MQTT side: the seam (httpx's transport) that lets tests drive
the daemon without a broker.

``MqttAdapter`` (mqtt.py) is the real one, on paho; the daemon takes a factory for it, so a
test can hand it an in-memory transport that records what was published and acknowledged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sensord.config import MqttSettings
from sensord.daemon.ingest import Ackable, Message, Request
from sensord.figures import counter, gauge


class Published(Protocol):
    """What a publish hands back (paho's MQTTMessageInfo): its packet id, and whether the
    broker has it yet."""

    @property
    def mid(self) -> int: ...

    def is_published(self) -> bool: ...


class MqttTransport(Protocol):
    """Readings in (``poll``, ``take``), messages out (``publish``, ``write``), acks last."""

    inbox: list[Message]
    requests: list[Request]
    counters: MqttCounters
    connected: threading.Event
    ever_connected: threading.Event
    connected_at: float
    on_published: Callable[[int, bool], None] | None

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def poll(self, timeout: float) -> None: ...

    def take(self, limit: int) -> list[Message]: ...

    def making_progress(self, now: float) -> bool: ...

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        correlation: bytes | None = None,
    ) -> Published: ...

    def write(self) -> None: ...

    def ack(self, messages: Sequence[Ackable]) -> None: ...


class TransportFactory(Protocol):
    def __call__(
        self,
        settings: MqttSettings,
        prefix: str,
        filters: Sequence[str],
        read_limit: int = 256,
        requests: str | None = None,
        *,
        status: str | None = None,
    ) -> MqttTransport: ...


@dataclass
class MqttCounters:
    received: int = counter("sensord_readings_received", "Readings taken off MQTT.")
    connects: int = counter("sensord_mqtt_connects", "Connections to the broker.")
    reconnects: int = counter(
        "sensord_mqtt_reconnects", "Connections to the broker after the first."
    )
    disconnects: int = counter(
        "sensord_mqtt_disconnects", "Connections to the broker lost or closed."
    )
    connect_failures: int = counter(
        "sensord_mqtt_connect_failures", "Connection attempts that failed or were refused."
    )
    callback_errors: int = counter(
        "sensord_mqtt_callback_errors", "Errors raised inside paho's callbacks (caught, logged)."
    )
    own_topics: int = counter(
        "sensord_readings_own_topic",
        "Messages on sensord's own topics that a route's filter also matched (not scored).",
    )
    acked: int = counter(
        "sensord_readings_acknowledged", "Readings acknowledged to the broker after scoring."
    )
    # Read on a connection since lost: the broker sends them again.
    ack_stale: int = counter(
        "sensord_readings_redelivery_expected",
        "Readings scored after their connection was lost: not acknowledged, sent again.",
    )
    # The broker's own count, if it publishes one ($SYS): sensord cannot see these drops.
    broker_dropped: int | None = gauge(
        "sensord_broker_dropped_messages",
        "Messages the broker dropped, all clients (Mosquitto's $SYS count; QoS 0 overload "
        "or full queues); absent until the broker reports it.",
        default=None,
    )
