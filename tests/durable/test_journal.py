"""The readings journal: batches in, the same batches out, torn tails cut off."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sensord.config import StateSettings
from sensord.core.bundle import Bundle
from sensord.core.engine import Engine
from sensord.core.pipeline import Pipeline
from sensord.durable.journal import Entry, Journal
from sensord.durable.store import SHADOW, DurableState


@dataclass(frozen=True)
class Named:
    name: str
    pipeline: Pipeline


def entry(route: str, n: int, features: int = 1, start: float = 0.0) -> Entry:
    rng = np.random.default_rng(n)
    return Entry(
        route,
        [f"stream-{i}" for i in range(n)],
        start + np.arange(n, dtype=np.float64),
        rng.standard_normal((n, features)),
        start + np.arange(n, dtype=np.float64) + 0.5,
    )


def same(a: Entry, b: Entry) -> bool:
    return (
        a.route == b.route
        and a.streams == b.streams
        and np.array_equal(a.ts, b.ts)
        and np.array_equal(a.values, b.values)
        and np.array_equal(a.received, b.received)
    )


def test_batches_come_back_exactly(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.log")
    written = [[entry("r1", 5), entry("r2", 3, features=4)], [entry("r1", 1, start=9.0)]]
    for batch in written:
        journal.append(batch)
    journal.close()
    read = list(Journal(tmp_path / "journal.log").entries())
    assert len(read) == 3
    assert all(same(a, b) for a, b in zip(read, [e for b in written for e in b], strict=True))


def test_a_torn_tail_ends_the_replay_and_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    journal = Journal(path)
    journal.append([entry("r", 4)])
    good = path.stat().st_size
    journal.append([entry("r", 6, start=4.0)])
    whole = path.read_bytes()
    for cut in (good + 1, good + 9, len(whole) - 1):
        path.write_bytes(whole[:cut])
        again = Journal(path)
        read = list(again.entries())
        assert len(read) == 1 and same(read[0], entry("r", 4))
        assert again.torn == cut - good


def test_reset_empties_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.log")
    journal.append([entry("r", 4)])
    journal.reset()
    journal.append([entry("r", 2, start=10.0)])
    (read,) = list(journal.entries())
    assert same(read, entry("r", 2, start=10.0))
    assert journal.size == (tmp_path / "journal.log").stat().st_size


def test_a_routes_shadow_is_replayed_the_readings_of_its_route(
    tmp_path: Path, small_bundle: Bundle
) -> None:
    """After a crash the shadow goes on where it was too, not from its last snapshot."""
    settings = StateSettings(dir=tmp_path, snapshot_interval_s=0)
    durable = DurableState(settings)
    live = Named("temp", Pipeline(Engine(small_bundle)))
    shadow = Named("temp" + SHADOW, Pipeline(Engine(small_bundle)))
    durable.restore([live, shadow])
    readings = entry("temp", 20)
    for pipeline in (live.pipeline, shadow.pipeline):
        pipeline.process_batch(readings.streams, readings.ts, readings.values, readings.received)
    durable.record([readings])  # then the process dies: no snapshot since
    durable.close()

    again = DurableState(settings)
    live2 = Named("temp", Pipeline(Engine(small_bundle)))
    shadow2 = Named("temp" + SHADOW, Pipeline(Engine(small_bundle)))
    again.restore([live2, shadow2])
    for before, after in ((live, live2), (shadow, shadow2)):
        assert len(after.pipeline.table) == 20, after.name
        for stream in readings.streams:
            slot, slot2 = (
                before.pipeline.table.slot_of[stream],
                after.pipeline.table.slot_of[stream],
            )
            np.testing.assert_array_equal(
                before.pipeline.table["h"][slot], after.pipeline.table["h"][slot2]
            )
