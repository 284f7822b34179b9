"""The readings journal: what was scored since the last snapshot, to replay after a crash.

A snapshot alone would send a stream back to where it was when the snapshot was taken, while
the readings after it are already acknowledged and will not come again: the stream would
jump over them, its pending prediction would be stale, and the first reading after the
restart could raise a false alert. So every micro-batch's routed readings are appended here
(one ``write`` per batch, before the batch is acknowledged), and the journal is emptied
after each snapshot. At start the daemon restores the snapshot and replays the journal
through the same pipelines, without publishing (the outbox took care of the alerts), and
the state is exactly what it was at the crash.

A ``write`` reaches the page cache, which outlives the process (kill -9, OOM, a crash);
``sync = true`` also makes each batch reach the disk (``fdatasync``), for power loss.

Records are framed by framing.py (length, CRC); a body is route name length (u16),
readings n (u32), features F (u16), the route name, then ``ts[n]``, ``values[n*F]`` and
``received[n]`` as little-endian float64, then the stream ids joined by newlines (ids never
contain one). Routes go by name, so a reordered configuration replays into the right one.
A torn tail stops the replay; what came before it counts.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sensord.arrays import F64
from sensord.durable.framing import frame, intact
from sensord.errors import JournalError

_BODY = struct.Struct("<HIH")
LE64 = np.dtype("<f8")


@dataclass(frozen=True)
class Entry:
    """One route's readings of one micro-batch."""

    route: str
    streams: list[str]
    ts: F64
    values: F64  # [n, F]
    received: F64


class Journal:
    """Append-only log of scored readings since the last snapshot."""

    def __init__(self, path: Path, sync: bool = False) -> None:
        self.path = path
        self.sync = sync
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.size = os.fstat(self._fd).st_size
        self.torn = 0  # bytes of a damaged tail found by ``entries``

    def append(self, entries: list[Entry]) -> None:
        """Add one micro-batch (one entry per route that had readings)."""
        if not entries:
            return
        data = b"".join(_record(entry) for entry in entries)
        try:
            os.write(self._fd, data)
            if self.sync:
                os.fdatasync(self._fd)
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot append ({exc.strerror})") from None
        self.size += len(data)

    def entries(self) -> Iterator[Entry]:
        """What the journal holds, oldest first, up to any damage."""
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot read ({exc.strerror})") from None
        good = 0
        for body, end in intact(data):
            entry = _entry(body) if len(body) >= _BODY.size else None
            if entry is None:
                break
            yield entry
            good = end
        self.torn = len(data) - good

    def reset(self) -> None:
        """Everything so far is in a snapshot: start an empty journal."""
        try:
            os.ftruncate(self._fd, 0)
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot truncate ({exc.strerror})") from None
        self.size = 0

    def close(self) -> None:
        os.close(self._fd)


def _record(entry: Entry) -> bytes:
    n = len(entry.streams)
    features = entry.values.shape[1] if entry.values.ndim == 2 else 1
    name = entry.route.encode()
    body = b"".join(
        (
            _BODY.pack(len(name), n, features),
            name,
            np.ascontiguousarray(entry.ts, dtype=LE64).tobytes(),
            np.ascontiguousarray(entry.values, dtype=LE64).tobytes(),
            np.ascontiguousarray(entry.received, dtype=LE64).tobytes(),
            "\n".join(entry.streams).encode(),
        )
    )
    return frame(body)


def _entry(body: bytes) -> Entry | None:
    name_length, n, features = _BODY.unpack_from(body)
    start = _BODY.size + name_length
    numbers = n * (2 + features) * 8
    if start + numbers > len(body):
        return None
    floats = np.frombuffer(body, dtype=LE64, count=n * (2 + features), offset=start)
    streams = body[start + numbers :].decode(errors="replace").split("\n") if n else []
    if len(streams) != n:
        return None
    return Entry(
        body[_BODY.size : start].decode(errors="replace"),
        streams,
        floats[:n].copy(),
        floats[n : n + n * features].reshape(n, features).copy(),
        floats[n + n * features :].copy(),
    )
