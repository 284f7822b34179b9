"""State snapshots: what one pipeline saved, another restores, column by column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sensord.core.bundle import Bundle
from sensord.core.pipeline import Pipeline
from sensord.core.sample import Sample
from sensord.core.state import ColumnSpec
from sensord.durable import snapshots
from sensord.errors import SnapshotError
from tests.fakes import NumpyEngine, fake_bundle

EDGE = {"published_at": ColumnSpec(np.float64, (), np.nan)}


@pytest.fixture(scope="module")
def small_bundle() -> Bundle:
    return fake_bundle(name="small")


def stepped(bundle: Bundle, *, edge: bool) -> Pipeline:
    pipeline = Pipeline(NumpyEngine(bundle))
    if edge:
        pipeline.register(EDGE)
    features = len(bundle.manifest.features)
    pipeline.process(
        [
            Sample(f"s{i}", 1_000.0 + k, np.full(features, 0.1 * k))
            for k in range(5)
            for i in range(3)
        ]
    )
    if edge:
        pipeline.table["published_at"][: len(pipeline.table)] = 7.0
    return pipeline


def test_a_column_the_restoring_table_does_not_keep_is_set_aside_not_damage(
    small_bundle: Bundle, tmp_path: Path
) -> None:
    # a daemon's snapshot (its publisher's columns registered) read by a bare pipeline
    path = tmp_path / "state.npz"
    saved = stepped(small_bundle, edge=True)
    snapshots.save(path, saved)
    bare = Pipeline(NumpyEngine(small_bundle))
    assert snapshots.restore(path, bare) == 3
    assert "published_at" not in bare.table.specs
    slot = bare.table.slot_of["s1"]
    np.testing.assert_array_equal(
        bare.table["prediction"][slot], saved.table["prediction"][saved.table.slot_of["s1"]]
    )


def test_a_damaged_column_the_restoring_table_does_not_keep_is_still_damage(
    small_bundle: Bundle, tmp_path: Path
) -> None:
    path = tmp_path / "state.npz"
    snapshots.save(path, stepped(small_bundle, edge=True))
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["column_published_at"] = arrays["column_published_at"] + 1.0
    np.savez(path, **arrays)
    with pytest.raises(SnapshotError, match="checksum mismatch"):
        snapshots.restore(path, Pipeline(NumpyEngine(small_bundle)))
