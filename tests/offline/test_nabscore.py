"""The NAB scorer on hand-computed cases (NAB v1.1 rules)."""

import math

import numpy as np
import pytest

from sensord.offline.nabscore import Profile, prepare, probation_rows, score_corpus

STANDARD = Profile("standard", tp=1.0, fp=0.11, fn=1.0)
LOW_FN = Profile("reward_low_FN_rate", tp=1.0, fp=0.11, fn=2.0)
N = 100
WINDOW = (50.0, 59.0)  # rows 50..59: width 10, last row 59


def sigmoid_score(p: float) -> float:
    return -1.0 if p >= 3 else 2 / (1 + math.exp(5 * p)) - 1


MAX_TP = sigmoid_score(-1.0)


def one_file(detected: list[int], windows: list[tuple[float, float]] | None = None):
    scores = np.zeros(N)
    scores[detected] = 1.0
    return prepare(
        "f.csv", np.arange(N, dtype=float), scores, [WINDOW] if windows is None else windows
    )


def raw(detected: list[int], profile: Profile = STANDARD) -> float:
    return score_corpus([one_file(detected)], profile, threshold=1.0).raw


def test_probation_is_fifteen_percent_capped_at_750() -> None:
    assert probation_rows(100) == 15 and probation_rows(4032) == 604
    assert probation_rows(22695) == 750


def test_no_detection_scores_minus_fn_and_normalises_to_zero() -> None:
    result = score_corpus([one_file([])], STANDARD, threshold=1.0)
    assert result.raw == -1.0 and result.null == -1.0 and result.perfect == 1.0
    assert result.normalized == 0.0
    assert score_corpus([one_file([])], LOW_FN, threshold=1.0).raw == -2.0


def test_detection_at_the_window_start_is_perfect() -> None:
    assert raw([50]) == pytest.approx(1.0)
    assert score_corpus([one_file([50])], STANDARD, threshold=1.0).normalized == 100.0


def test_late_detection_in_the_window_earns_less() -> None:
    expected = sigmoid_score(-(59 - 59 + 1) / 10) / MAX_TP  # = 0.2482...
    assert raw([59]) == pytest.approx(expected)
    assert expected == pytest.approx(0.248242, abs=1e-6)


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    assert raw([52, 55, 58]) == pytest.approx(sigmoid_score(-(59 - 52 + 1) / 10) / MAX_TP)


def test_false_positive_before_any_window_costs_full_fp() -> None:
    assert raw([30, 50]) == pytest.approx(1.0 - 0.11)


def test_false_positive_just_after_a_window_costs_less() -> None:
    near = sigmoid_score(abs(59 - 60) / (10 - 1)) * 0.11  # = -0.0298
    far = sigmoid_score(abs(59 - 95) / (10 - 1)) * 0.11  # position 4 >= 3: -0.11
    assert raw([50, 60]) == pytest.approx(1.0 + near)
    assert near == pytest.approx(-0.029793, abs=1e-6)
    assert raw([50, 95]) == pytest.approx(1.0 + far) and far == -0.11


def test_probationary_rows_are_not_scored() -> None:
    assert raw([10]) == -1.0


def test_file_without_windows() -> None:
    f = one_file([20, 40], windows=[])
    result = score_corpus([f], STANDARD, threshold=1.0)
    assert result.raw == pytest.approx(-0.22) and result.null == 0.0 and result.perfect == 0.0


def test_threshold_is_swept_over_the_whole_corpus() -> None:
    a = np.zeros(N)
    a[50], a[30] = 0.9, 0.95  # the window at 0.9, a false positive above it
    b = np.zeros(N)
    b[20] = 0.8  # a file without windows: detecting at 0.8 costs a false positive
    files = [
        prepare("a.csv", np.arange(N, dtype=float), a, [WINDOW]),
        prepare("b.csv", np.arange(N, dtype=float), b, []),
    ]
    best = score_corpus(files, STANDARD)
    # thresholds: >0.95 -> -1; 0.95 -> -1.11; 0.9 -> 1 - 0.11 = 0.89; 0.8 -> 0.78; 0 -> worse
    assert best.threshold == 0.9
    assert best.raw == pytest.approx(0.89)
    assert best.per_file == {"a.csv": pytest.approx(0.89), "b.csv": 0.0}
    assert best.normalized == pytest.approx(100 * (0.89 + 1) / 2)
