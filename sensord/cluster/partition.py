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

A turn of the loop takes from every partition that has readings, an even share of the
batch from each (what one partition leaves of its share goes to the others): a
partition's readings in log order cycle through its streams, so a batch made of every
partition's next readings holds as many streams as a single daemon's batch, and its waves
(each stream at most once) are as wide; a batch of one partition's readings held a
partition's streams several times over, in narrow waves.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
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
    # Its reader waits until at most this many readings are queued (-1: not waiting), and
    # its ``room`` is set then (reader.py).
    refill_at: int = -1
    room: asyncio.Event | None = None
    dropping: asyncio.Task[None] | None = None  # lost: its reader stopping, streams forgotten


class OwnedPartitions:
    """The records of the partitions this member owns (see the module's docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owned: dict[int, OwnedPartition] = {}  # partition -> its claim here now
        # generation -> its claim, until the loop has forgotten it (the loop's look-ups)
        self._claims: dict[int, OwnedPartition] = {}
        self.queued = 0  # readings queued over all partitions
        # Called (in the loop's thread) with the partitions a take left room in for
        # readers waiting for it (their ``refill_at``).
        self.on_taken: Callable[[list[OwnedPartition]], None] | None = None

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

    def queue(self, part: OwnedPartition, readings: Sequence[Reading]) -> bool:
        """Queue readings its reader read (False: the claim is closed, they are dropped)."""
        with self._lock:
            if not part.queueing:
                return False
            part.queued.extend(readings)
            self.queued += len(readings)
        return True

    def count(self) -> int:
        """How many partitions this member owns."""
        return len(self._owned)

    def room(self, part: OwnedPartition, share: int) -> int:
        """How many readings its reader may ask for: what ``share`` lacks once that is half
        of it or more; else 0, and its reader is to be woken when that is so (``refill_at``,
        set here under the lock that takes readings: no take goes unnoticed)."""
        with self._lock:
            room = share - len(part.queued)
            if room > 0 and room * 2 >= share:
                part.refill_at = -1
                return room
            part.refill_at = share // 2
            return 0

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

    def take(self, limit: int) -> list[tuple[int, list[Reading]]]:
        """Up to ``limit`` readings of partitions owned now, an even share from each (see
        the module's docstring), as (generation, readings in log order). A partition whose
        lease lapsed keeps its readings until the lease is renewed or lost, so that a state
        is never stepped past a gap."""
        now = time.monotonic()
        taken: dict[int, list[Reading]] = {}
        with self._lock:
            ready = [p for p in self._claims.values() if p.queued and p.valid_until > now]
            woken = []
            left = limit
            while ready and left > 0:
                share = max(left // len(ready), 1)
                for part in ready:
                    readings = taken.setdefault(part.generation, [])
                    left -= _move(part.queued, readings, min(share, left))
                    if len(part.queued) <= part.refill_at:  # -1: no reader waits
                        part.refill_at = -1
                        woken.append(part)
                ready = [part for part in ready if part.queued]
            self.queued -= limit - left
        if woken and self.on_taken is not None:
            self.on_taken(woken)
        return [(generation, readings) for generation, readings in taken.items() if readings]

    def partition_of(self, generation: int) -> int | None:
        part = self._claims.get(generation)
        return None if part is None else part.partition

    def ack(self, messages: Sequence[M]) -> list[M]:
        """Record each reading's position as its claim's progress (what a commit saves
        its state with); the messages that are no readings (operators' requests) back.
        A reading of a claim forgotten meanwhile is neither: its next owner reads it again."""
        others = []
        with self._lock:
            claims, session, part = self._claims, None, None
            for message in messages:
                if message.session != session:  # a batch's readings come claim by claim
                    session = message.session
                    part = claims.get(session)
                if part is not None:
                    part.acked = max(part.acked, message.mid)
                elif session < FIRST_GENERATION:
                    others.append(message)
        return others


def _move(queued: deque[Reading], into: list[Reading], most: int) -> int:
    """Up to ``most`` of a partition's queued readings, oldest first; how many."""
    if len(queued) <= most:
        count = len(queued)
        into.extend(queued)
        queued.clear()
        return count
    for _ in range(most):
        into.append(queued.popleft())
    return most
