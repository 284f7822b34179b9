"""A partition's state handed over through a real engine's object store: the member that
takes it goes on exactly as if the streams had never moved (no new warm-up)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import numpy as np
import pytest

from sensord.cli.engine import LocalEngine
from sensord.cluster.handover import PartitionStates, pack, restore, unpack
from sensord.config import RouteSettings
from sensord.core.bundle import Bundle
from sensord.core.pipeline import Pipeline, PipelineSettings
from sensord.core.sample import Scored
from sensord.core.state import Slots
from sensord.daemon.routes import open_route
from sensord.errors import SnapshotError
from sensord.offline.synthetic import generate
from sensord.wire.partition import partition_of

PARTITIONS = 12
STREAMS = [f"dev-{i:03d}" for i in range(40)]
T0, STEP = 1_700_000_000.0, 300.0


def partition_slots(p: Pipeline, partition: int) -> Slots:
    """The slots of the pipeline's streams that the engine's mapping puts in ``partition``
    (a member tracks them by where their readings came from; these streams came by it)."""
    slots = [
        s for name, s in p.table.slot_of.items() if partition_of(name, PARTITIONS) == partition
    ]
    return np.asarray(slots, dtype=np.intp)


def packed(p: Pipeline, partition: int, sequence: int) -> bytes:
    """One route's streams of the partition as the member hands them out (then forgotten)."""
    return pack([("temp", p, partition_slots(p, partition))], partition, sequence)


def pipeline(bundle: Bundle) -> Pipeline:
    settings = RouteSettings(topic="sensors/+/value", bundle=Path(bundle.path))
    return open_route(0, settings, PipelineSettings()).pipeline


def feed(p: Pipeline, streams: list[str], steps: range, spike_at: int = -1) -> list[Scored]:
    values = generate(steps.stop + 1, seed=5).values
    out = []
    for k in steps:
        ts = np.full(len(streams), T0 + k * STEP)
        v = np.array(
            [
                [values[k] + (8.0 if k == spike_at else 0.0) + i * 0.01]
                for i, _ in enumerate(streams)
            ]
        )
        out.append(p.process_batch(streams, ts, v, ts))
    return out


def same(a: list[Scored], b: list[Scored]) -> None:
    for x, y in zip(a, b, strict=True):
        for name in ("score", "error", "expected"):
            assert np.array_equal(getattr(x, name), getattr(y, name), equal_nan=True), name
        assert np.array_equal(x.alert, y.alert)
        assert [e.alert_id for _, e in x.events] == [e.alert_id for _, e in y.events]


def test_a_partition_handed_over_goes_on_as_if_it_never_moved(
    engine: LocalEngine, bundle: Bundle
) -> None:
    whole, leaving, taking = pipeline(bundle), pipeline(bundle), pipeline(bundle)
    # (past the 100 values a stream's tails need before they speak)
    feed(whole, STREAMS, range(110))
    feed(leaving, STREAMS, range(110))
    partition = partition_of(STREAMS[0], PARTITIONS)
    moved = [s for s in STREAMS if partition_of(s, PARTITIONS) == partition]
    stayed = [s for s in STREAMS if s not in moved]
    assert len(partition_slots(leaving, partition)) == len(moved) >= 1

    async def through_the_engine() -> bytes | None:
        nc = await nats.connect(engine.url)
        states = PartitionStates(nc.jetstream(), name="t")
        await states.open()
        await states.save(partition, packed(leaving, partition, 1234))
        again = PartitionStates(nc.jetstream(), name="t")  # another member's view
        await again.open()
        data = await again.load(partition)
        assert await again.load(partition + 1) is None  # never saved
        await nc.close()
        return data

    data = asyncio.run(through_the_engine())
    assert data is not None
    taken = restore([("temp", taking)], data, "partition 0")
    assert len(taken.streams["temp"]) == len(moved) and taken.sequence == 1234
    assert set(taking.table.slot_of) == set(moved)
    assert set(leaving.table.slot_of) == set(stayed)
    # both halves go on exactly as the whole does, a spike (and its alert) included
    after = feed(whole, moved, range(110, 140), spike_at=120)
    assert any(batch.events for batch in after), "the spike raised no alert to compare"
    same(feed(taking, moved, range(110, 140), spike_at=120), after)
    same(feed(leaving, stayed, range(110, 140)), feed(whole, stayed, range(110, 140)))
    # what the hand-over saves: the same streams starting afresh would differ
    afresh = feed(pipeline(bundle), moved, range(110, 140), spike_at=120)
    with pytest.raises(AssertionError):
        same(afresh, after)


def test_a_handed_over_state_that_does_not_fit_or_is_damaged_is_refused(
    bundle: Bundle, small_bundle: Bundle
) -> None:
    leaving = pipeline(bundle)
    feed(leaving, STREAMS, range(20))
    data = packed(leaving, partition_of(STREAMS[0], PARTITIONS), 7)
    with pytest.raises(SnapshotError, match=r"partition x \(temp\): does not fit"):
        restore([("temp", pipeline(small_bundle))], data, "partition x")
    part = unpack(data, "x").parts["temp"]
    damaged = bytearray(data)
    damaged[len(data) - len(part) + len(part) // 2] ^= 0xFF  # the middle of the route's part
    with pytest.raises(SnapshotError, match=r"partition x \(temp\)"):
        restore([("temp", pipeline(bundle))], bytes(damaged), "partition x")


def test_a_packed_partition_holds_every_route_and_is_taken_whole_or_not_at_all(
    bundle: Bundle, small_bundle: Bundle
) -> None:
    live, shadow = pipeline(bundle), pipeline(small_bundle)
    feed(live, STREAMS, range(20))
    feed(shadow, STREAMS, range(20))
    partition = partition_of(STREAMS[0], PARTITIONS)
    slots = partition_slots(live, partition)
    moved = {live.table.stream_of[s] for s in slots}
    parts = [
        ("temp", live, slots),
        ("temp.shadow", shadow, partition_slots(shadow, partition)),
    ]
    checkpoint = pack(parts, partition, 99, release=False)
    assert set(live.table.slot_of) == set(STREAMS)  # a checkpoint keeps them here
    data = pack(parts, partition, 100)
    assert moved.isdisjoint(live.table.slot_of)  # a hand-over forgets them
    assert unpack(checkpoint, "x").sequence == 99
    taker, taker_shadow = pipeline(bundle), pipeline(small_bundle)
    extra = pipeline(bundle)
    restored = restore(
        [("temp", taker), ("temp.shadow", taker_shadow), ("other", extra)], data, "p"
    )
    assert restored.sequence == 100 and restored.missing == ("other",)
    assert set(restored.streams["temp"]) == moved == set(taker.table.slot_of)
    assert set(taker_shadow.table.slot_of) == moved and len(extra.table) == 0
    # a part that does not fit its pipeline: nothing is taken, the route is named
    fresh, wrong = pipeline(bundle), pipeline(bundle)
    with pytest.raises(SnapshotError, match=r"p \(temp.shadow\): does not fit"):
        restore([("temp", fresh), ("temp.shadow", wrong)], data, "p")
    assert len(fresh.table) == 0
    for damaged in (data[:10], b"XXXX" + data[4:], data + b"x"):
        with pytest.raises(SnapshotError, match="p:"):
            unpack(damaged, "p")
