"""Framed records for sensord's append-only logs (the alert outbox, the readings journal).

A record is ``length`` (u32) and ``crc32`` (u32) of the body, then the body. A crash in the
middle of an append leaves a torn tail whose length or CRC does not hold: reading stops
there, and every record before it counts.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

_HEAD = struct.Struct("<II")  # body length, crc32 of the body


def frame(body: bytes) -> bytes:
    """The record holding ``body``."""
    return _HEAD.pack(len(body), zlib.crc32(body)) + body


def intact(data: bytes) -> Iterator[tuple[bytes, int]]:
    """Each intact record's body and the offset just after it, up to the first damage."""
    pos = 0
    while pos + _HEAD.size <= len(data):
        length, crc = _HEAD.unpack_from(data, pos)
        end = pos + _HEAD.size + length
        body = data[pos + _HEAD.size : end]
        if len(body) != length or zlib.crc32(body) != crc:
            return
        yield body, end
        pos = end
