"""What the detector tests share: a calibration, streams warmed up on calm errors, and the
contract every detector keeps (sensord/core/detect/base.py), run over the product's detector
here (tests/core/test_detect.py) and over the benchmarks' baselines
(tests/benchmarks/test_baselines_benchmark.py)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sensord.core.bundle import Calibration
from sensord.core.detect import CHANNELS, Detector, DetectorContext, Observation
from sensord.core.detect.range import range_columns
from sensord.core.state import StateTable

CALIBRATION = Calibration(
    smoothing=0.5,
    error_floor=0.01,
    log_error_mean=np.log(0.1),
    log_error_std=0.5,
    threshold_error=1.0,
    samples=100,
)
WARM = 300  # samples every detector has seen before it is held to judging
T0 = 1.7e9
Make = Callable[[DetectorContext], Detector]  # a detector for this context


def context(features: int = 1, daily: bool = False) -> DetectorContext:
    return DetectorContext(CALIBRATION, features=features, interval_s=300.0, daily=daily)


def setup(
    make: Make, streams: int = 3, features: int = 1
) -> tuple[Detector, StateTable, np.ndarray]:
    """A detector, a state table with its columns (and the range rule's, which the core
    keeps) and ``streams`` started streams."""
    detector = make(context(features))
    table = StateTable(1, 1, features, extra={**detector.columns(), **range_columns(features)})
    slots, _ = table.lookup([f"s{i}" for i in range(streams)])
    detector.start(table, slots)
    return detector, table, slots


def observe(errors: np.ndarray, step: int, values: np.ndarray | None = None) -> Observation:
    errors = np.asarray(errors, dtype=np.float64).reshape(len(errors), -1)
    values = errors * 0.0 if values is None else np.asarray(values, dtype=np.float64)
    return Observation(
        values=values.reshape(errors.shape), errors=errors, ts=np.full(len(errors), T0 + 300 * step)
    )


def learn(detector: Detector, table: StateTable, slots: np.ndarray, obs: Observation) -> np.ndarray:
    """Assess, then learn, as the core does; returns the scores."""
    assessment = detector.assess(table, slots, obs)
    detector.learn(table, slots, obs, assessment, calm(detector, len(slots)))
    return assessment.score


def calm(detector: Detector, streams: int) -> np.ndarray:
    """Full trust for every feature and the relation between them (alert.trust)."""
    return np.ones((streams, detector.context.features + 1))


def warm_up(
    detector: Detector, table: StateTable, slots: np.ndarray, seed: int = 0, sd: float = 0.1
) -> None:
    rng = np.random.default_rng(seed)
    shape = (len(slots), detector.context.features)
    for step in range(WARM):
        errors = sd * rng.standard_normal(shape)
        learn(detector, table, slots, observe(errors, step, values=rng.normal(0, 1, shape)))


def snapshot(table: StateTable) -> dict[str, np.ndarray]:
    return {name: column.copy() for name, column in table.columns.items()}


class DetectorContract:
    """The contract's tests, for the detectors a ``make`` fixture makes (a subclass named
    ``Test...`` in a test module with that fixture runs them)."""

    def test_scores_are_in_unit_interval(self, make: Make) -> None:
        detector, table, slots = setup(make)
        warm_up(detector, table, slots)
        for errors in ([0.0, 0.1, 1e6], [1e-12, 5.0, 0.3]):
            scores = detector.assess(table, slots, observe(np.array(errors), WARM)).score
            assert ((scores >= 0) & (scores <= 1)).all()

    def test_assess_changes_nothing(self, make: Make) -> None:
        detector, table, slots = setup(make)
        warm_up(detector, table, slots)
        before = snapshot(table)
        detector.assess(table, slots, observe(np.array([0.1, 3.0, 0.2]), WARM))
        after = snapshot(table)
        assert all(np.array_equal(before[k], after[k], equal_nan=True) for k in before)

    def test_larger_error_larger_score(self, make: Make) -> None:
        detector, table, slots = setup(make)
        warm_up(detector, table, slots)
        scores = detector.assess(table, slots, observe(np.array([0.05, 0.4, 0.8]), WARM)).score
        assert scores[0] <= scores[1] <= scores[2] and scores[0] < scores[2]

    def test_typical_error_is_normal_and_a_huge_one_is_not(self, make: Make) -> None:
        detector, table, slots = setup(make, streams=2)
        warm_up(detector, table, slots)
        scores = detector.assess(table, slots, observe(np.array([0.1, 100.0]), WARM)).score
        assert detector.classify(scores).tolist() == [False, True]

    def test_every_assessment_names_a_channel_and_its_features(self, make: Make) -> None:
        detector, table, slots = setup(make, streams=2, features=2)
        warm_up(detector, table, slots)
        obs = observe(np.array([[0.1, 0.1], [0.1, 100.0]]), WARM)
        assessment = detector.assess(table, slots, obs)
        assert all(0 <= code < len(CHANNELS) for code in assessment.channel)
        shares = assessment.shares(np.arange(2))
        assert np.array_equal(assessment.shares(np.array([1])), shares[1:])  # asked rows only
        assert np.all(shares >= 0) and np.allclose(shares[1].sum(), 1.0)
        assert shares[1, 1] > 0.5  # the second feature drove the second stream's surprise

    def test_classify_is_the_threshold(self, make: Make) -> None:
        detector, _, _ = setup(make)
        t = detector.threshold
        scores = np.array([0.0, t - 1e-4, t, 1.0, np.nan])
        assert detector.classify(scores).tolist() == [False, False, True, True, False]

    def test_learn_touches_only_its_slots(self, make: Make) -> None:
        detector, table, slots = setup(make)
        before = snapshot(table)
        learn(detector, table, slots[:1], observe(np.array([0.7]), 0))
        after = snapshot(table)
        for name in before:
            assert np.array_equal(before[name][slots[1:]], after[name][slots[1:]], equal_nan=True)

    def test_restart_forgets_the_short_term_context(self, make: Make) -> None:
        detector, table, slots = setup(make, streams=1)
        for step in range(3):
            learn(detector, table, slots, observe(np.array([5.0]), step))
        detector.restart(table, slots)
        for name, spec in table.specs.items():
            if name in detector.columns() and spec.shape == () and np.isnan(spec.fill):
                assert np.isnan(table[name][slots][0]), name  # smoothing starts over
