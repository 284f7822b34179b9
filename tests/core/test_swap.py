"""A new bundle for running streams: its scaling, its own LSTM state rebuilt from the
streams' recent readings, and everything else of the streams kept (swap.py)."""

from __future__ import annotations

import numpy as np
import pytest

from sensord.core.bundle import Bundle
from sensord.core.pipeline import Pipeline, PipelineSettings
from sensord.core.sample import Sample
from sensord.core.swap import RECENT
from sensord.core.transform import inverse
from sensord.offline.synthetic import generate
from tests.fakes import NumpyEngine, fake_bundle

T0 = 1_700_000_000.0
STEP = 300.0


@pytest.fixture(scope="module")
def other_bundle() -> Bundle:
    """A bundle of the same shapes for a plant at another level and swing."""
    return fake_bundle(name="changed", center=50.0 * 1.8 + 12.0, scale=18.0)


def samples(stream: str, values: np.ndarray, start: int = 0) -> list[Sample]:
    return [Sample(stream, T0 + (start + k) * STEP, np.asarray([v])) for k, v in enumerate(values)]


def raw_range(pipeline: Pipeline, slot: int) -> tuple[np.ndarray, np.ndarray]:
    table, transform = pipeline.table, pipeline.bundle.manifest.transform
    center, scale = table["center"][slot], table["scale"][slot]
    low = inverse(transform, table["seen_min"][slot]) * scale + center
    high = inverse(transform, table["seen_max"][slot]) * scale + center
    return low, high


def test_swap_takes_the_new_scaling_and_rebuilds_the_lstm_state_from_recent_readings(
    small_bundle: Bundle, other_bundle: Bundle
) -> None:
    values = generate(100, seed=9).values * 1.8 + 12.0
    running = Pipeline(NumpyEngine(small_bundle), PipelineSettings())
    running.process(samples("s", values) + samples("t", values[:5]))
    table = running.table
    slot = table.slot_of["s"]
    kept = {c: table[c][slot].copy() for c in ("steps", "last_ts", "alerts_raised", "seen_n")}
    low, high = raw_range(running, slot)
    assert other_bundle.manifest.scaling != small_bundle.manifest.scaling

    assert running.replace_engine(NumpyEngine(other_bundle)) is True

    # A fresh pipeline of the new bundle fed only the last RECENT readings has the state the
    # swap rebuilt: the same scaling, h, c and pending prediction.
    fresh = Pipeline(NumpyEngine(other_bundle), PipelineSettings())
    fresh.process(samples("s", values[-RECENT:], start=100 - RECENT))
    theirs = fresh.table.slot_of["s"]
    for column in ("center", "scale", "h", "c", "prediction"):
        np.testing.assert_allclose(
            table[column][slot], fresh.table[column][theirs], atol=1e-6, err_msg=column
        )
    # A stream with fewer than RECENT readings is primed on what it has.
    few = Pipeline(NumpyEngine(other_bundle), PipelineSettings())
    few.process(samples("t", values[:5]))
    np.testing.assert_allclose(
        table["h"][table.slot_of["t"]], few.table["h"][few.table.slot_of["t"]], atol=1e-6
    )
    # The rest of the stream goes on: no warm-up again, same alerts, same range in raw units.
    for column, before in kept.items():
        np.testing.assert_array_equal(table[column][slot], before, err_msg=column)
    new_low, new_high = raw_range(running, slot)
    np.testing.assert_allclose(new_low, low, rtol=1e-9)
    np.testing.assert_allclose(new_high, high, rtol=1e-9)
    # And the next reading is compared with the new model's prediction.
    after = running.process(samples("s", values[:1], start=100))[0]
    expected = fresh.process(samples("s", values[:1], start=100))[0]
    assert after.expected is not None and expected.expected is not None
    np.testing.assert_allclose(after.expected, expected.expected, atol=1e-5)


def test_a_gap_reset_forgets_the_readings_kept_for_a_swap(small_bundle: Bundle) -> None:
    pipeline = Pipeline(NumpyEngine(small_bundle), PipelineSettings(max_gap_s=3 * STEP))
    values = generate(30, seed=2).values
    pipeline.process(samples("s", values[:20]))
    pipeline.process(samples("s", values[20:22], start=40))  # a gap: the stream restarts
    slot = pipeline.table.slot_of["s"]
    recent = pipeline.table["recent_ts"][slot]
    assert np.count_nonzero(np.isfinite(recent)) == 2
    assert set(recent[np.isfinite(recent)]) == {T0 + 40 * STEP, T0 + 41 * STEP}


@pytest.mark.parametrize("compiled", [False, True])
def test_a_bundle_whose_detector_lays_out_other_columns_starts_the_streams_afresh(
    compiled: bool,
) -> None:
    """Same network shapes, but time features: the detector's time-of-day slots (and so its
    columns) differ. The old table cannot be stepped by the new detector (it crashed the
    compiled path, writing out of bounds), so the swap starts every stream afresh."""
    plain = fake_bundle(name="plain")
    daily = fake_bundle(name="daily", time_features=("tod_sin", "tod_cos"))
    pipeline = Pipeline(NumpyEngine(plain), compiled=compiled)
    values = generate(400, seed=2, interval_s=STEP).values
    pipeline.process(samples("s", values))
    before = {n: spec.shape for n, spec in pipeline.table.specs.items()}
    assert not pipeline.replace_engine(NumpyEngine(daily))
    after = {n: spec.shape for n, spec in pipeline.table.specs.items()}
    assert before != after and len(pipeline.table) == 0
    outcomes = pipeline.process(samples("s", values, start=400))  # steps, no crash
    assert outcomes[-1] is not None and np.isfinite(outcomes[-1].score)
