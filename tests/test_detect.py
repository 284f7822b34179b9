"""Contract tests run over every detector, and what sets each apart."""

import numpy as np
import pytest

from sensord.bundle import Calibration
from sensord.detect import (
    DETECTOR_KINDS,
    Detector,
    DetectorKind,
    DetectorSettings,
    make_detector,
    score_from_z,
    z_from_score,
)
from sensord.state import StateTable

CALIBRATION = Calibration(
    smoothing=0.5,
    error_floor=0.01,
    log_error_mean=np.log(0.1),
    log_error_std=0.5,
    threshold_error=1.0,
    samples=100,
)


def setup(kind: DetectorKind, streams: int = 3) -> tuple[Detector, StateTable, np.ndarray]:
    detector = make_detector(CALIBRATION, DetectorSettings(kind=kind))
    table = StateTable(1, 1, 1, extra=detector.columns())
    slots, _ = table.lookup([f"s{i}" for i in range(streams)])
    detector.start(table, slots)
    return detector, table, slots


def learn(detector: Detector, table: StateTable, slots: np.ndarray, errors: np.ndarray) -> None:
    """Score, then learn: as the core does."""
    detector.learn(table, slots, errors, detector.score(table, slots, errors))


def snapshot(table: StateTable) -> dict[str, np.ndarray]:
    return {name: column.copy() for name, column in table.columns.items()}


@pytest.mark.parametrize("kind", DETECTOR_KINDS)
class TestContract:
    def test_scores_are_in_unit_interval(self, kind: DetectorKind) -> None:
        detector, table, slots = setup(kind)
        for errors in ([0.0, 0.1, 1e6], [1e-12, 5.0, 0.3]):
            scores = detector.score(table, slots, np.array(errors))
            assert ((scores >= 0) & (scores <= 1)).all()

    def test_score_changes_nothing(self, kind: DetectorKind) -> None:
        detector, table, slots = setup(kind)
        before = snapshot(table)
        detector.score(table, slots, np.array([0.1, 3.0, 0.2]))
        after = snapshot(table)
        assert all(np.array_equal(before[k], after[k], equal_nan=True) for k in before)

    def test_larger_error_larger_score(self, kind: DetectorKind) -> None:
        detector, table, slots = setup(kind)
        scores = detector.score(table, slots, np.array([0.05, 0.12, 0.2]))
        assert scores[0] < scores[1] < scores[2]

    def test_typical_error_is_normal_and_a_huge_one_is_not(self, kind: DetectorKind) -> None:
        detector, table, slots = setup(kind, streams=2)
        scores = detector.score(table, slots, np.array([0.1, 100.0]))
        assert detector.classify(scores).tolist() == [False, True]

    def test_classify_is_the_threshold(self, kind: DetectorKind) -> None:
        detector, _, _ = setup(kind)
        t = detector.threshold
        scores = np.array([0.0, t - 1e-4, t, 1.0, np.nan])
        assert detector.classify(scores).tolist() == [False, False, True, True, False]

    def test_learn_touches_only_its_slots(self, kind: DetectorKind) -> None:
        detector, table, slots = setup(kind)
        before = snapshot(table)
        learn(detector, table, slots[:1], np.array([0.7]))
        after = snapshot(table)
        for name in before:
            assert np.array_equal(before[name][slots[1:]], after[name][slots[1:]], equal_nan=True)

    def test_restart_forgets_the_short_term_context(self, kind: DetectorKind) -> None:
        detector, table, slots = setup(kind, streams=1)
        for _ in range(3):
            learn(detector, table, slots, np.array([5.0]))
        detector.restart(table, slots)
        for name, spec in table.specs.items():
            if name in detector.columns() and spec.shape == () and np.isnan(spec.fill):
                assert np.isnan(table[name][slots][0]), name  # smoothing starts over


def test_adaptive_follows_a_noisier_stream_and_fixed_does_not() -> None:
    rng = np.random.default_rng(0)
    noisy = np.exp(np.log(1.0) + 0.3 * rng.standard_normal(3000))  # 10x the calibrated error
    results = {}
    for kind in DETECTOR_KINDS:
        detector, table, slots = setup(kind, streams=1)
        flagged = 0
        for error in noisy:
            e = np.array([error])
            flagged += int(detector.classify(detector.score(table, slots, e))[0])
            learn(detector, table, slots, e)
        results[kind] = flagged
    assert results["fixed"] > 1000  # for ever above the calibrated threshold
    assert results["adaptive"] < 50  # learns the stream's own level


def test_adaptive_keeps_anomalies_out_of_the_baseline() -> None:
    detector, table, slots = setup("adaptive", streams=1)
    for _ in range(500):
        learn(detector, table, slots, np.array([0.1]))
    mean_before = table["log_error_mean"][slots][0]
    for _ in range(20):  # a burst of huge errors
        learn(detector, table, slots, np.array([1000.0]))
    shift = table["log_error_mean"][slots][0] - mean_before
    # clipped at the threshold: the burst moves the mean by far less than log(1000/0.1)
    assert shift < 0.2 * np.log(1000 / 0.1)


def test_score_and_z_are_inverse() -> None:
    for score in (0.1, 0.5, 0.9):
        assert score_from_z(np.array([z_from_score(score)]))[0] == pytest.approx(score, abs=1e-9)
    assert score_from_z(np.array([0.0]))[0] == pytest.approx(np.log10(2) / (np.log10(2) + 5))


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="threshold"):
        DetectorSettings(threshold=1.5)
    with pytest.raises(ValueError, match="kind"):
        DetectorSettings(kind="magic")


def test_likelihood_accepts_a_lasting_new_regime() -> None:
    from sensord.detect.likelihood import REGIME_RUN

    rng = np.random.default_rng(1)
    detector, table, slots = setup("likelihood", streams=1)
    for error in 0.1 + 0.02 * rng.standard_normal(2000):
        learn(detector, table, slots, np.array([abs(error)]))
    scores = []
    for error in 1.0 + 0.2 * rng.standard_normal(300):  # ten times the errors, for good
        e = np.array([abs(error)])
        scores.append(float(detector.score(table, slots, e)[0]))
        learn(detector, table, slots, e)
    assert all(s >= detector.threshold for s in scores[5:REGIME_RUN])  # first: a surprise
    assert all(s < detector.threshold for s in scores[200:])  # then: the new normal


def test_log_upper_tail_matches_scipy_everywhere() -> None:
    from scipy.special import log_ndtr

    from sensord.detect.normal import log_upper_tail

    z = np.concatenate([np.linspace(-40, 40, 20001), [0.0, 1e-9, -1e-9, 1e3, -1e3]])
    ours, theirs = log_upper_tail(z), log_ndtr(-z)
    # 1.2e-7 relative on the probability is 1.2e-7 absolute on its log.
    np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=2e-7)
    assert log_upper_tail(np.inf)[()] == -np.inf and log_upper_tail(-np.inf)[()] == 0.0
    assert np.isnan(log_upper_tail(np.nan)[()])
