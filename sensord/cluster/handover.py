"""A partition's state, handed from one member to the next through the engine.

A member that lets a partition go (or saves it on its way, every ``checkpoint_s``) writes the
rows of that partition's streams, from every route's state table (and shadow's), as one
object in the engine's object store ``<name>_state`` (``p<n>``): per route, the same format,
header and checksum as a snapshot file (durable/snapshots.py), framed (``pack``) with the
readings' log position they all include (``sequence``). One object, so all routes of a
partition are saved together or not at all (the store publishes an object's description
after its chunks: a reader sees the old object or the new one).

The member that claims the partition reads the object, checks each part against its own
bundle, and takes those streams with their LSTM state, detector statistics and alert state:
no new warm-up. It then goes on from ``sequence`` + 1 in the readings' log (JetStream), so no
reading is lost or stepped twice.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from sensord.core.pipeline import Pipeline
from sensord.core.state import Slots
from sensord.durable.snapshots import decode_rows, encode_rows
from sensord.errors import SnapshotError

MAGIC = b"SDP1"  # a packed partition: MAGIC, header length, JSON header, then the parts
_LENGTH = struct.Struct(">I")
LOAD_S = 10.0
LOAD_TRIES = 3


def forget(pipeline: Pipeline, slots: Slots) -> None:
    """Release these slots' streams (the partition is another member's now)."""
    for slot in slots:
        stream = pipeline.table.stream_of[slot]
        if stream is not None:
            pipeline.table.release(stream)


def pack(
    parts: Sequence[tuple[str, Pipeline, Slots]],
    partition: int,
    sequence: int,
    release: bool = True,
) -> bytes:
    """Each pipeline's streams of the partition (``(name, pipeline, their slots)``) as one
    object (see the module); forgotten here with ``release``."""
    blobs = []
    for name, pipeline, slots in parts:
        extra = {"partition": partition, "sequence": sequence}
        blobs.append((name, encode_rows(pipeline, slots, extra)))
        if release:
            forget(pipeline, slots)
    header = orjson.dumps(
        {
            "partition": partition,
            "sequence": sequence,
            "parts": [[name, len(data)] for name, data in blobs],
        }
    )
    return b"".join([MAGIC, _LENGTH.pack(len(header)), header, *(data for _, data in blobs)])


@dataclass
class Unpacked:
    partition: int
    sequence: int
    parts: dict[str, bytes] = field(default_factory=dict)


def unpack(data: bytes, what: str) -> Unpacked:
    """The parts of a packed partition (SnapshotError naming ``what`` if malformed)."""
    start = len(MAGIC) + _LENGTH.size
    if len(data) < start or not data.startswith(MAGIC):
        raise SnapshotError(f"{what}: not a packed partition state")
    (length,) = _LENGTH.unpack_from(data, len(MAGIC))
    try:
        header = orjson.loads(data[start : start + length])
        out = Unpacked(int(header["partition"]), int(header["sequence"]))
        offset = start + length
        for name, size in header["parts"]:
            out.parts[str(name)] = data[offset : offset + int(size)]
            offset += int(size)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"{what}: unreadable header ({exc})") from None
    if offset != len(data):
        raise SnapshotError(f"{what}: {len(data)} bytes, its header says {offset}")
    return out


@dataclass(frozen=True)
class Restored:
    streams: dict[str, list[str]]  # pipeline name -> the streams taken
    sequence: int
    missing: tuple[str, ...]  # pipelines here that the object has no part for (start afresh)
    unknown: tuple[str, ...]  # parts for pipelines this member does not run (ignored)


def restore(named: Sequence[tuple[str, Pipeline]], data: bytes, what: str) -> Restored:
    """Take a packed partition into the (name, pipeline)s. Every part is checked before
    any is taken, so a bad object changes nothing (SnapshotError naming ``what`` and the
    route)."""
    unpacked = unpack(data, what)
    decoded = []
    for name, pipeline in named:
        part = unpacked.parts.get(name)
        if part is not None:
            decoded.append((name, pipeline, decode_rows(part, pipeline, f"{what} ({name})")))
    taken = {}
    for name, pipeline, (columns, streams, _) in decoded:
        pipeline.table.put_rows(columns, streams)
        taken[name] = streams
    names = {name for name, _ in named}
    return Restored(
        taken,
        unpacked.sequence,
        tuple(name for name, _ in named if name not in unpacked.parts),
        tuple(sorted(set(unpacked.parts) - names)),
    )


@dataclass
class PartitionStates:
    """Each partition's state in the engine's object store ``<name>_state``."""

    js: JetStreamContext
    name: str = "sensord"
    store: ObjectStore | None = None

    async def open(self) -> None:
        bucket = f"{self.name}_state"
        try:
            self.store = await self.js.object_store(bucket)
        except BucketNotFoundError:
            self.store = await self.js.create_object_store(bucket)

    async def save(self, partition: int, data: bytes) -> None:
        await self._store().put(_object(partition), data)

    async def load(self, partition: int) -> bytes | None:
        """The partition's last saved state; None if it never had one.

        nats-py's ``get`` waits for the object's chunks without end if they were replaced
        while it read (a new save purges the old chunks; seen when an engine restart had
        two members saving and loading one partition): each try is bounded, then the new
        object is read."""
        for _ in range(LOAD_TRIES):
            try:
                result = await asyncio.wait_for(self._store().get(_object(partition)), LOAD_S)
            except ObjectNotFoundError:
                return None
            except TimeoutError:
                continue
            return bytes(result.data) if result.data is not None else None
        raise NatsTimeoutError  # the lease keeper counts it as a failed turn and tries again

    def _store(self) -> ObjectStore:
        if self.store is None:
            raise RuntimeError("PartitionStates.open() was not called")
        return self.store


def _object(partition: int) -> str:
    return f"p{partition}"
