"""The alert outbox: an alert is on disk before it is published, until the broker has it.

An append-only log (``<state dir>/outbox.log``). The alerts of one micro-batch are appended
and made durable with one ``fdatasync`` before they are handed to MQTT, and before the
readings that raised them are acknowledged; so once a reading is acknowledged, its alert
survives a crash. When the broker acknowledges an alert (PUBACK) a small ``done`` record is
appended, without a sync: losing one only means the alert is published once more after a
crash, which its stable id lets subscribers drop. Once nothing is outstanding the log is
emptied; when it grows past ``compact_bytes`` with some alerts still outstanding (a long
outage), it is rewritten with those alone. At start, outstanding alerts are published again.

Records are framed by framing.py (length, CRC; a torn tail ends the read); a body is
``kind`` (u8), ``seq`` (u64), ``topic length`` (u16), topic, payload. No pickle, no JSON
parsing of payloads: they go out as they were written.

Written by hand: the job is forty lines of ``os.write``/``fdatasync``, and the packages that
offer durable queues (persist-queue, litequeue) sit on SQLite or pickle with costs and
semantics (per-item transactions, or pickle) that do not fit one sync per batch.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sensord.durable.files import write_atomic
from sensord.durable.framing import frame, intact
from sensord.errors import OutboxError

_BODY = struct.Struct("<BQH")  # kind, seq, topic length
ALERT, DONE = 1, 2
COMPACT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """An alert waiting for the broker's acknowledgement."""

    seq: int
    topic: str
    payload: bytes


@dataclass
class OutboxCounters:
    written: int = 0
    done: int = 0
    replayed: int = 0
    torn: int = 0  # bytes of a torn tail found at start
    compactions: int = 0


class Outbox:
    """The durable list of alerts not yet acknowledged by the broker."""

    def __init__(self, path: Path, compact_bytes: int = COMPACT_BYTES) -> None:
        self.path = path
        self.compact_bytes = compact_bytes
        self.counters = OutboxCounters()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._pending: dict[int, Entry] = {}
        self._next_seq = 1
        self._size = 0
        self._read_existing()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)

    def __len__(self) -> int:
        return len(self._pending)

    def outstanding(self) -> list[Entry]:
        """Alerts written but not acknowledged, oldest first (to publish again at start)."""
        return sorted(self._pending.values(), key=lambda entry: entry.seq)

    def add(self, items: Sequence[tuple[str, bytes]]) -> list[int]:
        """Append these (topic, payload) alerts and make them durable; return their seqs."""
        if not items:
            return []
        seqs, records = [], []
        for topic, payload in items:
            seq = self._next_seq
            self._next_seq += 1
            records.append(_record(ALERT, seq, topic, payload))
            self._pending[seq] = Entry(seq, topic, payload)
            seqs.append(seq)
        data = b"".join(records)
        try:
            os.write(self._fd, data)
            os.fdatasync(self._fd)
        except OSError as exc:
            raise OutboxError(f"{self.path}: cannot write alerts ({exc.strerror})") from None
        self._size += len(data)
        self.counters.written += len(items)
        return seqs

    def done(self, seq: int) -> None:
        """The broker has this alert: forget it (and empty or compact the log)."""
        if self._pending.pop(seq, None) is None:
            return
        self.counters.done += 1
        try:
            if not self._pending:
                os.ftruncate(self._fd, 0)
                self._size = 0
            elif self._size > self.compact_bytes:
                self._compact()
            else:
                data = _record(DONE, seq, "", b"")
                os.write(self._fd, data)
                self._size += len(data)
        except OSError as exc:
            raise OutboxError(f"{self.path}: cannot record a delivery ({exc.strerror})") from None

    def close(self) -> None:
        os.close(self._fd)

    def _compact(self) -> None:
        """Rewrite the log with only what is outstanding (atomically, then reopen it)."""
        data = b"".join(_record(ALERT, e.seq, e.topic, e.payload) for e in self.outstanding())
        write_atomic(self.path, data)
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._size = len(data)
        self.counters.compactions += 1

    def _read_existing(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise OutboxError(f"{self.path}: cannot read ({exc.strerror})") from None
        good = 0
        for kind, seq, topic, payload, end in _records(data):
            if kind == ALERT:
                self._pending[seq] = Entry(seq, topic, payload)
            else:
                self._pending.pop(seq, None)
            self._next_seq = max(self._next_seq, seq + 1)
            good = end
        if good < len(data):
            # A torn tail from a crash mid-append: cut it so new records follow good ones.
            self.counters.torn = len(data) - good
            with self.path.open("r+b") as handle:
                handle.truncate(good)
        self._size = good
        self.counters.replayed = len(self._pending)


def _record(kind: int, seq: int, topic: str, payload: bytes) -> bytes:
    encoded = topic.encode()
    return frame(_BODY.pack(kind, seq, len(encoded)) + encoded + payload)


def _records(data: bytes) -> list[tuple[int, int, str, bytes, int]]:
    """Whole, intact records as (kind, seq, topic, payload, end offset); stops at damage."""
    out = []
    for body, end in intact(data):
        if len(body) < _BODY.size:
            break
        kind, seq, topic_len = _BODY.unpack_from(body)
        if kind not in (ALERT, DONE) or _BODY.size + topic_len > len(body):
            break
        topic = body[_BODY.size : _BODY.size + topic_len].decode(errors="replace")
        out.append((kind, seq, topic, body[_BODY.size + topic_len :], end))
    return out
