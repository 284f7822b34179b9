"""The channels detector: the contract every detector keeps (tests/core/detectors.py), and
what each of its parts does (the channels, the calibrated tails)."""

import math

import numpy as np
import pytest

from sensord.core.detect import (
    CHANNELS,
    DetectorSettings,
    make_detector,
    score_from_z,
    z_from_score,
)
from sensord.core.detect.composite import GAUSSIAN_MAGNITUDE
from sensord.core.detect.contextual import predictive_z
from sensord.core.detect.histogram import EDGES
from sensord.core.detect.range import ExtremesChannel, range_columns
from sensord.core.detect.tail import (
    CL,
    EX,
    HEAVY,
    LEARNT_U_VALUES,
    LEVEL,
    Learnt,
    Tail,
    TailPrior,
    U,
)
from sensord.core.state import StateTable
from tests.core.detectors import (
    T0,
    DetectorContract,
    Make,
    calm,
    context,
    learn,
    observe,
    setup,
)


@pytest.fixture
def make() -> Make:
    return lambda made_for: make_detector(made_for, DetectorSettings())


class TestChannelsContract(DetectorContract):
    pass


@pytest.mark.slow
def test_the_channels_detector_learns_a_noisier_streams_own_level(make: Make) -> None:
    rng = np.random.default_rng(0)
    noisy = np.exp(np.log(1.0) + 0.3 * rng.standard_normal(3000))  # 10x the calibrated error
    detector, table, slots = setup(make, streams=1)
    flagged = 0
    for step, error in enumerate(noisy):
        flagged += int(detector.classify(learn(detector, table, slots, observe([error], step)))[0])
    assert flagged < 10  # calibrates its tails on the stream itself


def test_score_and_z_are_inverse() -> None:
    for score in (0.1, 0.5, 0.9):
        assert score_from_z(np.array([z_from_score(score)]))[0] == pytest.approx(score, abs=1e-9)
    assert score_from_z(np.array([0.0]))[0] == pytest.approx(np.log10(2) / (np.log10(2) + 5))


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="threshold"):
        DetectorSettings(threshold=1.5)
    with pytest.raises(ValueError, match="kind"):
        DetectorSettings(kind="likelihood")  # a single-error detector: a baseline now
    with pytest.raises(ValueError, match="channel"):
        DetectorSettings(channels=frozenset({"telepathy"}))


def test_log_upper_tail_matches_scipy_everywhere() -> None:
    from scipy.special import log_ndtr

    from sensord.core.detect.normal import log_upper_tail

    z = np.concatenate([np.linspace(-40, 40, 20001), [0.0, 1e-9, -1e-9, 1e3, -1e3]])
    ours, theirs = log_upper_tail(z), log_ndtr(-z)
    # 1.2e-7 relative on the probability is 1.2e-7 absolute on its log.
    np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=2e-7)
    assert log_upper_tail(np.inf)[()] == -np.inf and log_upper_tail(-np.inf)[()] == 0.0
    assert np.isnan(log_upper_tail(np.nan)[()])


# The calibrated tails (tail.py)

DAY = 86_400.0


def tail_after(
    values: np.ndarray,
    prior: TailPrior,
    anomalous: np.ndarray | None = None,
    step_s: float = 300.0,
) -> tuple[Tail, StateTable]:
    tail = Tail("t", [(1, prior)], min_samples=50)
    table = StateTable(1, 1, 1, extra=tail.columns())
    slots, _ = table.lookup(["s"])
    tail.start(table, slots)
    flags = np.zeros(len(values), dtype=bool) if anomalous is None else anomalous
    for i, value in enumerate(values):
        stat = np.array([[value]])
        ts = np.array([T0 + step_s * i])
        tail.learn(table, slots, stat, np.array([[flags[i]]]), ts)
    return tail, table


def decades(tail: Tail, table: StateTable, stat: float) -> float:
    slots = np.array([0])
    return float(-tail.log_p(table, slots, np.array([[stat]]))[0, 0] / math.log(10))


def heavy(table: StateTable) -> float:
    return float(table["tail_t"][0, 0, HEAVY])


@pytest.mark.slow
def test_a_gaussian_tail_keeps_its_light_fit_and_is_priced_near_its_true_rarity() -> None:
    from scipy.stats import norm

    rng = np.random.default_rng(3)
    tail, table = tail_after(np.abs(rng.standard_normal(20_000)), TailPrior(2.0, shape=2.0))
    assert heavy(table) < 0.5
    for z in (3.0, 4.0, 5.0):
        true = -math.log10(2 * norm.sf(z))
        assert true - 1.5 < decades(tail, table, z) < true + 1.5, z


def test_the_magnitude_shape_prices_a_gaussian_where_alerts_are_decided() -> None:
    from scipy.stats import norm

    def light(shape: float, z: float) -> float:
        """The light fit alone, anchored at a Gaussian magnitude's true 95th percentile."""
        tail, table = tail_after(np.ones(100), TailPrior(1.0, shape=shape))
        numbers = table["tail_t"]
        numbers[0, 0, U], numbers[0, 0, HEAVY] = norm.isf(0.025), 0.0
        numbers[0, 0, CL] = numbers[0, 0, EX]  # every exceedance its own cluster
        return decades(tail, table, z)

    for z in (3.5, 4.0, 4.5):
        true = -math.log10(2 * norm.sf(z))
        assert abs(light(GAUSSIAN_MAGNITUDE, z) - true) < 0.1, z
    # k 2, a Gaussian's only far out, calls a 4.5-sigma magnitude about fifty times too rare.
    assert light(2.0, 4.5) > -math.log10(2 * norm.sf(4.5)) + 1.5


def test_a_learnt_95th_percentile_is_taken_only_once_it_has_settled() -> None:
    prior = TailPrior(2.0, shape=2.0)
    for values, expected in ((400.0, 2.0), (LEARNT_U_VALUES, 1.2)):
        learnt = Learnt(
            counts=np.zeros((1, EDGES)), values=np.array([values]), threshold=np.array([1.2])
        )
        tail = Tail("t", [(1, prior)], min_samples=50, learnt=learnt)
        table = StateTable(1, 1, 1, extra=tail.columns())
        slots, _ = table.lookup(["s"])
        tail.start(table, slots)
        assert table["tail_t"][0, 0, U] == expected, values


def test_past_the_histogram_a_heavy_tail_is_never_lighter_than_the_light_fit() -> None:
    rng = np.random.default_rng(8)
    noise = np.abs(0.3 * rng.standard_normal(5000))
    switching = rng.random(5000) < 0.03  # large errors that stop abruptly at about 9
    values = np.where(switching, np.abs(7.0 + rng.standard_normal(5000)), noise)
    prior = TailPrior(2.0, shape=1.7)
    tail, table = tail_after(values, prior)
    assert heavy(table) > 0.0
    u = float(table["tail_t"][0, 0, U])
    for stat in (12.0, 20.0, 40.0):
        light = -math.log(LEVEL) * (stat / u) ** 1.7 / math.log(10)
        assert decades(tail, table, stat) <= light + 1e-9, stat


def test_a_tail_is_silent_until_it_has_seen_enough() -> None:
    tail, table = tail_after(np.ones(10), TailPrior(2.0, shape=2.0))
    assert decades(tail, table, 100.0) == 0.0


@pytest.mark.slow
def test_a_heavy_tailed_stream_is_priced_at_the_rate_its_values_come() -> None:
    rng = np.random.default_rng(7)
    values = np.abs(rng.standard_t(3, 60_000))
    tail, table = tail_after(values[:30_000], TailPrior(2.0, shape=1.7))
    assert heavy(table) == 1.0  # the light fit is contradicted
    # Of the next values, those the tail calls one in 1,000 or rarer come about that often.
    slots = np.array([0])
    later = values[30_000:]
    log_p = tail.log_p(table, slots, later[:, None].copy().reshape(-1, 1)[:1])  # ready check
    assert log_p.shape == (1, 1)
    rare = sum(decades(tail, table, float(v)) >= 3.0 for v in later[:20_000])
    assert rare <= 3 * 20_000 * 1e-3, rare
    # and a Gaussian-shaped tail would have called 1 in 10 of them that rare
    assert decades(tail, table, 12.0) < 4.0


def test_a_cluster_of_switching_errors_is_this_stream_s_normal() -> None:
    rng = np.random.default_rng(8)
    noise = np.abs(0.3 * rng.standard_normal(5000))
    switching = rng.random(5000) < 0.03  # a machine cycling: a large error at each edge
    values = np.where(switching, np.abs(7.0 + rng.standard_normal(5000)), noise)
    tail, table = tail_after(values, TailPrior(2.0, shape=1.7))
    assert decades(tail, table, 7.0) < 2.5  # about as often as the edges come
    assert decades(tail, table, 60.0) > decades(tail, table, 7.0) + 2  # far past them: rare


def test_an_anomaly_is_not_learnt_as_normal_until_it_is_a_habit() -> None:
    rng = np.random.default_rng(9)
    values = np.abs(rng.standard_normal(8000))
    flagged = np.zeros(8000, dtype=bool)
    # A spike of 30 spreads a day (288 values) apart from the 2,000th value on, each one
    # anomalous when it came.
    spikes = np.arange(2000, 2000 + 5 * 288, 288)
    values[spikes], flagged[spikes] = 30.0, True
    tail, table = tail_after(values, TailPrior(2.0, shape=1.7), flagged)
    assert decades(tail, table, 30.0) > 10  # five days of it: still an anomaly
    # Spikes in a new stream's first values (which teach it its normal) are its normal.
    early = np.abs(rng.standard_normal(3000))
    early[20:500:20] = 30.0
    tail, table = tail_after(early, TailPrior(2.0, shape=1.7))
    assert decades(tail, table, 30.0) < 3


def test_a_slow_statistic_earns_credit_for_its_clusters() -> None:
    rng = np.random.default_rng(5)
    white = np.abs(rng.standard_normal(5000))
    slow = np.abs(np.convolve(rng.standard_normal(5020), np.ones(20) / np.sqrt(20), "valid"))
    t_white, table_white = tail_after(white, TailPrior(2.0, shape=2.0))
    t_slow, table_slow = tail_after(slow[:5000], TailPrior(2.0, shape=2.0))
    # The same value, rarer as a cluster start on the slow statistic (mean run ~ 20): its
    # runs are counted as one, in the light fit (theta) and in the histogram alike.
    assert table_slow["tail_t"][0, 0, CL] < 0.5 * table_slow["tail_t"][0, 0, EX]
    assert decades(t_slow, table_slow, 4.0) > decades(t_white, table_white, 4.0) + 0.2


def test_a_new_extreme_is_priced_by_record_theory() -> None:
    channel = ExtremesChannel(features=2, margin=0.05, min_samples=100)
    table = StateTable(1, 1, 2, extra=range_columns(2))
    slots, _ = table.lookup(["s"])
    table["seen_min"][slots] = [0.0, 0.0]
    table["seen_max"][slots] = [1.0, 1.0]
    table["seen_n"][slots] = 999
    obs = observe(np.zeros((1, 2)), 0, values=np.array([[2.0, 0.5]]))
    reading = channel.read(table, slots, obs, obs.errors, {})
    # Past the range of 999 values: one chance in 1,000 (the first feature), none inside it.
    assert reading.stat[0, 0] == pytest.approx(math.log(1000.0))
    assert np.isnan(reading.stat[0, 1])


def test_predictive_z_trusts_a_profile_by_how_many_looks_it_had() -> None:
    t = np.array([[6.0]])
    few, many = predictive_z(t, np.array([[3.0]])), predictive_z(t, np.array([[1000.0]]))
    assert 0 < few[0, 0] < many[0, 0] < 6.0
    assert many[0, 0] == pytest.approx(6.0, abs=0.1)
    assert predictive_z(-t, np.array([[3.0]]))[0, 0] == -few[0, 0]


@pytest.mark.slow
def test_contextual_channel_catches_a_day_that_changes_shape() -> None:
    detector = make_detector(context(daily=True), DetectorSettings())
    table = StateTable(1, 1, 1, extra={**detector.columns(), **range_columns(1)})
    slots, _ = table.lookup(["s"])
    detector.start(table, slots)
    rng = np.random.default_rng(6)
    day = 288
    for step in range(21 * day):
        phase = 2 * math.pi * step / day
        value = math.sin(phase) + 0.1 * rng.standard_normal()
        learn(detector, table, slots, observe([0.1 * rng.standard_normal()], step, [[value]]))
    # At the day's peak the stream stays flat at 0 (the LSTM would follow it: small errors).
    scores = []
    for step in range(21 * day + day // 4 - 12, 21 * day + day // 4 + 12):
        assessment = detector.assess(table, slots, observe([0.05], step, [[0.0]]))
        detector.learn(table, slots, observe([0.05], step, [[0.0]]), assessment, calm(detector, 1))
        scores.append((assessment.score[0], CHANNELS[assessment.channel[0]]))
    assert max(s for s, _ in scores) >= detector.threshold
    assert {c for s, c in scores if s >= detector.threshold} <= {"contextual", "shift"}
