"""A partition's readings from the engine's readings log (a real nats-server with the
partition mapping): only that partition's, in order, from a given position on, and what
arrives later too."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import nats
import pytest
from nats.aio.client import Client
from nats.protocol.parser import Parser

from sensord.cli.engine import LocalEngine
from sensord.cluster.bulk import BulkParser, Raw
from sensord.cluster.feed import (
    LogSettings,
    PartitionFeed,
    Reading,
    ensure_log,
    stream_sequence,
    topic_of,
)
from sensord.wire.partition import partition_of, subject_mapping
from tests.cluster.conftest import engine_for_test

PARTITIONS = 12
STREAMS = [f"dev-{i:03d}" for i in range(40)]


@pytest.fixture
def mapped() -> Iterator[LocalEngine]:
    started = engine_for_test(subject_mapping(PARTITIONS))
    yield started
    started.remove()


async def read_all(feed: PartitionFeed, got: list[Reading], expected: int) -> list[Reading]:
    """The next ``expected`` readings the feed hands its sink (``got.extend``)."""
    start = len(got)
    for _ in range(50):
        if len(got) - start >= expected:
            break
        await feed.fetch(100, 0.2)
    return got[start:]


class PlainParser(Parser):
    """nats-py's own parser under another type: the bulk parser is not put in its place,
    so feeds take their readings through nats-py's callbacks, one by one."""


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk parser", "nats-py callbacks"])
def test_a_feed_reads_its_partition_in_order_from_a_position(
    mapped: LocalEngine, bulk: bool
) -> None:
    settings = LogSettings(stream=f"T_READINGS_{bulk}")
    partition = partition_of(STREAMS[0], PARTITIONS)
    mine = [s for s in STREAMS if partition_of(s, PARTITIONS) == partition]

    async def test() -> None:
        nc = await nats.connect(mapped.url)
        if not bulk:
            nc._ps = PlainParser(nc)
        js = nc.jetstream()
        await ensure_log(js, settings)
        await ensure_log(js, settings)  # a second member finds it there
        for k in range(10):
            for stream in STREAMS:
                await js.publish(f"sensors.{stream}.value", f'{{"value": {k}}}'.encode())
        mine_got: list[Reading] = []
        feed = PartitionFeed(nc, partition, 0, mine_got.extend, settings)
        await feed.open()
        assert isinstance(nc._ps, BulkParser) == bulk
        got = await read_all(feed, mine_got, 10 * len(mine))
        assert len(got) == 10 * len(mine)
        assert {r.topic.split("/")[1] for r in got} == set(mine)
        positions = [r.position for r in got]
        assert positions == sorted(positions) and feed.position == positions[-1]
        for stream in mine:  # each stream's readings in the order they were sent
            values = [r.payload for r in got if r.topic == f"sensors/{stream}/value"]
            assert values == [f'{{"value": {k}}}'.encode() for k in range(10)]
        # from the middle: only what comes after (a state saved at that position)
        middle = positions[len(positions) // 2]
        later_got: list[Reading] = []
        later = PartitionFeed(nc, partition, middle, later_got.extend, settings)
        await later.open()
        rest = await read_all(later, later_got, len([p for p in positions if p > middle]))
        assert [r.position for r in rest] == [p for p in positions if p > middle]
        # and what arrives afterwards, to both
        await js.publish(f"sensors.{mine[0]}.value", b'{"value": 99}')
        (new,) = await read_all(feed, mine_got, 1)
        assert new.payload == b'{"value": 99}' and new.position > positions[-1]
        assert [r.position for r in await read_all(later, later_got, 1)] == [new.position]
        await feed.close()
        await later.close()
        await nc.close()

    asyncio.run(test())


def reply(position: int, domain: bool = False) -> bytes:
    first = b"$JS.ACK.hub.ACCHASH." if domain else b"$JS.ACK."
    return first + b"SENSORD_READINGS.c1.1.%d.%d.1700000000000000000.0" % (position, position)


def answers(*positions: int, domain: bool = False) -> list[Raw]:
    return [
        (b"part.1.sensors.s%d.value" % (p % 3), reply(p, domain), None, b"%d" % p)
        for p in positions
    ]


def test_an_answer_is_taken_whole_or_one_by_one_with_the_same_readings() -> None:
    """Column by column where every answer is a reading past the feed's position in the
    usual reply form; else one by one: repeats dropped, a status ends the request."""
    got: list[Reading] = []
    feed = PartitionFeed(Client(), 1, 0, got.extend)
    feed._want = 100
    feed._on_raws(answers(3, 5, 9))  # the usual case
    feed._on_raws(answers(7, 9, 12, 12, 15))  # repeats among them
    feed._on_raws(answers(20, 21, domain=True))  # a domain's replies: 12 tokens
    assert [(r.topic, r.payload, r.position) for r in got] == [
        (f"sensors/s{p % 3}/value", b"%d" % p, p) for p in (3, 5, 9, 12, 15, 20, 21)
    ]
    assert feed.position == 21 and not feed._done.is_set()
    expired = (b"_INBOX.x", b"", b"NATS/1.0 408 Request Timeout\r\n\r\n", b"")
    feed._on_raws([*answers(22), expired])
    assert got[-1].position == 22 and feed._done.is_set()


def test_topics_come_back_as_the_sensors_sent_them() -> None:
    assert topic_of("part.3.sensors.s1.value") == "sensors/s1/value"


def test_positions_come_from_the_reply_subject_in_both_of_its_forms() -> None:
    assert stream_sequence(b"$JS.ACK.SENSORD_READINGS.c1.1.4711.12.1700000000000000000.3") == 4711
    assert (
        stream_sequence(
            b"$JS.ACK.hub.ACCHASH.SENSORD_READINGS.c1.1.4711.12.1700000000000000000.3.x"
        )
        == 4711
    )


def test_a_feed_with_a_sink_hands_each_reading_over_as_it_comes_and_survives_a_lost_consumer(
    mapped: LocalEngine,
) -> None:
    settings = LogSettings(stream="T_SINK")
    partition = partition_of(STREAMS[0], PARTITIONS)

    async def test() -> None:
        nc = await nats.connect(mapped.url)
        js = nc.jetstream()
        await ensure_log(js, settings)
        got: list[Reading] = []
        feed = PartitionFeed(nc, partition, 0, got.extend, settings)
        await feed.open()
        await js.publish(f"sensors.{STREAMS[0]}.value", b"1")
        # one reading of a request for 100: handed over before the request expires
        request = asyncio.create_task(feed.fetch(100, 5.0))
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.02)
        assert [r.payload for r in got] == [b"1"] and not request.done()
        await request  # ends at its expiry, having handed over the one reading there was
        assert len(got) == 1
        # the engine loses the consumer (as after a restart): the feed notices, reopens
        # from the last position, and goes on without a repeat
        await js.delete_consumer(settings.stream, feed.consumer)
        assert await feed.gone()
        await feed.reopen()
        await js.publish(f"sensors.{STREAMS[0]}.value", b"2")
        await feed.fetch(1, 2.0)
        assert [r.payload for r in got] == [b"1", b"2"]
        await feed.close()
        await nc.close()

    asyncio.run(test())
