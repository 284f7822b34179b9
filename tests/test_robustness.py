"""What the default detector must catch, and what it must let pass, on generated sensors.

A noisy daily cycle (noise sigma 0.6 on a cycle of about +-4, sampled every 5 minutes) is
trained once with the default network; then the daemon's core, at its defaults, replays
fresh days of the same sensor with anomalies injected at known samples: spikes and dips
*inside* the range the stream has shown, a small level shift, a daily pattern that changes
shape, the same anomaly twice, a fault that persists, and, for a two-feature sensor, a
relation between the features that breaks while each stays in its own range. Clean streams
must stay quiet: at most one false alert per 10,000 samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from sensord.arrays import F64
from sensord.core.alert import AlertEvent
from sensord.core.bundle import Bundle
from sensord.core.engine import Engine
from sensord.core.pipeline import Pipeline
from sensord.core.sample import Sample
from sensord.core.timestamps import format_timestamp
from sensord.offline.synthetic import generate
from sensord.training.options import TrainOptions
from sensord.training.train import train_bundle

pytestmark = pytest.mark.slow  # models trained, runs end to end: seconds each

TRAIN_ROWS = 2016  # a week at 5 minutes
WARM_ROWS = 4032  # two weeks of the live stream before anything is injected
NOISE = 0.2  # generate()'s noise parameter: sigma 0.6


def write_rows(path: Path, timestamps: F64, values: F64, names: tuple[str, ...]) -> None:
    lines = ["timestamp," + ",".join(names)]
    for ts, row in zip(timestamps, values, strict=True):
        lines.append(format_timestamp(float(ts)) + "," + ",".join(f"{v:.6f}" for v in row))
    path.write_text("\n".join(lines) + "\n")


def daily(rows: int, seed: int, start: float = 1.7e9) -> tuple[F64, F64]:
    g = generate(rows, seed=seed, start=start, noise=NOISE)
    return g.timestamps, g.values


@pytest.fixture(scope="module")
def sensor(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    folder = tmp_path_factory.mktemp("robust")
    ts, values = daily(TRAIN_ROWS, seed=11)
    write_rows(folder / "train.csv", ts, values[:, None], ("value",))
    return train_bundle(folder / "train.csv", folder / "bundle", TrainOptions(name="robust")).bundle


@dataclass
class Run:
    events: list[tuple[int, AlertEvent]]
    alert: np.ndarray  # per row: an alert is up after it
    rows: int

    def onsets(self) -> list[int]:
        return [i for i, e in self.events if e.event in ("raised", "updated")]

    def raised(self) -> list[int]:
        return [i for i, e in self.events if e.event == "raised"]


def replay(bundle: Bundle, ts: F64, values: F64, stream: str = "s") -> Run:
    pipeline = Pipeline(Engine(bundle))
    values = values.reshape(len(ts), -1)
    events: list[tuple[int, AlertEvent]] = []
    alert = np.zeros(len(ts), dtype=bool)
    for start in range(0, len(ts), 256):
        batch = [
            Sample(stream, float(ts[i]), values[i]) for i in range(start, min(len(ts), start + 256))
        ]
        for offset, outcome in enumerate(pipeline.process(batch)):
            alert[start + offset] = outcome.alert
            if outcome.event is not None:
                events.append((start + offset, outcome.event))
    return Run(events, alert, len(ts))


def live(rows: int, seed: int) -> tuple[F64, F64]:
    return daily(WARM_ROWS + rows, seed=seed, start=1.7e9 + (TRAIN_ROWS + 288) * 300.0)


@pytest.fixture(scope="module")
def typical(sensor: Bundle) -> float:
    """The model's typical one-step error on this sensor (RMS), in its own units."""
    ts, values = live(0, seed=5)
    pipeline = Pipeline(Engine(sensor))
    outcomes = pipeline.process(
        [Sample("t", float(t), np.array([v])) for t, v in zip(ts, values, strict=True)]
    )
    errors = [o.sample.values[0] - o.expected[0] for o in outcomes[10:] if o.expected is not None]
    return float(np.sqrt(np.mean(np.square(errors))))


def expected(bundle: Bundle, ts: F64, values: F64) -> F64:
    """What the model expects at each row after the readings before it."""
    outcomes = Pipeline(Engine(bundle)).process(
        [Sample("s", float(t), np.array([v])) for t, v in zip(ts, values, strict=True)]
    )
    return np.asarray([np.nan if o.expected is None else o.expected[0] for o in outcomes])


def in_range(values: F64, row: int, delta: float) -> bool:
    seen = values[:row]
    return bool(seen.min() < values[row] + delta < seen.max())


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["spike", "dip"])
def test_in_range_spikes_and_dips_are_raised_on_their_sample(
    sensor: Bundle, typical: float, sign: float
) -> None:
    size = 6.0 * typical
    ts, values = live(600, seed=21)
    clean = expected(sensor, ts, values)
    # Three readings each 6 typical errors off what the model expects, far enough apart to
    # be three events, where the cycle leaves room inside the range the stream has shown.
    rows = []
    for offset in (100, 250, 400):
        row = next(
            r for r in range(WARM_ROWS + offset, len(ts)) if in_range(values, r, sign * size * 1.5)
        )
        values[row] = clean[row] + sign * size
        assert in_range(values, row, 0.0), "the reading left the range"
        rows.append(row)
    run = replay(sensor, ts, values)
    missed = [row for row in rows if row not in run.onsets()]
    assert not missed, f"no alert on the {size:.2f} {('dip', 'spike')[sign > 0]} at {missed}"


def test_a_level_shift_of_three_noise_sigmas_is_raised_within_ten_samples(sensor: Bundle) -> None:
    ts, values = live(600, seed=22)
    row = WARM_ROWS + 200
    values[row:] += 3 * 0.6
    run = replay(sensor, ts, values)
    hits = [i for i in run.onsets() if row <= i < row + 10]
    assert hits, f"shift at {row} not raised in 10 samples (onsets {run.onsets()})"


def test_a_daily_pattern_that_changes_shape_is_raised_within_one_block(sensor: Bundle) -> None:
    ts, values = live(600, seed=23)
    # Where the cycle is high, the stream goes flat at its daily mean for a few hours.
    peak = WARM_ROWS + 100 + int(np.argmax(values[WARM_ROWS + 100 : WARM_ROWS + 388]))
    row = peak - 12
    values[row : row + 48] = 20.0 + np.random.default_rng(1).normal(0, 0.6, 48)
    run = replay(sensor, ts, values)
    hits = [i for i in run.onsets() if row <= i < row + 6]
    assert hits, f"pattern change at {row} not raised within 6 samples ({run.onsets()})"


def test_the_same_anomaly_a_second_time_is_raised_again(sensor: Bundle, typical: float) -> None:
    size = 8.0 * typical
    ts, values = live(900, seed=24)
    rows = [WARM_ROWS + 150, WARM_ROWS + 450]
    for row in rows:
        values[row] -= size
    run = replay(sensor, ts, values)
    assert all(row in run.onsets() for row in rows), f"onsets {run.onsets()}, wanted {rows}"


def test_a_fault_held_for_200_samples_stays_alerted_throughout(sensor: Bundle) -> None:
    ts, values = live(700, seed=25)
    row = WARM_ROWS + 150
    values[row : row + 200] -= 5.0  # a stuck low reading band, inside the daily range
    run = replay(sensor, ts, values)
    first = next((i for i in run.raised() if row <= i < row + 10), None)
    assert first is not None, f"fault at {row} not raised within 10 samples ({run.raised()})"
    held = run.alert[first : row + 200]
    assert held.all(), f"alert dropped at rows {np.flatnonzero(~held)[:5] + first}"
    assert not run.alert[row + 260 :].any(), "the alert did not clear after the fault ended"


def test_in_range_spikes_that_recur_every_300_readings_are_raised_every_time(
    sensor: Bundle, typical: float
) -> None:
    size = 10.0 * typical
    ts, values = live(1900, seed=26)
    clean = expected(sensor, ts, values)
    # Five readings 10 typical errors off what the model expects, spikes and dips in turn,
    # 300 readings (a day) apart, each where the cycle leaves room inside the range shown.
    rows = []
    for k in range(5):
        sign = 1.0 if k % 2 == 0 else -1.0
        start = WARM_ROWS + 100 + 300 * k
        row = next(r for r in range(start, len(ts)) if in_range(values, r, sign * size * 1.2))
        values[row] = clean[row] + sign * size
        assert in_range(values, row, 0.0), "the reading left the range"
        rows.append(row)
    run = replay(sensor, ts, values)
    missed = [row for row in rows if row not in run.onsets()]
    assert not missed, f"no alert on the recurring anomalies at {missed} (of {rows})"


def test_a_held_step_of_five_noise_sigmas_stays_alerted_while_it_lasts(sensor: Bundle) -> None:
    ts, values = live(700, seed=27)
    row = WARM_ROWS + 150
    values[row : row + 200] += 5 * 0.6  # inside the daily range for most of the cycle
    run = replay(sensor, ts, values)
    first = next((i for i in run.raised() if row <= i < row + 10), None)
    assert first is not None, f"step at {row} not raised within 10 samples ({run.raised()})"
    share = run.alert[row : row + 200].mean()
    assert share >= 0.9, f"the alert was up for {share:.0%} of the step"
    assert not run.alert[row + 260 :].any(), "the alert did not clear after the step ended"


def test_an_alert_ends_when_the_plant_settles_at_a_slightly_different_level(
    sensor: Bundle,
) -> None:
    ts, values = live(800, seed=28)
    row = WARM_ROWS + 150
    values[row : row + 150] -= 5.0  # a fault
    values[row + 150 :] += 0.6  # after it, the plant runs a noise sigma higher
    run = replay(sensor, ts, values)
    assert run.alert[row + 10 : row + 150].all(), "the fault was not alerted throughout"
    over = np.flatnonzero(~run.alert[row + 150 :])
    assert over.size and over[0] <= 20, f"the alert outlived the fault by {over[:1]} readings"
    assert run.alert[row + 170 :].mean() < 0.05, "the settled plant kept being alerted"


def test_clean_streams_raise_at_most_one_false_alert_per_10000_samples(sensor: Bundle) -> None:
    streams, rows = 20, 10_000
    pipeline = Pipeline(Engine(sensor))
    series = [
        daily(rows, seed=100 + s, start=1.7e9 + (TRAIN_ROWS + 288) * 300.0) for s in range(streams)
    ]
    raised = 0
    for start in range(0, rows, 64):
        batch = [
            Sample(f"clean-{s}", float(series[s][0][i]), np.array([series[s][1][i]]))
            for i in range(start, min(rows, start + 64))
            for s in range(streams)
        ]
        raised += sum(
            1 for o in pipeline.process(batch) if o.event is not None and o.event.event == "raised"
        )
    assert raised <= streams * rows / 10_000, f"{raised} false alerts in {streams * rows} samples"


def trained_on(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    rows: tuple[F64, F64],
    features: tuple[str, ...],
) -> Bundle:
    """A bundle trained with the default network on ``rows`` (timestamps, values)."""
    folder = tmp_path_factory.mktemp(name)
    write_rows(folder / "train.csv", *rows, features)
    return train_bundle(folder / "train.csv", folder / "bundle", TrainOptions(name=name)).bundle


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int, int], tuple[F64, F64]]:
    """A two-feature sensor: ``b`` follows ``a`` (b = 40 - a, plus its own noise)."""

    def make(rows: int, seed: int) -> tuple[F64, F64]:
        ts, a = daily(rows, seed=seed)
        b = 40.0 - a + np.random.default_rng(seed + 1).normal(0, 0.3, rows)
        return ts, np.stack([a, b], axis=1)

    return make


@pytest.fixture(scope="module")
def pair_sensor(
    tmp_path_factory: pytest.TempPathFactory, pair: Callable[[int, int], tuple[F64, F64]]
) -> Bundle:
    return trained_on(tmp_path_factory, "pair", pair(TRAIN_ROWS, 31), ("a", "b"))


def test_a_broken_relation_between_two_features_is_raised_and_names_them(
    pair_sensor: Bundle, pair: Callable[[int, int], tuple[F64, F64]]
) -> None:
    ts, values = pair(WARM_ROWS + 600, 32)
    # For a few hours b stops mirroring a and follows it instead: each stays in its range.
    row = WARM_ROWS + 200
    span = slice(row, row + 36)
    values[span, 1] = values[span, 0] + np.random.default_rng(3).normal(0, 0.3, 36)
    lows, highs = values[:row].min(axis=0), values[:row].max(axis=0)
    assert ((values[span] >= lows) & (values[span] <= highs)).all(), "left the range"
    run = replay(pair_sensor, ts, values)
    hits = [e for i, e in run.events if row <= i < row + 36 and e.event in ("raised", "updated")]
    assert hits, f"broken relation at {row} not raised ({run.onsets()})"
    named = {feature for feature, _ in hits[0].drivers}
    assert named == {"a", "b"}, f"the alert named {hits[0].drivers}"


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int, int], tuple[F64, F64]]:
    """A two-feature machine: a current with the daily cycle, and a temperature of its own
    that wanders slowly (sigma 0.3 around 40, unrelated to the current)."""

    def make(rows: int, seed: int) -> tuple[F64, F64]:
        ts, current = daily(rows, seed=seed)
        rng = np.random.default_rng(seed + 1)
        temperature = 40.0 + np.convolve(rng.normal(0, 0.3, rows + 49), np.ones(50) / 7, "valid")
        return ts, np.stack([current, temperature], axis=1)

    return make


@pytest.fixture(scope="module")
def machine_sensor(
    tmp_path_factory: pytest.TempPathFactory, machine: Callable[[int, int], tuple[F64, F64]]
) -> Bundle:
    return trained_on(
        tmp_path_factory, "machine", machine(TRAIN_ROWS, 41), ("current", "temperature")
    )


def test_an_alert_ends_when_its_fault_ends_while_another_feature_drifts(
    machine_sensor: Bundle, machine: Callable[[int, int], tuple[F64, F64]]
) -> None:
    ts, values = machine(WARM_ROWS + 800, 42)
    row = WARM_ROWS + 200
    values[row : row + 150, 0] -= 5.0  # the current faults for 150 readings
    # Meanwhile, and long after, the temperature climbs slowly: 4 degrees in 500 readings.
    values[row:, 1] += np.minimum(np.arange(len(ts) - row), 500) * 0.008
    run = replay(machine_sensor, ts, values)
    raised = [e for i, e in run.events if row <= i < row + 10 and e.event == "raised"]
    assert raised and raised[0].drivers[0][0] == "current", f"raised {raised}"
    # Over once the current's shift channel (30 samples) has let go, and clear_after (5)
    # calm samples followed, however far the temperature has climbed meanwhile.
    over = np.flatnonzero(~run.alert[row + 150 :])
    assert over.size and over[0] <= 35, f"the alert outlived the fault by {over[:1]} readings"
    assert not run.alert[row + 200 :].any(), "an alert came back while the temperature climbed"
