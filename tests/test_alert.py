"""The alert lifecycle, step by step."""

import numpy as np

from sensord.alert import ALERT_COLUMNS, AlertPolicy, Transition, advance
from sensord.state import StateTable

THRESHOLD = 0.5


def run(
    policy: AlertPolicy, scores: list[float], times: list[float] | None = None
) -> list[Transition]:
    table = StateTable(1, 1, 1, extra=ALERT_COLUMNS)
    slots, _ = table.lookup(["s"])
    out = []
    for i, score in enumerate(scores):
        ts = np.array([times[i] if times else float(i)])
        s = np.array([score])
        anomalous = s >= THRESHOLD
        out.append(
            Transition(
                advance(
                    table, policy, slots, ts=ts, scores=s, anomalous=anomalous, threshold=THRESHOLD
                )[0]
            )
        )
    return out


R, C, N = Transition.RAISED, Transition.CLEARED, Transition.NONE


def test_raise_after_one_and_clear_after_m() -> None:
    policy = AlertPolicy(raise_after=1, clear_after=2, hysteresis=0.1)
    assert run(policy, [0.1, 0.9, 0.2, 0.1, 0.1]) == [N, R, N, C, N]


def test_raise_needs_k_in_a_row() -> None:
    policy = AlertPolicy(raise_after=3, clear_after=1)
    assert run(policy, [0.9, 0.9, 0.1, 0.9, 0.9, 0.9, 0.1]) == [N, N, N, N, N, R, C]


def test_hysteresis_keeps_the_alert_in_the_band() -> None:
    policy = AlertPolicy(raise_after=1, clear_after=1, hysteresis=0.2)
    # 0.45 is below the threshold but not below threshold - hysteresis: no clear.
    assert run(policy, [0.9, 0.45, 0.45, 0.2]) == [R, N, N, C]


def test_cooldown_after_clear() -> None:
    policy = AlertPolicy(raise_after=1, clear_after=1, hysteresis=0.0, cooldown_s=10)
    times = [0.0, 1.0, 5.0, 11.0, 12.0]
    assert run(policy, [0.9, 0.1, 0.9, 0.9, 0.9], times) == [R, C, N, R, N]


def test_nan_scores_neither_raise_nor_clear() -> None:
    policy = AlertPolicy(raise_after=1, clear_after=1)
    assert run(policy, [float("nan"), 0.9, float("nan"), 0.1]) == [N, R, N, C]
