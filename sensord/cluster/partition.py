"""The partitions a member owns: one record per claim, made on the claim, dropped on the way out.

A partition's record (:class:`OwnedPartition`) is made when the member claims it and
dropped once it is let go (its state in the engine) or lost, as quix-streams makes and
drops a partition's objects in ``assign_partition``/``revoke_partition``. It holds all this
member keeps about that claim: its generation, the readings read and not taken yet, its
reader, the position the loop acknowledged, its lease's end, and its commit's lock and
leftovers (checkpoint.py).

A claim's **generation** numbers it among all this member's claims, above any MQTT
session: the loop's readings carry it as their ``session``, so that a reading of a claim
gone (a partition let go, or lost and claimed again) is never counted as a newer claim's.

:class:`OwnedPartitions` holds the records. The member's engine thread adds and drops them
and queues what their readers read; the scoring loop's thread takes readings (``take``) and
acknowledges them (``ack``). The two threads meet under one lock, here.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from sensord.cluster.feed import PartitionFeed, Reading

FIRST_GENERATION = 1 << 32  # generations (a partition's claims) number above MQTT sessions


class Progress(Protocol):
    """An acknowledged message: a reading (``session`` its generation, ``mid`` its position
    in the log) or an operator's request (an MQTT session and packet id)."""

    @property
    def mid(self) -> int: ...
    @property
    def session(self) -> int: ...


M = TypeVar("M", bound=Progress)


@dataclass(eq=False)
class OwnedPartition:
    """One claim of a partition (see the module's docstring)."""

    partition: int
    generation: int
    after: int = 0  # the log position its restored state includes (its reader starts after)
    acked: int = 0  # the last position the loop acknowledged (the loop's thread)
    valid_until: float = 0.0  # its lease, as of the keeper's last turn (monotonic)
    queued: deque[Reading] = field(default_factory=deque)  # read, not taken by the loop yet
    queueing: bool = True  # False once let go or lost: its readings are no longer queued
    reading: bool = False  # while its reader should run
    feed: PartitionFeed | None = None
    reader: asyncio.Task[None] | None = None
    # The commit's (checkpoint.py): one commit at a time, and the state a release packed
    # whose write failed (its streams are forgotten in the loop: this is the only copy).
    saving: asyncio.Lock = field(default_factory=asyncio.Lock)
    unsaved: bytes | None = None
    dropping: asyncio.Task[None] | None = None  # lost: its reader stopping, streams forgotten


class OwnedPartitions:
    """The records of the partitions this member owns (see the module's docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owned: dict[int, OwnedPartition] = {}  # partition -> its claim here now
        # generation -> its claim, until the loop has forgotten it (the loop's look-ups)
        self._claims: dict[int, OwnedPartition] = {}
        self.queued = 0  # readings queued over all partitions (the readers' prefetch bound)

    # the engine's thread

    def get(self, partition: int) -> OwnedPartition | None:
        return self._owned.get(partition)

    def all(self) -> list[OwnedPartition]:
        with self._lock:
            return sorted(self._owned.values(), key=lambda part: part.partition)

    def add(self, part: OwnedPartition) -> None:
        with self._lock:
            self._owned[part.partition] = part
            self._claims[part.generation] = part

    def close(self, part: OwnedPartition) -> None:
        """Queue no more of its readings, and withdraw those the loop has not taken: its
        next owner reads them again from the position its state is saved with."""
        with self._lock:
            part.queueing = False
            self.queued -= len(part.queued)
            part.queued.clear()

    def disown(self, part: OwnedPartition) -> None:
        """Not this member's any more (lost): closed, and no longer among the owned; the
        loop may still acknowledge readings of it until its streams are forgotten."""
        self.close(part)
        with self._lock:
            if self._owned.get(part.partition) is part:
                del self._owned[part.partition]

    def forget(self, part: OwnedPartition) -> None:
        """Dropped: the loop has forgotten its streams and readings."""
        self.disown(part)
        with self._lock:
            self._claims.pop(part.generation, None)

    def queue(self, part: OwnedPartition, reading: Reading) -> bool:
        """Queue a reading its reader read (False: the claim is closed, it is dropped)."""
        with self._lock:
            if not part.queueing:
                return False
            part.queued.append(reading)
            self.queued += 1
        return True

    def leases(self, valid_until: Mapping[int, float]) -> None:
        """The leases' ends as of the keeper's last turn (partition -> monotonic time)."""
        with self._lock:
            for part in self._owned.values():
                part.valid_until = valid_until.get(part.partition, 0.0)

    def owned(self) -> list[int]:
        """The partitions whose lease holds now."""
        now = time.monotonic()
        with self._lock:
            return sorted(p for p, part in self._owned.items() if part.valid_until > now)

    # the loop's thread

    def take(self, limit: int) -> list[tuple[int, Reading]]:
        """Up to ``limit`` readings of partitions owned now, each partition's in log order.
        A partition whose lease lapsed keeps its readings until the lease is renewed or
        lost, so that a state is never stepped past a gap."""
        now = time.monotonic()
        out: list[tuple[int, Reading]] = []
        with self._lock:
            for part in self._claims.values():
                readings = part.queued
                if not readings or part.valid_until <= now:
                    continue
                while readings and len(out) < limit:
                    out.append((part.generation, readings.popleft()))
                if len(out) >= limit:
                    break
            self.queued -= len(out)
        return out

    def partition_of(self, generation: int) -> int | None:
        part = self._claims.get(generation)
        return None if part is None else part.partition

    def ack(self, messages: Sequence[M]) -> list[M]:
        """Record each reading's position as its claim's progress (what a commit saves
        its state with); the messages that are no readings (operators' requests) back.
        A reading of a claim forgotten meanwhile is neither: its next owner reads it again."""
        others = []
        with self._lock:
            claims = self._claims
            for message in messages:
                part = claims.get(message.session)
                if part is not None:
                    part.acked = max(part.acked, message.mid)
                elif message.session < FIRST_GENERATION:
                    others.append(message)
        return others
