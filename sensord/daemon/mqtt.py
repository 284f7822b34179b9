"""The MQTT edge, on paho-mqtt 2.x: connect, subscribe, hand readings to the loop, publish.

paho does the protocol (packets, QoS flows, keepalive, TLS, session); the daemon loop drives
it through paho's external-loop API (``loop_read``, ``loop_write``, ``loop_misc``), with no
network thread. Two measured reasons (docs/benchmarks.md):

- paho reads each packet with three ``recv`` calls (command byte, length, body) and one
  ``select`` per packet, and writes each packet (a PUBACK per reading) with its own
  ``send``; ``BufferedClient`` serves the reads from one 64 KiB ``recv`` and sends what a
  poll wrote with one ``send``, so a backlog of ~1,000 small readings costs two system calls
  instead of ~5,000 (the PUBACK sends alone were 29 % of the daemon's CPU).
- With paho's own thread, every system call it made handed the GIL to the scoring loop and
  back; one thread owning both the socket and the state has no such hand-offs, and a reading
  can be acknowledged by the same thread once it is scored.

A plain reading (QoS 0/1, not retained, no MQTT 5 properties) does not go through paho's
per-packet Python at all: ``FastClient`` (mqttfast.py) parses it from that buffer and hands
it to ``_on_reading``, and ``ack`` writes a batch's PUBACKs as one byte string (~9 Python
calls a reading instead of ~165). paho still handles everything else, through
``_on_message``, which ends in the same ``_on_reading``.

Backpressure is TCP's and MQTT's: while the loop scores a batch it does not read, and the
broker keeps the rest in the session (``max_queued_messages``). Nothing is dropped inside.

Readings are acknowledged by the loop (paho's ``manual_ack``), after they are scored and
their alerts are in the outbox, in arrival order (``ack``). A reading read but not
acknowledged when sensord dies, or when its connection drops, is sent again by the broker;
the core recognises it by its timestamp and does not score it twice. The broker sends at
most ``receive_maximum`` unacknowledged readings ahead (MQTT 5 Receive Maximum; for MQTT
3.1.1 the broker's ``max_inflight_messages`` decides).

The session is persistent (MQTT 5 ``clean_start=False`` with a session expiry; 3.1.1
``clean_session=False``) under a stable client id, so the broker queues what arrives while
sensord restarts. Every (re)connect subscribes again and re-publishes ``online``; the Last
Will makes ``<prefix>/status`` ``offline`` if the connection dies. Lost connections are
retried with exponential backoff between ``reconnect_min_s`` and ``reconnect_max_s``.
"""

from __future__ import annotations

import select
import ssl
import time
from collections.abc import Sequence

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from sensord.config import MqttSettings
from sensord.daemon.mqttbuffer import make_client
from sensord.daemon.mqttfast import FastClient
from sensord.daemon.transport import (
    Ackable,
    Link,
    Message,
    OnPublished,
    Request,
    TransportOptions,
)
from sensord.logs import get_logger
from sensord.wire.published import OFFLINE, ONLINE, status_topic
from sensord.wire.topics import TopicFilter

log = get_logger(__name__)
# Mosquitto's count of messages it dropped (full queues, QoS 0 overload), all clients: the
# only drops between sensors and sensord, which sensord itself cannot see.
BROKER_DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"
STOP_FLUSH_S = 5.0  # at a clean stop, how long outstanding publishes may take


class MqttAdapter:
    """One paho client: sensor subscriptions in, sensord's topics out; driven by ``poll``.
    A ``Transport`` (transport.py): both the readings' source and the messages' outlet."""

    def __init__(self, settings: MqttSettings, options: TransportOptions) -> None:
        self.settings = settings
        prefix = options.prefix
        self.status = options.status or status_topic(prefix)  # online/offline, Last Will
        self.filters = list(options.filters)
        self.inbox: list[Message] = []  # read, not yet taken by the loop
        # Messages to sensord itself (a filter under its own prefix), and those read.
        self.requests_filter = requests = options.requests
        if requests and not requests.startswith(prefix + "/"):
            raise ValueError(f"request filter {requests!r} is not under the prefix {prefix!r}")
        self._requests = TopicFilter(requests) if requests else None
        self.requests: list[Request] = []
        # Parsing stops once this many readings wait (the rest stays buffered): a reading
        # is then never parsed more than one batch ahead of being scored.
        self.read_limit = options.read_limit
        self._own = prefix + "/"
        # paho's keepalive should turn a silent broker into a reconnect long before this.
        self.link = Link(stall_s=2.0 * settings.keepalive + settings.reconnect_max_s + 5.0)
        self.counters = self.link.counters  # the same object, by a shorter name
        self._next_attempt = 0.0
        self._backoff = settings.reconnect_min_s
        # Packet ids are per connection: a reading is acknowledged only on the one it came by.
        self._session = 0
        self._on_published: OnPublished | None = None
        # Another file descriptor whose readability ends a poll's wait (cluster mode: readings
        # from the engine's readings log).
        self.also_wake = options.wake
        self.client = self._make_client()

    def _make_client(self) -> FastClient:
        client = make_client(self.settings, self.status, FastClient)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_reading = self._on_reading  # most readings: parsed without paho's Python
        client.on_message = self._on_message  # the rest (mqttfast.py says which)
        client.on_publish = self._on_publish
        return client

    def start(self) -> None:
        """Remember where to connect; ``poll`` connects, and reconnects with backoff."""
        s = self.settings
        properties = None
        if s.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = s.session_expiry_s
            # Without it Mosquitto sends only max_inflight_messages (default 20) unacknowledged
            # readings ahead, and batches could never be larger than that.
            properties.ReceiveMaximum = s.receive_maximum
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

    def poll(self, timeout: float) -> None:
        """Connect if due; wait up to ``timeout`` for the socket, read what is there into
        ``inbox``, write what is queued, and keep the connection alive."""
        sock = self.client.socket()
        if sock is None:
            self._reconnect_if_due(timeout)
            return
        if len(self.inbox) >= self.read_limit:
            self.client.loop_misc()
            self.write()
            return
        ready = self.client.buffered > 0 or _tls_pending(sock)
        if not ready:
            fd = sock.fileno()
            writers = [fd] if self.client.want_write() else []
            watched = [fd] if self.also_wake is None else [fd, self.also_wake]
            try:
                readable, _, _ = select.select(watched, writers, [], max(timeout, 0.0))
            except (OSError, ValueError):  # the socket closed under us: paho notices below
                readable = [fd]
            ready = fd in readable
        if ready:
            self.client.loop_read()
            self.link.last_progress = time.monotonic()
        self.client.loop_misc()
        self.write()  # every queued packet into the write buffer, and out in one send

    def waiting(self) -> int:
        return len(self.inbox)

    def write(self) -> None:
        """Send what is queued (alerts, states, acknowledgements) without waiting."""
        if self.client.socket() is not None and self.client.want_write():
            self.client.loop_write()
            self.client.flush_writes()

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, correlation: bytes | None = None
    ) -> paho.MQTTMessageInfo:
        properties = None
        if correlation is not None and self.settings.protocol == "5":
            properties = Properties(PacketTypes.PUBLISH)
            properties.CorrelationData = correlation
        info = self.client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            # Made while disconnected: paho keeps it and sends it after the reconnect, but
            # its is_published() would raise from now on. It is queued, so say so.
            info.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        return info

    def on_published(self, callback: OnPublished) -> None:
        self._on_published = callback

    def ack(self, messages: Sequence[Ackable]) -> None:
        """Acknowledge these readings, in order; those that came by a connection since lost
        are left to the broker, which sends them again on this one."""
        session = self._session
        pubacks: list[int] = []  # QoS 1: written as one batch (FastClient.puback)
        acked = stale = 0
        for message in messages:
            if message.session != session:
                stale += 1
            elif message.qos == 1:
                pubacks.append(message.mid)
            elif message.qos:  # QoS 2 (paho's PUBCOMP), after the PUBACKs before it
                self.client.puback(pubacks)
                acked += len(pubacks) + 1
                pubacks = []
                self.client.ack(message.mid, message.qos)
        self.client.puback(pubacks)
        self.counters.acked += acked + len(pubacks)
        self.counters.ack_stale += stale

    def take(self, limit: int) -> list[Message]:
        """Up to ``limit`` readings, oldest first."""
        taken = self.inbox[:limit]
        del self.inbox[:limit]
        self.client.paused = len(self.inbox) >= self.read_limit
        return taken

    def take_requests(self) -> list[Request]:
        taken, self.requests = self.requests, []
        return taken

    def stop(self, timeout_s: float = STOP_FLUSH_S) -> None:
        """Publish ``offline``, let outstanding publishes go out, disconnect cleanly."""
        self.link.stopping = True
        connected = self.link.connected
        if connected.is_set():
            info = self.publish(self.status, OFFLINE, retain=True)
            deadline = time.monotonic() + timeout_s
            while not info.is_published() and time.monotonic() < deadline and connected.is_set():
                self.poll(0.01)
        self.client.disconnect()
        deadline = time.monotonic() + 1.0
        while self.client.socket() is not None and time.monotonic() < deadline:
            self.poll(0.01)  # sends DISCONNECT; paho closes the socket after it

    # connecting

    def _reconnect_if_due(self, timeout: float) -> None:
        now = time.monotonic()
        if now < self._next_attempt or self.link.stopping:
            time.sleep(max(0.0, min(timeout, self._next_attempt - now)))
            return
        self.client.drop_buffer()
        self.link.last_progress = now
        try:
            self.client.reconnect()
        except ssl.SSLError as exc:  # before OSError, of which it is one
            self._failed("TLS with the broker failed (check tls.ca_file and the host name)", exc)
        except OSError as exc:
            self._failed("broker unreachable", exc)

    def _failed(self, what: str, exc: Exception) -> None:
        self.counters.connect_failures += 1
        self._next_attempt = time.monotonic() + self._backoff
        log.warning(
            f"{what}; retrying with backoff",
            host=self.settings.host,
            port=self.settings.port,
            retry_in_s=round(self._backoff, 1),
            error=str(exc),
        )
        self._backoff = min(self._backoff * 2, self.settings.reconnect_max_s)

    # paho callbacks: they run inside poll, on the loop's thread, and must never raise.

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
                self._next_attempt = time.monotonic() + self._backoff
                log.error("broker refused the connection", reason=str(reason_code))
                return
            self.counters.connects += 1
            self.counters.reconnects += self.counters.connects > 1
            self._session += 1
            self._backoff = self.settings.reconnect_min_s
            for topic in self.filters:
                client.subscribe(topic, qos=self.settings.qos)
            client.subscribe(BROKER_DROPPED_TOPIC, qos=0)
            if self.requests_filter is not None:
                client.subscribe(self.requests_filter, qos=1)
            self.link.connected_at = time.time()
            client.publish(self.status, ONLINE, qos=1, retain=True)
            self.link.connected.set()
            self.link.ever_connected.set()
            log.info(
                "connected", session_present=flags.session_present, subscriptions=len(self.filters)
            )
        except Exception as exc:  # never into paho; counted and logged instead
            self.counters.callback_errors += 1
            log.exception("on_connect failed", error=str(exc))

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.link.connected.clear()
        self.counters.disconnects += 1
        self._next_attempt = time.monotonic() + self._backoff
        if not self.link.stopping:
            log.warning("disconnected; reconnecting", reason=str(reason_code))

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        # What the fast path leaves to paho (retained, QoS 2, MQTT 5 properties, ...).
        try:
            topic = message.topic  # raises on a topic that is not UTF-8
        except Exception as exc:  # never into paho; counted and logged instead
            self._callback_failed(exc)
            return
        self._on_reading(
            topic, bytes(message.payload), message.qos, message.mid, message.properties
        )

    def _on_reading(
        self, topic: str, payload: bytes, qos: int, mid: int, properties: Properties | None = None
    ) -> None:
        try:
            if topic.startswith(self._own):
                # Requests live under our own prefix, so a reading pays one startswith here
                # (paho.topic_matches_sub builds a matcher per call: 20 % of a drain's CPU).
                if self._requests is not None and self._requests.match(topic) is not None:
                    self.requests.append(self._request(topic, payload, qos, mid, properties))
                    return
                self.counters.own_topics += 1  # a route filter that also matches our output
                self.client.ack(mid, qos)
                return
            if topic == BROKER_DROPPED_TOPIC:
                self._broker_dropped(payload)
                return
            self.counters.received += 1
            self.inbox.append(Message(topic, payload, time.time(), qos, mid, self._session))
            if len(self.inbox) >= self.read_limit:
                self.client.paused = True
        except Exception as exc:  # never into paho; counted and logged instead
            self._callback_failed(exc)

    def _callback_failed(self, exc: Exception) -> None:
        self.counters.callback_errors += 1
        log.exception("on_message failed", error=str(exc))

    def _request(
        self, topic: str, payload: bytes, qos: int, mid: int, props: Properties | None
    ) -> Request:
        response = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        return Request(
            topic,
            payload,
            time.time(),
            qos,
            mid,
            self._session,
            response if isinstance(response, str) else None,
            bytes(correlation) if isinstance(correlation, bytes | bytearray) else None,
        )

    def _broker_dropped(self, payload: bytes | bytearray) -> None:
        try:
            count = int(payload)
        except ValueError:
            return
        if count > (self.counters.broker_dropped or 0):
            log.warning("the broker dropped messages", dropped_total=count)
        self.counters.broker_dropped = count

    def _on_publish(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._on_published is None:
            return
        try:
            self._on_published(mid, not reason_code.is_failure)
        except Exception as exc:  # never into paho; counted and logged instead
            self.counters.callback_errors += 1
            log.exception("on_publish failed", error=str(exc))


def _tls_pending(sock: object) -> bool:
    """TLS may hold decrypted bytes that ``select`` cannot see."""
    return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
