"""Partition leases on a real nats-server: members share the partitions, never own one
twice, take over a dead member's within a bound, make room for a new one, and resume after
the engine restarts."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, cast

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from sensord.cli.engine import LocalEngine
from sensord.cluster.leases import LeaseKeeper, LeaseSettings
from sensord.wire.partition import partition_of, subject_mapping
from tests.cluster.conftest import engine_for_test

PARTITIONS = 12
LEASE_S = 2.0


class Member:
    """One member: its own connection and lease keeper, turning in a task."""

    def __init__(self, name: str, server: LocalEngine, bucket: str) -> None:
        self.name, self.server, self.bucket = name, server, bucket
        self.stop = asyncio.Event()
        self.alive = True  # False: as a member whose scoring loop hangs
        self.claims: list[int] = []
        self.releases: list[int] = []

    async def start(self) -> None:
        self.nc: Client = await nats.connect(
            self.server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2
        )

        async def claimed(p: int) -> None:
            self.claims.append(p)

        async def released(p: int) -> None:
            self.releases.append(p)

        self.keeper = LeaseKeeper(
            self.nc.jetstream(),
            LeaseSettings(self.name, PARTITIONS, LEASE_S, name=self.bucket),
            on_claim=claimed,
            on_release=released,
            alive=lambda: self.alive,
        )
        self.task = asyncio.create_task(self.keeper.run(self.stop))

    async def crash(self) -> None:
        """As kill -9: no release, the connection just goes."""
        self.task.cancel()
        await self.nc.close()

    async def close(self) -> None:
        self.stop.set()
        await self.task
        await self.nc.close()

    def owned(self) -> frozenset[int]:
        return self.keeper.owned()


async def until(
    condition: Callable[[], bool], members: list[Member], timeout: float, what: str
) -> float:
    """Wait for ``condition``, checking at every step that no partition has two owners;
    the seconds it took."""
    started = time.monotonic()
    while not condition():
        owned = Counter(p for m in members for p in m.owned())
        twice = sorted(p for p, n in owned.items() if n > 1)
        assert not twice, f"partitions {twice} owned twice"
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s: " + str(
            {m.name: sorted(m.owned()) for m in members}
        )
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def shares(members: list[Member]) -> list[int]:
    return sorted(len(m.owned()) for m in members)


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


BUSY_BOX_S = 2.0  # what a loaded box may add to a hand-over (timers, the engine's expiry)


def test_members_share_partitions_and_take_over_a_dead_ones(engine: LocalEngine) -> None:
    async def test() -> None:
        members = [Member(f"m{i}", engine, "t1") for i in range(3)]
        for m in members:
            await m.start()
        await until(lambda: shares(members) == [4, 4, 4], members, 10, "three members")
        dead, alive = members[0], members[1:]
        lost = dead.owned()
        await dead.crash()
        took = await until(lambda: shares(alive) == [6, 6], alive, 3 * LEASE_S, "take-over")
        # the dead member's leases expire one lease time after its last renewal (at most a
        # turn before the crash), then a survivor's turn claims them: docs/cluster.md's bound,
        # lease x 5/3, plus the 2 s a busy box may add that test_failover allows too (seen
        # in a CI run: 4.0 s with a 2 s lease, past the 0.5 s this allowed before)
        assert took <= LEASE_S * 5 / 3 + BUSY_BOX_S, took
        assert lost <= set().union(*(m.claims for m in alive))
        for m in alive:
            await m.close()

    run(test)


def test_a_member_joining_takes_its_share_without_a_partition_owned_twice(
    engine: LocalEngine,
) -> None:
    async def test() -> None:
        members = [Member(f"m{i}", engine, "t2") for i in range(2)]
        for m in members:
            await m.start()
        await until(lambda: shares(members) == [6, 6], members, 10, "two members")
        before = {p: m.name for m in members for p in m.owned()}
        for m in members:  # the first member may have held everything until the second came
            m.releases.clear()
        joining = Member("m2", engine, "t2")
        await joining.start()
        everyone = [*members, joining]
        await until(lambda: shares(everyone) == [4, 4, 4], everyone, 10, "after the join")
        after = {p: m.name for m in everyone for p in m.owned()}
        moved = {p for p in range(PARTITIONS) if before[p] != after[p]}
        assert {after[p] for p in moved} == {"m2"} and len(moved) == 4  # only what it took
        # each moved partition was released by its owner first (under load a member can
        # see a view a turn old and claim a partition it then gives on: a move more, never
        # two owners)
        assert moved <= {p for m in members for p in m.releases}
        for m in everyone:
            await m.close()

    run(test)


def test_a_clean_stop_hands_over_at_once_and_members_resume_after_an_engine_restart(
    engine: LocalEngine,
) -> None:
    async def test() -> None:
        members = [Member(f"m{i}", engine, "t3") for i in range(2)]
        for m in members:
            await m.start()
        await until(lambda: shares(members) == [6, 6], members, 10, "two members")
        await members[1].close()  # releases its leases: no wait for their expiry
        took = await until(lambda: shares(members[:1]) == [12], members[:1], 5, "hand-over")
        assert took < LEASE_S, took
        engine.stop()
        # longer than the client's request timeout (5 s): turns fail, the keeper goes on,
        # and the leases it could not renew are no longer counted
        await asyncio.sleep(6.0)
        assert members[0].owned() == frozenset()
        assert members[0].keeper.failed_turns >= 1 and not members[0].task.done()
        engine.start()  # the same store: the buckets and the old leases are still there
        await until(lambda: shares(members[:1]) == [12], members[:1], 15, "after the restart")
        await members[0].close()

    run(test)


def test_a_member_whose_loop_hangs_stops_renewing_and_its_partitions_move(
    engine: LocalEngine,
) -> None:
    async def test() -> None:
        members = [Member(f"m{i}", engine, "t4") for i in range(2)]
        for m in members:
            await m.start()
        await until(lambda: shares(members) == [6, 6], members, 10, "two members")
        stuck, other = members
        stuck.alive = False  # its connection is fine; its loop is not
        took = await until(lambda: len(other.owned()) == 12, members, 3 * LEASE_S, "move")
        assert took <= LEASE_S + 2 * LEASE_S / 3 + 0.5, took
        assert stuck.owned() == frozenset() and stuck.keeper.failed_turns >= 1
        stuck.alive = True  # back: it takes its share again, handed over by the other
        await until(lambda: shares(members) == [6, 6], members, 10, "back")
        for m in members:
            await m.close()

    run(test)


def test_the_partition_function_agrees_with_the_engines_mapping() -> None:
    server = engine_for_test(subject_mapping(PARTITIONS))
    streams = [f"dev-{i:04x}" for i in range(150)] + ["sA", "sa", "pump", "t-1_x"]

    async def test() -> None:
        nc = await nats.connect(server.url)
        seen: dict[str, int] = {}
        done = asyncio.Event()

        async def on(msg: Msg) -> None:
            tokens = msg.subject.split(".")
            seen[".".join(tokens[3:-1])] = int(tokens[1])
            if len(seen) == len(streams):
                done.set()

        await nc.subscribe("part.*.>", cb=on)
        await nc.flush()
        for stream in streams:
            await nc.publish(f"sensors.{stream}.value", b"1")
        await asyncio.wait_for(done.wait(), 10)
        await nc.close()
        assert seen == {s: partition_of(s, PARTITIONS) for s in streams}

    try:
        run(test)
    finally:
        server.remove()


class SlowBucket:
    """A KV bucket in memory whose every request takes ``delay_s``, as an engine on a box
    whose disk or CPU is busy (enough for one member: no keys expire)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.entries: dict[str, tuple[bytes, int]] = {}
        self.revision = 0

    async def put(self, key: str, value: bytes) -> int:
        await asyncio.sleep(self.delay_s)
        self.revision += 1
        self.entries[key] = (value, self.revision)
        return self.revision

    async def keys(self) -> list[str]:
        await asyncio.sleep(self.delay_s)
        if not self.entries:
            raise NoKeysError
        return list(self.entries)

    async def get(self, key: str) -> KeyValue.Entry:
        await asyncio.sleep(self.delay_s)
        if key not in self.entries:
            raise KeyNotFoundError
        value, revision = self.entries[key]
        return KeyValue.Entry("slow", key, value, revision, None, None, None)

    async def create(self, key: str, value: bytes) -> int:
        if key in self.entries:
            await asyncio.sleep(self.delay_s)
            raise KeyWrongLastSequenceError
        return await self.put(key, value)

    async def update(self, key: str, value: bytes, last: int) -> int:
        if self.entries.get(key, (b"", 0))[1] != last:
            await asyncio.sleep(self.delay_s)
            raise KeyWrongLastSequenceError
        return await self.put(key, value)

    async def delete(self, key: str, last: int | None = None) -> bool:
        await asyncio.sleep(self.delay_s)
        self.entries.pop(key, None)
        return True


class SlowKeeper(LeaseKeeper):
    async def open(self) -> None:
        if self.members_kv is None:
            self.members_kv = cast(KeyValue, SlowBucket(0.1))
            self.leases_kv = cast(KeyValue, SlowBucket(0.1))


def test_a_slow_engine_does_not_let_a_members_leases_lapse_between_renewals() -> None:
    """With 0.1 s per request, a turn that read and renewed the twelve leases one by one
    took 2.6 s, and the next began a turn's time after it ended, while a lease is counted
    valid 1.6 s: the member stopped owning its partitions between two renewals. A turn
    reads and renews them at once, and the next is due a turn's time after the last one
    started."""

    async def test() -> None:
        keeper = SlowKeeper(Client().jetstream(), LeaseSettings("m0", PARTITIONS, LEASE_S))
        task = asyncio.create_task(keeper.run(asyncio.Event()))
        claimed_by = time.monotonic() + 10
        while len(keeper.owned()) < PARTITIONS:
            assert time.monotonic() < claimed_by, sorted(keeper.owned())
            await asyncio.sleep(0.02)
        # The first turn claimed them one by one (each claim restores a state, in a member):
        # its first claims' leases may lapse for the time of the next renewal's answer.
        await asyncio.sleep(LEASE_S)
        watched_until = time.monotonic() + 2 * LEASE_S  # several renewals of each lease
        while time.monotonic() < watched_until:
            assert len(keeper.owned()) == PARTITIONS, sorted(keeper.owned())
            await asyncio.sleep(0.02)
        task.cancel()  # no release: not what this test is about, and slow here
        with contextlib.suppress(asyncio.CancelledError):
            await task

    run(test)
