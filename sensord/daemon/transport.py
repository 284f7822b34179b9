"""What the loop needs of the wire, in two small protocols: the seam (httpx's transport)
that lets tests drive the daemon without a broker.

- A **source** of readings: read what is there (``poll``), hand it to the loop (``take``),
  acknowledge it once scored (``ack``).
- An **outlet** for sensord's own messages: ``publish``, ``write`` what is queued now,
  and say when the broker has one (``on_published``).

``MqttAdapter`` (mqtt.py, on paho) is both; in cluster mode readings come from the
member's partitions instead (``ClusterSource``, clustered.py) and the outlet stays MQTT.
Tests hand the daemon an in-memory transport that records what was published and
acknowledged. The messages that cross the seam are defined here too.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from sensord.config import MqttSettings
from sensord.figures import counter, gauge


class Message(NamedTuple):
    """A reading as a source hands it over (a tuple: made once per reading).

    ``mid`` and ``session`` let the source acknowledge it once it is scored: an MQTT packet
    id means something only on the connection (``session``) it arrived on.
    """

    topic: str
    payload: bytes
    received: float
    qos: int
    mid: int = 0
    session: int = 0


class Request(NamedTuple):
    """A message to sensord itself (operator feedback), with its MQTT 5 reply properties."""

    topic: str
    payload: bytes
    received: float
    qos: int
    mid: int
    session: int
    response_topic: str | None = None
    correlation: bytes | None = None


class Ackable(Protocol):
    @property
    def qos(self) -> int: ...
    @property
    def mid(self) -> int: ...
    @property
    def session(self) -> int: ...


@dataclass(eq=False)
class Pending:
    """A message awaiting its acknowledgement, and how many of its readings are held."""

    message: Message
    held: int = 0

    def release(self) -> None:
        """One of its held readings is scored (or forgotten)."""
        self.held -= 1


class Published(Protocol):
    """What a publish hands back (paho's MQTTMessageInfo): its packet id, and whether the
    broker has it yet."""

    @property
    def mid(self) -> int: ...

    def is_published(self) -> bool: ...


OnPublished = Callable[[int, bool], None]  # (packet id, accepted by the broker)


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


@dataclass
class Link:
    """The broker connection as the loop, the health check and the metrics see it.

    One object, shared by reference (a cluster source shows its MQTT transport's), so
    nothing has to copy its fields across: the transport writes them, the rest reads.
    Events, not flags: the metrics and web threads look at them too.
    """

    # Longer than this with no progress, and the network side is stuck (inf: never).
    stall_s: float = math.inf
    counters: MqttCounters = field(default_factory=MqttCounters)
    connected: threading.Event = field(default_factory=threading.Event)
    ever_connected: threading.Event = field(default_factory=threading.Event)
    connected_at: float = 0.0  # wall time of the last connection
    last_progress: float = field(default_factory=time.monotonic)  # bytes read, or a try
    stopping: bool = False

    def making_progress(self, now: float) -> bool:
        """False once the network side has been stuck longer than ``stall_s`` (the daemon
        then stops petting the systemd watchdog, which restarts it)."""
        return now - self.last_progress < self.stall_s or self.stopping


class Source(Protocol):
    """Readings in: read off the wire (``poll``), handed over (``take``), acknowledged
    once scored and journaled (``ack``, in the order given)."""

    @property
    def link(self) -> Link: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def poll(self, timeout: float) -> None:
        """Wait up to ``timeout`` for readings and read what is there."""
        ...

    def waiting(self) -> int:
        """How many readings were read and not taken yet."""
        ...

    def take(self, limit: int) -> list[Message]: ...

    def take_requests(self) -> list[Request]:
        """Messages to sensord itself read since the last call (acknowledged by ``ack``)."""
        ...

    def ack(self, messages: Sequence[Ackable]) -> None: ...


class Outlet(Protocol):
    """sensord's messages out, all at QoS 1: alerts at least once, states retained."""

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, correlation: bytes | None = None
    ) -> Published:
        """Queue a message (``correlation``: MQTT 5's, when it answers a request)."""
        ...

    def write(self) -> None:
        """Send what is queued now, without waiting."""
        ...

    def on_published(self, callback: OnPublished) -> None:
        """Call ``callback`` when the broker acknowledges a publish (its PUBACK)."""
        ...


class Transport(Source, Outlet, Protocol):
    """One broker connection that is both (MQTT)."""


@dataclass(frozen=True)
class TransportOptions:
    """What a transport subscribes to, and says, beyond the ``[mqtt]`` settings."""

    prefix: str  # sensord's own topics
    filters: Sequence[str] = ()  # the routes' topic filters (none in cluster mode)
    requests: str | None = None  # operators' feedback, under ``prefix``
    status: str | None = None  # online/offline and the Last Will (``<prefix>/status``)
    read_limit: int = 256  # readings parsed ahead of the loop
    wake: int | None = None  # another file descriptor whose readability ends a wait


TransportFactory = Callable[[MqttSettings, TransportOptions], Transport]
