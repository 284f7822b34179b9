"""benchmarks/calibration.py end to end on one small family (no ../shared needed), and its
families of normal data."""

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import calibration
from benchmarks.families import FAMILIES

pytestmark = pytest.mark.slow  # models trained, runs end to end: seconds each


def test_every_family_draws_finite_readings_of_its_features() -> None:
    for family in FAMILIES.values():
        ts, values = family.draw(500, 1.7e9, seed=1)
        assert values.shape == (500, len(family.features)), family.name
        assert np.isfinite(values).all(), family.name
        assert np.all(np.diff(ts) == family.interval_s), family.name


def test_a_family_draw_is_a_function_of_its_seed() -> None:
    family = FAMILIES["bursty"]
    a, b, c = (family.draw(300, 1.7e9, seed=s)[1] for s in (1, 1, 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_the_nominal_rate_is_the_scores_tail_probability() -> None:
    assert calibration.nominal_rate(0.5) == 1e-5
    assert np.isclose(calibration.nominal_rate(0.45), 10 ** (-5 * 0.45 / 0.55))


def test_the_benchmark_counts_raised_alerts_per_family_and_threshold(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    code = calibration.main(
        [
            "--families",
            "periodic",
            "--seeds",
            "0",
            "--readings",
            "4000",
            "--thresholds",
            "0.45,0.5",
            "--jobs",
            "1",
            "--out",
            str(tmp_path / "work"),
            "--json",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    row = report["summary"]["default"]["families"]["periodic"]
    for threshold in ("0.45", "0.5"):
        counted = row["thresholds"][threshold]
        assert counted["readings"] == 4000  # every stream's every reading
        assert counted["raised"] >= 0 and counted["ratio"] >= 0
    assert report["summary"]["default"]["worst"]["family"] == "periodic"
