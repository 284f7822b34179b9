"""The common incoming PUBLISH without paho's per-packet Python, and PUBACKs in one write.

A drain through paho 2.x cost ~165 Python calls per reading (scripts/probes/paho_drain.py,
cProfile): three reads and a dict reset per packet, a ``Properties`` object built and
unpacked for every MQTT 5 PUBLISH even when its property block is empty (a third of the
time), an ``MQTTMessage`` with its own ``threading.Condition``, a debug log line formatted
or not, and on the way back a queued packet dict per PUBACK. ``FastClient`` parses the
packets that need none of that straight from ``BufferedClient``'s buffer and hands each to
``on_reading`` as (topic, payload, qos, packet id); ``puback`` writes a batch of
acknowledgements as one byte string.

Taken fast: a whole PUBLISH in the buffer, QoS 0 or 1, not retained, a valid UTF-8
non-empty topic and, on MQTT 5, an empty property block. Everything else (retained,
QoS 2, properties, a packet split across reads, anything malformed, any other packet, paho
logging turned on) is left where it is for paho's own ``_packet_read``, which parses the
same bytes as it always did and calls ``on_message``. The dup flag is not needed: sensord
treats a redelivered reading like any other (the core drops what it already scored).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Sequence

from paho.mqtt.client import MQTT_LOG_ERR
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion

from sensord.daemon.mqttbuffer import BufferedClient

# topic, payload, qos, packet id: a reading as the fast path hands it over
OnReading = Callable[[str, bytes, int, int], None]
# First bytes of the PUBLISH packets taken fast: type 3, retain 0; QoS 0, 1, 1 with dup.
# (A QoS 0 PUBLISH with dup set is a protocol error; paho decides what to make of it.)
_FAST_HEADERS = frozenset((0x30, 0x32, 0x3A))
_PUBACK = struct.Struct("!BBH")  # paho's own: type, remaining length 2, packet id
_PUBACK_TYPE = 0x40


class FastClient(BufferedClient):
    """A ``BufferedClient`` that parses plain PUBLISH packets itself while ``on_reading``
    is set, and sends a batch of PUBACKs as one write (``puback``).

    It overrides paho's private ``_packet_read`` and reads its private ``_in_packet``,
    ``_protocol``, ``_logger``, ``_msgtime_mutex`` and ``_in_callback_mutex`` (paho is
    pinned below 3; tests/daemon/test_mqtt_fast.py checks both paths on Mosquitto)."""

    on_reading: OnReading | None = None

    def _packet_read(self) -> MQTTErrorCode:
        on_reading = self.on_reading
        if (
            on_reading is not None
            and self._in_packet["command"] == 0  # not inside a packet paho began
            and self._logger is None  # paho logs each PUBLISH when asked to: let it
            and self.on_log is None
            and not self.paused
        ):
            if self._rx_pos >= len(self._rx):
                failed = self._refill()
                if failed is not None:
                    return failed
            if self._read_publishes(on_reading):
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._packet_read()

    def _refill(self) -> MQTTErrorCode | None:
        """Read the next chunk here, so that its first packet is parsed fast too (one per
        live reading); what paho's read would return if that fails, as it would."""
        try:
            if self._fill():
                return None
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except OSError as err:
            self._easy_log(MQTT_LOG_ERR, "failed to receive on socket: %s", err)
        return MQTTErrorCode.MQTT_ERR_CONN_LOST

    def _read_publishes(self, on_reading: OnReading) -> int:
        """Hand over the plain PUBLISH packets at the buffer's head; how many."""
        rx, pos, end = self._rx, self._rx_pos, len(self._rx)
        v5 = self._protocol == MQTTProtocolVersion.MQTTv5
        taken = 0
        with self._in_callback_mutex:  # as paho holds it around on_message
            while pos + 2 <= end and not self.paused:
                header = rx[pos]
                if header not in _FAST_HEADERS:
                    break
                at, stop = pos + 2, pos + 2 + rx[pos + 1]
                if rx[pos + 1] > 127:
                    at, stop = _extent(rx, pos + 1, end)
                if stop > end or stop - at < 2:  # not all here yet, or malformed
                    break
                mark = at + 2 + (rx[at] << 8 | rx[at + 1])  # after the topic
                qos = header >> 1 & 1
                body = mark + 2 if qos else mark
                if v5:
                    if body >= stop or rx[body]:  # MQTT 5 properties: paho reads them
                        break
                    body += 1
                if body > stop or mark == at + 2:
                    break  # malformed, or an empty topic: paho's error to report
                try:
                    topic = rx[at + 2 : mark].decode()
                except UnicodeDecodeError:
                    break
                pos = self._rx_pos = stop  # consumed before the callback may pause reading
                on_reading(topic, rx[body:stop], qos, rx[mark] << 8 | rx[mark + 1] if qos else 0)
                taken += 1
        if taken:
            with self._msgtime_mutex:  # for keepalive, as paho's read marks a packet
                self._last_bytes_received = time.monotonic()
        return taken

    def puback(self, mids: Sequence[int]) -> None:
        """Acknowledge these QoS 1 readings, in this order, after everything paho queued
        before (the same bytes ``ack`` would queue one packet at a time). While there is
        no connection they are dropped, as paho's reconnect drops what it had queued."""
        if not mids or self.socket() is None:
            return
        if self._out_packet:
            self.loop_write()  # what paho queued earlier goes first, into the same buffer
            if self._out_packet or self.socket() is None:
                for mid in mids:  # paho kept some back: these queue behind them, as its own
                    self.ack(mid, 1)
                return
        pack = _PUBACK.pack
        self._tx += b"".join([pack(_PUBACK_TYPE, 2, mid) for mid in mids])
        with self._msgtime_mutex:  # a packet went out: no PINGREQ needed yet
            self._last_msg_out = time.monotonic()


def _extent(rx: bytes, at: int, end: int) -> tuple[int, int]:
    """Where a packet's body starts and stops, from its remaining length of two bytes or more
    at ``at``; a stop past ``end`` when the length is not all here or is malformed."""
    length = rx[at] & 127
    for shift in (7, 14, 21):
        at += 1
        if at >= end:
            break
        byte = rx[at]
        length |= (byte & 127) << shift
        if byte < 128:
            return at + 1, at + 1 + length
    return end, end + 1
