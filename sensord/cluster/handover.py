"""A partition's state, handed from one member to the next through the engine.

A member that lets a partition go (or saves it on its way) writes the rows of that
partition's streams, from each route's state table, as one object in the engine's object
store ``<name>_state``: the same format, header and checksum as a snapshot file
(durable/snapshots.py), with the readings' log position it includes (``sequence``). The
member that claims the partition reads the object, checks that it fits its own bundle,
and takes those streams with their LSTM state, detector statistics and alert state: no new
warm-up. It then goes on from ``sequence`` + 1 in the readings' log (JetStream), so no
reading is lost or stepped twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from sensord.cluster.partition import partition_of
from sensord.core.pipeline import Pipeline
from sensord.core.state import Slots
from sensord.durable.snapshots import decode_rows, encode_rows


def partition_slots(pipeline: Pipeline, partitions: int, partition: int) -> Slots:
    """The slots of the pipeline's streams that are in ``partition``."""
    table = pipeline.table
    return np.asarray(
        [
            slot
            for stream, slot in table.slot_of.items()
            if partition_of(stream, partitions) == partition
        ],
        dtype=np.intp,
    )


def hand_out(pipeline: Pipeline, partitions: int, partition: int, sequence: int) -> bytes:
    """The partition's streams as snapshot bytes, then forgotten here (the partition goes
    to another member)."""
    slots = partition_slots(pipeline, partitions, partition)
    data = encode_rows(pipeline, slots, {"partition": partition, "sequence": sequence})
    for slot in slots:
        stream = pipeline.table.stream_of[slot]
        if stream is not None:
            pipeline.table.release(stream)
    return data


@dataclass(frozen=True)
class TakenOver:
    streams: int
    sequence: int  # the last reading of the readings' log the state includes


def take_in(pipeline: Pipeline, data: bytes, what: str) -> TakenOver:
    """Take a partition's streams into the pipeline's table (SnapshotError, naming
    ``what``, if the bytes cannot be trusted or do not fit this pipeline's bundle)."""
    columns, streams, header = decode_rows(data, pipeline, what)
    pipeline.table.put_rows(columns, streams)
    return TakenOver(len(streams), int(header.get("sequence", 0)))


@dataclass
class PartitionStates:
    """Each route's partitions' state in the engine's object store ``<name>_state``."""

    js: JetStreamContext
    name: str = "sensord"
    store: ObjectStore | None = None

    async def open(self) -> None:
        bucket = f"{self.name}_state"
        try:
            self.store = await self.js.object_store(bucket)
        except BucketNotFoundError:
            self.store = await self.js.create_object_store(bucket)

    async def save(self, route: str, partition: int, data: bytes) -> None:
        await self._store().put(_object(route, partition), data)

    async def load(self, route: str, partition: int) -> bytes | None:
        """The partition's last saved state on this route; None if it never had one."""
        try:
            result = await self._store().get(_object(route, partition))
        except ObjectNotFoundError:
            return None
        return bytes(result.data) if result.data is not None else None

    def _store(self) -> ObjectStore:
        if self.store is None:
            raise RuntimeError("PartitionStates.open() was not called")
        return self.store


def _object(route: str, partition: int) -> str:
    return f"{route}.p{partition}"
