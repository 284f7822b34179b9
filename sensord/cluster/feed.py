"""A partition's readings from the engine's readings log, from a given position on.

The readings log is one JetStream stream over the partitioned subjects (``part.>``, what the
engine's subject mapping makes of the sensors' MQTT topics; file storage, kept for
``max_age``). A member reads each partition it owns with an ephemeral pull consumer that
starts right after the position its state includes (handover.py) and is filtered on the
partition's subjects. Nothing is acknowledged: the state saved with its position is what
says how far a partition got, so a member that dies loses nothing (the next one goes on
from the last saved position; its alerts are recognised as repeats by their stable ids).

Readings come out with their MQTT topic (``part.3.sensors.s1.value`` becomes
``sensors/s1/value``, which the routes' filters already match) and their position.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from sensord.wire.partition import PARTITIONED


@dataclass(frozen=True)
class LogSettings:
    stream: str = "SENSORD_READINGS"
    max_age_s: float = 24 * 3600.0  # must outlast the time between two saves of a state
    inactive_s: float = 30.0  # the engine drops a member's consumer this long after it died


async def ensure_log(js: JetStreamContext, settings: LogSettings) -> None:
    """Create the readings log if it is not there yet (the first member does)."""
    try:
        await js.stream_info(settings.stream)
    except NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=settings.stream,
                subjects=[f"{PARTITIONED}.>"],
                storage=StorageType.FILE,
                max_age=settings.max_age_s,
            )
        )


@dataclass(frozen=True)
class Reading:
    topic: str
    payload: bytes
    position: int  # in the readings log
    received: float


def topic_of(subject: str) -> str:
    """``part.<n>.sensors.s1.value`` → ``sensors/s1/value``."""
    return subject.split(".", 2)[2].replace(".", "/")


@dataclass
class PartitionFeed:
    """One partition's readings after ``after`` (a position in the readings log)."""

    js: JetStreamContext
    partition: int
    after: int
    settings: LogSettings = field(default_factory=LogSettings)
    position: int = 0  # the last reading handed out
    _sub: JetStreamContext.PullSubscription | None = None

    async def open(self) -> None:
        self.position = self.after
        self._sub = None
        self._sub = await self.js.pull_subscribe(
            f"{PARTITIONED}.{self.partition}.>",
            stream=self.settings.stream,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.after + 1,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=self.settings.inactive_s,
            ),
        )

    async def fetch(self, limit: int, timeout_s: float) -> list[Reading]:
        """Up to ``limit`` readings in log order; waits at most ``timeout_s`` for the
        first."""
        if self._sub is None:  # never opened, or a reopen failed half-way: from where it was
            self.after = self.position
            await self.open()
        if self._sub is None:
            raise RuntimeError("PartitionFeed.open() made no consumer")
        try:
            messages = await self._sub.fetch(limit, timeout=timeout_s)
        except TimeoutError:  # nats-py raises its own or asyncio's (a subclass of this)
            return []
        now = time.time()
        out = []
        for m in messages:
            sequence = m.metadata.sequence.stream
            if sequence <= self.position:
                continue  # a repeat: already handed out
            self.position = sequence
            out.append(Reading(topic_of(m.subject), m.data, sequence, now))
        return out

    async def reopen(self) -> None:
        """A new consumer from the last reading handed out (the engine lost the old one:
        it restarted, or dropped it as inactive)."""
        with contextlib.suppress(NatsError):
            await self.close()
        self._sub = None
        self.after = self.position
        await self.open()

    async def gone(self) -> bool:
        """Whether the engine no longer has this feed's consumer."""
        if self._sub is None:
            return True
        try:
            await self._sub.consumer_info()
        except NotFoundError:
            return True
        return False

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()
