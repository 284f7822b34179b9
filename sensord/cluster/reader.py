"""Each owned partition's reader: a task in the engine thread that keeps a request for its
readings open (feed.py) and queues them on its record (partition.py) as they come.

Each partition gets an even share of ``prefetch`` (the readings fetched ahead of the
scoring loop, all partitions together), so that every one has readings for the loop's
next batches (which take an even share of each: partition.py), but never less than one
fetch of ``fetch_batch`` (the loop's batch), so ``prefetch`` is exceeded when partitions x
``fetch_batch`` is more. A request costs the engine thread about as much as tens of
readings, and every answer wakes it, taking the GIL from the loop: with 12 partitions a
share of 1024 / 12 made requests of 57 readings on average, and the engine thread's CPU
per reading was 5.1 µs against 4.0 with shares of a batch (benchmarks/clusterprofile.py,
200,000 readings, medians of 4 runs side by side). A reader asks for what its share lacks
once that is half of it or more, and while its share is full it waits until the loop has
taken readings (``room``), rather than looking again and again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from nats.aio.client import Client

from sensord.cluster.bridge import LoopBridge
from sensord.cluster.counters import ClusterCounters
from sensord.cluster.engine import Trouble
from sensord.cluster.feed import LogSettings, PartitionFeed, Reading
from sensord.cluster.partition import OwnedPartition, OwnedPartitions
from sensord.logs import get_logger

log = get_logger(__name__)
FETCH_WAIT_S = 0.5  # a feed's fetch waits this long for a first reading
CHECK_FEED_EVERY = 3  # unanswered requests in a row before asking if the consumer is there
RETRY_S = 0.5  # after a failed fetch
FULL_WAIT_S = 0.1  # a full share waits for the loop to take readings, at most this long
CLOSE_S = 5.0  # stopping a reader, or closing its consumer, takes at most this long


class Readers:
    """Starts and stops the readers of a member's partitions (see the module's docstring)."""

    def __init__(
        self,
        nc: Client,
        parts: OwnedPartitions,
        bridge: LoopBridge,
        counters: ClusterCounters,
        trouble: Trouble,
        *,
        log_settings: LogSettings,
        prefetch: int,
        fetch_batch: int,
    ) -> None:
        self.nc = nc
        self.parts = parts
        self.bridge = bridge
        self.counters = counters
        self.trouble = trouble
        self.log_settings = log_settings
        self.prefetch = prefetch
        self.fetch_batch = fetch_batch

    @staticmethod
    def room_made(parts: list[OwnedPartition]) -> None:
        """The loop took readings of these partitions, whose readers wait for it (called
        in the engine thread's loop)."""
        for part in parts:
            if part.room is not None:
                part.room.set()

    async def start(self, part: OwnedPartition) -> None:
        """Read the partition from right after the position its state includes."""
        feed = PartitionFeed(
            self.nc, part.partition, part.after, self._sink(part), self.log_settings
        )
        await feed.open()
        part.feed, part.reading = feed, True
        part.reader = asyncio.create_task(self._read(part, feed))

    async def stop(self, part: OwnedPartition) -> None:
        """Stop a partition's reader. It checks its flag on every round, and is cancelled
        too; a nats-py fetch was seen to swallow the cancellation (the task went on after an
        engine restart), so the wait is bounded: a reader still running ends on its next
        round, and whatever it read meanwhile is not queued (its record is closed)."""
        part.reading = False
        task, feed = part.reader, part.feed
        part.reader = part.feed = None
        if task is not None:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=CLOSE_S)
            if not done:
                log.warning("a partition's reader did not stop at once", partition=part.partition)
            elif not task.cancelled() and task.exception() is not None:
                log.error(
                    "a partition's reader had failed",
                    partition=part.partition,
                    error=repr(task.exception()),
                )
        if feed is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(feed.close(), CLOSE_S)

    async def _read(self, part: OwnedPartition, feed: PartitionFeed) -> None:
        """Keep a request for the partition's readings open until its reader is stopped."""
        unanswered = 0
        while part.reading:
            room = await self._room_for(part)
            if room <= 0:
                continue
            try:
                await feed.fetch(min(self.fetch_batch, room), FETCH_WAIT_S)
                unanswered = 0 if feed.answered else unanswered + 1
                if unanswered and unanswered % CHECK_FEED_EVERY == 0 and await feed.gone():
                    log.info("reading consumer gone; reopened", partition=feed.partition)
                    await feed.reopen()
            except Exception as exc:
                self.trouble("reading a partition failed", exc)
                await asyncio.sleep(RETRY_S)
                with contextlib.suppress(Exception):
                    await feed.reopen()

    async def _room_for(self, part: OwnedPartition) -> int:
        """How many readings to ask for: what the partition's share lacks, once that is
        half of it or more; 0 after waiting for the loop to take some (or a while)."""
        share = max(self.prefetch // max(self.parts.count(), 1), self.fetch_batch)
        room = part.room = asyncio.Event()  # before asking: a take meanwhile sets it
        lacking = self.parts.room(part, share)
        if lacking:
            return lacking
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FULL_WAIT_S):
                await room.wait()
        return 0

    def _sink(self, part: OwnedPartition) -> Callable[[list[Reading]], None]:
        """Where a partition's readings go as they come: its queue (none once closed)."""

        def queue(readings: list[Reading]) -> None:
            if self.parts.queue(part, readings):
                self.counters.fetched += len(readings)
                self.bridge.wake()

        return queue
