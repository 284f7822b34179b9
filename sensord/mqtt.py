"""The MQTT edge, on paho-mqtt 2.x: connect, subscribe, hand readings to the loop, publish.

paho's network thread runs the callbacks; they only put ``(topic, payload, received, qos)``
on the bounded inbox and never raise into paho (an unexpected error is counted and logged).
When the inbox is full a QoS 0 reading is dropped and counted (QoS 0 promised no more), and
a QoS 1/2 reading waits: paho's thread stops reading the socket, TCP pushes back, and the
broker holds the rest in the session until the loop catches up.

The session is persistent (MQTT 5 ``clean_start=False`` with a session expiry; 3.1.1
``clean_session=False``) under a stable client id, so the broker queues what arrives while
sensord restarts. Every (re)connect subscribes again and re-publishes ``online``; the Last
Will makes ``<prefix>/status`` ``offline`` if the connection dies. paho reconnects with
exponential backoff between ``reconnect_min_s`` and ``reconnect_max_s``.
"""

from __future__ import annotations

import queue
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from sensord.config import MqttSettings
from sensord.logs import get_logger
from sensord.wire import OFFLINE, ONLINE, status_topic

log = get_logger(__name__)
# How long a QoS 1/2 reading waits for room in a full inbox before the wait is logged again.
FULL_WAIT_S = 1.0


@dataclass(frozen=True)
class Inbound:
    topic: str
    payload: bytes
    received: float
    qos: int


@dataclass
class MqttCounters:
    received: int = 0
    dropped_queue_full: int = 0
    queue_full_waits: int = 0
    callback_errors: int = 0
    connects: int = 0
    disconnects: int = 0
    connect_failures: int = 0
    own_topics: int = 0


@dataclass
class Inbox:
    """The bounded queue between paho's thread and the daemon loop."""

    size: int
    queue: queue.Queue[Inbound] = field(init=False)

    def __post_init__(self) -> None:
        self.queue = queue.Queue(maxsize=self.size)


class MqttAdapter:
    """One paho client: sensor subscriptions in, sensord's topics out."""

    def __init__(
        self, settings: MqttSettings, prefix: str, filters: Sequence[str], inbox: Inbox
    ) -> None:
        self.settings = settings
        self.prefix = prefix
        self.filters = list(filters)
        self.inbox = inbox
        self.counters = MqttCounters()
        self.connected = threading.Event()
        self.ever_connected = threading.Event()
        self._stopping = False
        self.client = self._make_client()

    def _make_client(self) -> paho.Client:
        s = self.settings
        v5 = s.protocol == "5"
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else False,
        )
        if s.username is not None:
            password = s.password.get_secret_value() if s.password is not None else None
            client.username_pw_set(s.username, password)
        if s.tls.enabled:
            client.tls_set(
                ca_certs=str(s.tls.ca_file) if s.tls.ca_file else None,
                certfile=str(s.tls.cert_file) if s.tls.cert_file else None,
                keyfile=str(s.tls.key_file) if s.tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            client.tls_insecure_set(s.tls.insecure)
        client.will_set(status_topic(self.prefix), OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(
            max(1, round(s.reconnect_min_s)), max(1, round(s.reconnect_max_s))
        )
        client.max_queued_messages_set(0)  # paho keeps every unsent publish: nothing dropped
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        """Connect in the background; paho retries until the broker answers."""
        s = self.settings
        properties = None
        if s.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = s.session_expiry_s
        log.info(
            "connecting",
            host=s.host,
            port=s.port,
            client_id=s.client_id,
            protocol=s.protocol,
            tls=s.tls.enabled,
        )
        # clean_start is MQTT 5's; 3.1.1 got clean_session=False when the client was made.
        self.client.connect_async(
            s.host, s.port, keepalive=s.keepalive, clean_start=False, properties=properties
        )
        self.client.loop_start()

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> paho.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish ``offline``, wait for outstanding publishes, disconnect cleanly."""
        self._stopping = True
        if self.connected.is_set():
            info = self.publish(status_topic(self.prefix), OFFLINE, qos=1, retain=True)
            deadline = time.monotonic() + timeout_s
            while (
                not info.is_published() and time.monotonic() < deadline and self.connected.is_set()
            ):
                time.sleep(0.01)
        self.client.disconnect()
        self.client.loop_stop()

    # paho callbacks: they run on paho's thread and must never raise.

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        try:
            if reason_code.is_failure:
                self.counters.connect_failures += 1
                log.error("broker refused the connection", reason=str(reason_code))
                return
            self.counters.connects += 1
            for topic in self.filters:
                client.subscribe(topic, qos=self.settings.qos)
            client.publish(status_topic(self.prefix), ONLINE, qos=1, retain=True)
            self.connected.set()
            self.ever_connected.set()
            log.info(
                "connected", session_present=flags.session_present, subscriptions=len(self.filters)
            )
        except Exception as exc:  # never into paho's thread; counted and logged instead
            self.counters.callback_errors += 1
            log.exception("on_connect failed", error=str(exc))

    def _on_connect_fail(self, client: paho.Client, userdata: object) -> None:
        self.counters.connect_failures += 1
        log.warning(
            "broker unreachable; retrying with backoff",
            host=self.settings.host,
            port=self.settings.port,
        )

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected.clear()
        self.counters.disconnects += 1
        if not self._stopping:
            log.warning("disconnected; reconnecting", reason=str(reason_code))

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        try:
            topic = message.topic
            if topic.startswith(self.prefix + "/"):
                self.counters.own_topics += 1  # a route filter that also matches our output
                return
            item = Inbound(topic, bytes(message.payload), time.time(), message.qos)
            self.counters.received += 1
            if message.qos == 0:
                try:
                    self.inbox.queue.put_nowait(item)
                except queue.Full:
                    self.counters.dropped_queue_full += 1
                return
            while True:
                try:
                    self.inbox.queue.put(item, timeout=FULL_WAIT_S)
                    return
                except queue.Full:
                    self.counters.queue_full_waits += 1
                    if self._stopping:  # the loop has stopped draining: nothing will make room
                        self.counters.dropped_queue_full += 1
                        return
        except Exception as exc:  # never into paho's thread; counted and logged instead
            self.counters.callback_errors += 1
            log.exception("on_message failed", error=str(exc))
