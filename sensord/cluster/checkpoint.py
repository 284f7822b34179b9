"""Saving an owned partition's state to the engine: one commit, its steps in order.

A member commits each partition it owns every ``checkpoint_s`` (``Checkpoint.run``) and when
it lets one go (``commit(part, release=True)``, before its lease goes). What it saves is one
object per partition (handover.py): every route's streams of the partition with the log
position they include. The member that claims the partition next goes on from the position
after it, so the order of the commit's steps is what makes a hand-over lose nothing: see
``Checkpoint.commit``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from nats.errors import Error as NatsError

from sensord.cluster.bridge import LoopBridge, LoopSide
from sensord.cluster.counters import ClusterCounters
from sensord.cluster.engine import Trouble
from sensord.cluster.handover import PartitionStates
from sensord.cluster.partition import OwnedPartition, OwnedPartitions
from sensord.cluster.reader import Readers


class Checkpoint:
    """Commits the partitions a member owns (see the module's docstring)."""

    def __init__(
        self,
        states: PartitionStates,
        parts: OwnedPartitions,
        *,
        readers: Readers,
        bridge: LoopBridge,
        side: LoopSide,
        counters: ClusterCounters,
        owns: Callable[[int], bool],
        trouble: Trouble,
    ) -> None:
        self.states = states
        self.parts = parts
        self.readers = readers
        self.bridge = bridge
        self.side = side
        self.counters = counters
        self.owns = owns  # whether the partition's lease holds now (the keeper's word)
        self.trouble = trouble

    async def run(self, stop: asyncio.Event, every_s: float) -> None:
        """Commit every owned partition every ``every_s`` until ``stop``."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
            if stop.is_set():
                return
            for part in self.parts.all():
                try:
                    await self.commit(part)
                except NatsError as exc:
                    self.trouble("saving a partition's state failed", exc)

    async def commit(self, part: OwnedPartition, release: bool = False) -> None:
        """Save ``part``'s state in the engine with the log position it includes; with
        ``release`` (the partition is being let go) also stop reading it and forget it in
        the loop. One commit of a partition at a time (``part.saving``): a release waits
        for a checkpoint's write in flight, and the engine gets their writes in order.

        The steps, each before the next for the reason given:

        0. *Before any commit, in the loop:* a reading is acknowledged, and its position
           recorded as its claim's progress (``part.acked``, by ``OwnedPartitions.ack``),
           only once it is scored and its alerts are handed to the delivery, in arrival
           order (the reorder window holds back the acknowledgements after a held
           reading). So the state holds every reading up to ``part.acked``; it may hold
           some past it too, which the next owner finds to be repeats.
        1. **Still ours** (a checkpoint on the way): the same claim, still reading, its
           lease valid now. Otherwise the partition may be another member's already,
           and this state would overwrite the one that member saves.
        2. **Stop reading** (a release): its reader stops and the readings the loop has
           not taken are withdrawn, before the state is taken, so that no reading of the
           partition reaches the loop after its state has left. Those withdrawn come
           after every one taken in the log: the next owner reads them again.
        3. **Take the state, in the loop's thread**, between two batches, in one job:
           (a) its alerts confirmed by the broker: a release waits for them (for a
           bound), a checkpoint is put off while one is not; an alert raised by a
           reading the state holds must be at the broker before the state is in the
           engine, or a crash in between loses it (the next owner starts after that
           reading); (b) the position read and the state packed with it, in one job so
           that no batch is scored between the two; (c) with ``release``, its streams
           and its readings not scored yet forgotten in the loop.
        4. **Write it to the engine**, as one object (every route, or none). A release's
           state is kept on the record until the write succeeded: its streams are gone
           from the loop, so it is the only copy, and the next release tries again.
        5. *After the commit, by the member and the keeper:* a released record is dropped,
           then the lease is deleted (leases.py), so that the next owner's claim reads
           the state written in step 4.
        """
        async with part.saving:
            # 1. still ours (a release is: the keeper lets go only of what it holds)
            if not release and not self._still_ours(part):
                return
            data = part.unsaved  # a release whose write failed did steps 2 and 3 already
            if data is None:
                # 2. stop reading
                if release:
                    await self.readers.stop(part)
                    self.parts.close(part)
                # 3. take the state, in the loop's thread
                data = await self._take_state(part, release)
                if data is None:  # put off (alerts unconfirmed), or forgotten meanwhile
                    if not release:
                        self.counters.checkpoints_deferred += 1
                    return
            # 4. write it to the engine
            part.unsaved = data if release else None
            await self.states.save(part.partition, data)
            part.unsaved = None
            if not release:
                self.counters.checkpoints += 1

    def _still_ours(self, part: OwnedPartition) -> bool:
        return self.parts.get(part.partition) is part and part.reading and self.owns(part.partition)

    async def _take_state(self, part: OwnedPartition, release: bool) -> bytes | None:
        side = self.side

        def job() -> bytes | None:  # in the loop's thread: part.acked is the loop's to write
            return side.save(part.partition, part.generation, part.acked, release)

        return await self.bridge.in_loop(job)
