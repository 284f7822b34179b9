"""A member's parts that need no engine: the records of the partitions it owns (what the
scoring loop takes and acknowledges), and the commit's steps in their order, with the loop's
side in a thread of its own as in the daemon."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import pytest
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError

from sensord.cluster.bridge import LoopBridge
from sensord.cluster.checkpoint import Checkpoint
from sensord.cluster.counters import ClusterCounters
from sensord.cluster.engine import Trouble
from sensord.cluster.feed import LogSettings, Reading
from sensord.cluster.handover import PartitionStates
from sensord.cluster.partition import FIRST_GENERATION, OwnedPartition, OwnedPartitions
from sensord.cluster.reader import Readers

G = FIRST_GENERATION  # the member's first claim
LOOP = "the scoring loop"


class Acked(NamedTuple):
    mid: int
    session: int


def reading(position: int, stream: str = "s1") -> Reading:
    return Reading(f"sensors/{stream}/value", b"1", position, 0.0)


def readings(*positions: int) -> list[Reading]:
    return [reading(position) for position in positions]


def positions(taken: list[tuple[int, list[Reading]]]) -> list[tuple[int, list[int]]]:
    return [(generation, [r.position for r in got]) for generation, got in taken]


def valid(*partitions: int) -> dict[int, float]:
    return dict.fromkeys(partitions, time.monotonic() + 60.0)


def owned(*parts: OwnedPartition) -> OwnedPartitions:
    table = OwnedPartitions()
    for part in parts:
        table.add(part)
    table.leases(valid(*(part.partition for part in parts)))
    return table


def test_the_loop_takes_only_partitions_whose_lease_holds_each_in_log_order() -> None:
    a, b = OwnedPartition(0, G), OwnedPartition(1, G + 1)
    table = owned(a, b)
    assert table.queue(a, readings(1, 2, 3))
    table.queue(b, readings(7))
    table.leases(valid(0))  # b's lease lapsed (the engine away): its readings wait
    assert positions(table.take(2)) == [(G, [1, 2])]
    assert positions(table.take(10)) == [(G, [3])]
    assert table.queued == 1
    table.leases(valid(0, 1))  # renewed: no gap in b's readings
    assert positions(table.take(10)) == [(G + 1, [7])]
    assert table.queued == 0 and table.owned() == [0, 1]


def test_a_turn_takes_an_even_share_of_every_partition_and_the_rest_from_the_fuller() -> None:
    a, b, c = OwnedPartition(0, G), OwnedPartition(1, G + 1), OwnedPartition(2, G + 2)
    table = owned(a, b, c)
    table.queue(a, readings(*range(1, 11)))  # 10 readings
    table.queue(b, readings(*range(100, 104)))  # 4
    table.queue(c, readings(200))  # 1
    # 9 of 15: 3 each at first (c has only 1), then the 2 left one each of a and b
    assert positions(table.take(9)) == [
        (G, [1, 2, 3, 4]),
        (G + 1, [100, 101, 102, 103]),
        (G + 2, [200]),
    ]
    assert table.queued == 6
    assert positions(table.take(100)) == [(G, [5, 6, 7, 8, 9, 10])]


def test_a_batch_of_every_partition_holds_each_stream_once_where_one_partition_repeats() -> None:
    """Each partition cycles through its own streams in log order: a batch of every
    partition's next readings is one wave wide; the old way, one partition's, was not."""
    parts = [OwnedPartition(p, G + p) for p in range(4)]
    table = owned(*parts)
    for p, part in enumerate(parts):  # 4 streams a partition, 3 rounds of each
        table.queue(part, [reading(100 * p + k, f"p{p}s{k % 4}") for k in range(12)])
    batch = [r for _, got in table.take(16) for r in got]
    assert len(batch) == 16 and len({r.topic for r in batch}) == 16
    assert table.queued == 32


def test_a_reader_asks_for_half_its_share_or_more_and_is_woken_when_the_loop_made_room() -> None:
    a = OwnedPartition(0, G)
    table = owned(a)
    woken: list[list[OwnedPartition]] = []
    table.on_taken = woken.append
    assert table.room(a, 8) == 8  # nothing queued: the whole share
    table.queue(a, readings(*range(1, 7)))
    assert table.room(a, 8) == 0 and a.refill_at == 4  # lacks 2 of 8: wait for 4 queued
    table.take(1)
    assert woken == []  # 5 queued: not yet
    table.take(1)
    assert woken == [[a]] and a.refill_at == -1  # 4 queued: its reader asks for 4
    assert table.room(a, 8) == 4
    table.take(4)
    assert woken == [[a]]  # nobody waits: nobody woken


def test_a_closed_claim_queues_nothing_more_and_its_unread_readings_are_withdrawn() -> None:
    a = OwnedPartition(0, G)
    table = owned(a)
    table.queue(a, readings(1))
    table.queue(a, readings(2))
    table.close(a)
    assert not table.queue(a, readings(3))
    assert table.take(10) == [] and table.queued == 0


def test_acknowledged_positions_are_a_claims_progress_and_requests_go_back() -> None:
    a = OwnedPartition(0, G, acked=5)
    table = owned(a)
    request = Acked(mid=3, session=2)  # an operator's request on MQTT session 2
    assert table.ack([Acked(9, G), request, Acked(7, G)]) == [request]
    assert a.acked == 9
    table.disown(a)  # lost: the loop may still acknowledge until it forgot the streams
    assert table.get(0) is None and table.partition_of(G) == 0
    table.forget(a)
    assert table.ack([Acked(11, G)]) == [] and a.acked == 9  # read again by its next owner
    assert table.partition_of(G) is None


class States(PartitionStates):
    """The engine's object store: what was written, and ``fail`` writes that time out."""

    def __init__(self, fail: int = 0) -> None:
        super().__init__(Client().jetstream())
        self.fail = fail
        self.written: list[tuple[int, bytes]] = []

    async def save(self, partition: int, data: bytes) -> None:
        if self.fail:
            self.fail -= 1
            raise NatsTimeoutError
        self.written.append((partition, data))


class Side:
    """The loop's side of a commit: each save with the claim as it was then."""

    def __init__(self, part: OwnedPartition, answer: bytes | None = b"state") -> None:
        self.part = part
        self.answer = answer
        self.saves: list[dict[str, Any]] = []

    def restore(self, partition: int, generation: int, data: bytes | None) -> int:
        return 0

    def save(self, partition: int, generation: int, position: int, release: bool) -> bytes | None:
        part = self.part
        self.saves.append(
            {
                "at": (partition, generation, position, release),
                "thread": threading.current_thread().name,
                "still reading": part.reading or part.reader is not None,
                "readings left to take": len(part.queued) if part.queueing else None,
            }
        )
        return self.answer

    def drop(self, partition: int, generation: int) -> None:
        pass


@contextmanager
def scoring_loop(bridge: LoopBridge) -> Iterator[None]:
    """The loop's thread, running the member's jobs between its (here empty) batches."""
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            bridge.run_jobs(wait_s=0.01)

    thread = threading.Thread(target=run, name=LOOP)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def committing(
    part: OwnedPartition,
    side: Side,
    states: States,
    test: Callable[[Checkpoint, ClusterCounters], Coroutine[Any, Any, None]],
    owns: bool = True,
) -> ClusterCounters:
    """Run ``test`` with a checkpoint of ``part`` (owned), the loop in its own thread."""
    counters = ClusterCounters()
    bridge = LoopBridge()
    table = owned(part)
    trouble = Trouble("m0", counters)
    readers = Readers(
        Client(),
        table,
        bridge,
        counters,
        trouble,
        log_settings=LogSettings(),
        prefetch=8,
        fetch_batch=8,
    )
    checkpoint = Checkpoint(
        states,
        table,
        readers=readers,
        bridge=bridge,
        side=side,
        counters=counters,
        owns=lambda partition: owns,
        trouble=trouble,
    )

    async def run() -> None:
        part.reading = True
        part.reader = asyncio.create_task(asyncio.sleep(3600))  # as a reader waiting
        table.queue(part, readings(43))
        await test(checkpoint, counters)

    try:
        with scoring_loop(bridge):
            asyncio.run(run())
    finally:
        bridge.close()
    return counters


def test_a_release_stops_reading_before_the_state_is_taken_and_keeps_it_until_written() -> None:
    part = OwnedPartition(3, G, after=40, acked=42)
    side, states = Side(part), States(fail=1)

    async def test(checkpoint: Checkpoint, counters: ClusterCounters) -> None:
        with pytest.raises(NatsTimeoutError):  # the engine away: the keeper tries again
            await checkpoint.commit(part, release=True)
        assert part.unsaved == b"state" and states.written == []
        await checkpoint.commit(part, release=True)
        assert part.unsaved is None and states.written == [(3, b"state")]

    committing(part, side, states, test)
    # taken once (the loop forgot the streams then: the kept copy is what the retry wrote),
    # in the loop's thread, at the acknowledged position, after the reader stopped and the
    # readings not taken were withdrawn (reading 43: its next owner reads it again)
    assert side.saves == [
        {
            "at": (3, G, 42, True),
            "thread": LOOP,
            "still reading": False,
            "readings left to take": None,
        }
    ]


def test_a_checkpoint_saves_only_what_is_still_ours_and_waits_for_unconfirmed_alerts() -> None:
    part = OwnedPartition(5, G, acked=17)
    side, states = Side(part, answer=None), States()

    async def test(checkpoint: Checkpoint, counters: ClusterCounters) -> None:
        await checkpoint.commit(part)  # the loop says not now: an alert unconfirmed
        assert counters.checkpoints_deferred == 1 and states.written == []
        side.answer = b"state"
        part.acked = 18
        await checkpoint.commit(part)
        assert counters.checkpoints == 1 and states.written == [(5, b"state")]

    committing(part, side, states, test)
    assert [s["at"] for s in side.saves] == [(5, G, 17, False), (5, G, 18, False)]
    assert all(s["thread"] == LOOP and s["still reading"] for s in side.saves)

    async def not_ours(checkpoint: Checkpoint, counters: ClusterCounters) -> None:
        await checkpoint.commit(part)  # its lease lapsed: another member may own it now

    side.saves.clear()
    counters = committing(part, side, states, not_ours, owns=False)
    assert side.saves == [] and counters.checkpoints == 0
