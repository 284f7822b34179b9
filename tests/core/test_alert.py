"""The alert lifecycle, step by step."""

import numpy as np

from sensord.core.alert import (
    ALERT_COLUMNS,
    DRIVERS,
    SUSPICIOUS_TRUST,
    AlertPolicy,
    Transition,
    advance,
    drive,
    driver_columns,
    held_scores,
    trust,
)
from sensord.core.state import StateTable

THRESHOLD = 0.5
NAN = float("nan")


def run(
    policy: AlertPolicy,
    scores: list[float],
    times: list[float] | None = None,
    surprise: list[float] | None = None,
) -> list[Transition]:
    table = StateTable(1, 1, 1, extra=ALERT_COLUMNS)
    slots, _ = table.lookup(["s"])
    out = []
    for i, score in enumerate(scores):
        ts = np.array([times[i] if times else float(i)])
        s = np.array([score])
        u = np.array([surprise[i] if surprise else score])
        warm = np.array([True])
        step = advance(
            table, policy, slots, ts=ts, scores=s, surprise=u, warm=warm, threshold=THRESHOLD
        )
        out.append(Transition(step[0]))
    return out


R, U, C, A, N = (
    Transition.RAISED,
    Transition.UPDATED,
    Transition.CLEARED,
    Transition.ADOPTED,
    Transition.NONE,
)
PLAIN = {"repeat_window": 0}


def test_raise_after_one_and_clear_after_m() -> None:
    policy = AlertPolicy(raise_after=1, clear_after=2, hysteresis=0.1, **PLAIN)
    assert run(policy, [0.1, 0.9, 0.2, 0.1, 0.1]) == [N, R, N, C, N]


def test_raise_needs_k_in_a_row() -> None:
    policy = AlertPolicy(raise_after=3, clear_after=1, **PLAIN)
    assert run(policy, [0.9, 0.9, 0.1, 0.9, 0.9, 0.9, 0.1]) == [N, N, N, N, N, R, C]


def test_hysteresis_keeps_the_alert_in_the_band() -> None:
    policy = AlertPolicy(raise_after=1, clear_after=1, hysteresis=0.2, **PLAIN)
    # 0.45 is below the threshold but not below threshold - hysteresis: no clear.
    assert run(policy, [0.9, 0.45, 0.45, 0.2]) == [R, N, N, C]


def test_cooldown_after_clear() -> None:
    policy = AlertPolicy(raise_after=1, clear_after=1, hysteresis=0.0, cooldown_s=10, **PLAIN)
    times = [0.0, 1.0, 5.0, 11.0, 12.0]
    assert run(policy, [0.9, 0.1, 0.9, 0.9, 0.9], times) == [R, C, N, R, N]


def test_nan_scores_neither_raise_nor_clear() -> None:
    policy = AlertPolicy(raise_after=1, clear_after=1, **PLAIN)
    assert run(policy, [NAN, 0.9, NAN, 0.1]) == [N, R, N, C]


def test_a_second_peak_of_the_same_event_is_not_a_new_alert() -> None:
    policy = AlertPolicy(raise_after=1, clear_after=1, hysteresis=0.1, repeat_window=5)
    # Cleared after the first peak; the second, lower one within 5 samples is the same
    # event; a higher one is new.
    assert run(policy, [0.1, 0.9, 0.1, 0.7, 0.1, 0.95]) == [N, R, C, N, N, R]


def test_the_same_height_again_after_the_window_is_a_new_alert() -> None:
    policy = AlertPolicy(raise_after=1, clear_after=1, hysteresis=0.1, repeat_window=3)
    scores = [0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.9]
    assert run(policy, scores) == [N, R, C, N, N, N, R]


def test_a_new_onset_inside_an_alert_is_an_update() -> None:
    policy = AlertPolicy(raise_after=1, clear_after=2, hysteresis=0.1, **PLAIN)
    # The state holds the alert (score 0.6) while the surprise calms and fires again.
    scores = [0.9, 0.6, 0.6, 0.6, 0.9, 0.6, 0.1, 0.1]
    surprise = [0.9, 0.1, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1]
    assert run(policy, scores, surprise=surprise) == [R, N, N, N, U, N, N, C]


def test_no_update_without_a_calm_stretch_first() -> None:
    policy = AlertPolicy(raise_after=1, clear_after=3, hysteresis=0.1, **PLAIN)
    scores = [0.9, 0.9, 0.9, 0.9]
    surprise = [0.9, 0.1, 0.9, 0.9]
    assert run(policy, scores, surprise=surprise) == [R, N, N, N]


def test_an_alert_that_lasts_is_adopted_only_when_configured() -> None:
    scores = [0.9] * 6
    times = [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    never = AlertPolicy(raise_after=1, **PLAIN)
    assert run(never, scores, times) == [R, N, N, N, N, N]
    adopting = AlertPolicy(raise_after=1, adopt_after_s=25.0, **PLAIN)
    # (In the core, adopting also makes the detector learn the stream's normal anew, so the
    # score falls; here it stays high.)
    assert run(adopting, scores, times)[:4] == [R, N, N, A]


def test_streams_still_warming_up_never_raise() -> None:
    table = StateTable(1, 1, 1, extra=ALERT_COLUMNS)
    slots, _ = table.lookup(["s"])
    step = advance(
        table,
        AlertPolicy(),
        slots,
        ts=np.array([0.0]),
        scores=np.array([1.0]),
        surprise=np.array([1.0]),
        warm=np.array([False]),
        threshold=THRESHOLD,
    )
    assert Transition(step[0]) is N


def test_trust_is_zero_for_the_drivers_of_an_alert_and_small_when_suspicious() -> None:
    table = StateTable(1, 1, 2, extra={**ALERT_COLUMNS, **driver_columns(2)})
    slots, _ = table.lookup(["a", "b", "c"])
    table["alert_active"][slots[0]] = True
    table[DRIVERS][slots[0]] = [True, False, False]  # the first feature drove it
    features = np.array([[0.9, 0.1, 0.1], [0.45, 0.1, 0.1], [NAN, NAN, NAN]])
    got = trust(table, slots, features, calm_below=0.4)
    # The driver is frozen, and so is the relation; the other feature goes on learning.
    assert got[0].tolist() == [0.0, 1.0, 0.0]
    assert got[1].tolist() == [SUSPICIOUS_TRUST, 1.0, 1.0]
    assert got[2].tolist() == [1.0, 1.0, 1.0]


def lifecycle(
    features: list[list[float]], surprise: list[float] | None = None
) -> tuple[list[Transition], list[list[bool]]]:
    """Run a two-feature stream whose sample score is its most surprised feature's (and, by
    default, so is its surprise channels')."""
    table = StateTable(1, 1, 2, extra={**ALERT_COLUMNS, **driver_columns(2)})
    slots, _ = table.lookup(["s"])
    out, drivers = [], []
    for i, row in enumerate(features):
        per = np.array([[*row, 0.0]])
        scores = per.max(axis=1)
        step = advance(
            table,
            AlertPolicy(repeat_window=0),
            slots,
            ts=np.array([float(i)]),
            scores=scores,
            surprise=scores if surprise is None else np.array([surprise[i]]),
            warm=np.array([True]),
            threshold=THRESHOLD,
            held=held_scores(table, slots, scores, per),
        )
        drive(table, slots, step, per, threshold=THRESHOLD, calm_below=THRESHOLD - 0.1)
        out.append(Transition(step[0]))
        drivers.append(table[DRIVERS][slots[0]].tolist())
    return out, drivers


def test_an_alert_is_held_by_its_drivers_not_by_a_feature_that_drifts_meanwhile() -> None:
    # The first feature faults for 4 samples; the second drifts up meanwhile and stays up.
    rows = [[0.9, 0.1], [0.9, 0.3], [0.9, 0.6], [0.9, 0.7]] + [[0.1, 0.7]] * 6
    transitions, drivers = lifecycle(rows)
    assert transitions[0] is R and drivers[0] == [True, False, False]
    assert transitions[4 + 4] is C  # five calm samples of the driver: cleared
    assert C not in transitions[:8]


def test_a_second_onset_inside_an_alert_adds_its_features_to_the_drivers() -> None:
    # The first feature's fault is held by a state channel (its surprise channels calm),
    # then the second feature has an onset of its own.
    rows = [[0.9, 0.1]] + [[0.6, 0.1]] * 5 + [[0.6, 0.9]] + [[0.1, 0.9]] * 5
    surprise = [0.9] + [0.1] * 5 + [0.9] + [0.1] * 5
    transitions, drivers = lifecycle(rows, surprise)
    assert transitions[6] is U and drivers[6][:2] == [True, True]
    assert C not in transitions  # the new driver holds it
    # Without a calm stretch of the surprise channels first, it is no new onset: the alert
    # stays the first feature's, and ends when that feature is calm again.
    transitions, drivers = lifecycle(rows, [0.9] * len(rows))
    assert U not in transitions and drivers[6] == [True, False, False]
    assert transitions[-1] is C
