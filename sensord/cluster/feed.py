"""A partition's readings from the engine's readings log, from a given position on.

The readings log is one JetStream stream over the partitioned subjects (``part.>``, what the
engine's subject mapping makes of the sensors' MQTT topics; file storage, kept for
``max_age``). A member reads each partition it owns with an ephemeral pull consumer that
starts right after the position its state includes (handover.py) and is filtered on the
partition's subjects. Nothing is acknowledged: the state saved with its position is what
says how far a partition got, so a member that dies loses nothing (the next one goes on
from the last saved position; its alerts are recognised as repeats by their stable ids).

Readings come out with their MQTT topic (``part.3.sensors.s1.value`` becomes
``sensors/s1/value``, which the routes' filters already match) and their position, in
lists: all a read of the connection brought (bulk.py), or one by one where nats-py's own
parser is in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat
from operator import lt
from typing import NamedTuple

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError

from sensord.cluster.bulk import BulkParser, Raw, install, is_status
from sensord.errors import LogError
from sensord.wire.partition import PARTITIONED

STATUS = "Status"  # the header of the engine's answers that are not readings
DESCRIPTION = "Description"
ANSWER_GRACE_S = 1.0  # a pull request's answer may come this long after it expired
TOPICS_KEPT = 65_536  # subjects whose topic a feed remembers (then it starts afresh)


@dataclass(frozen=True)
class LogSettings:
    stream: str = "SENSORD_READINGS"
    max_age_s: float = 24 * 3600.0  # must outlast the time between two saves of a state
    inactive_s: float = 30.0  # the engine drops a member's consumer this long after it died


async def ensure_log(js: JetStreamContext, settings: LogSettings) -> None:
    """Create the readings log if it is not there yet (the first member does; two members
    starting at once may both try: the second finds it made)."""
    try:
        await js.stream_info(settings.stream)
        return
    except NotFoundError:
        pass
    try:
        await js.add_stream(
            StreamConfig(
                name=settings.stream,
                subjects=[f"{PARTITIONED}.>"],
                storage=StorageType.FILE,
                max_age=settings.max_age_s,
            )
        )
    except BadRequestError as exc:
        try:
            await js.stream_info(settings.stream)  # made by another member meanwhile
        except NotFoundError:
            raise LogError(
                f"cannot create the readings log {settings.stream!r} ({exc.description}): "
                f"another JetStream stream already takes {PARTITIONED}.>; name it in "
                "[cluster] log_stream"
            ) from None


class Reading(NamedTuple):
    topic: str
    payload: bytes
    position: int  # in the readings log
    received: float


READING = partial(tuple.__new__, Reading)  # a Reading of a tuple, as Reading._make, in C


def topic_of(subject: str) -> str:
    """``part.<n>.sensors.s1.value`` → ``sensors/s1/value``."""
    return subject.split(".", 2)[2].replace(".", "/")


@dataclass
class PartitionFeed:
    """One partition's readings after ``after`` (a position in the readings log).

    It sends the pull requests itself (JetStream's ``CONSUMER.MSG.NEXT``, the documented
    pull protocol) instead of nats-py's ``fetch``, which makes a task, a ``wait_for`` and a
    ``uuid4`` for every message (py-spy, one member draining a backlog: 11 % of all samples
    in ``uuid4`` alone). The answers come to a subscription of the connection's bulk parser
    (bulk.py: a list per read of the connection, no ``Msg`` per message); where that parser
    cannot be put in place, to a nats-py callback, one by one.
    """

    nc: Client
    partition: int
    after: int
    sink: Callable[[list[Reading]], None]  # where readings go, as they arrive
    settings: LogSettings = field(default_factory=LogSettings)
    position: int = 0  # the last reading handed out
    answered: bool = True  # whether the engine answered the last request at all
    _sub: Subscription | None = None
    _consumer: str = ""
    _next: str = ""
    _inbox: str = ""
    _want: int = 0
    _got: int = 0
    _done: asyncio.Event = field(default_factory=asyncio.Event)
    _parser: BulkParser | None = None  # where the subscription is registered, if in bulk
    _topics: dict[bytes, str] = field(default_factory=dict)  # subject -> topic

    @property
    def consumer(self) -> str:
        """The engine's name for this feed's consumer."""
        return self._consumer

    async def open(self) -> None:
        self.position = self.after
        self._sub = None
        info = await self.nc.jetstream().add_consumer(
            self.settings.stream,
            ConsumerConfig(
                filter_subject=f"{PARTITIONED}.{self.partition}.>",
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.after + 1,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=self.settings.inactive_s,
            ),
        )
        self._consumer = info.name
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{self.settings.stream}.{info.name}"
        self._inbox = self.nc.new_inbox()
        self._parser = install(self.nc)
        if self._parser is None:
            self._sub = await self.nc.subscribe(self._inbox, cb=self._on_message)
            return
        # No callback: nothing reaches nats-py's queue, the parser takes every message of
        # this sid (and no reading can come before the first request, sent after this).
        self._sub = await self.nc.subscribe(self._inbox)
        self._parser.bulk[self._sub._id] = self._on_raws

    async def fetch(self, limit: int, timeout_s: float) -> None:
        """Ask for up to ``limit`` readings in log order (each goes to the sink as it
        comes) and wait until they came or ``timeout_s`` passed."""
        if self._sub is None:  # never opened, or a reopen failed half-way: from where it was
            self.after = self.position
            await self.open()
        self._want, self._got, self._done = limit, 0, asyncio.Event()
        request = {"batch": limit, "expires": int(timeout_s * 1e9)}
        await self.nc.publish(self._next, orjson.dumps(request), reply=self._inbox)
        # the engine ends a request with its last reading or a status (no more, expired)
        try:
            async with asyncio.timeout(timeout_s + ANSWER_GRACE_S):
                await self._done.wait()
            self.answered = True
        except TimeoutError:
            self.answered = self._got > 0

    def _on_raws(self, raws: list[Raw]) -> None:
        """The answers a read brought: readings to the sink in one list, in log order."""
        readings = self._readings(raws)
        if readings is None:
            readings = self._one_by_one(raws)
        else:
            self._got += len(raws)
            if self._got >= self._want:
                self._done.set()
        if readings:
            self.sink(readings)

    def _readings(self, raws: list[Raw]) -> list[Reading] | None:
        """The usual answer, taken column by column (no Python step per reading): readings
        only (a status has no reply), each reply ``$JS.ACK.<stream>.<consumer>.<delivered>.
        <position>.…`` in 9 tokens, positions rising from the last handed out. None if not."""
        count = len(raws)
        subjects, replies, _, payloads = zip(*raws, strict=True)
        if not all(replies):
            return None
        tokens = b".".join(replies).split(b".")
        if len(tokens) != 9 * count or tokens[0::9].count(b"$JS") != count:
            return None  # some reply in another form (a domain's: 12 tokens or more)
        positions = list(map(int, tokens[5::9]))
        if positions[0] <= self.position or not all(map(lt, positions, positions[1:])):
            return None  # repeats among them
        topics = list(map(self._topics.get, subjects))
        if None in topics:
            topics = [
                t if t is not None else self._topic(s)
                for t, s in zip(topics, subjects, strict=True)
            ]
        self.position = positions[-1]
        return list(
            map(READING, zip(topics, payloads, positions, repeat(time.time(), count), strict=True))
        )

    def _one_by_one(self, raws: list[Raw]) -> list[Reading]:
        """Any answer: statuses end the request, repeats are dropped."""
        received, position, topics = time.time(), self.position, self._topics
        readings: list[Reading] = []
        statuses = 0
        for subject, reply, headers, payload in raws:
            if is_status(headers):  # 404 no readings, 408 expired, 409 ...: the request ended
                statuses += 1
                continue
            sequence = stream_sequence(reply)
            if sequence <= position:
                continue  # a repeat: already handed out
            position = sequence
            topic = topics.get(subject)
            if topic is None:
                topic = self._topic(subject)
            readings.append(Reading(topic, payload, sequence, received))
        self.position = position
        self._got += len(raws) - statuses
        if statuses or self._got >= self._want:
            self._done.set()
        return readings

    def _topic(self, subject: bytes) -> str:
        topics = self._topics
        if len(topics) >= TOPICS_KEPT:
            topics.clear()
        topic = topics[subject] = topic_of(subject.decode())
        return topic

    async def _on_message(self, msg: Msg) -> None:
        """One answer, where the bulk parser is not in place."""
        self._on_raws([raw_of(msg)])

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
            await self.nc.jetstream().consumer_info(self.settings.stream, self._consumer)
        except NotFoundError:
            return True
        return False

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            if self._parser is not None:
                self._parser.bulk.pop(sub._id, None)
            await sub.unsubscribe()
            with contextlib.suppress(NatsError):  # it goes by itself when inactive anyway
                await self.nc.jetstream().delete_consumer(self.settings.stream, self._consumer)


def stream_sequence(reply: bytes) -> int:
    """A JetStream message's position in its stream, from its reply subject:
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.…`` (9 tokens), or with a
    domain and account hash first (12 or more)."""
    tokens = reply.split(b".")
    return int(tokens[5] if len(tokens) == 9 else tokens[7])


def raw_of(msg: Msg) -> Raw:
    """A nats-py message as the bulk parser hands them (a status as its status line)."""
    headers = None
    if msg.headers and STATUS in msg.headers:
        status = f"NATS/1.0 {msg.headers[STATUS]} {msg.headers.get(DESCRIPTION, '')}"
        headers = status.encode() + b"\r\n\r\n"
    return (msg.subject.encode(), msg.reply.encode(), headers, msg.data)
