"""benchmarks/training.py as a user runs it: every cell/threads combination trained and reported.

A smoke run on a little generated data with a tiny net: it checks the benchmark measures what
it says, never how fast anything is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.training import BASELINE, COMBINATIONS

pytestmark = pytest.mark.slow  # models trained, runs end to end: seconds each

REPO = Path(__file__).resolve().parents[2]


def test_small_run_reports_every_combination(tmp_path: Path) -> None:
    out = tmp_path / "training.json"
    # A process of its own, its OpenMP threads sleeping while they wait: with the default
    # (spinning), two torch threads on a machine whose cores are busy stall for tens of seconds.
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/training.py",
            *("--rows", "400", "--epochs", "2", "--hidden", "8", "--no-warm-up"),
            *("--json", str(out)),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {row["combination"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {f"{cell}/{threads}" for cell, threads in COMBINATIONS}
    assert rows[BASELINE]["per_epoch_vs_baseline"] == 1.0
    for row in rows.values():
        assert row["median_wall_s"] > 0 and row["median_seconds_per_epoch"] > 0
        assert row["median_epochs_run"] == 2 and row["geomean_mae_ratio"] > 0
    assert f"vs {BASELINE}" in done.stdout
