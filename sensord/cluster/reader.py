"""Each owned partition's reader: a task in the engine thread that keeps a request for its
readings open (feed.py) and queues them on its record (partition.py) as they come, at most
``prefetch`` readings ahead of the scoring loop over all partitions."""

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
FULL_WAIT_S = 0.005  # the loop has ``prefetch`` readings to take: look again after this
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
            room = self.prefetch - self.parts.queued
            if room <= 0:
                await asyncio.sleep(FULL_WAIT_S)
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

    def _sink(self, part: OwnedPartition) -> Callable[[Reading], None]:
        """Where a partition's readings go as they come: its queue (none once closed)."""

        def queue(reading: Reading) -> None:
            if self.parts.queue(part, reading):
                self.counters.fetched += 1
                self.bridge.wake()

        return queue
