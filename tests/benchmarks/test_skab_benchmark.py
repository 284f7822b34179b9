"""benchmarks/skab.py and its scorer: SKAB's rules on hand-made cases, and the benchmark end
to end on a small generated pump in SKAB's layout (no ../shared needed)."""

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import skab
from benchmarks.skabscore import PROFILES, Confusion, CpScore, changepoints, curve, match, windows
from benchmarks.variants import parse_variant

pytestmark = pytest.mark.slow  # models trained, runs end to end: seconds each

STANDARD = PROFILES[0]


def test_outlier_metrics_pool_rows_and_round_as_skab_does() -> None:
    confusion = Confusion()
    confusion.add([1, 1, 0, 0], [1, 0, 1, 0])
    confusion.add([1, 1, 1], [1, 1, 0])
    assert (confusion.tp, confusion.tn, confusion.fp, confusion.fn) == (3, 1, 1, 2)
    assert confusion.f1 == round(3 / (3 + 1.5), 2)
    assert confusion.far == 50.0 and confusion.mar == 40.0


def test_changepoints_are_where_the_flag_changes_and_a_flagged_first_row() -> None:
    assert changepoints(np.array([1, 1, 0, 0, 1])).tolist() == [True, False, True, False, True]
    assert changepoints(np.array([0, 0, 1])).tolist() == [False, False, True]


def test_overlapping_windows_are_cut_on_the_right() -> None:
    assert windows(np.array([0.0, 59.0, 200.0])) == [(0.0, 60.0), (60.0, 119.0), (200.0, 260.0)]


def test_first_detection_in_a_window_scores_others_outside_cost() -> None:
    bounds = [(100.0, 160.0), (300.0, 360.0)]
    hits, outside = match(np.array([50.0, 110.0, 120.0, 200.0, 400.0]), bounds)
    assert hits == [110.0, None]
    assert outside == 3  # before the first window, between them, after the last


def test_the_scoring_curve_runs_from_tp_to_fp_across_the_window() -> None:
    assert curve(0.0, 0.0, 60.0, STANDARD) == pytest.approx(1.0)
    assert curve(0.0, 60.0, 60.0, STANDARD) == pytest.approx(-0.11)
    # Values SKAB's own curve gives (30 s into a 60 s window: 0.444; 10 s: 0.918).
    assert curve(0.0, 30.0, 60.0, STANDARD) == pytest.approx(0.444, abs=1e-3)
    assert curve(0.0, 10.0, 60.0, STANDARD) == pytest.approx(0.918, abs=1e-3)


def test_pooled_nab_score_from_null_to_perfect() -> None:
    ts = np.arange(0.0, 400.0)
    truth = np.zeros(400)
    truth[[100, 250]] = 1
    null, perfect, late = CpScore(), CpScore(), CpScore()
    null.add_file(ts, truth, np.zeros(400))
    perfect.add_file(ts, truth, np.where((ts >= 100) & (ts < 250), 1, 0))
    flags = np.where((ts >= 130) & (ts < 280), 1, 0)  # both changepoints seen 30 s late
    late.add_file(ts, truth, flags)
    assert null.normalized("standard") == 0.0
    assert perfect.normalized("standard") == 100.0
    assert late.normalized("standard") == pytest.approx(100 * (2 * 0.444 + 2) / 4, abs=0.1)
    assert late.missed == 0 and late.false_positives == 0


def test_variants_parse_and_refuse_what_is_not_a_setting() -> None:
    v = parse_variant("ablate:channels=point+extremes,threshold=0.55,alert.repeat_window=0")
    assert v.settings.detector.channels == frozenset({"point", "extremes"})
    assert v.settings.detector.threshold == 0.55 and v.settings.alerts.repeat_window == 0
    assert parse_variant("persistence:model=persistence").model == "persistence"
    for bad in ("x:nonsense=1", "x:model=oracle", "x:threshold"):
        with pytest.raises(ValueError):
            parse_variant(bad)


FEATURES = (
    "Accelerometer1RMS;Accelerometer2RMS;Current;Pressure;Temperature;Thermocouple;Voltage;"
    "Volume Flow RateRMS"
)


def write_pump(path: Path, seed: int, fault: tuple[int, int]) -> None:
    """A pump in SKAB's format: eight noisy sensors at 1 Hz; between ``fault`` rows the
    flow drops by 3 and the current rises by 0.5 (a closed valve)."""
    rng = np.random.default_rng(seed)
    rows = 900
    values = rng.normal(0, 1, (rows, 8)) * [0.001, 0.001, 0.05, 0.05, 0.1, 0.01, 1, 0.3]
    values += [0.03, 0.04, 1.0, 0.3, 70.0, 25.0, 230.0, 32.0]
    start, end = fault
    values[start:end, 7] -= 3.0
    values[start:end, 2] += 0.5
    anomaly = np.zeros(rows)
    anomaly[start:end] = 1
    change = np.zeros(rows)
    change[[start, end]] = 1
    lines = [f"datetime;{FEATURES};anomaly;changepoint"]
    for i in range(rows):
        stamp = f"2020-03-09 10:{14 + i // 60:02d}:{i % 60:02d}"
        cells = ";".join(f"{v:.6f}" for v in values[i])
        lines.append(f"{stamp};{cells};{anomaly[i]:.1f};{change[i]:.1f}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_skab_benchmark_runs_and_scores_the_daemons_alerts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_pump(data / "valve1" / "0.csv", 1, (600, 780))
    write_pump(data / "valve1" / "1.csv", 2, (650, 820))
    write_pump(data / "anomaly-free" / "anomaly-free.csv", 3, (0, 0))
    out = tmp_path / "out"
    args = [str(data), "--out", str(out), "--json", str(tmp_path / "r.json"), "--jobs", "1"]
    assert skab.main([*args, "--variant", "persistence:model=persistence"]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["files"] == ["valve1/0.csv", "valve1/1.csv"]  # anomaly-free is left out
    rows = report["seeds"]["0"]
    assert set(rows) == {"channels", "persistence"}
    # A flow drop of ten noise sigmas is alerted for most of its rows, and little else.
    assert rows["channels"]["f1"] >= 0.8 and rows["channels"]["far"] < 10
