"""A partition's readings from the engine's readings log (a real nats-server with the
partition mapping): only that partition's, in order, from a given position on, and what
arrives later too."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import nats
import pytest

from sensord.cli.engine import LocalEngine
from sensord.cluster.feed import LogSettings, PartitionFeed, Reading, ensure_log, topic_of
from sensord.wire.partition import partition_of, subject_mapping
from tests.cluster.conftest import engine_for_test

PARTITIONS = 12
STREAMS = [f"dev-{i:03d}" for i in range(40)]


@pytest.fixture
def mapped() -> Iterator[LocalEngine]:
    started = engine_for_test(subject_mapping(PARTITIONS))
    yield started
    started.remove()


async def read_all(feed: PartitionFeed, expected: int) -> list[Reading]:
    got: list[Reading] = []
    for _ in range(50):
        got += await feed.fetch(100, 0.2)
        if len(got) >= expected:
            break
    return got


def test_a_feed_reads_its_partition_in_order_from_a_position(mapped: LocalEngine) -> None:
    settings = LogSettings(stream="T_READINGS")
    partition = partition_of(STREAMS[0], PARTITIONS)
    mine = [s for s in STREAMS if partition_of(s, PARTITIONS) == partition]

    async def test() -> None:
        nc = await nats.connect(mapped.url)
        js = nc.jetstream()
        await ensure_log(js, settings)
        await ensure_log(js, settings)  # a second member finds it there
        for k in range(10):
            for stream in STREAMS:
                await js.publish(f"sensors.{stream}.value", f'{{"value": {k}}}'.encode())
        feed = PartitionFeed(js, partition, after=0, settings=settings)
        await feed.open()
        got = await read_all(feed, 10 * len(mine))
        assert len(got) == 10 * len(mine)
        assert {r.topic.split("/")[1] for r in got} == set(mine)
        positions = [r.position for r in got]
        assert positions == sorted(positions) and feed.position == positions[-1]
        for stream in mine:  # each stream's readings in the order they were sent
            values = [r.payload for r in got if r.topic == f"sensors/{stream}/value"]
            assert values == [f'{{"value": {k}}}'.encode() for k in range(10)]
        # from the middle: only what comes after (a state saved at that position)
        middle = positions[len(positions) // 2]
        later = PartitionFeed(js, partition, after=middle, settings=settings)
        await later.open()
        rest = await read_all(later, len([p for p in positions if p > middle]))
        assert [r.position for r in rest] == [p for p in positions if p > middle]
        # and what arrives afterwards, to both
        await js.publish(f"sensors.{mine[0]}.value", b'{"value": 99}')
        (new,) = await read_all(feed, 1)
        assert new.payload == b'{"value": 99}' and new.position > positions[-1]
        assert [r.position for r in await read_all(later, 1)] == [new.position]
        await feed.close()
        await later.close()
        await nc.close()

    asyncio.run(test())


def test_topics_come_back_as_the_sensors_sent_them() -> None:
    assert topic_of("part.3.sensors.s1.value") == "sensors/s1/value"
