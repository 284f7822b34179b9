"""paho's client with buffered reads and coalesced writes, for a loop that polls it, and
made as sensord needs it (``make_client``: session, credentials, TLS, Last Will).

paho reads each packet with three ``recv`` calls (command byte, length, body) and writes
each packet with its own ``send``; at tens of thousands of readings a second those system
calls were the daemon's ceiling (docs/benchmarks.md). ``BufferedClient`` serves paho's
reads from one 64 KiB ``recv`` and sends what a poll wrote with one ``send``. It overrides
three private paho 2.x methods (``_sock_recv``, ``_sock_send``, ``_handle_on_message``) and
reads private fields (``_in_packet``, ``_in_callback_mutex``, ``_userdata``); the
dependency is pinned below 3 and tests/integration/test_mqtt.py checks the reader and the
writer, over TLS too.
"""

from __future__ import annotations

import select
import ssl
import time
from typing import TypeVar

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from sensord.config import MqttSettings
from sensord.wire.published import OFFLINE

READ_CHUNK = 65_536  # bytes per recv: about a thousand small readings
_DISCONNECT = 0xE0  # MQTT packet type of DISCONNECT, in the first byte's high nibble


class BufferedClient(paho.Client):
    """A paho client that reads 64 KiB at a time and writes once per poll.

    paho asks ``_sock_recv`` for 1 byte, then 1 byte per length byte, then the body, each a
    system call. Here one ``recv`` fills a buffer and those asks are served from it;
    ``loop_read`` keeps reading while buffered bytes remain, since ``select`` cannot see
    them, but takes at most one chunk from the socket per call, so the readings one call
    hands over stay bounded. paho keeps a partly read packet across calls, so a packet split
    between two reads is handled as before. Overriding ``_sock_recv`` relies on paho 2.x
    internals; the dependency is pinned below 3, and tests/integration/test_mqtt.py checks
    the reader.

    Writes: paho hands every packet to ``_sock_send``; here it is appended to a buffer that
    ``flush_writes`` sends in one call (the adapter registers for writes, so paho does not
    write from ``publish`` itself). A DISCONNECT is flushed at once, since paho closes the
    socket right after it.
    """

    _rx: bytes = b""  # the last chunk read from the socket
    _rx_pos: int = 0  # how much of it paho has taken
    paused: bool = False  # set by the adapter: enough readings waiting, parse no further
    _may_recv: bool = True  # one recv per loop_read: what one poll takes stays bounded

    def _sock_recv(self, bufsize: int) -> bytes:
        if self.paused and self._in_packet["command"] == 0:
            # Enough readings wait, and paho is about to start a packet: stop here, since
            # paho's loop_read parses one packet per message it has in flight (hundreds
            # while states go out), however many readings are already waiting.
            raise BlockingIOError
        if self._rx_pos >= len(self._rx) and not self._fill():
            return b""  # connection closed
        chunk = self._rx[self._rx_pos : self._rx_pos + bufsize]
        self._rx_pos += len(chunk)
        return chunk

    def _fill(self) -> bool:
        """One ``recv`` into the (used up) buffer; False when the connection closed. Raises
        BlockingIOError when nothing is there or this ``loop_read`` already read, and the
        socket's own errors."""
        if not self._may_recv:
            raise BlockingIOError  # paho: "nothing more for now"; the rest waits in TCP
        self._may_recv = False
        data = super()._sock_recv(READ_CHUNK)  # raises BlockingIOError when empty
        if not data:
            return False
        self._rx, self._rx_pos = data, 0
        return True

    _tx: bytes = b""  # written by paho, not yet sent

    def _sock_send(self, buf: bytes | bytearray) -> int:
        if self.socket() is None:
            raise ConnectionError("not connected")  # as paho's own: the caller handles it
        self._tx += buf
        if buf[:1] and buf[0] & 0xF0 == _DISCONNECT:
            self.flush_writes(wait_s=1.0)
        return len(buf)

    def want_write(self) -> bool:
        return super().want_write() or bool(self._tx)

    def flush_writes(self, wait_s: float = 0.0) -> None:
        """Send what paho wrote, in one system call when the socket takes it all; what it
        does not take waits for the next poll (or up to ``wait_s`` here)."""
        sock = self.socket()
        if sock is None:
            self._tx = b""
            return
        deadline = time.monotonic() + wait_s
        while self._tx:
            try:
                sent = sock.send(self._tx)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                sent = 0
            except OSError:
                self._tx = b""  # the connection is gone; the next read tells paho
                return
            self._tx = self._tx[sent:]
            remaining = deadline - time.monotonic()
            if not self._tx or remaining <= 0:
                return
            select.select([], [sock], [], remaining)

    @property
    def buffered(self) -> int:
        """Bytes read from the socket that paho has not parsed yet."""
        return len(self._rx) - self._rx_pos

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        self._may_recv = True
        rc = super().loop_read(max_packets)
        while (
            rc == MQTTErrorCode.MQTT_ERR_SUCCESS
            and self.buffered
            and not self.paused
            and self.socket() is not None
        ):
            rc = super().loop_read(max_packets)
        return rc

    def message_callback_add(self, sub: str, callback: paho.CallbackOnMessage) -> None:
        raise NotImplementedError("BufferedClient hands every message to on_message")

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        # paho looks every message up among its per-filter callbacks first (a recursive
        # matcher walk: 11 % of the daemon's CPU in a 1,000-stream drain); sensord registers
        # none (message_callback_add above refuses), so each goes straight to on_message.
        # Errors are the callback's own to count: the adapter's on_message catches them all.
        on_message = self.on_message
        if on_message is not None:
            with self._in_callback_mutex:
                on_message(self, self._userdata, message)

    def drop_buffer(self) -> None:
        """Forget unread and unsent bytes: the connection they belonged to is gone."""
        self._rx, self._rx_pos, self._tx = b"", 0, b""


Client = TypeVar("Client", bound=BufferedClient)


def writes_are_polled(client: paho.Client, userdata: object, sock: object) -> None:
    """paho's hook for an external loop: the adapter's poll writes what is queued."""


def make_client(s: MqttSettings, status: str, kind: type[Client]) -> Client:
    """sensord's paho client per ``[mqtt]`` (a ``kind`` of ``BufferedClient``), its Last
    Will making ``status`` offline; the adapter sets the callbacks."""
    v5 = s.protocol == "5"
    client = kind(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=s.client_id,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        clean_session=None if v5 else False,
        manual_ack=True,  # acknowledged by the adapter's ``ack`` once scored, not when read
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
    client.will_set(status, OFFLINE, qos=1, retain=True)
    client.max_queued_messages_set(0)  # paho keeps every unsent publish: nothing dropped
    client.on_socket_register_write = writes_are_polled
    return client
